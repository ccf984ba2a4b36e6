package sharefs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/arkbox/arkbox/storage/tree"
)

func TestSpans(t *testing.T) {
	tests := []struct {
		name string
		have []span
		add  span
		want []span
	}{
		{"first", nil, span{5, 10}, []span{{5, 10}}},
		{"before", []span{{20, 30}}, span{0, 10}, []span{{0, 10}, {20, 30}}},
		{"after", []span{{0, 10}}, span{20, 30}, []span{{0, 10}, {20, 30}}},
		{"touching merges", []span{{0, 10}}, span{10, 20}, []span{{0, 20}}},
		{"bridges two", []span{{0, 10}, {20, 30}, {40, 50}}, span{5, 25}, []span{{0, 30}, {40, 50}}},
		{"inside", []span{{0, 100}}, span{10, 20}, []span{{0, 100}}},
		{"covers all", []span{{10, 20}, {30, 40}}, span{0, 50}, []span{{0, 50}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := addSpan(tc.have, tc.add); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("addSpan(%v, %v) = %v, want %v", tc.have, tc.add, got, tc.want)
			}
		})
	}
	ss := []span{{10, 20}, {30, 40}}
	if got, want := gaps(ss, 50), []span{{0, 10}, {20, 30}, {40, 50}}; !reflect.DeepEqual(got, want) {
		t.Errorf("gaps = %v, want %v", got, want)
	}
	if got, want := gaps(ss, 15), []span{{0, 10}}; !reflect.DeepEqual(got, want) {
		t.Errorf("gaps up to 15 = %v, want %v", got, want)
	}
	if got, want := clip(ss, 35), []span{{10, 20}, {30, 35}}; !reflect.DeepEqual(got, want) {
		t.Errorf("clip = %v, want %v", got, want)
	}
	if !covered(ss, 12, 18) || covered(ss, 15, 35) || !covered(ss, 7, 7) {
		t.Error("covered is wrong")
	}
}

