package sharefs

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/tree"
)

// Inode records are binary (doc/sharefs.md): a version byte, then the
// fields in a fixed order as varints and length-prefixed bytes. Records
// written before the binary form are JSON objects (they start with '{')
// and are still read; every write uses the binary form.
const inodeV1 = 1

// Flag bits of a binary inode record.
const (
	flagStaged = 1 << iota
	flagTreeValid
	flagTree
	flagTotals
)

// maxInodeList bounds the counts a record may claim (chunks, parents,
// xattrs), so that a damaged record fails instead of allocating.
const maxInodeList = 1 << 24

func encodeInode(in *Inode) ([]byte, error) {
	b := make([]byte, 0, 64+len(in.Target)+len(in.Content)*36+len(in.Parents)*3)
	b = append(b, inodeV1)
	b = binary.AppendUvarint(b, in.Ino)
	b = binary.AppendUvarint(b, uint64(in.Type))
	for _, v := range []uint32{in.Mode, in.UID, in.GID} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	b = binary.AppendUvarint(b, in.Size)
	for _, v := range []int64{in.MTime, in.CTime, in.ATime} {
		b = binary.AppendVarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(in.Nlink))
	b = appendBytes(b, []byte(in.Target))
	b = binary.AppendUvarint(b, in.Rdev)
	names := make([]string, 0, len(in.Xattrs))
	for k := range in.Xattrs {
		names = append(names, k)
	}
	slices.Sort(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		b = appendBytes(b, []byte(k))
		b = appendBytes(b, in.Xattrs[k])
	}
	b = binary.AppendUvarint(b, uint64(len(in.Content)))
	for _, c := range in.Content {
		b = append(b, c.ID[:]...)
		b = binary.AppendUvarint(b, uint64(c.Size))
	}
	var flags byte
	if in.Staged {
		flags |= flagStaged
	}
	if in.TreeValid {
		flags |= flagTreeValid
	}
	if in.Tree != (blob.ID{}) {
		flags |= flagTree
	}
	if in.TreeTotals != nil {
		flags |= flagTotals
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(in.BlockSize))
	b = binary.AppendUvarint(b, in.CleanSize)
	b = binary.AppendUvarint(b, uint64(len(in.Parents)))
	for _, p := range in.Parents {
		b = binary.AppendUvarint(b, p)
	}
	if flags&flagTree != 0 {
		b = append(b, in.Tree[:]...)
	}
	if t := in.TreeTotals; t != nil {
		for _, v := range []uint64{t.Files, t.Dirs, t.Others, t.Bytes} {
			b = binary.AppendUvarint(b, v)
		}
	}
	return b, nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func decodeInode(v []byte) (*Inode, error) {
	if len(v) > 0 && v[0] == '{' {
		in := &Inode{}
		if err := json.Unmarshal(v, in); err != nil {
			return nil, fmt.Errorf("sharefs: decode inode: %w", err)
		}
		return in, nil
	}
	d := &inodeDecoder{b: v}
	in, err := d.inode()
	if err != nil {
		return nil, fmt.Errorf("sharefs: decode inode: %w", err)
	}
	return in, nil
}

var errInodeRecord = errors.New("damaged inode record")

// inodeDecoder reads a binary inode record; the first error sticks.
type inodeDecoder struct {
	b   []byte
	err error
}

func (d *inodeDecoder) fail() {
	if d.err == nil {
		d.err = errInodeRecord
	}
	d.b = nil
}

func (d *inodeDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *inodeDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *inodeDecoder) u32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail()
	}
	return uint32(v)
}

func (d *inodeDecoder) count() int {
	n := d.uvarint()
	if n > maxInodeList || n > uint64(len(d.b)) { // every item takes a byte at least
		d.fail()
		return 0
	}
	return int(n)
}

func (d *inodeDecoder) bytes(n int) []byte {
	if n < 0 || n > len(d.b) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *inodeDecoder) lenBytes() []byte { return d.bytes(d.count()) }

func (d *inodeDecoder) id() (id blob.ID) {
	copy(id[:], d.bytes(len(id)))
	return id
}

func (d *inodeDecoder) inode() (*Inode, error) {
	if len(d.b) == 0 || d.b[0] != inodeV1 {
		return nil, fmt.Errorf("%w: unknown version", errInodeRecord)
	}
	d.b = d.b[1:]
	in := &Inode{}
	in.Ino = d.uvarint()
	typ := d.uvarint()
	if typ > math.MaxUint8 {
		d.fail()
	}
	in.Type = tree.Type(typ)
	in.Mode, in.UID, in.GID = d.u32(), d.u32(), d.u32()
	in.Size = d.uvarint()
	in.MTime, in.CTime, in.ATime = d.varint(), d.varint(), d.varint()
	in.Nlink = d.u32()
	in.Target = string(d.lenBytes())
	in.Rdev = d.uvarint()
	if n := d.count(); n > 0 {
		in.Xattrs = make(map[string][]byte, n)
		for range n {
			k := string(d.lenBytes())
			in.Xattrs[k] = append([]byte{}, d.lenBytes()...)
		}
	}
	if n := d.count(); n > 0 {
		in.Content = make([]tree.Chunk, n)
		for i := range in.Content {
			in.Content[i] = tree.Chunk{ID: d.id(), Size: d.u32()}
		}
	}
	flags := d.bytes(1)
	var f byte
	if len(flags) == 1 {
		f = flags[0]
	}
	in.Staged, in.TreeValid = f&flagStaged != 0, f&flagTreeValid != 0
	in.BlockSize = d.u32()
	in.CleanSize = d.uvarint()
	if n := d.count(); n > 0 {
		in.Parents = make([]uint64, n)
		for i := range in.Parents {
			in.Parents[i] = d.uvarint()
		}
	}
	if f&flagTree != 0 {
		in.Tree = d.id()
	}
	if f&flagTotals != 0 {
		in.TreeTotals = &TreeTotals{Files: d.uvarint(), Dirs: d.uvarint(), Others: d.uvarint(), Bytes: d.uvarint()}
	}
	if d.err == nil && len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes left over", errInodeRecord, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return in, nil
}
