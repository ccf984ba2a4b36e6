// Package storetest is the conformance suite every objstore.Store
// implementation runs: put/get/range/stat/list/delete semantics, id
// verification, idempotent puts, concurrency and context cancellation.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/arkbox/arkbox/storage/objstore"
)

// Factory returns a new, empty store for one subtest. The suite closes it.
type Factory func(t *testing.T) objstore.Store

// Options tunes the suite for slow remote stores.
type Options struct {
	// LargeSize is the size of the large object (default 20 MiB).
	LargeSize int
	// Concurrency is the number of goroutines in the concurrency test (default 8).
	Concurrency int
}

func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Run runs the whole suite against stores made by newStore.
func Run(t *testing.T, newStore Factory, opt Options) {
	if opt.LargeSize == 0 {
		opt.LargeSize = 20 << 20
	}
	if opt.Concurrency == 0 {
		opt.Concurrency = 8
	}
	ctx := context.Background()
	open := func(t *testing.T) objstore.Store {
		s := newStore(t)
		t.Cleanup(func() { s.Close() })
		return s
	}

	t.Run("PutGetSizes", func(t *testing.T) {
		s := open(t)
		for _, n := range []int{0, 1, 2, 3, 100, 4095, 4096, 4097, 65536, 1 << 20, 1<<20 + 7, opt.LargeSize} {
			data := payload(uint64(n), n)
			id := objstore.Sum(data)
			if err := s.Put(ctx, objstore.KindPack, id, data); err != nil {
				t.Fatalf("put %d bytes: %v", n, err)
			}
			got, err := s.Get(ctx, objstore.KindPack, id)
			if err != nil {
				t.Fatalf("get %d bytes: %v", n, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("get %d bytes: content differs", n)
			}
			info, err := s.Stat(ctx, objstore.KindPack, id)
			if err != nil {
				t.Fatalf("stat %d bytes: %v", n, err)
			}
			if info.Size != int64(n) || info.ID != id || info.Kind != objstore.KindPack {
				t.Fatalf("stat %d bytes: got %+v", n, info)
			}
		}
	})

	t.Run("IDMismatch", func(t *testing.T) {
		s := open(t)
		data := payload(1, 1000)
		wrong := objstore.Sum([]byte("something else"))
		err := s.Put(ctx, objstore.KindPack, wrong, data)
		if !errors.Is(err, objstore.ErrIDMismatch) {
			t.Fatalf("put with wrong id: got %v, want ErrIDMismatch", err)
		}
		if _, err := s.Stat(ctx, objstore.KindPack, wrong); !errors.Is(err, objstore.ErrNotFound) {
			t.Fatalf("object stored despite id mismatch: %v", err)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		id := objstore.Sum([]byte("missing"))
		if _, err := s.Get(ctx, objstore.KindIndex, id); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("get: %v", err)
		}
		if _, err := s.GetRange(ctx, objstore.KindIndex, id, 0, 1); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("get range: %v", err)
		}
		if _, err := s.Stat(ctx, objstore.KindIndex, id); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("stat: %v", err)
		}
		if err := s.Delete(ctx, objstore.KindIndex, id); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("delete: %v", err)
		}
	})

	t.Run("KindsAreSeparate", func(t *testing.T) {
		s := open(t)
		data := payload(2, 500)
		id := objstore.Sum(data)
		if err := s.Put(ctx, objstore.KindSnapshot, id, data); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, objstore.KindIndex, id); !errors.Is(err, objstore.ErrNotFound) {
			t.Fatalf("object visible under another kind: %v", err)
		}
	})

	t.Run("PutIdempotent", func(t *testing.T) {
		s := open(t)
		data := payload(3, 3000)
		id := objstore.Sum(data)
		for i := 0; i < 3; i++ {
			if err := s.Put(ctx, objstore.KindIndex, id, data); err != nil {
				t.Fatalf("put #%d: %v", i, err)
			}
		}
		n := 0
		if err := s.List(ctx, objstore.KindIndex, func(objstore.Info) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("list after 3 puts of one object: %d entries", n)
		}
	})

	t.Run("Range", func(t *testing.T) {
		s := open(t)
		size := 3<<20 + 12345
		data := payload(4, size)
		id := objstore.Sum(data)
		if err := s.Put(ctx, objstore.KindPack, id, data); err != nil {
			t.Fatal(err)
		}
		cases := []struct{ off, n int64 }{
			{0, 0}, {0, 1}, {0, int64(size)}, {1, 10}, {int64(size) - 1, 1}, {int64(size), 0},
			{1<<20 - 3, 7}, {12345, 2 << 20}, {int64(size) / 2, int64(size) / 2},
		}
		for _, c := range cases {
			got, err := s.GetRange(ctx, objstore.KindPack, id, c.off, c.n)
			if err != nil {
				t.Fatalf("range [%d,+%d): %v", c.off, c.n, err)
			}
			if !bytes.Equal(got, data[c.off:c.off+c.n]) {
				t.Fatalf("range [%d,+%d): content differs", c.off, c.n)
			}
		}
		for _, c := range []struct{ off, n int64 }{{-1, 1}, {0, int64(size) + 1}, {int64(size), 1}, {int64(size) + 5, 0}, {5, -1}} {
			if _, err := s.GetRange(ctx, objstore.KindPack, id, c.off, c.n); !errors.Is(err, objstore.ErrRange) {
				t.Errorf("range [%d,+%d): got %v, want ErrRange", c.off, c.n, err)
			}
		}
	})

	t.Run("ListDelete", func(t *testing.T) {
		s := open(t)
		want := map[objstore.ID]int64{}
		for i := 0; i < 50; i++ {
			data := payload(uint64(100+i), 100+i*37)
			id := objstore.Sum(data)
			want[id] = int64(len(data))
			if err := s.Put(ctx, objstore.KindSnapshot, id, data); err != nil {
				t.Fatal(err)
			}
		}
		other := payload(999, 10)
		if err := s.Put(ctx, objstore.KindKey, objstore.Sum(other), other); err != nil {
			t.Fatal(err)
		}
		got := map[objstore.ID]int64{}
		err := s.List(ctx, objstore.KindSnapshot, func(i objstore.Info) error {
			if i.Kind != objstore.KindSnapshot {
				return fmt.Errorf("listed kind %q", i.Kind)
			}
			if _, dup := got[i.ID]; dup {
				return fmt.Errorf("listed %s twice", i.ID)
			}
			got[i.ID] = i.Size
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("listed %d objects, want %d", len(got), len(want))
		}
		for id, n := range want {
			if got[id] != n {
				t.Fatalf("list: %s size %d, want %d", id, got[id], n)
			}
		}
		stop := errors.New("stop")
		calls := 0
		if err := s.List(ctx, objstore.KindSnapshot, func(objstore.Info) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("list stop: err %v after %d calls", err, calls)
		}
		i := 0
		for id := range want {
			if i%2 == 0 {
				if err := s.Delete(ctx, objstore.KindSnapshot, id); err != nil {
					t.Fatal(err)
				}
				delete(want, id)
			}
			i++
		}
		n := 0
		if err := s.List(ctx, objstore.KindSnapshot, func(i objstore.Info) error {
			if _, ok := want[i.ID]; !ok {
				return fmt.Errorf("deleted object %s still listed", i.ID)
			}
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != len(want) {
			t.Fatalf("after delete listed %d, want %d", n, len(want))
		}
		n = 0
		if err := s.List(ctx, objstore.KindIndex, func(objstore.Info) error { n++; return nil }); err != nil || n != 0 {
			t.Fatalf("list of empty kind: %d objects, err %v", n, err)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		errs := make(chan error, opt.Concurrency)
		for g := 0; g < opt.Concurrency; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					// Half the objects are shared between goroutines.
					seed := uint64(g*100 + i)
					if i%2 == 0 {
						seed = uint64(i)
					}
					data := payload(seed, 1000+int(seed)*131)
					id := objstore.Sum(data)
					if err := s.Put(ctx, objstore.KindPack, id, data); err != nil {
						errs <- err
						return
					}
					got, err := s.Get(ctx, objstore.KindPack, id)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, data) {
						errs <- fmt.Errorf("goroutine %d object %d differs", g, i)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})

	t.Run("Canceled", func(t *testing.T) {
		s := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		data := payload(7, 100)
		id := objstore.Sum(data)
		if err := s.Put(cctx, objstore.KindPack, id, data); err == nil {
			t.Fatal("put with canceled context succeeded")
		}
		if _, err := s.Stat(ctx, objstore.KindPack, id); !errors.Is(err, objstore.ErrNotFound) {
			t.Fatalf("canceled put left an object: %v", err)
		}
	})
}