func TestBitset(t *testing.T) {
	var s bitset
	for _, i := range []uint64{0, 3, 8, 9, 30} {
		s.set(i)
	}
	tests := []struct {
		cut  uint64
		want []uint64
	}{
		{100, []uint64{0, 3, 8, 9, 30}},
		{31, []uint64{0, 3, 8, 9, 30}},
		{30, []uint64{0, 3, 8, 9}},
		{9, []uint64{0, 3, 8}},
		{8, []uint64{0, 3}},
		{1, []uint64{0}},
		{0, nil},
	}
	for _, tc := range tests {
		c := s.cut(tc.cut)
		var got []uint64
		for i := uint64(0); i < 64; i++ {
			if c.has(i) {
				got = append(got, i)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("cut(%d) = %v, want %v", tc.cut, got, tc.want)
		}
		if tc.cut == 0 && len(c) != 0 {
			t.Errorf("cut(0) keeps %d bytes", len(c))
		}
	}
	if !s.anyIn(25, 31) || s.anyIn(10, 30) || s.anyIn(31, 1000) {
		t.Error("anyIn is wrong")
	}
}

// TestBlockMapWrote: a block written whole is full without a fill; a
// block written in part is partial until its spans cover it.
func TestBlockMapWrote(t *testing.T) {
	m := newBlockMap(100, 1000, nil)
	if fill := m.wrote(0, 250, 1000); fill != nil {
		t.Fatalf("fill %v", fill)
	}
	if !m.full.has(0) || !m.full.has(1) || m.full.has(2) || !reflect.DeepEqual(m.partial[2], []span{{0, 50}}) {
		t.Fatalf("after writing [0,250): full %08b partial %v", m.full, m.partial)
	}
	m.wrote(250, 300, 1000)
	if !m.full.has(2) || len(m.partial) != 0 {
		t.Fatalf("block 2 written in two parts is not full: %v", m.partial)
	}
	// The last block counts as whole when written up to the file's end.
	m.wrote(900, 950, 950)
	if !m.full.has(9) {
		t.Fatal("the last block written to the end of the file is not full")
	}
	// A partial block past the cut goes; one across it is clipped.
	m.wrote(610, 620, 1000)
	m.wrote(405, 430, 1000)
	m.truncate(420)
	if m.full.has(9) || m.partial[6] != nil || !reflect.DeepEqual(m.partial[4], []span{{5, 20}}) || m.clean != 420 || !m.full.has(2) {
		t.Fatalf("after truncate to 420: full %08b partial %v clean %d", m.full, m.partial, m.clean)
	}
	// Too many spans: fill.
	m2 := newBlockMap(1000, 5000, nil)
	for i := uint64(0); i <= maxSpans; i++ {
		fill := m2.wrote(2*i, 2*i+1, 5000)
		if (fill != nil) != (i == maxSpans) || fill != nil && fill[0] != 0 {
			t.Fatalf("write %d: fill %v", i, fill)
		}
	}
}

// fillRand fills p with deterministic bytes of the given seed.
func fillRand(seed uint64, p []byte) {
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(p)
}

// TestBlockModeCosts: overwriting a large clean file in place reads none
// of its old content; then a 4 KiB write commits about one block: about
// one block read from the repository and one block of new data stored,
// every other block keeping its blob. With the file's first (content-
// defined) chunks as base, the chunks the block overlaps are stored again
// as well, still a few MiB and not the file.
func TestBlockModeCosts(t *testing.T) {
	const (
		bs   = 4 << 20
		size = 8*bs + 12345
	)
	ctx := context.Background()
	f := newFixtureOpt(t, Options{BlockThreshold: 16 << 20})
	r := f.tr.Repository
	want := make([]byte, size)
	fillRand(1, want)
	in, err := f.sh.Create(RootIno, "disk.img", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	write := func(trunc bool, data []byte, off int64, piece int) {
		t.Helper()
		fh, err := f.sh.OpenFile(in.Ino, true, trunc)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(data); i += piece {
			if _, err := fh.WriteAt(data[i:min(i+piece, len(data))], off+int64(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.sh.CommitAll(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	content := func() []tree.Chunk {
		in, err := f.sh.Stat(in.Ino)
		if err != nil || in.Staged {
			t.Fatalf("stat: %v, staged %v", err, in != nil && in.Staged)
		}
		return in.Content
	}
	check := func(what string) {
		t.Helper()
		fh, err := f.sh.OpenFile(in.Ino, false, false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(fh, 0, size+1))
		fh.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: content differs (%d bytes read, %v)", what, len(got), err)
		}
	}
	type cost struct{ read, stored uint64 }
	measure := func(fn func()) cost {
		r0, w0 := r.ReadStats(), r.Stats()
		fn()
		r1, w1 := r.ReadStats(), r.Stats()
		return cost{r1.RawBytes - r0.RawBytes, w1.RawBytes - w0.RawBytes}
	}

	// Written whole: content-defined chunks.
	write(true, want, 0, 1<<20)
	cdc := content()
	check("written")

	// A 4 KiB write over content-defined chunks.
	small := make([]byte, 4<<10)
	fillRand(2, small)
	off := int64(3*bs + 1000)
	copy(want[off:], small)
	c := measure(func() { write(false, small, off, len(small)) })
	check("after a 4 KiB write over content-defined chunks")
	t.Logf("4 KiB write over content-defined chunks: %.2f MiB read, %.2f MiB stored", float64(c.read)/(1<<20), float64(c.stored)/(1<<20))
	if limit := uint64(bs + 2*f.tr.Config().ChunkMax); c.read > limit || c.stored > limit {
		t.Fatalf("4 KiB write over content-defined chunks: %d bytes read, %d stored; want at most %d each", c.read, c.stored, limit)
	}
	kept := 0
	after := content()
	for _, a := range after {
		for _, b := range cdc {
			if a == b {
				kept++
				break
			}
		}
	}
	if kept < len(cdc)-8 {
		t.Fatalf("only %d of %d chunks kept", kept, len(cdc))
	}

	// Overwritten whole in place, in 64 KiB pieces: nothing read.
	fillRand(3, want)
	c = measure(func() { write(false, want, 0, 64<<10) })
	check("rewritten in place")
	if c.read != 0 {
		t.Fatalf("overwriting the whole file in place read %d bytes of its old content", c.read)
	}
	blocks := content()
	if len(blocks) != 9 {
		t.Fatalf("rewritten in place: %d chunks, want 9 blocks", len(blocks))
	}
	for i, ch := range blocks[:8] {
		if ch.Size != bs {
			t.Fatalf("chunk %d has %d bytes, want a block", i, ch.Size)
		}
	}

	// A 4 KiB write into block 5: one block read (its fill), one stored.
	fillRand(4, small)
	off = 5*bs + 777
	copy(want[off:], small)
	c = measure(func() { write(false, small, off, len(small)) })
	check("after a 4 KiB write into a block")
	t.Logf("4 KiB write over blocks: %.2f MiB read, %.2f MiB stored", float64(c.read)/(1<<20), float64(c.stored)/(1<<20))
	if c.read > bs || c.stored > bs {
		t.Fatalf("4 KiB write: %d bytes read, %d stored; want at most one block (%d)", c.read, c.stored, bs)
	}
	after = content()
	for i := range blocks {
		if (after[i] == blocks[i]) != (i != 5) {
			t.Fatalf("block %d: %v before, %v after", i, blocks[i], after[i])
		}
	}

	// Cut and extended: the tail reads as zeros, the blocks below stay.
	fh, err := f.sh.OpenFile(in.Ino, true, false)
	if err != nil {
		t.Fatal(err)
	}
	c = measure(func() {
		if err := fh.Truncate(2*bs + 100); err != nil {
			t.Fatal(err)
		}
		if err := fh.Truncate(size); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.sh.CommitAll(ctx, true); err != nil {
			t.Fatal(err)
		}
	})
	clear(want[2*bs+100:])
	check("after truncate and extend")
	after = content()
	if after[0] != blocks[0] || after[1] != blocks[1] || after[2] == blocks[2] {
		t.Fatalf("after truncate and extend: %v", after)
	}
	if c.read > bs {
		t.Fatalf("truncate and extend read %d bytes", c.read)
	}
}

// TestBlockModeConcurrent: writers on separate handles write their own
// byte ranges, which share blocks, and read them back at once, while
// other goroutines read, sync, snapshot (capturing the open file) and
// extend the file; every writer always reads its own last write, and the
// file ends as the sum of the writes.
func TestBlockModeConcurrent(t *testing.T) {
	ctx := context.Background()
	const (
		bs      = 16 << 10
		writers = 4
		region  = 5000 // not a block multiple: neighbours share blocks
		rounds  = 60
	)
	f := newFixtureOpt(t, Options{BlockSize: bs, BlockThreshold: 1})
	sh := f.sh
	in, err := sh.Create(RootIno, "db", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(40 * region * writers)
	base := make([]byte, size)
	fillRand(11, base)
	if _, err := shareWriteAll(sh, in.Ino, base); err != nil {
		t.Fatal(err)
	}
	if err := sh.CommitAll(ctx, true); err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), base...)
	var mu sync.Mutex // guards want
	errs := make(chan error, writers+3)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fh, err := sh.OpenFile(in.Ino, true, false)
			if err != nil {
				errs <- err
				return
			}
			defer fh.Close()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for r := 0; r < rounds; r++ {
				// Region w of a random stripe, in a few pieces.
				off := int64(rng.IntN(40)*region*writers + w*region)
				data := make([]byte, region)
				fillRand(uint64(1000*w+r), data)
				for i := 0; i < region; {
					n := min(region-i, 1+rng.IntN(1500))
					if _, err := fh.WriteAt(data[i:i+n], off+int64(i)); err != nil {
						errs <- err
						return
					}
					i += n
				}
				mu.Lock()
				copy(want[off:], data)
				mu.Unlock()
				got := make([]byte, region)
				if _, err := fh.ReadAt(got, off); err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("writer %d round %d: reading back its write at %d: %v", w, r, off, err)
					return
				}
				if rng.IntN(8) == 0 {
					if err := fh.Sync(); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	stop := make(chan struct{})
	var side sync.WaitGroup
	side.Add(2)
	go func() { // readers of random ranges and snapshots
		defer side.Done()
		fh, err := sh.OpenFile(in.Ino, false, false)
		if err != nil {
			errs <- err
			return
		}
		defer fh.Close()
		rng := rand.New(rand.NewPCG(99, 1))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			buf := make([]byte, rng.IntN(3*bs))
			if _, err := fh.ReadAt(buf, rng.Int64N(size)); err != nil && err != io.EOF {
				errs <- err
				return
			}
			if i%50 == 0 {
				if _, err := sh.Snapshot(ctx, time.Now(), nil); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	go func() { // extends the file past the writers' ranges, and back
		defer side.Done()
		fh, err := sh.OpenFile(in.Ino, true, false)
		if err != nil {
			errs <- err
			return
		}
		defer fh.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := fh.Truncate(size + int64(i%3)*bs); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	side.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fh, err := sh.OpenFile(in.Ino, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(size); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	if got := shareReadAll(t, sh, in.Ino); !bytes.Equal(got, want) {
		t.Fatal("staged content differs from the writes")
	}
	if err := sh.CommitAll(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := shareReadAll(t, sh, in.Ino); !bytes.Equal(got, want) {
		t.Fatal("committed content differs from the writes")
	}
}

func shareWriteAll(sh *Share, ino uint64, data []byte) (int, error) {
	f, err := sh.OpenFile(ino, true, true)
	if err != nil {
		return 0, err
	}
	n, err := f.WriteAt(data, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

func shareReadAll(t *testing.T, sh *Share, ino uint64) []byte {
	t.Helper()
	f, err := sh.OpenFile(ino, false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
