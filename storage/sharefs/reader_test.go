package sharefs

import (
	"bytes"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/arkbox/arkbox/storage/blob"
)

// TestReadAhead reads a committed file of many chunks the ways protocols
// do — 32 KiB requests from several goroutines at once, forward, and in
// random order — and compares every byte; then damages one pack and
// checks that the reads of its chunks fail while the others still read
// right: read-ahead never serves what it could not verify.
func TestReadAhead(t *testing.T) {
	f := newFixture(t)
	data := make([]byte, 24<<20)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
	ino := writeFile(t, f.sh, RootIno, "big", data)
	if err := f.sh.CommitAll(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	in, err := f.sh.Stat(ino)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Content) < 8 {
		t.Fatalf("want many chunks, got %d", len(in.Content))
	}

	const req = 32 << 10
	read := func(t *testing.T, offs []int64, workers int) map[int64]error {
		t.Helper()
		fh, err := f.sh.OpenFile(ino, false, false)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		var (
			mu   sync.Mutex
			errs = map[int64]error{}
			wg   sync.WaitGroup
			next = make(chan int64)
		)
		for range workers {
			wg.Go(func() {
				p := make([]byte, req)
				for off := range next {
					n, err := fh.ReadAt(p, off)
					if err == io.EOF && off+int64(n) == int64(len(data)) {
						err = nil
					}
					if err == nil && !bytes.Equal(p[:n], data[off:off+int64(n)]) {
						t.Errorf("read at %d: wrong data", off)
					}
					if err != nil {
						mu.Lock()
						errs[off] = err
						mu.Unlock()
					}
				}
			})
		}
		for _, off := range offs {
			next <- off
		}
		close(next)
		wg.Wait()
		return errs
	}
	var forward []int64
	for off := int64(0); off < int64(len(data)); off += req {
		forward = append(forward, off)
	}
	shuffled := append([]int64(nil), forward...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for name, tc := range map[string]struct {
		offs    []int64
		workers int
	}{
		"forward, one at a time": {forward, 1},
		"forward, 8 at a time":   {forward, 8},
		"random order":           {shuffled, 4},
	} {
		t.Run(name, func(t *testing.T) {
			if errs := read(t, tc.offs, tc.workers); len(errs) > 0 {
				t.Fatalf("%d reads failed, e.g. %v", len(errs), errs)
			}
		})
	}

	// Damage the pack holding the fifth chunk.
	loc, ok, err := f.tr.Cat.LookupBlob(blob.Data, in.Content[4].ID)
	if err != nil || !ok {
		t.Fatalf("blob of chunk 4: %v %v", ok, err)
	}
	var packPath string
	filepath.WalkDir(f.tr.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Base(p) == loc.Pack.String() {
			packPath = p
		}
		return nil
	})
	if packPath == "" {
		t.Fatal("pack file not found")
	}
	raw, err := os.ReadFile(packPath)
	if err != nil {
		t.Fatal(err)
	}
	raw[loc.Offset+loc.Length/2] ^= 0x40
	if err := os.WriteFile(packPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	errs := read(t, forward, 8) // wrong data would fail the test here
	start, end := int64(0), int64(0)
	for i, c := range in.Content {
		if i == 4 {
			end = start + int64(c.Size)
			break
		}
		start += int64(c.Size)
	}
	for _, off := range forward {
		hits := off+req > start && off < end
		if _, failed := errs[off]; failed != hits {
			if hits {
				t.Errorf("read at %d of the damaged chunk succeeded", off)
			} else {
				t.Errorf("read at %d outside the damaged chunk failed: %v", off, errs[off])
			}
		}
	}
}
