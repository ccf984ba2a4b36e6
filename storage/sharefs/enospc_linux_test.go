package sharefs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/internal/testrepo"
	"github.com/arkbox/arkbox/storage/maint"
	"github.com/arkbox/arkbox/storage/pool"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/restorer"
	"golang.org/x/sys/unix"
)

// tmpfs mounts a tmpfs of the given size on a new folder for the test.
// It skips the test when not root or when mounting is not allowed.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// ballast fills the file system of dir with a file and returns its path;
// removing it frees the space.
func ballast(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "ballast")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return p
		}
	}
}

// shareWrite writes data into ino through one handle in 64 KiB pieces and
// closes it; it returns how many bytes were accepted and the first error.
func shareWrite(sh *Share, ino uint64, trunc bool, data []byte, off int64) (int, error) {
	f, err := sh.OpenFile(ino, true, trunc)
	if err != nil {
		return 0, err
	}
	done := 0
	for done < len(data) {
		n, werr := f.WriteAt(data[done:min(done+64<<10, len(data))], off+int64(done))
		done += n
		if werr != nil {
			err = werr
			break
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return done, err
}

func shareRead(t *testing.T, sh *Share, ino uint64) []byte {
	t.Helper()
	f, err := sh.OpenFile(ino, false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStagingFull: with the staging disk full, writes fail with an error
// wrapping ENOSPC; what was accepted stays readable, a file written in
// place keeps its clean content where nothing was accepted, and once
// space is freed the same writes and their commit succeed.
func TestStagingFull(t *testing.T) {
	ctx := context.Background()
	staging := tmpfs(t, "4m")
	f := newFixtureStaging(t, Options{BlockSize: 64 << 10, BlockThreshold: 256 << 10}, staging)
	defer f.store.Close(ctx)
	sh := f.sh
	old := make([]byte, 1<<20)
	fillRand(1, old)
	oldIn, err := sh.Create(RootIno, "old", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shareWrite(sh, oldIn.Ino, true, old, 0); err != nil {
		t.Fatal(err)
	}
	if err := sh.CommitAll(ctx, true); err != nil {
		t.Fatal(err)
	}

	fill := ballast(t, staging)
	data := make([]byte, 2<<20)
	fillRand(2, data)
	newIn, err := sh.Create(RootIno, "new", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := shareWrite(sh, newIn.Ino, true, data, 0)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing 2 MiB to a full staging disk: %d bytes, %v; want an error wrapping ENOSPC", n, err)
	}
	if got := shareRead(t, sh, newIn.Ino); !bytes.Equal(got, data[:len(got)]) || len(got) > n {
		t.Fatalf("after ENOSPC: %d bytes read, %d accepted, or content wrong", len(got), n)
	}
	patch := make([]byte, 100<<10)
	fillRand(3, patch)
	n, err = shareWrite(sh, oldIn.Ino, false, patch, 300<<10)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing in place to a full staging disk: %d bytes, %v; want an error wrapping ENOSPC", n, err)
	}
	got := shareRead(t, sh, oldIn.Ino)
	if len(got) != len(old) || !bytes.Equal(got[:300<<10], old[:300<<10]) || !bytes.Equal(got[400<<10:], old[400<<10:]) {
		t.Fatalf("file written in place on a full disk: %d bytes, outside the write changed", len(got))
	}
	for i := 300 << 10; i < 400<<10; i++ {
		if got[i] != old[i] && got[i] != patch[i-300<<10] {
			t.Fatalf("byte %d is neither old nor new", i)
		}
	}
	// Committing what was accepted needs no staging space.
	if err := sh.CommitAll(ctx, true); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shareRead(t, sh, oldIn.Ino), got) {
		t.Fatal("commit changed the file written in place")
	}

	// Room again: the same writes succeed.
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	if _, err := shareWrite(sh, newIn.Ino, true, data, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := shareWrite(sh, oldIn.Ino, false, patch, 300<<10); err != nil {
		t.Fatal(err)
	}
	copy(old[300<<10:], patch)
	if err := sh.CommitAll(ctx, true); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shareRead(t, sh, newIn.Ino), data) || !bytes.Equal(shareRead(t, sh, oldIn.Ino), old) {
		t.Fatal("content wrong after space was freed")
	}
}

// TestPoolFull: with the pool full, a commit fails with an error wrapping
// ENOSPC and the files stay staged with their content; a snapshot fails
// the same way; once space is freed the commit and the snapshot succeed,
// the snapshot restores, and the repository checks clean.
func TestPoolFull(t *testing.T) {
	ctx := context.Background()
	disk := tmpfs(t, "24m")
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	p, err := pool.Create(ctx, []string{disk}, pool.CreateOptions{Parity: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	r, err := repo.Init(ctx, p, cat, []byte(testrepo.Passphrase), repo.Options{KDF: testrepo.FastKDF, PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	store, err := Open(ctx, r, cat, filepath.Join(dir, "staging"), Options{CommitDelay: time.Hour, BlockSize: 64 << 10, BlockThreshold: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(ctx)
	sh, err := store.CreateShare("docs")
	if err != nil {
		t.Fatal(err)
	}
	a := make([]byte, 2<<20)
	fillRand(4, a)
	aIn, err := sh.Create(RootIno, "a", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shareWrite(sh, aIn.Ino, true, a, 0); err != nil {
		t.Fatal(err)
	}
	if err := sh.CommitAll(ctx, true); err != nil {
		t.Fatal(err)
	}

	fill := ballast(t, disk)
	b := make([]byte, 3<<20)
	fillRand(5, b)
	bIn, err := sh.Create(RootIno, "b", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shareWrite(sh, bIn.Ino, true, b, 0); err != nil {
		t.Fatal(err)
	}
	patch := make([]byte, 200<<10)
	fillRand(6, patch)
	if _, err := shareWrite(sh, aIn.Ino, false, patch, 500<<10); err != nil {
		t.Fatal(err)
	}
	copy(a[500<<10:], patch)
	if err := sh.CommitAll(ctx, true); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("commit to a full pool: %v; want an error wrapping ENOSPC", err)
	}
	if _, err := sh.Snapshot(ctx, time.Now(), nil); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("snapshot on a full pool: %v; want an error wrapping ENOSPC", err)
	}
	for _, c := range []struct {
		ino  uint64
		want []byte
	}{{aIn.Ino, a}, {bIn.Ino, b}} {
		in, err := sh.Stat(c.ino)
		if err != nil || !in.Staged {
			t.Fatalf("inode %d after failed commits: %v, staged %v", c.ino, err, in != nil && in.Staged)
		}
		if !bytes.Equal(shareRead(t, sh, c.ino), c.want) {
			t.Fatalf("inode %d reads wrong after failed commits", c.ino)
		}
	}

	// Room again.
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	if err := sh.CommitAll(ctx, true); err != nil {
		t.Fatalf("commit after space was freed: %v", err)
	}
	sn, err := sh.Snapshot(ctx, time.Now(), nil)
	if err != nil {
		t.Fatalf("snapshot after space was freed: %v", err)
	}
	for _, c := range []struct {
		ino  uint64
		want []byte
	}{{aIn.Ino, a}, {bIn.Ino, b}} {
		in, err := sh.Stat(c.ino)
		if err != nil || in.Staged {
			t.Fatalf("inode %d after the commit: %v, staged %v", c.ino, err, in != nil && in.Staged)
		}
		if !bytes.Equal(shareRead(t, sh, c.ino), c.want) {
			t.Fatalf("inode %d reads wrong after the commit", c.ino)
		}
	}
	dst := t.TempDir()
	if _, err := restorer.Run(ctx, r, sn, restorer.Options{Target: dst}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"a": a, "b": b} {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("restored %s: %v", name, err)
		}
	}
	rep, err := maint.Check(ctx, r, maint.CheckOptions{ReadDataPercent: 100})
	if err != nil || !rep.OK() {
		t.Fatalf("check: %v %+v", err, rep)
	}
}
