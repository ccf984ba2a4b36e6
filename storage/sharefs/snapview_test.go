package sharefs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func writeFile(t *testing.T, sh *Share, parent uint64, name string, data []byte) uint64 {
	t.Helper()
	in, err := sh.Lookup(parent, name)
	if errors.Is(err, ErrNotExist) {
		in, err = sh.Create(parent, name, 0o644, 0, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	f, err := sh.OpenFile(in.Ino, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return in.Ino
}

func TestSnapshotView(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	sh := f.sh
	dir, err := sh.Mkdir(RootIno, "reports", 0o755, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	v1 := bytes.Repeat([]byte("version one\n"), 100000)
	writeFile(t, sh, dir.Ino, "q1.txt", v1)
	at1 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.Local)
	if _, err := sh.Snapshot(ctx, at1, nil); err != nil {
		t.Fatal(err)
	}
	writeFile(t, sh, dir.Ino, "q1.txt", []byte("version two"))
	if _, err := sh.Snapshot(ctx, at1.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	snaps, err := sh.Snapshots()
	if err != nil || len(snaps) != 2 {
		t.Fatalf("snapshots: %v %v", snaps, err)
	}
	if snaps[0].Name != "2026-03-01T100000" || snaps[1].Name != "2026-03-01T110000" {
		t.Fatalf("snapshot folder names %q %q", snaps[0].Name, snaps[1].Name)
	}
	for _, tt := range []struct {
		snap string
		want []byte
	}{{snaps[0].Name, v1}, {snaps[1].Name, []byte("version two")}} {
		sf, err := sh.SnapshotOpen(ctx, tt.snap, "reports/../reports/q1.txt")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(sf, 0, 1<<30))
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Fatalf("%s: read %d bytes (%v), want %d", tt.snap, len(got), err, len(tt.want))
		}
	}
	root, err := sh.SnapshotLookup(ctx, snaps[0].Name, "/")
	if err != nil || root.Tree == nil || len(root.Tree.Nodes) != 1 || root.Tree.Nodes[0].Name != "reports" {
		t.Fatalf("snapshot root: %+v %v", root, err)
	}
	if _, err := sh.SnapshotLookup(ctx, snaps[0].Name, "../../../etc/passwd"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("escape from a snapshot: %v", err)
	}
	if _, err := sh.SnapshotLookup(ctx, "2020-01-01T000000", "/"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing snapshot: %v", err)
	}
	// The live tree cannot hold the snapshot folder's name at its root.
	if _, err := sh.Mkdir(RootIno, SnapshotsDir, 0o755, 0, 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("mkdir .snapshots: %v", err)
	}
	if err := sh.Rename(dir.Ino, "q1.txt", RootIno, SnapshotsDir); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("rename to .snapshots: %v", err)
	}
	if _, err := sh.Mkdir(dir.Ino, SnapshotsDir, 0o755, 0, 0); err != nil {
		t.Fatalf(".snapshots below the root is an ordinary name: %v", err)
	}
}

// TestUnchangedSnapshotReusesTrees checks that a snapshot after a small
// change re-encodes only the directories on the changed path.
func TestUnchangedSnapshotReusesTrees(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	sh := f.sh
	var leaf uint64
	for i := 0; i < 20; i++ {
		d, err := sh.Mkdir(RootIno, string(rune('a'+i)), 0o755, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, sh, d.Ino, "f", []byte{byte(i)})
		leaf = d.Ino
	}
	first, err := sh.Snapshot(ctx, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.Stats.Dirs != 21 {
		t.Fatalf("first snapshot encoded %d directories, want 21", first.Stats.Dirs)
	}
	same, err := sh.Snapshot(ctx, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if same.Tree != first.Tree || same.Stats.Dirs != 0 {
		t.Fatalf("unchanged snapshot: tree %v vs %v, %d directories encoded", same.Tree, first.Tree, same.Stats.Dirs)
	}
	writeFile(t, sh, leaf, "f", []byte("changed"))
	third, err := sh.Snapshot(ctx, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if third.Tree == first.Tree || third.Stats.Dirs != 2 {
		t.Fatalf("after one change: %d directories encoded, want 2 (the root and the changed one)", third.Stats.Dirs)
	}
}

func TestStatFS(t *testing.T) {
	f := newFixture(t)
	total, free, err := f.store.StatFS()
	if err != nil || total == 0 || free > total {
		t.Fatalf("statfs: %d %d %v", total, free, err)
	}
}
