package sharefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/chunker"
	"github.com/arkbox/arkbox/storage/tree"
	bolt "go.etcd.io/bbolt"
)

// Block mode (see doc/sharefs.md): a file opened for writing without
// truncation keeps its clean content as its base and stages only the
// blocks written since. A block is clean (read from the base), partial
// (written in part; the written spans are in staging, the rest is not
// filled in yet) or full (staging holds the whole block). Partial blocks
// are filled from the base when a read needs the part not written, and
// all of them when the file is synced; only full blocks are recorded in
// the catalog, after the staging file was fsynced. So a write that covers
// whole blocks never reads the base, and after a crash a block reads
// either from the base or, if recorded, wholly from staging.

// maxSpans is how many separate written spans a partial block may have
// before it is filled.
const maxSpans = 64

// bitset is a set of block numbers: bit i%8 of byte i/8. It is stored as
// is in the catalog, without trailing zero bytes.
type bitset []byte

func (s bitset) has(i uint64) bool { return i/8 < uint64(len(s)) && s[i/8]&(1<<(i%8)) != 0 }

func (s *bitset) set(i uint64) {
	for uint64(len(*s)) <= i/8 {
		*s = append(*s, 0)
	}
	(*s)[i/8] |= 1 << (i % 8)
}

// cut returns the set without blocks n and above.
func (s bitset) cut(n uint64) bitset {
	out := s.clone()
	if uint64(len(out)) > (n+7)/8 {
		out = out[:(n+7)/8]
	}
	if n%8 != 0 && uint64(len(out)) == (n+7)/8 {
		out[n/8] &= byte(1)<<(n%8) - 1
	}
	return out.trim()
}

func (s bitset) clone() bitset { return append(bitset(nil), s.trim()...) }

func (s bitset) trim() bitset {
	for len(s) > 0 && s[len(s)-1] == 0 {
		s = s[:len(s)-1]
	}
	return s
}

func (s bitset) equal(o bitset) bool { return string(s.trim()) == string(o.trim()) }

// anyIn reports whether a block in [lo, hi) is in the set.
func (s bitset) anyIn(lo, hi uint64) bool {
	for i := lo; i < hi && i/8 < uint64(len(s)); i++ {
		if s[i/8] == 0 {
			i |= 7 // skip the rest of an empty byte
			continue
		}
		if s.has(i) {
			return true
		}
	}
	return false
}

// span is a byte range [lo, hi) inside one block.
type span struct{ lo, hi uint64 }

// addSpan adds s to the sorted, disjoint spans ss, merging what touches.
func addSpan(ss []span, s span) []span {
	out := make([]span, 0, len(ss)+1)
	i := 0
	for ; i < len(ss) && ss[i].hi < s.lo; i++ {
		out = append(out, ss[i])
	}
	for ; i < len(ss) && ss[i].lo <= s.hi; i++ {
		s.lo, s.hi = min(s.lo, ss[i].lo), max(s.hi, ss[i].hi)
	}
	out = append(out, s)
	return append(out, ss[i:]...)
}

// covered reports whether ss cover [lo, hi) entirely.
func covered(ss []span, lo, hi uint64) bool {
	for _, s := range ss {
		if s.lo <= lo && hi <= s.hi {
			return true
		}
	}
	return lo >= hi
}

// gaps returns the parts of [0, end) that ss do not cover.
func gaps(ss []span, end uint64) []span {
	var out []span
	pos := uint64(0)
	for _, s := range ss {
		if s.lo >= end {
			break
		}
		if s.lo > pos {
			out = append(out, span{pos, s.lo})
		}
		pos = max(pos, s.hi)
	}
	if pos < end {
		out = append(out, span{pos, end})
	}
	return out
}

// clip cuts ss at end.
func clip(ss []span, end uint64) []span {
	var out []span
	for _, s := range ss {
		if s.lo >= end {
			break
		}
		out = append(out, span{s.lo, min(s.hi, end)})
	}
	return out
}

// blockMap is the block state of a file staged in block mode (guarded by
// the openFile's mu).
type blockMap struct {
	bs      uint64
	full    bitset            // whole in staging
	durable bitset            // recorded in the catalog (a subset of full)
	partial map[uint64][]span // written in part, not filled
	clean   uint64            // bytes of the base still the file's (CleanSize)
}

func newBlockMap(bs, clean uint64, full bitset) *blockMap {
	return &blockMap{bs: bs, full: full.clone(), durable: full.clone(), partial: map[uint64][]span{}, clean: clean}
}

