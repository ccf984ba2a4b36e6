package repo

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/objstore"
)

// Associated data bound into every sealed message, so a sealed object of one
// kind can never be presented as another.
const (
	adBlob     = "arkbox blob v1"
	adPackHdr  = "arkbox pack header v1"
	adIndex    = "arkbox index v1"
	adSnapshot = "arkbox snapshot v1"
)

// Blob codecs: the first plaintext byte of a sealed blob.
const (
	codecRaw  = 0
	codecZstd = 1
)

const (
	packHeaderVersion = 1
	indexVersion      = 1
	// maxBlobsPerPack bounds decoders against hostile input.
	maxBlobsPerPack = 1 << 20
	// MaxBlobSize bounds one blob's plaintext (the largest chunk is 8 MiB).
	MaxBlobSize = 16 << 20
)

var errTruncated = errors.New("truncated")

func blobAD(t blob.Type, id blob.ID) []byte {
	ad := make([]byte, 0, len(adBlob)+1+32)
	ad = append(ad, adBlob...)
	ad = append(ad, byte(t))
	return append(ad, id[:]...)
}

// PackEntry describes one blob in a pack. Offsets are implicit in the
// header: blobs are laid out in header order from offset 0.
type PackEntry struct {
	Type      blob.Type
	ID        blob.ID
	Offset    uint32 // filled in by DecodePackHeader
	Length    uint32 // sealed length
	RawLength uint32 // plaintext length (before compression)
}

