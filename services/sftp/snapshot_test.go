package sftp

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// snapshot takes a snapshot of share at at and returns the names of the
// share's snapshot folders.
func (f *fixture) snapshot(share string, at time.Time) []string {
	f.t.Helper()
	sh := f.share(share)
	if _, err := sh.Snapshot(context.Background(), at, nil); err != nil {
		f.t.Fatal(err)
	}
	dirs, err := sh.Snapshots()
	if err != nil {
		f.t.Fatal(err)
	}
	var names []string
	for _, d := range dirs {
		names = append(names, d.Name)
	}
	return names
}

// TestSnapshotFolder browses /SHARE/.snapshots with OpenSSH's sftp: two
// snapshots of a file that changed in between give back both versions
// byte for byte, every change there is refused, and nothing leaves it.
func TestSnapshotFolder(t *testing.T) {
	needBins(t, "sftp", "sshpass")
	f := newFixture(t, fixtureOptions{})
	local := t.TempDir()
	L := func(name string) string { return filepath.Join(local, name) }
	oldSum := writeRandom(t, L("v1"), 3<<20+12345) // several chunks
	newText := "the second version\n"
	os.WriteFile(L("v2"), []byte(newText), 0o644)
	os.WriteFile(L("evil"), []byte("evil\n"), 0o644)

	f.mustSftp(f.alice, strings.Join([]string{
		"mkdir /docs/d",
		"put " + L("v1") + " /docs/d/file",
		"chmod 640 /docs/d/file",
		"ln -s file /docs/d/link",
		"ln -s /etc /docs/etc",
	}, "\n"))
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.Local)
	f.snapshot("docs", at)
	f.mustSftp(f.alice, "put "+L("v2")+" /docs/d/file")
	snaps := f.snapshot("docs", at.Add(time.Hour))
	if want := []string{"2026-03-01T100000", "2026-03-01T110000"}; !slices.Equal(snaps, want) {
		t.Fatalf("snapshot folders %q, want %q", snaps, want)
	}
	first, second := "/docs/.snapshots/"+snaps[0], "/docs/.snapshots/"+snaps[1]

	// Listings: the folder in the share's root, the snapshots in it, the
	// entries of a snapshot with their modes and sizes.
	start := time.Now()
	out := f.mustSftp(f.alice, "ls -la /docs\nls -1 /docs/.snapshots\nls -l "+first+"/d")
	if !strings.Contains(out, "dr-xr-xr-x") || !strings.Contains(out, ".snapshots") {
		t.Errorf("the share's root does not list .snapshots as a read-only directory:\n%s", out)
	}
	for _, n := range snaps {
		if !strings.Contains(out, n) {
			t.Errorf("/docs/.snapshots does not list %s:\n%s", n, out)
		}
	}
	if !regexp.MustCompile(`-rw-r-----\s.*\s`+strconv.Itoa(3<<20+12345)+`\s.*file`).MatchString(out) || !regexp.MustCompile(`lrwxrwxrwx\s.*link`).MatchString(out) {
		t.Errorf("ls -l of a snapshot's directory:\n%s", out)
	}

	// Downloads: the old content from the first snapshot, the new one
	// from the second, for a read-write and a read-only user.
	f.mustSftp(f.alice, "get "+first+"/d/file "+L("got1")+"\nget "+second+"/d/file "+L("got2"))
	f.mustSftp(f.bob, "cd "+first+"/d\nget file "+L("bob1"))
	for _, p := range []string{"got1", "bob1"} {
		if got, err := fileSum(L(p)); err != nil || got != oldSum {
			t.Errorf("%s: the first snapshot's file differs (%v)", p, err)
		}
	}
	if b, err := os.ReadFile(L("got2")); err != nil || string(b) != newText {
		t.Errorf("the second snapshot's file: %q, %v", b, err)
	}
	t.Logf("listings and downloads from snapshots: %v", time.Since(start).Round(time.Millisecond))

	// Every change is refused, even for a read-write user, and changes
	// nothing.
	before := dumpShare(t, f.share("docs"), "/")
	changes := []string{
		"put " + L("evil") + " /docs/.snapshots/new",
		"put " + L("evil") + " " + first + "/d/file",
		"put " + L("evil") + " " + first + "/new",
		"put " + L("evil") + " /docs/.snapshots/2020-01-01T000000/new",
		"rm " + first + "/d/file",
		"rm " + first + "/d/link",
		"mkdir /docs/.snapshots/x",
		"mkdir " + first + "/x",
		"mkdir " + first + "/missing/x",
		"rmdir " + first + "/d",
		"rmdir /docs/.snapshots",
		"rmdir " + first,
		"rename " + first + "/d/file /docs/moved",
		"rename /docs/d/file " + first + "/d/moved",
		"rename /docs/d/file /docs/.snapshots",
		"chmod 777 " + first + "/d/file",
		"chmod 777 /docs/.snapshots",
		"ln -s x " + first + "/d/newlink",
		"ln " + first + "/d/file /docs/hard",
	}
	for _, cmd := range changes {
		if out, code := f.sftp(f.alice, cmd); code != 1 || !strings.Contains(strings.ToLower(out), "permission denied") {
			t.Errorf("%s: exit %d, want 1 and permission denied:\n%s", cmd, code, out)
		}
	}
	if d := diffTrees(dumpShare(t, f.share("docs"), "/"), before, true); d != "" {
		t.Errorf("changes under .snapshots changed the share:\n%s", d)
	}
	if dirs, err := f.share("docs").Snapshots(); err != nil || len(dirs) != 2 {
		t.Errorf("snapshots after the refused changes: %v, %v", dirs, err)
	}
	f.mustSftp(f.alice, "get "+first+"/d/file "+L("again"))
	if got, err := fileSum(L("again")); err != nil || got != oldSum {
		t.Errorf("the first snapshot's file changed (%v)", err)
	}

	// Nothing leaves the snapshot: ".." is lexical, symlinks are never
	// followed.
	if out := f.mustSftp(f.alice, "cd "+first+"/../../..\npwd\nls -1"); !strings.Contains(out, "Remote working directory: /\n") || strings.Contains(out, "passwd") {
		t.Errorf("cd up from a snapshot:\n%s", out)
	}
	if out := f.mustSftp(f.alice, "cd "+first+"/../..\npwd"); !strings.Contains(out, "Remote working directory: /docs\n") {
		t.Errorf("cd up from a snapshot to the share:\n%s", out)
	}
	for _, cmd := range []string{
		"get " + first + "/etc/passwd " + L("p1"),
		"get " + first + "/../../../etc/passwd " + L("p2"),
		"get " + first + "/etc " + L("p3"),
		"get " + first + "/d/link " + L("p4"),
		"cd " + first + "/etc",
		"ls " + first + "/etc/passwd",
	} {
		if out, code := f.sftp(f.alice, cmd); code != 1 {
			t.Errorf("%s: exit %d, want 1:\n%s", cmd, code, out)
		}
	}
	for _, p := range []string{"p1", "p2", "p3", "p4"} {
		if _, err := os.Lstat(L(p)); err == nil {
			t.Errorf("%s was downloaded", p)
		}
	}

	// A user without a grant sees no snapshot of the share.
	f.mustSftp(f.alice, "put "+L("v2")+" /big/other")
	bigSnaps := f.snapshot("big", at)
	for _, cmd := range []string{
		"ls /big/.snapshots",
		"ls /big/.snapshots/" + bigSnaps[0],
		"get /big/.snapshots/" + bigSnaps[0] + "/other " + L("b1"),
		"get /docs/../big/.snapshots/" + bigSnaps[0] + "/other " + L("b2"),
	} {
		if out, code := f.sftp(f.bob, cmd); code != 1 {
			t.Errorf("bob: %s: exit %d, want 1:\n%s", cmd, code, out)
		}
	}
	if _, err := os.Lstat(L("b1")); err == nil {
		t.Errorf("bob downloaded a snapshot of a share he has no grant on")
	}
}