// wrote records that [lo, hi) was written to staging; size is the file's
// size after the write. It returns the blocks that have become too
// fragmented and should be filled.
func (m *blockMap) wrote(lo, hi, size uint64) []uint64 {
	var fill []uint64
	for b := lo / m.bs; b*m.bs < hi; b++ {
		if m.full.has(b) {
			continue
		}
		start := b * m.bs
		ss := addSpan(m.partial[b], span{max(lo, start) - start, min(hi, start+m.bs) - start})
		if covered(ss, 0, min(m.bs, size-start)) {
			// Every byte of the block is written: no need to read it.
			delete(m.partial, b)
			m.full.set(b)
			continue
		}
		m.partial[b] = ss
		if len(ss) > maxSpans {
			fill = append(fill, b)
		}
	}
	return fill
}

// truncate drops what lies at or past size.
func (m *blockMap) truncate(size uint64) {
	n := (size + m.bs - 1) / m.bs
	m.full = m.full.cut(n)
	m.durable = m.durable.cut(n)
	for b, ss := range m.partial {
		switch {
		case b >= n:
			delete(m.partial, b)
		case b == n-1:
			if ss = clip(ss, size-b*m.bs); len(ss) == 0 {
				delete(m.partial, b)
			} else {
				m.partial[b] = ss
			}
		}
	}
	m.clean = min(m.clean, size)
}

// readStaging reads p at off from a staging file; past its end it reads
// zeros (a sparse tail, or a file extended by truncation).
func readStaging(st stagingFile, p []byte, off uint64) error {
	n, err := st.ReadAt(p, int64(off))
	if err == io.EOF {
		clear(p[n:])
		err = nil
	}
	return err
}

// stagedView is a staged file's content at one moment, as a commit or a
// snapshot stores it. Its ReadAt is the logical content.
type stagedView struct {
	ctx  context.Context
	ino  uint64
	st   stagingFile
	size uint64
	// Block mode only (bs > 0).
	bs    uint64
	full  bitset
	clean uint64
	base  *chunkReader
}

// ReadAt implements io.ReaderAt.
func (v *stagedView) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrInvalid
	}
	if uint64(off) >= v.size {
		return 0, io.EOF
	}
	want := p[:min(uint64(len(p)), v.size-uint64(off))]
	pos := uint64(off)
	for done := 0; done < len(want); {
		seg := want[done:]
		var err error
		if v.bs == 0 {
			err = readStaging(v.st, seg, pos)
		} else {
			b := pos / v.bs
			seg = seg[:min(uint64(len(seg)), (b+1)*v.bs-pos)]
			if v.full.has(b) {
				err = readStaging(v.st, seg, pos)
			} else {
				err = v.base.readAt(v.ctx, seg, pos, v.clean)
			}
		}
		if err != nil {
			return done, fmt.Errorf("sharefs: read staged inode %d at %d: %w", v.ino, pos, err)
		}
		done += len(seg)
		pos += uint64(len(seg))
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(want), nil
}

// store stores the view's content in the repository and returns its
// chunks. A file staged whole, or in block mode but smaller than the
// block threshold, is cut by the content-defined chunker; a larger file
// in block mode keeps the chunks of its base that no written block
// touches and stores the rest cut at block boundaries, so only what
// changed is read and stored.
func (sh *Share) storeView(ctx context.Context, v *stagedView) ([]tree.Chunk, error) {
	if v.bs == 0 || int64(v.size) < sh.store.opt.BlockThreshold {
		return sh.storeStream(ctx, v.ino, io.NewSectionReader(v, 0, int64(v.size)))
	}
	return sh.storeBlocks(ctx, v)
}

// storeStream cuts r with the repository's content-defined chunker and
// stores the chunks.
func (sh *Share) storeStream(ctx context.Context, ino uint64, rd io.Reader) ([]tree.Chunk, error) {
	r := sh.store.repo
	ch := chunker.New(rd, r.Key().Chunker, r.ChunkerParams())
	var chunks []tree.Chunk
	for {
		data, err := ch.Next()
		if err == io.EOF {
			return chunks, nil
		}
		if err != nil {
			return nil, fmt.Errorf("sharefs: store inode %d: %w", ino, err)
		}
		id, _, err := r.SaveBlob(ctx, blob.Data, data)
		if err != nil {
			return nil, fmt.Errorf("sharefs: store inode %d: %w", ino, err)
		}
		chunks = append(chunks, tree.Chunk{ID: id, Size: uint32(len(data))})
	}
}

