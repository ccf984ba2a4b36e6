package pool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/arkbox/arkbox/storage/objstore"
)

// Shard file format (version 1). All integers are little-endian.
//
//	offset  size  field
//	0       8     magic "ARKSHARD"
//	8       2     format version (1)
//	10      1     object kind code (see kindCode)
//	11      1     log2 of the checksum block size (16: 64 KiB)
//	12      1     k, data shards of the object (1..255)
//	13      1     m, parity shards of the object (0..254, k+m <= 255)
//	14      1     shard index (0..k+m-1)
//	15      1     reserved, 0
//	16      32    object id (SHA-256 of the object)
//	48      8     object length L
//	56      8     payload length S = ceil(L/k)
//	64      4*nb  CRC-32C of each payload block, nb = ceil(S/blocksize)
//	64+4nb  4     CRC-32C of header bytes [0, 64+4nb)
//
// The payload (S bytes) follows the header; the file is exactly
// 68+4nb+S bytes long.
const (
	shardMagic      = "ARKSHARD"
	shardVersion    = 1
	fixedHeaderLen  = 64
	blockShift      = 16
	blockSize       = 1 << blockShift
	minBlockShift   = 12
	maxBlockShift   = 24
	maxShards       = 255
	headerProbeSize = 4096

	// MaxObjectSize is the largest object the pool stores (4 GiB).
	MaxObjectSize = 1 << 32
)

// crcTable is the Castagnoli polynomial table; it is never written after
// initialisation.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errBadHeader is wrapped by every header decoding error.
var errBadHeader = errors.New("bad shard header")

// shardHeader is the decoded header of one shard file.
type shardHeader struct {
	kind       objstore.Kind
	blockShift uint8
	k, m       int
	index      int
	id         objstore.ID
	objLen     int64
	payloadLen int64
	sums       []uint32 // CRC-32C of each payload block
}

// groupKey identifies one consistent set of shards of an object.
type groupKey struct {
	k, m   int
	objLen int64
}

func (h *shardHeader) group() groupKey { return groupKey{h.k, h.m, h.objLen} }

func (h *shardHeader) blockSize() int64 { return 1 << h.blockShift }

// headerLen is the length of the encoded header.
func (h *shardHeader) headerLen() int64 { return fixedHeaderLen + 4*int64(len(h.sums)) + 4 }

// fileSize is the exact length of a shard file with this header.
func (h *shardHeader) fileSize() int64 { return h.headerLen() + h.payloadLen }

func kindCode(k objstore.Kind) byte {
	switch k {
	case objstore.KindConfig:
		return 1
	case objstore.KindKey:
		return 2
	case objstore.KindPack:
		return 3
	case objstore.KindIndex:
		return 4
	case objstore.KindSnapshot:
		return 5
	}
	return 0
}

