// Package chunker cuts a byte stream into chunks for deduplication: keyed
// content-defined chunks (FastCDC with normalized chunking and a gear table
// derived from a per-repository secret) for files, and fixed-size blocks for
// disk images and block volumes.
//
// The algorithm and its parameters are specified in doc/crypto.md.
package chunker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"

	"github.com/zeebo/blake3"
)

// ImageBlockSize is the block size for disk images and block volumes.
const ImageBlockSize = 4 << 20

// Limits on Params.
const (
	// MinSize is the smallest allowed Params.Min: the gear hash's window.
	MinSize = windowSize
	// MaxSize is the largest allowed Params.Max (and fixed block size).
	MaxSize = 256 << 20
)

// windowSize is the number of bytes a 64-bit gear hash depends on.
const windowSize = 64

// readBlock is the most the chunker asks its reader for at once.
const readBlock = 1 << 20

// initialBuf is the size of a fresh chunker's buffer; it grows up to
// Max+readBlock as chunks demand.
const initialBuf = 64 << 10

// gearContext is the BLAKE3 derive_key context of the gear table.
const gearContext = "arkbox 2025-01-01 chunker gear table v1"

// Params are the sizes of content-defined chunks: no chunk but the last is
// shorter than Min or longer than Max, and the mean over random data is
// about Avg.
type Params struct{ Min, Avg, Max int }

// DefaultParams returns the parameters for file contents: 512 KiB minimum,
// 1 MiB mean, 8 MiB maximum.
func DefaultParams() Params {
	return Params{Min: 512 << 10, Avg: 1 << 20, Max: 8 << 20}
}

// Validate reports whether p can be used: MinSize ≤ Min < Avg < Max ≤ MaxSize.
func (p Params) Validate() error {
	if p.Min < MinSize || p.Min >= p.Avg || p.Avg >= p.Max || p.Max > MaxSize {
		return fmt.Errorf("chunker: params %d/%d/%d: want %d ≤ min < avg < max ≤ %d",
			p.Min, p.Avg, p.Max, MinSize, MaxSize)
	}
	return nil
}

// masks returns the cut masks for p: maskS, harder to match, for chunk
// lengths in [Min, Avg); maskL, easier, for lengths in [Avg, Max). A cut
// falls where the gear hash has all mask bits zero. With d = Avg − Min,
// f = ⌊log₂ d⌋ and b = f+1 if d ≥ 1.5·2^f else f, maskS has the top b+2 bits
// set (at most 63) and maskL the top b−2 (at least 1).
func (p Params) masks() (maskS, maskL uint64) {
	d := uint64(p.Avg - p.Min)
	b := bits.Len64(d) - 1 // ⌊log₂ d⌋
	if d-(1<<b) >= (1<<b)/2 {
		b++
	}
	bs, bl := min(b+2, 63), max(b-2, 1)
	return ^uint64(0) << (64 - bs), ^uint64(0) << (64 - bl)
}

// Gear derives the 256-entry gear table from secret: the first 2048 bytes
// of BLAKE3 in derive_key mode (context gearContext, key material secret),
// read as little-endian uint64s.
func Gear(secret [32]byte) *[256]uint64 {
	var raw [256 * 8]byte
	blake3.DeriveKey(gearContext, secret[:], raw[:])
	g := new([256]uint64)
	for i := range g {
		g[i] = binary.LittleEndian.Uint64(raw[8*i:])
	}
	return g
}

// Chunker reads a stream and returns its chunks. Its buffer (about
// Max plus 1 MiB) is kept across Reset. It is not safe for concurrent use.
type Chunker struct {
	r     io.Reader
	fixed bool
	p     Params // for fixed chunking, Max is the block size
	gear  *[256]uint64
	maskS uint64
	maskL uint64
	perr  error // invalid parameters

	buf   []byte // len(buf) is the allocated size
	start int    // start of the current chunk in buf
	end   int    // end of buffered data in buf
	pos   int    // next byte to hash (content-defined) in buf
	fp    uint64 // gear hash of the bytes before pos
	eof   bool
	err   error // sticky read error
}

