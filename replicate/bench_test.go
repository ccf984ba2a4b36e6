package replicate_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/arkbox/arkbox/internal/testpeer"
	"github.com/arkbox/arkbox/replicate"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/pool"
)

// BenchmarkUpToDateSync: a sync with nothing to send, from a 2+1 pool of
// ARKBOX_BENCH_OBJECTS objects (default 10000) to versitygw. Target: ≤ 2 s.
//
//	go test -run '^$' -bench UpToDateSync -benchtime 5x ./replicate
func BenchmarkUpToDateSync(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("ARKBOX_BENCH_OBJECTS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	dir := b.TempDir()
	var disks []string
	for i := 1; i <= 3; i++ {
		d := filepath.Join(dir, fmt.Sprint("disk", i))
		if err := os.MkdirAll(d, 0o700); err != nil {
			b.Fatal(err)
		}
		disks = append(disks, d)
	}
	p, err := pool.Create(ctx, disks, pool.CreateOptions{Parity: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	// The shape of a repository: mostly packs, with indexes and snapshots.
	kinds := []objstore.Kind{objstore.KindPack, objstore.KindPack, objstore.KindPack, objstore.KindIndex, objstore.KindSnapshot}
	for i := 0; i < n; i++ {
		data := []byte(fmt.Sprintf("object %d of the benchmark repository %s", i, dir))
		if err := p.Put(ctx, kinds[i%len(kinds)], objstore.Sum(data), data); err != nil {
			b.Fatal(err)
		}
	}
	srv := testpeer.S3(b)
	remote := s3Target(b, srv.Endpoint, srv, "uptodate")
	st := state(b)
	rep, err := replicate.Sync(ctx, p, remote, st, replicate.Options{Parallel: 8})
	if err != nil || rep.UploadedTotal.Objects != int64(n) {
		b.Fatalf("first sync: %+v %v", rep, err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := replicate.Sync(ctx, p, remote, st, replicate.Options{})
		if err != nil || rep.UploadedTotal.Objects != 0 {
			b.Fatalf("up-to-date sync: %+v %v", rep, err)
		}
	}
	b.ReportMetric(float64(n), "objects")
}
