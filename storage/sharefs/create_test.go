package sharefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"time"
)

// TestLostStagingFile: a staging file is created without a sync, so a
// crash may lose it; that is harmless while the catalog records no
// content in it (the file is empty), and an error otherwise.
func TestLostStagingFile(t *testing.T) {
	f := newFixtureOpt(t, Options{InlineMax: -1}) // staging files only
	empty, fh, err := f.sh.CreateFile(RootIno, "empty", 0o640, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	full := writeFile(t, f.sh, RootIno, "full", []byte("acknowledged"))

	// The empty file's staging file is lost: the share opens, the file
	// is there, empty, and commits.
	if err := os.Remove(f.sh.stagingPath(empty.Ino)); err != nil {
		t.Fatal(err)
	}
	f.restart()
	in, err := f.sh.Lookup(RootIno, "empty")
	if err != nil || in.Size != 0 || in.Mode != 0o640 {
		t.Fatalf("after restart: %+v, %v", in, err)
	}
	if err := f.sh.CommitAll(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	if got := shareReadAll(t, f.sh, full); string(got) != "acknowledged" {
		t.Fatalf("full file reads %q", got)
	}

	// A staging file that holds acknowledged content is not optional.
	g := writeFile(t, f.sh, RootIno, "other", []byte("more acknowledged"))
	if err := os.Remove(f.sh.stagingPath(g)); err != nil {
		t.Fatal(err)
	}
	// Closing commits staged files and says so; opening again as well.
	errClose := f.store.Close(t.Context())
	f.tr.Reopen(t)
	_, errOpen := Open(t.Context(), f.tr.Repository, f.tr.Cat, f.staging, f.opt)
	if !errors.Is(errClose, fs.ErrNotExist) || !errors.Is(errOpen, fs.ErrNotExist) {
		t.Fatalf("a lost staging file that held data: close %v, open %v; want both to say so", errClose, errOpen)
	}
}

// TestSetAttrWhileWriting: attributes set through any path while a handle
// writes the file show at once and are recorded with its close.
func TestSetAttrWhileWriting(t *testing.T) {
	f := newFixture(t)
	in, fh, err := f.sh.CreateFile(RootIno, "f", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	mode, uid := uint32(0o600), uint32(1000)
	mt := time.Unix(1_700_000_000, 0)
	if _, err := f.sh.SetAttr(in.Ino, SetAttr{Mode: &mode, UID: &uid, MTime: &mt, ATime: &mt}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		got, err := f.sh.Stat(in.Ino)
		if err != nil {
			t.Fatal(err)
		}
		if got.Mode != mode || got.UID != uid || got.MTime != mt.UnixNano() || got.ATime != mt.UnixNano() || got.Size != 4 {
			t.Fatalf("%s: %+v", when, got)
		}
	}
	check("while open")
	r, err := f.sh.OpenFile(in.Ino, false, false) // a reader outlives the writer
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	check("after close")
	// No writer left: a change goes to the catalog and wins.
	mode = 0o444
	if _, err := f.sh.SetAttr(in.Ino, SetAttr{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	check("changed with a reader open")
	r.Close()
	f.restart()
	check("after restart")
}

// TestInlineStaging: a small file written from empty is staged in memory
// and recorded in the catalog, with no staging file; growing past the
// limit moves it to a staging file; either survives a restart and
// commits, and the catalog keeps no inline content after the commit.
func TestInlineStaging(t *testing.T) {
	f := newFixtureOpt(t, Options{InlineMax: 1000})
	staged := func(ino uint64) bool {
		_, err := os.Stat(f.sh.stagingPath(ino))
		return err == nil
	}
	inline := func(ino uint64) bool {
		_, ok, err := f.sh.loadInline(ino)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	small := writeFile(t, f.sh, RootIno, "small", []byte("small file"))
	if staged(small) || !inline(small) {
		t.Fatalf("small file: staging file %v, inline %v; want inline only", staged(small), inline(small))
	}

	// Grows past the limit through a second handle: spilled.
	in, fh, err := f.sh.CreateFile(RootIno, "grows", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3000)
	for i := range big {
		big[i] = byte(i)
	}
	if _, err := fh.WriteAt(big[:500], 0); err != nil {
		t.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	if staged(in.Ino) || !inline(in.Ino) {
		t.Fatal("500 bytes synced: want inline only")
	}
	if _, err := fh.WriteAt(big[500:], 500); err != nil {
		t.Fatal(err)
	}
	if !staged(in.Ino) {
		t.Fatal("3000 bytes: want a staging file")
	}
	if got := shareReadAll(t, f.sh, in.Ino); string(got) != string(big) {
		t.Fatal("spilled file reads back wrong")
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	if inline(in.Ino) {
		t.Fatal("after the close of a spilled file the catalog still holds inline content")
	}

	// A staging file beside inline content is a spill nobody recorded
	// (a crash between the spill and the next sync): the inline content
	// is what was acknowledged.
	if err := os.WriteFile(f.sh.stagingPath(small), []byte("never acknowledged"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.restart()
	if staged(small) {
		t.Fatal("the unrecorded spill survived the restart")
	}
	for ino, want := range map[uint64]string{small: "small file", in.Ino: string(big)} {
		if got := shareReadAll(t, f.sh, ino); string(got) != want {
			t.Fatalf("inode %d after restart reads %q", ino, got[:min(len(got), 20)])
		}
	}
	if err := f.sh.CommitAll(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	for _, ino := range []uint64{small, in.Ino} {
		if inline(ino) || staged(ino) {
			t.Fatalf("inode %d committed: inline %v, staging file %v", ino, inline(ino), staged(ino))
		}
	}
	if got := shareReadAll(t, f.sh, small); string(got) != "small file" {
		t.Fatalf("committed small file reads %q", got)
	}
}

// TestPendingCreate: a file made by CreateFile reaches the catalog with
// its close — one transaction — and is visible before that; an empty one
// too; inode numbers are never handed out twice, across restarts.
func TestPendingCreate(t *testing.T) {
	f := newFixture(t)
	in, fh, err := f.sh.CreateFile(RootIno, "new", 0o600, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !f.sh.isPending(in.Ino) {
		t.Fatal("a created file is in the catalog before its close")
	}
	if got, err := f.sh.Lookup(RootIno, "new"); err != nil || got.Ino != in.Ino {
		t.Fatalf("lookup of a pending file: %v %v", got, err)
	}
	if got, err := f.sh.Resolve("/new"); err != nil || got.Ino != in.Ino || got.Mode != 0o600 {
		t.Fatalf("resolve of a pending file: %+v %v", got, err)
	}
	ents, err := f.sh.ReadDir(RootIno)
	if err != nil || len(ents) != 1 || ents[0].Name != "new" {
		t.Fatalf("readdir with a pending file: %v %v", ents, err)
	}
	if _, _, err := f.sh.CreateFile(RootIno, "new", 0o600, 0, 0); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second create of a pending name: %v", err)
	}
	if _, err := f.sh.Create(RootIno, "new", 0o600, 0, 0); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over a pending name: %v", err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	if f.sh.isPending(in.Ino) {
		t.Fatal("an empty created file is still pending after its close")
	}
	// A pending file goes in with any other change: a rename here.
	in2, fh2, err := f.sh.CreateFile(RootIno, "moved", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh2.WriteAt([]byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.sh.Rename(RootIno, "moved", RootIno, "there"); err != nil {
		t.Fatal(err)
	}
	if err := fh2.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{in.Ino: true, in2.Ino: true}
	f.restart()
	for _, name := range []string{"new", "there"} {
		if _, err := f.sh.Lookup(RootIno, name); err != nil {
			t.Fatalf("%s after restart: %v", name, err)
		}
	}
	if got := shareReadAll(t, f.sh, in2.Ino); string(got) != "data" {
		t.Fatalf("renamed pending file reads %q", got)
	}
	// Numbers keep going up after a restart, through the reserve.
	for i := range 2*inoReserve + 10 {
		in, fh, err := f.sh.CreateFile(RootIno, fmt.Sprintf("f%d", i), 0o644, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if seen[in.Ino] {
			t.Fatalf("inode %d handed out twice", in.Ino)
		}
		seen[in.Ino] = true
		fh.Close()
		if i == inoReserve/2 {
			f.restart()
		}
	}
}