// New returns a content-defined chunker over r with the gear table derived
// from secret. If p is invalid (see Params.Validate), Next returns an error.
func New(r io.Reader, secret [32]byte, p Params) *Chunker {
	c := &Chunker{r: r, p: p, perr: p.Validate()}
	if c.perr == nil {
		c.gear = Gear(secret)
		c.maskS, c.maskL = p.masks()
	}
	return c
}

// NewFixed returns a chunker over r that returns blocks of exactly size
// bytes, the last one shorter. If size is not in 1..MaxSize, Next returns
// an error.
func NewFixed(r io.Reader, size int) *Chunker {
	c := &Chunker{r: r, fixed: true, p: Params{Max: size}}
	if size < 1 || size > MaxSize {
		c.perr = fmt.Errorf("chunker: fixed block size %d: want 1..%d", size, MaxSize)
	}
	return c
}

// Reset makes c read the next stream from r, keeping its buffer and
// parameters.
func (c *Chunker) Reset(r io.Reader) {
	c.r = r
	c.start, c.end, c.pos, c.fp = 0, 0, 0, 0
	c.eof, c.err = false, nil
}

// Next returns the next chunk. The slice is valid until the next call of
// Next or Reset. After the last chunk it returns io.EOF; an empty stream
// has no chunks. A read error is returned (wrapped) instead of a chunk,
// and again on every later call.
func (c *Chunker) Next() ([]byte, error) {
	if c.perr != nil {
		return nil, c.perr
	}
	for {
		if c.err != nil {
			return nil, c.err
		}
		var cut int
		if c.fixed {
			cut = c.fixedCut()
		} else {
			cut = c.cdcCut()
		}
		if cut > 0 {
			return c.emit(cut), nil
		}
		if c.eof {
			if c.end > c.start {
				return c.emit(c.end), nil
			}
			return nil, io.EOF
		}
		c.fill()
	}
}

// emit returns buf[start:cut] and starts the next chunk at cut.
func (c *Chunker) emit(cut int) []byte {
	chunk := c.buf[c.start:cut:cut]
	c.start, c.pos, c.fp = cut, cut, 0
	return chunk
}

// fixedCut returns the end of the current block if it is all buffered,
// or 0.
func (c *Chunker) fixedCut() int {
	if c.end-c.start >= c.p.Max {
		return c.start + c.p.Max
	}
	return 0
}

// cdcCut hashes the buffered bytes of the current chunk and returns the end
// of the chunk if it is found among them, or 0.
func (c *Chunker) cdcCut() int {
	minEnd := c.start + c.p.Min
	avgEnd := c.start + c.p.Avg
	maxEnd := c.start + c.p.Max
	// The window of the first candidate cut (length Min) begins at
	// Min−64: bytes before it never influence a cut.
	if from := minEnd - windowSize; c.pos < from {
		c.pos, c.fp = from, 0
	}
	// Warm up: hash the 63 bytes before the first candidate without
	// testing them.
	if warm := min(minEnd-1, c.end); c.pos < warm {
		c.fp = warmup(c.gear, c.buf[c.pos:warm], c.fp)
		c.pos = warm
	}
	if c.pos < minEnd-1 {
		return 0
	}
	// A cut after the byte at index i (chunk length i+1−start) is tested
	// with maskS while the length is below Avg, then with maskL.
	if lim := min(avgEnd-1, c.end); c.pos < lim {
		n, fp := search(c.gear, c.buf[c.pos:lim], c.fp, c.maskS)
		if n >= 0 {
			return c.pos + n + 1
		}
		c.pos, c.fp = lim, fp
	}
	if lim := min(maxEnd, c.end); c.pos < lim {
		n, fp := search(c.gear, c.buf[c.pos:lim], c.fp, c.maskL)
		if n >= 0 {
			return c.pos + n + 1
		}
		c.pos, c.fp = lim, fp
	}
	if c.pos == maxEnd {
		return maxEnd
	}
	return 0
}