// TestSnapshotStatusCodes checks the status of every kind of request in
// the snapshot folder with the Go client.
func TestSnapshotStatusCodes(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	populate(t, f)
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.Local)
	snap := "/docs/.snapshots/" + f.snapshot("docs", at)[0]
	big := "/big/.snapshots/" + f.snapshot("big", at)[0]
	alice, bob := f.client(f.alice), f.client(f.bob)

	// Attributes come from the snapshot's tree.
	fi, err := alice.Lstat(snap + "/file")
	if err != nil || fi.Size() != 5 || fi.Mode() != 0o644 || fi.ModTime().IsZero() {
		t.Errorf("lstat of a file in a snapshot: %v, %v", fi, err)
	}
	live, _ := alice.Lstat("/docs/file")
	if err == nil && live != nil && !fi.ModTime().Equal(live.ModTime()) {
		t.Errorf("mtime in the snapshot %v, live %v", fi.ModTime(), live.ModTime())
	}
	if fi, err := alice.Stat(snap + "/link"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("stat of a symlink in a snapshot: %v, %v", fi, err)
	}
	for _, p := range []string{"/docs/.snapshots", snap, snap + "/dir"} {
		if fi, err := alice.Stat(p); err != nil || !fi.IsDir() {
			t.Errorf("stat %s: %v, %v", p, fi, err)
		}
	}
	if fi, err := alice.Stat("/docs/.snapshots"); err != nil || fi.Mode().Perm() != 0o555 || !fi.ModTime().Equal(at) {
		t.Errorf("stat /docs/.snapshots: %v %v, %v", fi.Mode(), fi.ModTime(), err)
	}
	for p, target := range map[string]string{snap + "/link": "file", snap + "/abs": "/etc"} {
		if got, err := alice.ReadLink(p); err != nil || got != target {
			t.Errorf("readlink %s = %q, %v; want %q", p, got, err, target)
		}
	}
	names := func(p string) []string {
		ents, err := alice.ReadDir(p)
		if err != nil {
			t.Errorf("readdir %s: %v", p, err)
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		slices.Sort(out)
		return out
	}
	if got := names(snap); !slices.Equal(got, []string{"abs", "dir", "file", "link"}) {
		t.Errorf("snapshot root lists %q", got)
	}
	if got := names("/docs"); !slices.Contains(got, ".snapshots") {
		t.Errorf("share root lists %q", got)
	}
	if got := names(snap + "/dir"); !slices.Equal(got, []string{"sub"}) {
		t.Errorf("snapshot dir lists %q", got)
	}
	fh, err := bob.Open(snap + "/file")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(fh)
	fh.Close()
	if err != nil || string(b) != "hello" {
		t.Errorf("read from a snapshot: %q, %v", b, err)
	}
	if st, err := alice.StatVFS(snap); err != nil || st.Flag&1 == 0 {
		t.Errorf("statvfs in a snapshot: %+v, %v", st, err)
	}

	open := func(c *sftp.Client, p string, flags int) error {
		fh, err := c.OpenFile(p, flags)
		if err == nil {
			fh.Close()
		}
		return err
	}
	stat := func(c *sftp.Client, p string) error { _, err := c.Stat(p); return err }
	list := func(c *sftp.Client, p string) error { _, err := c.ReadDir(p); return err }
	tests := []struct {
		name string
		c    *sftp.Client
		op   func(*sftp.Client) error
		want string
	}{
		{"stat a missing snapshot", alice, func(c *sftp.Client) error { return stat(c, "/docs/.snapshots/2020-01-01T000000") }, "no such file"},
		{"stat a missing entry", alice, func(c *sftp.Client) error { return stat(c, snap+"/missing") }, "no such file"},
		{"stat below a missing snapshot", alice, func(c *sftp.Client) error { return stat(c, "/docs/.snapshots/x/file") }, "no such file"},
		{"stat below a file", alice, func(c *sftp.Client) error { return stat(c, snap+"/file/x") }, "failure"},
		{"stat through a symlink", alice, func(c *sftp.Client) error { return stat(c, snap+"/abs/passwd") }, "failure"},
		{"stat through a deeper symlink", alice, func(c *sftp.Client) error { return stat(c, snap+"/abs/x/y") }, "failure"},
		{"list a symlink", alice, func(c *sftp.Client) error { return list(c, snap+"/abs") }, "failure"},
		{"list a file", alice, func(c *sftp.Client) error { return list(c, snap+"/file") }, "failure"},
		{"open a symlink", alice, func(c *sftp.Client) error { return open(c, snap+"/link", os.O_RDONLY) }, "failure"},
		{"open a directory", alice, func(c *sftp.Client) error { return open(c, snap+"/dir", os.O_RDONLY) }, "failure"},
		{"open a snapshot", alice, func(c *sftp.Client) error { return open(c, snap, os.O_RDONLY) }, "failure"},
		{"open the folder", alice, func(c *sftp.Client) error { return open(c, "/docs/.snapshots", os.O_RDONLY) }, "failure"},
		{"open for writing", alice, func(c *sftp.Client) error { return open(c, snap+"/file", os.O_WRONLY) }, "permission denied"},
		{"open read-write", alice, func(c *sftp.Client) error { return open(c, snap+"/file", os.O_RDWR) }, "permission denied"},
		{"create", alice, func(c *sftp.Client) error { return open(c, snap+"/new", os.O_WRONLY|os.O_CREATE) }, "permission denied"},
		{"create in a missing snapshot", alice, func(c *sftp.Client) error {
			return open(c, "/docs/.snapshots/x/new", os.O_WRONLY|os.O_CREATE)
		}, "permission denied"},
		{"truncate", alice, func(c *sftp.Client) error { return c.Truncate(snap+"/file", 0) }, "permission denied"},
		{"chmod", alice, func(c *sftp.Client) error { return c.Chmod(snap+"/file", 0o600) }, "permission denied"},
		{"chown", alice, func(c *sftp.Client) error { return c.Chown(snap+"/file", 1, 1) }, "permission denied"},
		{"set times", alice, func(c *sftp.Client) error { return c.Chtimes(snap+"/file", time.Now(), time.Now()) }, "permission denied"},
		{"remove", alice, func(c *sftp.Client) error { return c.Remove(snap + "/file") }, "permission denied"},
		{"remove a missing entry", alice, func(c *sftp.Client) error { return c.Remove(snap + "/missing") }, "permission denied"},
		{"rmdir", alice, func(c *sftp.Client) error { return c.RemoveDirectory(snap + "/dir/sub") }, "permission denied"},
		{"rmdir a snapshot", alice, func(c *sftp.Client) error { return c.RemoveDirectory(snap) }, "permission denied"},
		{"rmdir the folder", alice, func(c *sftp.Client) error { return c.RemoveDirectory("/docs/.snapshots") }, "permission denied"},
		{"mkdir", alice, func(c *sftp.Client) error { return c.Mkdir(snap + "/new") }, "permission denied"},
		{"mkdir a snapshot", alice, func(c *sftp.Client) error { return c.Mkdir("/docs/.snapshots/new") }, "permission denied"},
		{"rename out", alice, func(c *sftp.Client) error { return c.Rename(snap+"/file", "/docs/moved") }, "permission denied"},
		{"rename in", alice, func(c *sftp.Client) error { return c.PosixRename("/docs/file", snap+"/file2") }, "permission denied"},
		{"rename within", alice, func(c *sftp.Client) error { return c.PosixRename(snap+"/file", snap+"/file2") }, "permission denied"},
		{"rename the folder", alice, func(c *sftp.Client) error { return c.PosixRename("/docs/.snapshots", "/docs/s") }, "permission denied"},
		{"symlink", alice, func(c *sftp.Client) error { return c.Symlink("file", snap+"/l2") }, "permission denied"},
		{"hard link out", alice, func(c *sftp.Client) error { return c.Link(snap+"/file", "/docs/hard") }, "permission denied"},
		{"hard link in", alice, func(c *sftp.Client) error { return c.Link("/docs/file", snap+"/hard") }, "permission denied"},
		{"bob reads", bob, func(c *sftp.Client) error { return open(c, snap+"/file", os.O_RDONLY) }, "ok"},
		{"bob removes", bob, func(c *sftp.Client) error { return c.Remove(snap + "/file") }, "permission denied"},
		{"bob stats an ungranted share's snapshots", bob, func(c *sftp.Client) error { return stat(c, "/big/.snapshots") }, "no such file"},
		{"bob lists an ungranted share's snapshot", bob, func(c *sftp.Client) error { return list(c, big) }, "no such file"},
		{"bob opens a file of it", bob, func(c *sftp.Client) error { return open(c, big+"/other", os.O_RDONLY) }, "no such file"},
		{"bob writes into it", bob, func(c *sftp.Client) error { return open(c, big+"/new", os.O_WRONLY|os.O_CREATE) }, "no such file"},
		{"bob removes from it", bob, func(c *sftp.Client) error { return c.Remove(big + "/other") }, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := code(tc.op(tc.c)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
