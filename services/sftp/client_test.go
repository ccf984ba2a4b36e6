package sftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/arkbox/arkbox/storage/sharefs"
	"github.com/pkg/sftp"
)

// These tests use pkg/sftp's Go client, to check status codes and
// concurrency precisely.

// code names the SFTP status of err ("ok" for nil).
func code(err error) string {
	var se *sftp.StatusError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.As(err, &se):
		return se.FxCode().Error()
	}
	return "transport error: " + err.Error()
}

// populate makes, in docs: dir/sub/, file ("hello"), link -> file,
// abs -> /etc; in big: other.
func populate(t *testing.T, f *fixture) {
	t.Helper()
	docs, big := f.share("docs"), f.share("big")
	dir, err := docs.Mkdir(sharefs.RootIno, "dir", 0o755, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docs.Mkdir(dir.Ino, "sub", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, sf := range []struct {
		sh   *sharefs.Share
		name string
	}{{docs, "file"}, {big, "other"}} {
		in, err := sf.sh.Create(sharefs.RootIno, sf.name, 0o644, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		fh, err := sf.sh.OpenFile(in.Ino, true, true)
		if err != nil {
			t.Fatal(err)
		}
		fh.WriteAt([]byte("hello"), 0)
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"link": "file", "abs": "/etc"} {
		if _, err := docs.Symlink(sharefs.RootIno, name, target, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStatusCodes(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	populate(t, f)
	alice, bob := f.client(f.alice), f.client(f.bob)
	open := func(c *sftp.Client, p string, flags int) error {
		fh, err := c.OpenFile(p, flags)
		if err == nil {
			fh.Close()
		}
		return err
	}
	stat := func(c *sftp.Client, p string) error { _, err := c.Stat(p); return err }
	readlink := func(c *sftp.Client, p string) error { _, err := c.ReadLink(p); return err }
	list := func(c *sftp.Client, p string) error { _, err := c.ReadDir(p); return err }
	tests := []struct {
		name string
		c    *sftp.Client
		op   func(*sftp.Client) error
		want string
	}{
		{"stat the top", alice, func(c *sftp.Client) error { return stat(c, "/") }, "ok"},
		{"stat a share", alice, func(c *sftp.Client) error { return stat(c, "/docs") }, "ok"},
		{"stat a missing share", alice, func(c *sftp.Client) error { return stat(c, "/nope") }, "no such file"},
		{"stat an ungranted share", alice, func(c *sftp.Client) error { return stat(c, "/secret") }, "no such file"},
		{"stat a share granted to others", bob, func(c *sftp.Client) error { return stat(c, "/big") }, "no such file"},
		{"dotdot into an ungranted share", alice, func(c *sftp.Client) error { return stat(c, "/docs/../secret") }, "no such file"},
		{"stat a missing file", alice, func(c *sftp.Client) error { return stat(c, "/docs/missing") }, "no such file"},
		{"stat below a file", alice, func(c *sftp.Client) error { return stat(c, "/docs/file/x") }, "failure"},
		{"stat through a symlink", alice, func(c *sftp.Client) error { return stat(c, "/docs/abs/passwd") }, "failure"},
		{"stat a symlink describes the link", alice, func(c *sftp.Client) error {
			fi, err := c.Stat("/docs/link")
			if err == nil && fi.Mode()&fs.ModeSymlink == 0 {
				return fmt.Errorf("mode %v", fi.Mode())
			}
			return err
		}, "ok"},
		{"list the top", alice, func(c *sftp.Client) error { return list(c, "/") }, "ok"},
		{"list a file", alice, func(c *sftp.Client) error { return list(c, "/docs/file") }, "failure"},
		{"list a symlink", alice, func(c *sftp.Client) error { return list(c, "/docs/abs") }, "failure"},
		{"open a missing file", alice, func(c *sftp.Client) error { return open(c, "/docs/missing", os.O_RDONLY) }, "no such file"},
		{"open a directory", alice, func(c *sftp.Client) error { return open(c, "/docs/dir", os.O_RDONLY) }, "failure"},
		{"open a share", alice, func(c *sftp.Client) error { return open(c, "/docs", os.O_RDONLY) }, "failure"},
		{"open a symlink", alice, func(c *sftp.Client) error { return open(c, "/docs/link", os.O_RDONLY) }, "failure"},
		{"create over a symlink", alice, func(c *sftp.Client) error {
			return open(c, "/docs/link", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		}, "failure"},
		{"exclusive create of an existing file", alice, func(c *sftp.Client) error {
			return open(c, "/docs/file", os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		}, "failure"},
		{"write without create", alice, func(c *sftp.Client) error { return open(c, "/docs/new", os.O_WRONLY) }, "no such file"},
		{"create at the top", alice, func(c *sftp.Client) error { return open(c, "/new", os.O_WRONLY|os.O_CREATE) }, "permission denied"},
		{"mkdir at the top", alice, func(c *sftp.Client) error { return c.Mkdir("/newshare") }, "permission denied"},
		{"mkdir a share", alice, func(c *sftp.Client) error { return c.Mkdir("/docs") }, "permission denied"},
		{"mkdir existing", alice, func(c *sftp.Client) error { return c.Mkdir("/docs/dir") }, "failure"},
		{"mkdir the snapshot folder", alice, func(c *sftp.Client) error { return c.Mkdir("/docs/.snapshots") }, "permission denied"},
		{"rmdir a share", alice, func(c *sftp.Client) error { return c.RemoveDirectory("/docs") }, "permission denied"},
		{"rmdir the top", alice, func(c *sftp.Client) error { return c.RemoveDirectory("/") }, "permission denied"},
		{"rmdir non-empty", alice, func(c *sftp.Client) error { return c.RemoveDirectory("/docs/dir") }, "failure"},
		{"rmdir a file", alice, func(c *sftp.Client) error { return c.RemoveDirectory("/docs/file") }, "failure"},
		{"rename a share", alice, func(c *sftp.Client) error { return c.Rename("/docs", "/docs2") }, "permission denied"},
		{"rename to the top", alice, func(c *sftp.Client) error { return c.Rename("/docs/file", "/file") }, "permission denied"},
		{"rename across shares", alice, func(c *sftp.Client) error { return c.Rename("/docs/file", "/big/file") }, "failure"},
		{"rename onto an existing file", alice, func(c *sftp.Client) error { return c.Rename("/docs/file", "/big/other") }, "failure"},
		{"v3 rename does not replace", alice, func(c *sftp.Client) error { return c.Rename("/docs/file", "/docs/link") }, "failure"},
		{"rename a missing file", alice, func(c *sftp.Client) error { return c.Rename("/docs/missing", "/docs/x") }, "no such file"},
		{"rename a dir into itself", alice, func(c *sftp.Client) error { return c.PosixRename("/docs/dir", "/docs/dir/sub/x") }, "failure"},
		{"hard link across shares", alice, func(c *sftp.Client) error { return c.Link("/docs/file", "/big/file") }, "failure"},
		{"hard link to a directory", alice, func(c *sftp.Client) error { return c.Link("/docs/dir", "/docs/dir2") }, "permission denied"},
		{"symlink over an existing file", alice, func(c *sftp.Client) error { return c.Symlink("x", "/docs/file") }, "failure"},
		{"symlink at the top", alice, func(c *sftp.Client) error { return c.Symlink("docs", "/d") }, "permission denied"},
		{"readlink a file", alice, func(c *sftp.Client) error { return readlink(c, "/docs/file") }, "failure"},
		{"readlink a missing file", alice, func(c *sftp.Client) error { return readlink(c, "/docs/missing") }, "no such file"},
		{"chmod a symlink", alice, func(c *sftp.Client) error { return c.Chmod("/docs/link", 0o600) }, "operation unsupported"},
		{"chmod the top", alice, func(c *sftp.Client) error { return c.Chmod("/", 0o777) }, "permission denied"},
		{"truncate a directory", alice, func(c *sftp.Client) error { return c.Truncate("/docs/dir", 0) }, "failure"},
		{"bob reads", bob, func(c *sftp.Client) error { return open(c, "/docs/file", os.O_RDONLY) }, "ok"},
		{"bob creates", bob, func(c *sftp.Client) error { return open(c, "/docs/new", os.O_WRONLY|os.O_CREATE) }, "permission denied"},
		{"bob opens for writing", bob, func(c *sftp.Client) error { return open(c, "/docs/file", os.O_RDWR) }, "permission denied"},
		{"bob removes", bob, func(c *sftp.Client) error { return c.Remove("/docs/file") }, "permission denied"},
		{"bob chmods", bob, func(c *sftp.Client) error { return c.Chmod("/docs/file", 0o600) }, "permission denied"},
		{"bob sets times", bob, func(c *sftp.Client) error { return c.Chtimes("/docs/file", time.Now(), time.Now()) }, "permission denied"},
		{"bob truncates", bob, func(c *sftp.Client) error { return c.Truncate("/docs/file", 0) }, "permission denied"},
		{"bob renames", bob, func(c *sftp.Client) error { return c.PosixRename("/docs/file", "/docs/f2") }, "permission denied"},
		{"bob links", bob, func(c *sftp.Client) error { return c.Link("/docs/file", "/docs/f2") }, "permission denied"},
		{"bob symlinks", bob, func(c *sftp.Client) error { return c.Symlink("file", "/docs/f2") }, "permission denied"},
		{"bob mkdirs", bob, func(c *sftp.Client) error { return c.Mkdir("/docs/d2") }, "permission denied"},
		{"bob rmdirs", bob, func(c *sftp.Client) error { return c.RemoveDirectory("/docs/dir/sub") }, "permission denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := code(tc.op(tc.c)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	// The status message says what happened (and nothing of the host).
	_, err := alice.OpenFile("/docs/link", os.O_RDONLY)
	var se *sftp.StatusError
	if !errors.As(err, &se) || !bytes.Contains([]byte(se.Error()), []byte("symbolic links are not followed")) {
		t.Errorf("opening a symlink: %v", err)
	}
}

// TestAttributes: chmod, chown, times, truncate, append, posix-rename
// and hard links change the share as asked.
func TestAttributes(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	populate(t, f)
	c := f.client(f.alice)
	mt := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	steps := []struct {
		name string
		op   func() error
	}{
		{"chmod", func() error { return c.Chmod("/docs/file", 0o640|fs.ModeSetgid) }},
		{"chown", func() error { return c.Chown("/docs/file", 1000, 1001) }},
		{"chtimes", func() error { return c.Chtimes("/docs/file", mt, mt) }},
		{"chtimes on a symlink sets the link's", func() error { return c.Chtimes("/docs/link", mt, mt) }},
		{"truncate", func() error { return c.Truncate("/docs/file", 3) }},
		{"append", func() error {
			fh, err := c.OpenFile("/docs/file", os.O_WRONLY|os.O_APPEND)
			if err != nil {
				return err
			}
			if _, err := fh.Write([]byte("p!")); err != nil {
				return err
			}
			return fh.Close()
		}},
		{"hard link", func() error { return c.Link("/docs/file", "/docs/dir/file2") }},
		{"posix-rename replaces", func() error { return c.PosixRename("/big/other", "/big/renamed") }},
		{"rename a directory", func() error { return c.PosixRename("/docs/dir/sub", "/docs/sub2") }},
		{"remove", func() error { return c.Remove("/docs/abs") }},
	}
	for _, s := range steps {
		if err := s.op(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	docs := f.share("docs")
	in, err := docs.Resolve("file")
	if err != nil {
		t.Fatal(err)
	}
	if in.Mode != 0o2640 || in.UID != 1000 || in.GID != 1001 || in.Nlink != 2 {
		t.Errorf("file: mode %o uid %d gid %d nlink %d", in.Mode, in.UID, in.GID, in.Nlink)
	}
	if b, err := f.shareFile("docs", "dir/file2"); err != nil || string(b) != "help!" {
		t.Errorf("after truncate and append: %q, %v", b, err)
	}
	if l, err := docs.Resolve("link"); err != nil || l.MTime != mt.UnixNano() {
		t.Errorf("symlink's own mtime: %+v, %v", l, err)
	}
	fi, err := c.Stat("/docs/file")
	if err != nil || fi.ModTime().Unix() <= mt.Unix() || fi.Size() != 5 {
		// Writing after chtimes moved the time on.
		t.Errorf("stat: %v, %v", fi, err)
	}
	for _, p := range []string{"/docs/sub2", "/big/renamed"} {
		if _, err := c.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := c.Lstat("/docs/abs"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removed symlink: %v", err)
	}
	// statvfs reports the store's capacity; ST_RDONLY where nothing can
	// be written.
	total, free, err := f.store.StatFS()
	if err != nil {
		t.Fatal(err)
	}
	for p, rdonly := range map[string]bool{"/docs": false, "/": true} {
		st, err := c.StatVFS(p)
		if err != nil {
			t.Fatalf("statvfs %s: %v", p, err)
		}
		if st.TotalSpace() != total/4096*4096 || st.FreeSpace() > free+64<<20 || st.FreeSpace()+64<<20 < free || (st.Flag&1 != 0) != rdonly {
			t.Errorf("statvfs %s: total %d free %d flag %d; store total %d free %d", p, st.TotalSpace(), st.FreeSpace(), st.Flag, total, free)
		}
	}
	if st, err := f.client(f.bob).StatVFS("/docs"); err != nil || st.Flag&1 == 0 {
		t.Errorf("statvfs of a read-only grant: %+v, %v", st, err)
	}
}

// TestConcurrentTransfers writes and reads several files at once through
// several sessions, each with many requests in flight (pkg/sftp's
// concurrent reads and writes), under the race detector.
func TestConcurrentTransfers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOptions{})
	const files, size = 4, 2 << 20
	var wg sync.WaitGroup
	errs := make(chan error, files)
	for i := 0; i < files; i++ {
		c := f.client(f.alice)
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := make([]byte, size)
			rand.NewChaCha8([32]byte{byte(i)}).Read(data)
			p := fmt.Sprintf("/docs/c%d", i)
			fh, err := c.Create(p)
			if err == nil {
				_, err = fh.ReadFrom(bytes.NewReader(data))
				if cerr := fh.Close(); err == nil {
					err = cerr
				}
			}
			if err == nil {
				fh, err = c.Open(p)
			}
			if err == nil {
				var back bytes.Buffer
				_, err = fh.WriteTo(&back)
				fh.Close()
				if err == nil && !bytes.Equal(back.Bytes(), data) {
					err = fmt.Errorf("%s: read back differs", p)
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := f.share("docs").CommitAll(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < files; i++ {
		b, err := f.shareFile("docs", fmt.Sprintf("c%d", i))
		if err != nil || len(b) != size {
			t.Errorf("c%d after commit: %d bytes, %v", i, len(b), err)
		}
	}
}
