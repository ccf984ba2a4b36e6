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
	// read reads at offs with up to inflight reads at once, each started
	// once the read inflight places before it is answered (as a client
	// keeps a window of requests in flight).
	read := func(t *testing.T, offs []int64, inflight int) map[int64]error {
		t.Helper()
		fh, err := f.sh.OpenFile(ino, false, false)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		var (
			mu   sync.Mutex
			errs = map[int64]error{}
			done = make([]chan struct{}, len(offs))
		)
		for k, off := range offs {
			if k >= inflight {
				<-done[k-inflight]
			}
			done[k] = make(chan struct{})
			go func() {
				defer close(done[k])
				p := make([]byte, req)
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
			}()
		}
		for _, d := range done {
			<-d
		}
		return errs
	}
	var forward []int64
	for off := int64(0); off < int64(len(data)); off += req {
		forward = append(forward, off)
	}
	shuffled := append([]int64(nil), forward...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for name, tc := range map[string]struct {
		offs     []int64
		inflight int
		maxLoads int // 0: not checked
	}{
		"forward, one at a time": {forward, 1, len(in.Content)},
		"forward, 8 at a time":   {forward, 8, len(in.Content)},
		// OpenSSH's sftp keeps 64 reads in flight.
		"forward, 64 at a time": {forward, 64, len(in.Content)},
		"random order":          {shuffled, 4, 0},
	} {
		t.Run(name, func(t *testing.T) {
			loads := f.store.chunkLoads.Load()
			if errs := read(t, tc.offs, tc.inflight); len(errs) > 0 {
				t.Fatalf("%d reads failed, e.g. %v", len(errs), errs)
			}
			loads = f.store.chunkLoads.Load() - loads
			t.Logf("%d chunks, %d loads", len(in.Content), loads)
			if tc.maxLoads > 0 && loads > int64(tc.maxLoads) {
				t.Errorf("%d chunks loaded %d times, want at most %d", len(in.Content), loads, tc.maxLoads)
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

// TestCloseWaitsForReadAhead: closing the store waits for background
// loads (they use the repository, which is closed right after).
func TestCloseWaitsForReadAhead(t *testing.T) {
	f := newFixture(t)
	data := make([]byte, 12<<20)
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range data {
		data[i] = byte(rng.IntN(16)) // compressible: loads decompress
	}
	ino := writeFile(t, f.sh, RootIno, "big", data)
	if err := f.sh.CommitAll(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		fh, err := f.sh.OpenFile(ino, false, false)
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, 4096)
		if _, err := fh.ReadAt(p, 0); err != nil { // starts read-ahead
			t.Fatal(err)
		}
		fh.Close()
		f.restart() // closes the store, then the repository (the race detector watches)
	}
}
