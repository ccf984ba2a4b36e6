package sharefs

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/internal/testrepo"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
)

// countingStore counts the bytes read from and written to packs.
type countingStore struct {
	objstore.Store
	read, written atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, kind objstore.Kind, id objstore.ID) ([]byte, error) {
	b, err := s.Store.Get(ctx, kind, id)
	if kind == objstore.KindPack {
		s.read.Add(int64(len(b)))
	}
	return b, err
}

func (s *countingStore) GetRange(ctx context.Context, kind objstore.Kind, id objstore.ID, off, n int64) ([]byte, error) {
	b, err := s.Store.GetRange(ctx, kind, id, off, n)
	if kind == objstore.KindPack {
		s.read.Add(int64(len(b)))
	}
	return b, err
}

func (s *countingStore) Put(ctx context.Context, kind objstore.Kind, id objstore.ID, data []byte) error {
	if kind == objstore.KindPack {
		s.written.Add(int64(len(data)))
	}
	return s.Store.Put(ctx, kind, id, data)
}

// BenchmarkInPlaceSmallWrite measures what a 4 KiB write into a large
// clean file costs to commit: open without truncation, write, close,
// commit. The file is 256 MiB (ARKBOX_BENCH_FILE_MIB overrides); with
// base "written" it was written whole (content-defined chunks), with
// "rewritten" it was then overwritten in place (fixed blocks).
func BenchmarkInPlaceSmallWrite(b *testing.B) {
	mib := 256
	if n, err := strconv.Atoi(os.Getenv("ARKBOX_BENCH_FILE_MIB")); err == nil && n > 0 {
		mib = n
	}
	for _, base := range []string{"written", "rewritten"} {
		b.Run(base, func(b *testing.B) { benchInPlace(b, int64(mib)<<20, base == "rewritten") })
	}
}

func benchInPlace(b *testing.B, size int64, rewrite bool) {
	ctx := context.Background()
	dir := b.TempDir()
	d, err := objstore.OpenDir(filepath.Join(dir, "objects"), objstore.DirOptions{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	st := &countingStore{Store: d}
	sh := benchShare(b, st, dir, "vm")
	in, err := sh.Create(RootIno, "disk.img", 0o644, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	src := rand.NewChaCha8([32]byte{1})
	rng := rand.New(src)
	fill := func(p []byte) { src.Read(p) }
	benchWrite(b, sh, in.Ino, true, size, fill)
	if rewrite {
		benchWrite(b, sh, in.Ino, false, size, fill)
	}
	small := make([]byte, 4<<10)
	read0, written0 := st.read.Load(), st.written.Load()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		src.Read(small)
		off := rng.Int64N(size - int64(len(small)))
		f, err := sh.OpenFile(in.Ino, true, false)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.WriteAt(small, off); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		if err := sh.CommitAll(ctx, true); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(st.read.Load()-read0)/float64(b.N)/(1<<20), "MiB-read/op")
	b.ReportMetric(float64(st.written.Load()-written0)/float64(b.N)/(1<<20), "MiB-stored/op")
}

// benchShare makes a repository on st (catalog in dir), opens the share
// store and creates share name; everything is closed when b ends.
func benchShare(b *testing.B, st objstore.Store, dir, name string) *Share {
	ctx := context.Background()
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cat.Close() })
	r, err := repo.Init(ctx, st, cat, []byte(testrepo.Passphrase), repo.Options{KDF: testrepo.FastKDF})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close(ctx) })
	store, err := Open(ctx, r, cat, filepath.Join(dir, "staging"), Options{CommitDelay: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close(ctx) })
	sh, err := store.CreateShare(name)
	if err != nil {
		b.Fatal(err)
	}
	return sh
}

// benchWrite writes size bytes made by fill into file ino by 1 MiB,
// closes it and commits it.
func benchWrite(b *testing.B, sh *Share, ino uint64, trunc bool, size int64, fill func([]byte)) {
	f, err := sh.OpenFile(ino, true, trunc)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		fill(buf)
		if _, err := f.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if err := sh.CommitAll(context.Background(), true); err != nil {
		b.Fatal(err)
	}
}