// EncodePackHeader returns the plaintext pack header for entries.
func EncodePackHeader(entries []PackEntry) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(entries)*40)
	b = append(b, packHeaderVersion)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = append(b, byte(e.Type))
		b = append(b, e.ID[:]...)
		b = binary.AppendUvarint(b, uint64(e.Length))
		b = binary.AppendUvarint(b, uint64(e.RawLength))
	}
	return b
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.err = errTruncated
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = errTruncated
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	// Reject non-minimal encodings so that decoding is canonical.
	if n > 1 && r.b[n-1] == 0 {
		r.err = errors.New("non-minimal varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) u32() uint32 {
	v := r.uvarint()
	if v > 1<<32-1 && r.err == nil {
		r.err = errors.New("value out of range")
	}
	return uint32(v)
}

// DecodePackHeader parses a plaintext pack header; dataLen is the number of
// bytes of blob data that precede the header in the pack, which the entries
// must cover exactly.
func DecodePackHeader(b []byte, dataLen int64) ([]PackEntry, error) {
	r := &reader{b: b}
	if v := r.byte(); r.err == nil && v != packHeaderVersion {
		return nil, fmt.Errorf("pack header version %d not supported", v)
	}
	n := r.uvarint()
	if r.err == nil && (n > maxBlobsPerPack || n > uint64(len(r.b))/35) {
		return nil, fmt.Errorf("pack header: implausible blob count %d", n)
	}
	entries := make([]PackEntry, 0, n)
	var off uint64
	for i := uint64(0); i < n && r.err == nil; i++ {
		var e PackEntry
		e.Type = blob.Type(r.byte())
		copy(e.ID[:], r.bytes(32))
		e.Length = r.u32()
		e.RawLength = r.u32()
		if r.err != nil {
			break
		}
		if !e.Type.Valid() {
			return nil, fmt.Errorf("pack header: entry %d: unknown blob type %d", i, e.Type)
		}
		if e.RawLength > MaxBlobSize {
			return nil, fmt.Errorf("pack header: entry %d: blob of %d bytes", i, e.RawLength)
		}
		e.Offset = uint32(off)
		off += uint64(e.Length)
		if off > uint64(dataLen) {
			return nil, fmt.Errorf("pack header: entry %d ends at %d, past the data (%d bytes)", i, off, dataLen)
		}
		entries = append(entries, e)
	}
	if r.err != nil {
		return nil, fmt.Errorf("pack header: %w", r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("pack header: %d trailing bytes", len(r.b))
	}
	if off != uint64(dataLen) {
		return nil, fmt.Errorf("pack header: entries cover %d of %d data bytes", off, dataLen)
	}
	return entries, nil
}

// Index is the content of an index object: the packs it lists and the index
// objects it supersedes (written by prune; a reader that sees both the new
// index and a superseded one ignores the superseded one).
type Index struct {
	Supersedes []objstore.ID
	Packs      []catalog.IndexedPack
}

// EncodeIndex returns the plaintext encoding of idx.
func EncodeIndex(idx *Index) []byte {
	b := []byte{indexVersion}
	b = binary.AppendUvarint(b, uint64(len(idx.Supersedes)))
	for _, id := range idx.Supersedes {
		b = append(b, id[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(idx.Packs)))
	for _, p := range idx.Packs {
		b = append(b, p.ID[:]...)
		b = binary.AppendUvarint(b, uint64(p.Size))
		b = binary.AppendUvarint(b, uint64(len(p.Blobs)))
		for _, e := range p.Blobs {
			b = append(b, byte(e.Type))
			b = append(b, e.ID[:]...)
			b = binary.AppendUvarint(b, uint64(e.Offset))
			b = binary.AppendUvarint(b, uint64(e.Length))
			b = binary.AppendUvarint(b, uint64(e.RawLength))
		}
	}
	return b
}

// DecodeIndex parses the plaintext encoding of an index object.
func DecodeIndex(b []byte) (*Index, error) {
	r := &reader{b: b}
	if v := r.byte(); r.err == nil && v != indexVersion {
		return nil, fmt.Errorf("index version %d not supported", v)
	}
	idx := &Index{}
	ns := r.uvarint()
	if r.err == nil && ns > uint64(len(r.b))/32 {
		return nil, fmt.Errorf("index: implausible supersedes count %d", ns)
	}
	for i := uint64(0); i < ns && r.err == nil; i++ {
		var id objstore.ID
		copy(id[:], r.bytes(32))
		idx.Supersedes = append(idx.Supersedes, id)
	}
	np := r.uvarint()
	if r.err == nil && np > uint64(len(r.b))/34 {
		return nil, fmt.Errorf("index: implausible pack count %d", np)
	}
	for i := uint64(0); i < np && r.err == nil; i++ {
		var p catalog.IndexedPack
		copy(p.ID[:], r.bytes(32))
		p.Size = r.u32()
		nb := r.uvarint()
		if r.err == nil && nb > uint64(len(r.b))/36 {
			return nil, fmt.Errorf("index: pack %d: implausible blob count %d", i, nb)
		}
		p.Blobs = make([]catalog.IndexedBlob, 0, nb)
		var end uint64
		for j := uint64(0); j < nb && r.err == nil; j++ {
			var e catalog.IndexedBlob
			e.Type = blob.Type(r.byte())
			copy(e.ID[:], r.bytes(32))
			e.Offset = r.u32()
			e.Length = r.u32()
			e.RawLength = r.u32()
			if r.err != nil {
				break
			}
			if !e.Type.Valid() {
				return nil, fmt.Errorf("index: pack %s: blob %d: unknown type %d", p.ID.Short(), j, e.Type)
			}
			if e.RawLength > MaxBlobSize || uint64(e.Offset)+uint64(e.Length) > uint64(p.Size) {
				return nil, fmt.Errorf("index: pack %s: blob %d out of bounds", p.ID.Short(), j)
			}
			if x := uint64(e.Offset) + uint64(e.Length); x > end {
				end = x
			}
			p.Blobs = append(p.Blobs, e)
		}
		idx.Packs = append(idx.Packs, p)
	}
	if r.err != nil {
		return nil, fmt.Errorf("index: %w", r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("index: %d trailing bytes", len(r.b))
	}
	return idx, nil
}
