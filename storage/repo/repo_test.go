package repo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/internal/testrepo"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
)

func blobData(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 3))
	b := make([]byte, 10000+i)
	for j := range b {
		b[j] = byte(r.Uint32())
	}
	return b
}

func TestSaveLoadDedup(t *testing.T) {
	ctx := context.Background()
	r := testrepo.New(t, repo.Options{PackSize: 64 << 10})
	var ids []blob.ID
	for i := 0; i < 50; i++ {
		data := blobData(i)
		id, added, err := r.SaveBlob(ctx, blob.Data, data)
		if err != nil || !added {
			t.Fatalf("save %d: %v %v", i, added, err)
		}
		// Saving again (before and after the flush) stores nothing.
		if _, added, err := r.SaveBlob(ctx, blob.Data, data); err != nil || added {
			t.Fatalf("second save %d: %v %v", i, added, err)
		}
		ids = append(ids, id)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Blobs != 50 || st.Dupes != 50 || st.Packs < 2 {
		t.Fatalf("stats %+v", st)
	}
	r.Reopen(t)
	for i, id := range ids {
		got, err := r.LoadBlob(ctx, blob.Data, id)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, blobData(i)) {
			t.Fatalf("blob %d differs", i)
		}
		if _, added, _ := r.SaveBlob(ctx, blob.Data, got); added {
			t.Fatalf("blob %d stored again after reopen", i)
		}
	}
	// A data blob is not a tree blob.
	if _, err := r.LoadBlob(ctx, blob.Tree, ids[0]); !errors.Is(err, repo.ErrBlobNotFound) {
		t.Fatalf("load as tree: %v", err)
	}
}

func TestWrongPassphraseAndKeys(t *testing.T) {
	ctx := context.Background()
	r := testrepo.New(t, repo.Options{})
	cat2, err := catalog.Open(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat2.Close()
	if _, err := repo.Open(ctx, r.Objects, cat2, []byte("wrong"), repo.Options{}); !errors.Is(err, repo.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	newID, err := r.AddKey(ctx, []byte("second"), testrepo.FastKDF, "backup admin")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := repo.Open(ctx, r.Objects, cat2, []byte("second"), repo.Options{})
	if err != nil {
		t.Fatalf("open with the added passphrase: %v", err)
	}
	if r2.KeyID() != newID || r2.Config().ID != r.Config().ID {
		t.Fatal("second key opened something else")
	}
	keys, err := r.Keys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	if err := r.RemoveKey(ctx, r.KeyID()); err == nil {
		t.Fatal("removed the key in use")
	}
	if err := r2.RemoveKey(ctx, r.KeyID()); err != nil {
		t.Fatalf("remove the first key with the second: %v", err)
	}
	if err := r2.RemoveKey(ctx, newID); err == nil {
		t.Fatal("removed the last key")
	}
	if _, err := r2.ChangePassphrase(ctx, []byte("third"), testrepo.FastKDF); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(ctx, r.Objects, cat2, []byte("second"), repo.Options{}); !errors.Is(err, repo.ErrWrongPassphrase) {
		t.Fatalf("old passphrase still opens: %v", err)
	}
	if _, err := repo.Open(ctx, r.Objects, cat2, []byte("third"), repo.Options{}); err != nil {
		t.Fatalf("new passphrase: %v", err)
	}
	r2.Close(ctx)
}

func TestCorruptBlobIsNeverServed(t *testing.T) {
	ctx := context.Background()
	r := testrepo.New(t, repo.Options{})
	data := bytes.Repeat([]byte("precious "), 1000)
	id, _, err := r.SaveBlob(ctx, blob.Data, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var pack objstore.ID
	r.Objects.List(ctx, objstore.KindPack, func(i objstore.Info) error { pack = i.ID; return nil })
	p := filepath.Join(r.Objects.Root(), "packs", pack.String()[:2], pack.String())
	b, _ := os.ReadFile(p)
	b[20] ^= 1
	os.WriteFile(p, b, 0o600)
	got, err := r.LoadBlob(ctx, blob.Data, id)
	if err == nil {
		t.Fatalf("corrupt blob served (%d bytes)", len(got))
	}
}

func TestNoRepository(t *testing.T) {
	st, _ := objstore.OpenDir(t.TempDir(), objstore.DirOptions{})
	if _, err := repo.ReadConfig(context.Background(), st); !errors.Is(err, repo.ErrNoRepository) {
		t.Fatalf("empty store: %v", err)
	}
}

// saveBlobs saves blobData(0) … blobData(n-1), flushing after every
// flushEvery of them (each flush writes an index object).
func saveBlobs(t *testing.T, r *testrepo.Repo, n, flushEvery int) []blob.ID {
	t.Helper()
	var ids []blob.ID
	for i := range n {
		id, _, err := r.SaveBlob(context.Background(), blob.Data, blobData(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if (i+1)%flushEvery == 0 || i == n-1 {
			if err := r.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ids
}

func TestPackCache(t *testing.T) {
	ctx := context.Background()
	r := testrepo.New(t, repo.Options{PackSize: 64 << 10})
	ids := saveBlobs(t, r, 40, 40)
	c := r.NewPackCache(2)
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func(g int) {
			for k := 0; k < 3; k++ {
				for i := range ids {
					j := (i*7 + g + k) % len(ids)
					got, err := c.LoadBlob(ctx, blob.Data, ids[j])
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, blobData(j)) {
						errs <- errors.New("cached blob differs")
						return
					}
				}
			}
			errs <- nil
		}(g)
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.LoadBlob(ctx, blob.Data, blob.ID{1}); !errors.Is(err, repo.ErrBlobNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
}

// TestReindexKeepsLookups: while the blob index is reloaded (prune does
// it twice), lookups of other goroutines — reads of the live shares —
// find every blob: the catalog never shows a partial index.
func TestReindexKeepsLookups(t *testing.T) {
	ctx := context.Background()
	r := testrepo.New(t, repo.Options{PackSize: 64 << 10})
	ids := saveBlobs(t, r, 40, 10) // several index objects
	done := make(chan struct{})
	missed := make(chan error, 1)
	go func() {
		defer close(missed)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if ok, err := r.HasBlob(blob.Data, ids[i%len(ids)]); err != nil || !ok {
				missed <- fmt.Errorf("blob %d not found during a reindex (%v)", i%len(ids), err)
				return
			}
		}
	}()
	for range 20 {
		if err := r.Reindex(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if err := <-missed; err != nil {
		t.Error(err)
	}
}
