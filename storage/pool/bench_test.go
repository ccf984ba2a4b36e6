package pool

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"

	"github.com/arkbox/arkbox/storage/objstore"
)

// TestPutMemory checks that a Put allocates at most a small multiple of
// the object: the data shards alias the caller's buffer, only parity (and
// a padded last shard) is allocated.
func TestPutMemory(t *testing.T) {
	ctx := context.Background()
	const size = 24 << 20
	for _, c := range []struct {
		disks int
		limit float64 // allocated bytes per object byte
	}{{1, 0.25}, {3, 1.0}} {
		t.Run(fmt.Sprintf("%ddisks", c.disks), func(t *testing.T) {
			p := createPool(t, diskDirs(t, c.disks), -1)
			defer p.Close()
			data := randBytes(uint64(c.disks), size)
			id := objstore.Sum(data)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			if err := p.Put(ctx, objstore.KindPack, id, data); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("put of %d MiB allocated %.1f MiB", size>>20, float64(alloc)/(1<<20))
			if float64(alloc) > c.limit*size {
				t.Fatalf("put of %d bytes allocated %d bytes, limit %.0f", size, alloc, c.limit*size)
			}
			runtime.GC()
			runtime.ReadMemStats(&before)
			if _, err := p.Get(ctx, objstore.KindPack, id); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			alloc = after.TotalAlloc - before.TotalAlloc
			t.Logf("get of %d MiB allocated %.1f MiB", size>>20, float64(alloc)/(1<<20))
			if alloc > 2*size {
				t.Fatalf("get of %d bytes allocated %d bytes", size, alloc)
			}
		})
	}
}

func benchPool(b *testing.B, disks int) *Pool {
	p := createPool(b, diskDirs(b, disks), -1)
	b.Cleanup(func() { p.Close() })
	return p
}

// BenchmarkPut stores distinct 16 MiB objects (each Put includes the
// SHA-256 of the object, the parity, and fsyncs).
func BenchmarkPut(b *testing.B) {
	for _, disks := range []int{1, 3} {
		b.Run(fmt.Sprintf("%ddisks", disks), func(b *testing.B) {
			ctx := context.Background()
			p := benchPool(b, disks)
			data := randBytes(1, 16<<20)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				binary.LittleEndian.PutUint64(data, uint64(i))
				id := objstore.Sum(data)
				if err := p.Put(ctx, objstore.KindPack, id, data); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := p.Delete(ctx, objstore.KindPack, id); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkGet reads a 16 MiB object (page cache warm), verifying block
// checksums and the SHA-256 of the object.
func BenchmarkGet(b *testing.B) {
	for _, disks := range []int{1, 3} {
		b.Run(fmt.Sprintf("%ddisks", disks), func(b *testing.B) {
			ctx := context.Background()
			p := benchPool(b, disks)
			data := randBytes(2, 16<<20)
			id := objstore.Sum(data)
			if err := p.Put(ctx, objstore.KindPack, id, data); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := p.Get(ctx, objstore.KindPack, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGetRange reads 64 KiB at a random-ish place of a 16 MiB
// object.
func BenchmarkGetRange(b *testing.B) {
	ctx := context.Background()
	p := benchPool(b, 3)
	data := randBytes(3, 16<<20)
	id := objstore.Sum(data)
	if err := p.Put(ctx, objstore.KindPack, id, data); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(64 << 10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := int64(i*7919*4096) % (16<<20 - 64<<10)
		if _, err := p.GetRange(ctx, objstore.KindPack, id, off, 64<<10); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetDegraded reads a 16 MiB object from a 2+1 pool with one
// disk missing: every read reconstructs.
func BenchmarkGetDegraded(b *testing.B) {
	ctx := context.Background()
	dirs := diskDirs(b, 3)
	p := createPool(b, dirs, -1)
	data := randBytes(4, 16<<20)
	id := objstore.Sum(data)
	if err := p.Put(ctx, objstore.KindPack, id, data); err != nil {
		b.Fatal(err)
	}
	p.Close()
	gone := shardFiles(b, dirs, objstore.KindPack, id)[0].disk
	var rest []string
	for i, d := range dirs {
		if i != gone {
			rest = append(rest, d)
		}
	}
	p = openPool(b, rest, false)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Get(ctx, objstore.KindPack, id); err != nil {
			b.Fatal(err)
		}
	}
}
