package home

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/objstore"
)

func TestReadDiskDirs(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	dir := filepath.Join(base, "repo")
	outside := filepath.Join(base, "mnt", "disk-a")
	inside := filepath.Join(dir, "disk-b")
	if _, err := ReadDiskDirs(dir); !errors.Is(err, ErrNoHome) {
		t.Fatalf("ReadDiskDirs before Create = %v; want ErrNoHome", err)
	}
	h, err := Create(ctx, dir, []string{outside, inside}, Options{Parity: 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDiskDirs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{outside, inside}; !slices.Equal(got, want) {
		t.Errorf("ReadDiskDirs = %q; want %q", got, want)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDiskDirs(dir); err == nil {
		t.Error("ReadDiskDirs of a damaged home.json: no error")
	}
}

// TestOpenHeldCatalog: Open of a home whose catalog another process
// holds fails at once with NoWait, matching catalog.ErrInUse, without
// opening the pool for writing (which would clean up the holder's
// writes in progress); OpenBeside reads the store read-only beside it.
func TestOpenHeldCatalog(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	disk := filepath.Join(dir, "disk-a")
	h, err := Create(ctx, dir, []string{disk}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A write of the holder in progress.
	inProgress := filepath.Join(disk, "arkbox", ".tmp-in-progress")
	if err := os.WriteFile(inProgress, []byte("half a shard"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := Open(ctx, dir, Options{NoWait: true}); !errors.Is(err, catalog.ErrInUse) {
		t.Fatalf("Open of a held catalog: %v; want ErrInUse", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Open with NoWait took %v", d)
	}
	if _, err := os.Stat(inProgress); err != nil {
		t.Errorf("the holder's write in progress: %v", err)
	}
	cat, err := catalog.Open(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenBeside(ctx, dir, cat, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Store.Put(ctx, objstore.KindConfig, objstore.Sum(nil), nil); !errors.Is(err, objstore.ErrReadOnly) {
		t.Errorf("put beside the holder: %v; want ErrReadOnly", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(inProgress); err != nil {
		t.Errorf("the holder's write in progress after a read-only open: %v", err)
	}
	// Control: once the catalog is free, Open cleans up (as after a crash).
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h2.Close()
	if _, err := os.Stat(inProgress); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a stale temporary file after Open: %v", err)
	}
}