// warmup returns the gear hash fp extended by data.
func warmup(g *[256]uint64, data []byte, fp uint64) uint64 {
	for _, b := range data {
		fp = fp<<1 + g[b]
	}
	return fp
}

// searchBlock is the length of the stretches search hashes side by side.
const searchBlock = 4096

// search extends the gear hash fp byte by byte over data and returns the
// index of the first byte after which fp&mask == 0, or -1, and the hash.
// fp must already cover the 63 bytes before data (or the chunk's hashing
// must have begun less than 63 bytes before it, exactly as in a serial
// scan).
//
// The gear hash is a serial chain (one shift and one add per byte), so it
// runs two chains at once: over each pair of adjacent blocks, the second
// block's hash is started afresh 63 bytes before it — after 64 bytes the
// hash no longer depends on its start, so both chains compute exactly the
// serial hash. A hit in either block rescans the pair serially to find the
// first one.
func search(g *[256]uint64, data []byte, fp, mask uint64) (int, uint64) {
	i := 0
	for ; len(data)-i >= 2*searchBlock; i += 2 * searchBlock {
		a := (*[searchBlock]byte)(data[i:])
		b := (*[searchBlock]byte)(data[i+searchBlock:])
		fa := fp
		fb := warmup(g, data[i+searchBlock-(windowSize-1):i+searchBlock], 0)
		for j := 0; j < searchBlock; j++ {
			fa = fa<<1 + g[a[j]]
			fb = fb<<1 + g[b[j]]
			if fa&mask == 0 || fb&mask == 0 {
				n, h := searchSerial(g, data[i:i+2*searchBlock], fp, mask)
				return i + n, h
			}
		}
		fp = fb
	}
	n, h := searchSerial(g, data[i:], fp, mask)
	if n >= 0 {
		n += i
	}
	return n, h
}

// searchSerial is search one byte after the other.
func searchSerial(g *[256]uint64, data []byte, fp, mask uint64) (int, uint64) {
	for i, b := range data {
		fp = fp<<1 + g[b]
		if fp&mask == 0 {
			return i, fp
		}
	}
	return -1, fp
}

// limit is the buffer size c needs at most: a chunk plus one read.
func (c *Chunker) limit() int { return c.p.Max + readBlock }

// fill reads once from c.r into the buffer. When little is free (less
// than a read block, or than half a buffer that is still growing) it first
// moves the current chunk to the front and, if that is not enough, grows
// the buffer (doubling, from 64 KiB up to Max plus a read block).
func (c *Chunker) fill() {
	low := func() bool { return len(c.buf)-c.end < min(readBlock, max(len(c.buf)/2, 1)) }
	if low() && c.start > 0 {
		n := copy(c.buf, c.buf[c.start:c.end])
		c.end, c.pos, c.start = n, c.pos-c.start, 0
	}
	if low() && len(c.buf) < c.limit() {
		grown := make([]byte, min(c.limit(), max(2*len(c.buf), initialBuf)))
		copy(grown, c.buf[:c.end])
		c.buf = grown
	}
	want := min(readBlock, len(c.buf)-c.end)
	for range 100 {
		n, err := c.r.Read(c.buf[c.end : c.end+want])
		if n < 0 || n > want {
			c.err = fmt.Errorf("chunker: read: reader returned %d bytes for a %d-byte buffer", n, want)
			return
		}
		c.end += n
		if errors.Is(err, io.EOF) {
			c.eof = true
			return
		}
		if err != nil {
			c.err = fmt.Errorf("chunker: read: %w", err)
			return
		}
		if n > 0 {
			return
		}
	}
	c.err = fmt.Errorf("chunker: read: %w", io.ErrNoProgress)
}
