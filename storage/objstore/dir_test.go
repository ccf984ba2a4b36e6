package objstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/objstore/storetest"
)

func TestDirConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) objstore.Store {
		s, err := objstore.OpenDir(filepath.Join(t.TempDir(), "store"), objstore.DirOptions{Create: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storetest.Options{})
}

func TestDirDetectsCorruption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := objstore.OpenDir(dir, objstore.DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("hello, corruption")
	id := objstore.Sum(data)
	if err := s.Put(ctx, objstore.KindIndex, id, data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "index", id.String()[:2], id.String())
	data[0] ^= 1
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, objstore.KindIndex, id); !errors.Is(err, objstore.ErrCorrupt) {
		t.Fatalf("get of flipped object: %v, want ErrCorrupt", err)
	}
}

func TestDirReadOnly(t *testing.T) {
	ctx := context.Background()
	s, err := objstore.OpenDir(t.TempDir(), objstore.DirOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("x")
	if err := s.Put(ctx, objstore.KindPack, objstore.Sum(data), data); !errors.Is(err, objstore.ErrReadOnly) {
		t.Fatalf("put on read-only store: %v", err)
	}
}

func TestParseID(t *testing.T) {
	id := objstore.Sum([]byte("abc"))
	tests := []struct {
		in   string
		ok   bool
		want objstore.ID
	}{
		{id.String(), true, id},
		{"", false, objstore.ID{}},
		{id.String()[:63], false, objstore.ID{}},
		{id.String()[:63] + "g", false, objstore.ID{}},
	}
	for _, tt := range tests {
		got, err := objstore.ParseID(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseID(%q) = %v, %v", tt.in, got, err)
		}
	}
}