func kindFromCode(c byte) (objstore.Kind, bool) {
	switch c {
	case 1:
		return objstore.KindConfig, true
	case 2:
		return objstore.KindKey, true
	case 3:
		return objstore.KindPack, true
	case 4:
		return objstore.KindIndex, true
	case 5:
		return objstore.KindSnapshot, true
	}
	return "", false
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// blockSums returns the CRC-32C of each block of payload.
func blockSums(payload []byte, shift uint8) []uint32 {
	bs := 1 << shift
	sums := make([]uint32, 0, (len(payload)+bs-1)/bs)
	for off := 0; off < len(payload); off += bs {
		end := min(off+bs, len(payload))
		sums = append(sums, crc32.Checksum(payload[off:end], crcTable))
	}
	return sums
}

// newHeader builds the header of shard index of an object.
func newHeader(kind objstore.Kind, id objstore.ID, k, m, index int, objLen int64, payload []byte) *shardHeader {
	return &shardHeader{
		kind:       kind,
		blockShift: blockShift,
		k:          k,
		m:          m,
		index:      index,
		id:         id,
		objLen:     objLen,
		payloadLen: int64(len(payload)),
		sums:       blockSums(payload, blockShift),
	}
}

// encode returns the header bytes.
func (h *shardHeader) encode() []byte {
	b := make([]byte, h.headerLen())
	copy(b, shardMagic)
	binary.LittleEndian.PutUint16(b[8:], shardVersion)
	b[10] = kindCode(h.kind)
	b[11] = h.blockShift
	b[12] = byte(h.k)
	b[13] = byte(h.m)
	b[14] = byte(h.index)
	copy(b[16:48], h.id[:])
	binary.LittleEndian.PutUint64(b[48:], uint64(h.objLen))
	binary.LittleEndian.PutUint64(b[56:], uint64(h.payloadLen))
	off := fixedHeaderLen
	for _, s := range h.sums {
		binary.LittleEndian.PutUint32(b[off:], s)
		off += 4
	}
	binary.LittleEndian.PutUint32(b[off:], crc32.Checksum(b[:off], crcTable))
	return b
}

// parseFixed decodes and validates the fixed 64-byte part of a header and
// returns the header (without block sums) and the full header length.
// It never allocates more than the fixed part needs.
func parseFixed(b []byte) (*shardHeader, int64, error) {
	if len(b) < fixedHeaderLen {
		return nil, 0, fmt.Errorf("%w: %d bytes, want at least %d", errBadHeader, len(b), fixedHeaderLen)
	}
	if string(b[:8]) != shardMagic {
		return nil, 0, fmt.Errorf("%w: bad magic %q", errBadHeader, b[:8])
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != shardVersion {
		return nil, 0, fmt.Errorf("%w: unsupported version %d", errBadHeader, v)
	}
	h := &shardHeader{}
	var ok bool
	if h.kind, ok = kindFromCode(b[10]); !ok {
		return nil, 0, fmt.Errorf("%w: unknown kind code %d", errBadHeader, b[10])
	}
	h.blockShift = b[11]
	if h.blockShift < minBlockShift || h.blockShift > maxBlockShift {
		return nil, 0, fmt.Errorf("%w: block size 2^%d out of range", errBadHeader, h.blockShift)
	}
	h.k, h.m, h.index = int(b[12]), int(b[13]), int(b[14])
	if h.k < 1 || h.k+h.m > maxShards {
		return nil, 0, fmt.Errorf("%w: bad layout k=%d m=%d", errBadHeader, h.k, h.m)
	}
	if h.index >= h.k+h.m {
		return nil, 0, fmt.Errorf("%w: shard index %d outside k+m=%d", errBadHeader, h.index, h.k+h.m)
	}
	if b[15] != 0 {
		return nil, 0, fmt.Errorf("%w: reserved byte is %d", errBadHeader, b[15])
	}
	copy(h.id[:], b[16:48])
	objLen := binary.LittleEndian.Uint64(b[48:])
	payloadLen := binary.LittleEndian.Uint64(b[56:])
	if objLen > MaxObjectSize {
		return nil, 0, fmt.Errorf("%w: object length %d too large", errBadHeader, objLen)
	}
	h.objLen = int64(objLen)
	if want := ceilDiv(h.objLen, int64(h.k)); payloadLen != uint64(want) {
		return nil, 0, fmt.Errorf("%w: payload length %d, want %d for %d bytes in %d shards", errBadHeader, payloadLen, want, objLen, h.k)
	}
	h.payloadLen = int64(payloadLen)
	nb := ceilDiv(h.payloadLen, h.blockSize())
	return h, fixedHeaderLen + 4*nb + 4, nil
}

// decodeHeader decodes and verifies a shard header from the start of b,
// which must hold at least the whole header.
func decodeHeader(b []byte) (*shardHeader, error) {
	h, hlen, err := parseFixed(b)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) < hlen {
		return nil, fmt.Errorf("%w: truncated: %d bytes, header needs %d", errBadHeader, len(b), hlen)
	}
	end := int(hlen) - 4
	if got, want := crc32.Checksum(b[:end], crcTable), binary.LittleEndian.Uint32(b[end:]); got != want {
		return nil, fmt.Errorf("%w: header checksum %08x, want %08x", errBadHeader, got, want)
	}
	h.sums = make([]uint32, (end-fixedHeaderLen)/4)
	for i := range h.sums {
		h.sums[i] = binary.LittleEndian.Uint32(b[fixedHeaderLen+4*i:])
	}
	return h, nil
}

// verifyBlocks checks payload bytes that start at block first against
// the header's block sums. buf must cover whole blocks, except that the
// last block of the payload may be short. It returns the index of the
// first bad block, or -1.
func (h *shardHeader) verifyBlocks(buf []byte, first int) int {
	bs := int(h.blockSize())
	for i, off := first, 0; off < len(buf); i, off = i+1, off+bs {
		end := min(off+bs, len(buf))
		if i >= len(h.sums) || crc32.Checksum(buf[off:end], crcTable) != h.sums[i] {
			return i
		}
	}
	return -1
}
