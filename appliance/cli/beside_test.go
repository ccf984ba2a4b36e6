package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/arkbox/arkbox/storage/archiver"
	"github.com/arkbox/arkbox/storage/crypto"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/maint"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/restorer"
)

// TestReadBesideChanged: a command that reads beside the process holding
// the catalog, whose data that process prunes under it, fails with
// errChanged (run it again) and never returns wrong data; a read error
// in a repository that did not change is reported as it is; what was not
// pruned still restores; opened again, it sees the change.
func TestReadBesideChanged(t *testing.T) {
	ctx := context.Background()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir := filepath.Join(t.TempDir(), "repo")
	pw := []byte("the passphrase")
	h, err := home.Create(ctx, dir, nil, home.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	r, err := repo.Init(ctx, h.Store, h.Catalog, pw, repo.Options{KDF: crypto.KDFParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	// Two sources of different data, one snapshot each.
	var snaps []*repo.Snapshot
	var data [][]byte
	for i := range 2 {
		src := t.TempDir()
		b := make([]byte, 1<<20+i)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(src, "f"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := archiver.Run(ctx, r, archiver.Options{Paths: []string{src}, Source: fmt.Sprint("src", i)})
		if err != nil {
			t.Fatal(err)
		}
		snaps, data = append(snaps, res.Snapshot), append(data, b)
	}

	c := &common{repo: dir, pw: pw}
	e := &env{stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.DiscardHandler)}
	o, err := c.openRead(ctx, e) // h holds the catalog
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.indexes == nil {
		t.Fatal("opened with the held catalog, not beside it")
	}
	gone := fmt.Errorf("load pack: %w", objstore.ErrNotFound)
	if err := o.readErr(ctx, gone); errors.Is(err, errChanged) {
		t.Errorf("a read error in an unchanged repository: %v", err)
	}

	// The holder forgets the first snapshot and prunes its data.
	if err := r.DeleteSnapshot(ctx, snaps[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := maint.Prune(ctx, r, maint.PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = restorer.Run(ctx, o.Repository, snaps[0], restorer.Options{Target: t.TempDir()})
	if err = o.readErr(ctx, err); !errors.Is(err, errChanged) {
		t.Errorf("restore of pruned data beside the holder: %v; want %v", err, errChanged)
	}
	t.Logf("restore of pruned data: %s", explain(err))
	restore := func(o *openRepo) {
		t.Helper()
		target := t.TempDir()
		if _, err := restorer.Run(ctx, o.Repository, snaps[1], restorer.Options{Target: target}); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(target, filepath.Base(snaps[1].Paths[0]), "f"))
		if err != nil || !bytes.Equal(got, data[1]) {
			t.Errorf("restored %d bytes (%v), want %d as backed up", len(got), err, len(data[1]))
		}
	}
	restore(o)

	// Opened again beside the holder: the catalog follows; o holds the
	// cached one, so this one is private.
	o2, err := c.openRead(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	if filepath.Dir(o2.Catalog().Path()) == filepath.Dir(o.Catalog().Path()) {
		t.Errorf("two commands share the cached catalog %s", o.Catalog().Path())
	}
	if _, err := o2.FindSnapshot(snaps[0].ID.String()); err == nil {
		t.Error("a forgotten snapshot is still found")
	}
	restore(o2)
}
