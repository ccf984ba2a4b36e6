package repo_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/internal/testrepo"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
)

// fullStore refuses pack and index writes with ENOSPC while full is set.
type fullStore struct {
	objstore.Store
	full atomic.Bool
}

func (s *fullStore) Put(ctx context.Context, kind objstore.Kind, id objstore.ID, data []byte) error {
	if s.full.Load() && (kind == objstore.KindPack || kind == objstore.KindIndex) {
		return &objstoreError{syscall.ENOSPC}
	}
	return s.Store.Put(ctx, kind, id, data)
}

type objstoreError struct{ errno syscall.Errno }

func (e *objstoreError) Error() string { return "put: " + e.errno.Error() }
func (e *objstoreError) Unwrap() error { return e.errno }

// TestFlushAfterFullStore: a pack that cannot be stored fails the Flush
// with an error wrapping ENOSPC, and once there is room again the same
// blobs are stored by saving them again (they are not taken for stored).
func TestFlushAfterFullStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := objstore.OpenDir(filepath.Join(dir, "objects"), objstore.DirOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	st := &fullStore{Store: d}
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	r, err := repo.Init(ctx, st, cat, []byte(testrepo.Passphrase), repo.Options{KDF: testrepo.FastKDF, PackSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)

	save := func(from, to int) ([]blob.ID, error) {
		var ids []blob.ID
		for i := from; i < to; i++ {
			id, _, err := r.SaveBlob(ctx, blob.Data, blobData(i))
			if err != nil {
				return ids, err
			}
			ids = append(ids, id)
		}
		return ids, nil
	}
	// Some blobs stored before the store fills up.
	if _, err := save(0, 10); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st.full.Store(true)
	_, err = save(10, 40)
	if err == nil {
		err = r.Flush(ctx)
	} else if ferr := r.Flush(ctx); ferr == nil {
		t.Fatal("Flush after a failed save succeeded")
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("save or flush on a full store: %v, want ENOSPC", err)
	}
	// The error was reported once: a flush with nothing new succeeds.
	st.full.Store(false)
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("flush after room came back: %v", err)
	}
	ids, err := save(0, 40)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		got, err := r.LoadBlob(ctx, blob.Data, id)
		if err != nil || !bytes.Equal(got, blobData(i)) {
			t.Fatalf("blob %d after the store had room again: %v", i, err)
		}
	}
	if rs := r.ReadStats(); rs.Blobs != 40 || rs.RawBytes == 0 || rs.StoredBytes < rs.RawBytes {
		t.Fatalf("read stats %+v", rs)
	}
}
