package home

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
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