// storeBlocks stores a block-mode view: base chunks that lie below the
// clean size and touch no full block are kept; everything else is read
// and stored in pieces that end at block boundaries (whole blocks where
// the base is block-aligned), holes as one shared zero blob.
func (sh *Share) storeBlocks(ctx context.Context, v *stagedView) ([]tree.Chunk, error) {
	r := sh.store.repo
	bs := v.bs
	buf := make([]byte, bs)
	zeroIDs := map[uint64]blob.ID{}
	var out []tree.Chunk
	var pos uint64
	storeTo := func(end uint64) error {
		for pos < end {
			next := min(end, (pos/bs+1)*bs)
			data := buf[:next-pos]
			var id blob.ID
			var err error
			if pos >= v.clean && !v.full.has(pos/bs) {
				clear(data)
				var ok bool
				if id, ok = zeroIDs[uint64(len(data))]; !ok {
					id = r.BlobID(data)
					zeroIDs[uint64(len(data))] = id
				}
				_, err = r.SaveBlobID(ctx, blob.Data, id, data)
			} else {
				if _, err = v.ReadAt(data, int64(pos)); err == nil {
					id, _, err = r.SaveBlob(ctx, blob.Data, data)
				}
			}
			if err != nil {
				return fmt.Errorf("sharefs: store inode %d at %d: %w", v.ino, pos, err)
			}
			out = append(out, tree.Chunk{ID: id, Size: uint32(len(data))})
			pos = next
		}
		return nil
	}
	for i, c := range v.base.content {
		c0 := v.base.offsets[i]
		c1 := c0 + uint64(c.Size)
		if c1 > v.clean {
			break
		}
		if c.Size == 0 || v.full.anyIn(c0/bs, (c1-1)/bs+1) {
			continue
		}
		if err := storeTo(c0); err != nil {
			return nil, err
		}
		out = append(out, c)
		pos = c1
	}
	if err := storeTo(v.size); err != nil {
		return nil, err
	}
	return out, nil
}

// loadBlocks reads the recorded full blocks of ino.
func loadBlocks(b *bolt.Bucket, ino uint64) bitset {
	bb := b.Bucket(bBlocks)
	if bb == nil {
		return nil
	}
	return bitset(bb.Get(inoKey(ino))).clone()
}

// putBlocks records the full blocks of ino (none: the entry goes).
func putBlocks(b *bolt.Bucket, ino uint64, s bitset) error {
	bb := b.Bucket(bBlocks)
	if bb == nil {
		return fmt.Errorf("sharefs: share without a blocks bucket")
	}
	if s = s.trim(); len(s) == 0 {
		return bb.Delete(inoKey(ino))
	}
	return bb.Put(inoKey(ino), s.clone())
}

// deleteInode removes inode ino, its block record and inline content.
func deleteInode(b *bolt.Bucket, ino uint64) error {
	if bb := b.Bucket(bBlocks); bb != nil {
		if err := bb.Delete(inoKey(ino)); err != nil {
			return err
		}
	}
	if err := putInline(b, ino, nil); err != nil {
		return err
	}
	return b.Bucket(bInodes).Delete(inoKey(ino))
}

// viewFromCatalog returns the view of a staged file that is not open, as
// the catalog records it; close its st when done.
func (sh *Share) viewFromCatalog(ctx context.Context, in *Inode, full bitset) (*stagedView, error) {
	inline, hasInline, err := sh.loadInline(in.Ino)
	if err != nil {
		return nil, fmt.Errorf("sharefs: staged content of inode %d: %w", in.Ino, err)
	}
	var st stagingFile
	if hasInline {
		st = &memStaging{data: inline}
	} else if f, err := os.Open(sh.stagingPath(in.Ino)); err == nil {
		st = f
	} else if errors.Is(err, fs.ErrNotExist) && stagingOptional(in, full) {
		st = &memStaging{} // lost before a sync: nothing was acknowledged in it
	} else {
		return nil, fmt.Errorf("sharefs: staging file of inode %d: %w", in.Ino, err)
	}
	v := &stagedView{ctx: ctx, ino: in.Ino, st: st, size: in.Size}
	if in.BlockSize > 0 {
		v.bs, v.full, v.clean = uint64(in.BlockSize), full, min(in.CleanSize, in.Size)
		v.base = sh.store.newChunkReader(inodeName(in.Ino), in.Content)
	}
	return v, nil
}

// captureStaged stores the content of a staged file that is not open.
func (sh *Share) captureStaged(ctx context.Context, in *Inode, full bitset) ([]tree.Chunk, error) {
	v, err := sh.viewFromCatalog(ctx, in, full)
	if err != nil {
		return nil, err
	}
	defer v.st.Close()
	return sh.storeView(ctx, v)
}
