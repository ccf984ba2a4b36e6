package sharefs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/tree"
	bolt "go.etcd.io/bbolt"
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

// treesEncoded snapshots sh after committing its files, and returns the
// snapshot and how many trees it encoded: every tree saved counts as a
// new blob or a duplicate; a reused tree is not saved at all.
func treesEncoded(t *testing.T, f *fixture) (*repo.Snapshot, uint64) {
	t.Helper()
	ctx := context.Background()
	if err := f.sh.CommitAll(ctx, true); err != nil {
		t.Fatal(err)
	}
	before := f.tr.Stats()
	sn, err := f.sh.Snapshot(ctx, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	after := f.tr.Stats()
	return sn, after.Blobs - before.Blobs + after.Dupes - before.Dupes
}

// TestUnchangedSnapshotReusesTrees checks that a snapshot after a small
// change re-encodes only the directories on the changed path.
func TestUnchangedSnapshotReusesTrees(t *testing.T) {
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
	first, n := treesEncoded(t, f)
	if n != 21 {
		t.Fatalf("first snapshot encoded %d directories, want 21", n)
	}
	same, n := treesEncoded(t, f)
	if same.Tree != first.Tree || n != 0 {
		t.Fatalf("unchanged snapshot: tree %v vs %v, %d directories encoded", same.Tree, first.Tree, n)
	}
	writeFile(t, sh, leaf, "f", []byte("changed"))
	third, n := treesEncoded(t, f)
	if third.Tree == first.Tree || n != 2 {
		t.Fatalf("after one change: %d directories encoded, want 2 (the root and the changed one)", n)
	}
}

// walkTotals counts a snapshot's tree by walking all of it.
func walkTotals(t *testing.T, r *repo.Repository, id blob.ID) TreeTotals {
	t.Helper()
	tr, err := r.LoadTree(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	tot := TreeTotals{Dirs: 1}
	for _, n := range tr.Nodes {
		switch n.Type {
		case tree.Dir:
			tot.add(walkTotals(t, r, n.Subtree))
		case tree.File:
			tot.Files++
			tot.Bytes += n.Size
		default:
			tot.Others++
		}
	}
	return tot
}

// TestSnapshotStatsWholeTree: every snapshot's figures describe the whole
// share, as a walk of its tree counts it, however much of the tree it
// reused from the previous snapshot; new_* count what it stored.
func TestSnapshotStatsWholeTree(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	sh := f.sh
	mkdir := func(parent uint64, name string) uint64 {
		d, err := sh.Mkdir(parent, name, 0o755, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return d.Ino
	}
	docs := mkdir(RootIno, "docs")
	y2025 := mkdir(docs, "2025")
	y2026 := mkdir(docs, "2026")
	photos := mkdir(RootIno, "photos")
	mkdir(photos, "empty")
	writeFile(t, sh, RootIno, "readme", []byte("top level"))
	writeFile(t, sh, y2025, "a.txt", bytes.Repeat([]byte("a"), 3000))
	writeFile(t, sh, y2025, "b.txt", bytes.Repeat([]byte("b"), 5000))
	target := writeFile(t, sh, y2026, "c.txt", []byte("c"))
	writeFile(t, sh, photos, "p.raw", bytes.Repeat([]byte("p"), 70000))
	if _, err := sh.Symlink(photos, "latest", "p.raw", 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Link(target, docs, "c-link.txt"); err != nil {
		t.Fatal(err)
	}
	// Each case changes the share (or not), then snapshots it.
	for _, tc := range []struct {
		name      string
		change    func()
		wantFiles uint64
		newData   bool // the snapshot stores new file content
	}{
		{"first", func() {}, 6, true},
		{"unchanged", func() {}, 6, false},
		{"one file in one folder", func() { writeFile(t, sh, y2025, "b.txt", []byte("shorter")) }, 6, true},
		{"a file added deep down", func() { writeFile(t, sh, y2026, "d.txt", []byte("dee")) }, 7, true},
		{"a folder removed", func() {
			if err := sh.Remove(photos, "empty"); err != nil {
				t.Fatal(err)
			}
		}, 7, false},
		{"a cache kept without totals", func() {
			// As an older version left it: tree ids cached, no totals.
			if err := sh.update(func(b *bolt.Bucket) error {
				return b.Bucket(bInodes).ForEach(func(k, v []byte) error {
					in, err := decodeInode(v)
					if err != nil || in.TreeTotals == nil {
						return err
					}
					in.TreeTotals = nil
					return putInode(b, in)
				})
			}); err != nil {
				t.Fatal(err)
			}
		}, 7, false},
	} {
		tc.change()
		sn, err := sh.Snapshot(ctx, time.Now(), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := walkTotals(t, f.tr.Repository, sn.Tree)
		got := TreeTotals{Files: sn.Stats.Files, Dirs: sn.Stats.Dirs, Others: sn.Stats.Others, Bytes: sn.Stats.Bytes}
		if got != want || got.Files != tc.wantFiles {
			t.Errorf("%s: snapshot stats %+v, a walk of its tree %+v (%d files)", tc.name, got, want, tc.wantFiles)
		}
		if (sn.Stats.NewRawBytes > 0) != (tc.newData || sn.Stats.NewBlobs > 0) || sn.Stats.NewStoredBytes > 0 != (sn.Stats.NewBlobs > 0) {
			t.Errorf("%s: new figures %+v", tc.name, sn.Stats)
		}
		if tc.newData && sn.Stats.NewBlobs < 2 {
			t.Errorf("%s: %d new blobs, want the new content and the trees above it", tc.name, sn.Stats.NewBlobs)
		}
		if tc.name == "unchanged" && (sn.Stats.NewBlobs != 0 || sn.Stats.NewRawBytes != 0 || sn.Stats.NewStoredBytes != 0) {
			t.Errorf("an unchanged snapshot stored something: %+v", sn.Stats)
		}
	}
}

func TestStatFS(t *testing.T) {
	f := newFixture(t)
	total, free, err := f.store.StatFS()
	if err != nil || total == 0 || free > total {
		t.Fatalf("statfs: %d %d %v", total, free, err)
	}
}
