package archiver_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/arkbox/arkbox/storage/archiver"
	"github.com/arkbox/arkbox/storage/internal/testrepo"
	"github.com/arkbox/arkbox/storage/maint"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/restorer"
	"golang.org/x/sys/unix"
)

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func write(t *testing.T, p string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// makeTree builds a source tree with every kind of entry.
func makeTree(t *testing.T, root string) {
	t.Helper()
	write(t, filepath.Join(root, "empty"), nil, 0o644)
	write(t, filepath.Join(root, "small.txt"), []byte("hello, arkbox\n"), 0o600)
	write(t, filepath.Join(root, "exec.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	write(t, filepath.Join(root, "setgid"), []byte("x"), 0o2755)
	write(t, filepath.Join(root, "big.bin"), randBytes(1, 5<<20+123), 0o644)
	write(t, filepath.Join(root, "compressible.txt"), bytes.Repeat([]byte("all work and no play makes jack a dull boy\n"), 100000), 0o644)
	write(t, filepath.Join(root, "dir/sub/deep.txt"), []byte("deep"), 0o640)
	write(t, filepath.Join(root, "dir/names/ü ñ 名前 \x01"), []byte("odd name"), 0o644)
	write(t, filepath.Join(root, "dir/names/-leading dash"), []byte("dash"), 0o644)
	if err := os.Mkdir(filepath.Join(root, "emptydir"), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("small.txt", filepath.Join(root, "link-rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "link-abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("does/not/exist", filepath.Join(root, "dir/dangling")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "big.bin"), filepath.Join(root, "dir/hardlink-to-big")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(root, "small.txt"), "user.arkbox.test", []byte("xattr value"), 0); err != nil {
		t.Logf("xattrs not supported here: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Mknod(filepath.Join(root, "dir/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(filepath.Join(root, "dir/sub/deep.txt"), 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Date(2020, 2, 29, 12, 34, 56, 789000000, time.UTC)
	for _, p := range []string{"small.txt", "dir/sub", "dir/sub/deep.txt", "emptydir"} {
		if err := os.Chtimes(filepath.Join(root, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
}

type entry struct {
	mode   fs.FileMode
	size   int64
	mtime  int64
	uid    uint32
	gid    uint32
	rdev   uint64
	sum    [32]byte
	target string
	xattr  string
	ino    uint64
}

// snapshotTree records what a restore must reproduce.
func snapshotTree(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, rdev: st.Rdev, ino: st.Ino}
		if !fi.IsDir() {
			e.mtime = st.Mtim.Nano()
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.sum = sha256.Sum256(b)
			e.size = fi.Size()
		case fi.Mode()&fs.ModeSymlink != 0:
			e.target, _ = os.Readlink(p)
		}
		if v, err := unix.Lgetxattr(p, "user.arkbox.test", make([]byte, 64)); err == nil {
			buf := make([]byte, v)
			unix.Lgetxattr(p, "user.arkbox.test", buf)
			e.xattr = string(buf)
		}
		if rel != "." {
			out[rel] = e
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTrees(t *testing.T, want, got map[string]entry) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing after restore", p)
			continue
		}
		if w.mode != g.mode || w.size != g.size || w.sum != g.sum || w.target != g.target || w.xattr != g.xattr || w.mtime != g.mtime || w.rdev != g.rdev {
			t.Errorf("%s: restored %+v, want %+v", p, g, w)
		}
		if os.Geteuid() == 0 && (w.uid != g.uid || w.gid != g.gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, g.uid, g.gid, w.uid, w.gid)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: restored but not in the source", p)
		}
	}
	if got["big.bin"].ino != got["dir/hardlink-to-big"].ino {
		t.Errorf("hard link not restored as a hard link")
	}
}

func TestRoundTripEveryFileType(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	want := snapshotTree(t, src)
	r := testrepo.New(t, repo.Options{})

	res, err := archiver.Run(ctx, r.Repository, archiver.Options{Paths: []string{src}, Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != 0 {
		t.Fatalf("backup errors: %v", res.Errors)
	}
	r.Reopen(t)
	sn, err := r.FindSnapshot("latest")
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if _, err := restorer.Run(ctx, r.Repository, sn, restorer.Options{Target: dst}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, want, snapshotTree(t, filepath.Join(dst, "src")))

	// A sub-path restore gets only that part.
	dst2 := filepath.Join(t.TempDir(), "part")
	if _, err := restorer.Run(ctx, r.Repository, sn, restorer.Options{Target: dst2, Path: "src/dir/sub"}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst2, "deep.txt")); err != nil || string(b) != "deep" {
		t.Fatalf("partial restore: %q %v", b, err)
	}

	rep, err := maint.Check(ctx, r.Repository, maint.CheckOptions{ReadDataPercent: 100})
	if err != nil || !rep.OK() {
		t.Fatalf("check: %v %+v", err, rep)
	}
}

func TestUnchangedTreeAddsNothing(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	r := testrepo.New(t, repo.Options{})
	first, err := archiver.Run(ctx, r.Repository, archiver.Options{Paths: []string{src}, Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	r.Reopen(t)
	prog := &archiver.Progress{}
	second, err := archiver.Run(ctx, r.Repository, archiver.Options{Paths: []string{src}, Source: "s", Progress: prog})
	if err != nil {
		t.Fatal(err)
	}
	if second.Snapshot.Tree != first.Snapshot.Tree {
		t.Errorf("unchanged tree got a new root id")
	}
	if st := second.Snapshot.Stats; st.NewBlobs != 0 || st.NewRawBytes != 0 || st.ChangedFiles != 0 || st.UnchangedFiles != first.Snapshot.Stats.Files {
		t.Errorf("second backup stats: %+v", st)
	}
	if n := prog.ReadBytes.Load(); n != 0 {
		t.Errorf("unchanged backup read %d bytes of file content", n)
	}
	if second.Snapshot.Parent == nil || *second.Snapshot.Parent != first.Snapshot.ID {
		t.Errorf("parent not recorded")
	}

	// Change one file: only it is read; its directory tree and the root change.
	big := filepath.Join(src, "big.bin")
	f, err := os.OpenFile(big, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("changed"), 3<<20)
	f.Close()
	prog = &archiver.Progress{}
	third, err := archiver.Run(ctx, r.Repository, archiver.Options{Paths: []string{src}, Source: "s", Progress: prog})
	if err != nil {
		t.Fatal(err)
	}
	if st := third.Snapshot.Stats; st.ChangedFiles != 2 { // big.bin and its hard link
		t.Errorf("third backup: %d changed files, want 2 (%+v)", st.ChangedFiles, st)
	}
	if n := prog.ReadBytes.Load(); n != 5<<20+123 {
		t.Errorf("third backup read %d bytes, want only the changed file (%d)", n, 5<<20+123)
	}
	// Content-defined chunking: a small change stores far less than the file.
	if st := third.Snapshot.Stats; st.NewRawBytes > 4<<20 {
		t.Errorf("changing 7 bytes stored %d new bytes", st.NewRawBytes)
	}
}

func TestExcludesAndErrors(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	write(t, filepath.Join(src, "keep.txt"), []byte("keep"), 0o644)
	write(t, filepath.Join(src, "skip.tmp"), []byte("skip"), 0o644)
	write(t, filepath.Join(src, "cache/x"), []byte("x"), 0o644)
	r := testrepo.New(t, repo.Options{})
	res, err := archiver.Run(ctx, r.Repository, archiver.Options{Paths: []string{src}, Excludes: []string{"*.tmp", filepath.Join(src, "cache")}})
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := restorer.Run(ctx, r.Repository, res.Snapshot, restorer.Options{Target: dst}); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dst, filepath.Base(src))
	for p, want := range map[string]bool{"keep.txt": true, "skip.tmp": false, "cache": false} {
		_, err := os.Lstat(filepath.Join(base, p))
		if (err == nil) != want {
			t.Errorf("%s present=%v, want %v", p, err == nil, want)
		}
	}
	if _, err := archiver.Run(ctx, r.Repository, archiver.Options{Paths: []string{filepath.Join(src, "missing")}}); err == nil {
		t.Error("backup of a missing path succeeded")
	}
	if _, err := archiver.Run(ctx, r.Repository, archiver.Options{Paths: []string{src}, Excludes: []string{"[bad"}}); err == nil {
		t.Error("bad exclude pattern accepted")
	}
}
