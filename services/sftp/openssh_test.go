package sftp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/users"
	"github.com/arkbox/arkbox/storage/restorer"
	"github.com/arkbox/arkbox/storage/sharefs"
)

// These tests drive the real OpenSSH clients (sftp, scp -s, ssh, sshfs)
// against the server on 127.0.0.1.

func TestLogin(t *testing.T) {
	needBins(t, "sftp", "sshpass")
	f := newFixture(t, fixtureOptions{})
	tests := []struct {
		name  string
		lg    login
		code  int
		lists []string // shares the listing of / must show
		hides []string // and must not show
	}{
		{"alice password", f.alice, 0, []string{"docs", "big"}, []string{"secret"}},
		{"alice key", f.aliceK, 0, []string{"docs", "big"}, []string{"secret"}},
		{"bob password sees his share only", f.bob, 0, []string{"docs"}, []string{"big", "secret"}},
		{"wrong password", login{user: "alice", password: "wrong-password"}, 5, nil, nil},
		{"unknown user", login{user: "mallory", password: alicePW}, 5, nil, nil},
		{"password of another user", login{user: "bob", password: alicePW}, 5, nil, nil},
		{"key of another user", login{user: "bob", key: f.keyFile}, 255, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := f.sftp(tc.lg, "ls -1 /")
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			for _, s := range tc.lists {
				if !strings.Contains(out, s) {
					t.Errorf("/ does not list %s:\n%s", s, out)
				}
			}
			for _, s := range tc.hides {
				if strings.Contains(out, s) {
					t.Errorf("/ lists %s:\n%s", s, out)
				}
			}
		})
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `msg="sftp: login failed" user=alice addr=127.0.0.1:`) {
		t.Errorf("failed login of alice not logged:\n%s", logs)
	}
	if !strings.Contains(logs, `msg="sftp: logged in" user=alice`) {
		t.Errorf("login not logged")
	}
}

func TestRateLimit(t *testing.T) {
	needBins(t, "sftp", "sshpass")
	f := newFixture(t, fixtureOptions{limiter: &users.LimiterOptions{MaxFailures: 3, Backoff: time.Hour}})
	wrong := login{user: "alice", password: "wrong-password"}
	for i := 0; i < 3; i++ {
		if out, code := f.sftp(wrong, "ls /"); code != 5 {
			t.Fatalf("wrong password %d: exit %d, want 5:\n%s", i+1, code, out)
		}
	}
	// Locked out: the right password and the right key are refused too,
	// and the client is told why.
	out, code := f.sftp(f.alice, "ls /")
	if code != 5 {
		t.Fatalf("right password while locked out: exit %d, want 5:\n%s", code, out)
	}
	f.logLevel = "INFO" // OpenSSH prints banners from this level on
	out, code = f.sftp(f.aliceK, "ls /")
	if code != 255 {
		t.Fatalf("right key while locked out: exit %d, want 255:\n%s", code, out)
	}
	if !strings.Contains(out, "Too many failed logins from your address") {
		t.Errorf("client not told about the lockout:\n%s", out)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "sftp: login refused, address locked out") {
		t.Errorf("lockout not logged:\n%s", logs)
	}
}

func TestShellAndExecRefused(t *testing.T) {
	needBins(t, "ssh")
	f := newFixture(t, fixtureOptions{})
	for _, args := range [][]string{{"id"}, {"-T"}, {"scp", "-t", "/docs"}} {
		a := append([]string{"-p", strconv.Itoa(f.port)}, f.sshOpts(f.aliceK)...)
		a = append(a, "alice@127.0.0.1")
		a = append(a, args...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, "ssh", a...)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil || cmd.ProcessState.ExitCode() != 1 {
			t.Errorf("ssh %v: %v, want exit 1:\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "SFTP only") {
			t.Errorf("ssh %v: no explanation:\n%s", args, out)
		}
	}
}

// goSrc copies the Go toolchain's src/net (a few hundred files), or only
// the named folders of it, into a temporary folder "net".
func goSrc(t *testing.T, only ...string) (dir string, files int) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("go env GOROOT: %v", err)
	}
	from := filepath.Join(strings.TrimSpace(string(out)), "src", "net")
	dir = filepath.Join(t.TempDir(), "net")
	if len(only) == 0 {
		files = copyTree(t, from, dir)
	}
	for _, sub := range only {
		files += copyTree(t, filepath.Join(from, sub), filepath.Join(dir, sub))
	}
	if files < 30 {
		t.Fatalf("only %d files in the Go tree", files)
	}
	return dir, files
}

// TestTree uploads a real tree with put -r, downloads it with get -r and
// compares both ways, then snapshots the share and restores the snapshot.
func TestTree(t *testing.T) {
	t.Parallel()
	needBins(t, "sftp", "sshpass")
	f := newFixture(t, fixtureOptions{})
	src, files := goSrc(t)
	back := filepath.Join(t.TempDir(), "back")
	start := time.Now()
	f.mustSftp(f.alice, "put -r "+src+" /docs/net")
	up := time.Since(start)
	f.mustSftp(f.aliceK, "get -r /docs/net "+back)
	t.Logf("%d files: put -r %v, get -r %v", files, up, time.Since(start)-up)
	want := dumpDir(t, src)
	if d := diffTrees(dumpShare(t, f.share("docs"), "/net"), want, false); d != "" {
		t.Fatalf("share differs from the uploaded tree:\n%s", d)
	}
	if d := diffTrees(dumpDir(t, back), want, false); d != "" {
		t.Fatalf("downloaded tree differs:\n%s", d)
	}

	// The snapshot holds what was uploaded.
	ctx := context.Background()
	sn, err := f.share("docs").Snapshot(ctx, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restored := t.TempDir()
	if _, err := restorer.Run(ctx, f.repo, sn, restorer.Options{Target: restored}); err != nil {
		t.Fatal(err)
	}
	if d := diffTrees(dumpDir(t, filepath.Join(restored, "net")), want, false); d != "" {
		t.Fatalf("restored snapshot differs from the uploaded tree:\n%s", d)
	}
}

// TestBigFile uploads and downloads one large file: 200 MiB, or 1 GiB
// with ARKBOX_SFTP_BIG set (not in -short mode).
func TestBigFile(t *testing.T) {
	t.Parallel()
	needBins(t, "sftp")
	size := int64(200 << 20)
	if !testing.Short() && os.Getenv("ARKBOX_SFTP_BIG") != "" {
		size = 1 << 30
	}
	f := newFixture(t, fixtureOptions{})
	dir := t.TempDir()
	src := filepath.Join(dir, "big.bin")
	want := writeRandom(t, src, size)
	start := time.Now()
	f.mustSftp(f.aliceK, "put "+src+" /big/big.bin")
	up := time.Since(start)
	f.mustSftp(f.aliceK, "get /big/big.bin "+filepath.Join(dir, "back.bin"))
	down := time.Since(start) - up
	t.Logf("%d MiB: put %v (%.0f MiB/s), get %v (%.0f MiB/s)", size>>20,
		up.Round(time.Millisecond), float64(size>>20)/up.Seconds(), down.Round(time.Millisecond), float64(size>>20)/down.Seconds())
	if got, err := fileSum(filepath.Join(dir, "back.bin")); err != nil || got != want {
		t.Fatalf("downloaded file: sum %s, %v; want %s", got, err, want)
	}
	sh := f.share("big")
	in, err := sh.Resolve("big.bin")
	if err != nil || int64(in.Size) != size {
		t.Fatalf("share has %+v, %v; want %d bytes", in, err, size)
	}
	// Spare the cleanup chunking it into the repository.
	if err := sh.Remove(sharefs.RootIno, "big.bin"); err != nil {
		t.Fatal(err)
	}
}

// writeRandom writes size pseudo-random bytes to p and returns their
// SHA-256.
func writeRandom(t *testing.T, p string, size int64) string {
	t.Helper()
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	r := rand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(io.MultiWriter(fh, h), r, size); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestOperations runs the everyday commands of OpenSSH's sftp and checks
// the share afterwards.
func TestOperations(t *testing.T) {
	needBins(t, "sftp", "sshpass")
	f := newFixture(t, fixtureOptions{})
	local := t.TempDir()
	long := strings.Repeat("a long line of the first file\n", 5000)
	short := "short\n"
	os.WriteFile(filepath.Join(local, "long.txt"), []byte(long), 0o644)
	os.WriteFile(filepath.Join(local, "short.txt"), []byte(short), 0o644)
	os.WriteFile(filepath.Join(local, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	L := func(name string) string { return filepath.Join(local, name) }
	out := f.mustSftp(f.alice, strings.Join([]string{
		"mkdir /docs/ops",
		"cd /docs/ops",
		"mkdir sub",
		"mkdir gone",
		"rmdir gone",
		"put " + L("long.txt") + " long.txt",
		"put " + L("short.txt") + " short.txt",
		"put " + L("run.sh") + " run.sh",
		"rename long.txt moved.txt",
		"put " + L("short.txt") + " moved.txt", // overwrite a longer file
		"chmod 600 moved.txt",
		"put " + L("long.txt") + " sub/del.txt",
		"rm sub/del.txt",
		"ln -s ../moved.txt sub/link",
		"ln -s /etc/passwd abs",
		"ln short.txt hard.txt",
		"put " + L("long.txt") + " x.txt",
		"rename x.txt short.txt", // replaces (posix-rename@openssh.com)
		"ls -l",
		"get moved.txt " + L("moved.back"),
		"df -h /docs",
	}, "\n"))
	if !strings.Contains(out, "moved.txt") || !strings.Contains(out, "Avail") {
		t.Errorf("listing or df missing:\n%s", out)
	}
	sh := f.share("docs")
	got := dumpShare(t, sh, "/ops")
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	want := map[string]entry{
		"sub":       {kind: "dir", perm: 0o755},
		"moved.txt": {kind: "file", perm: 0o600, sum: sum(short)},
		"short.txt": {kind: "file", perm: 0o644, sum: sum(long)},
		"hard.txt":  {kind: "file", perm: 0o644, sum: sum(short)},
		"run.sh":    {kind: "file", perm: 0o755, sum: sum("#!/bin/sh\n")},
		"sub/link":  {kind: "symlink", target: "../moved.txt"},
		"abs":       {kind: "symlink", target: "/etc/passwd"},
	}
	if d := diffTrees(got, want, false); d != "" {
		t.Errorf("share after the commands:\n%s", d)
	}
	if b, err := os.ReadFile(L("moved.back")); err != nil || string(b) != short {
		t.Errorf("downloaded moved.txt: %q, %v", b, err)
	}
	// readlink gives the targets back verbatim.
	c := f.client(f.alice)
	for p, target := range map[string]string{"/docs/ops/sub/link": "../moved.txt", "/docs/ops/abs": "/etc/passwd"} {
		if got, err := c.ReadLink(p); err != nil || got != target {
			t.Errorf("readlink %s = %q, %v; want %q", p, got, err, target)
		}
	}
}

// TestEscape tries to leave the shares with "..", absolute paths and
// symlinks: every attempt fails, and no host file is read or written.
func TestEscape(t *testing.T) {
	needBins(t, "sftp", "sshpass")
	f := newFixture(t, fixtureOptions{})
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "evil"), []byte("evil\n"), 0o644)
	f.mustSftp(f.alice, "ln -s /etc /docs/etc\nln -s ../../../../../../etc /docs/up\nmkdir /docs/d\nln -s .. /docs/d/parent")
	L := func(name string) string { return filepath.Join(local, name) }
	tests := []struct{ name, batch string }{
		{"dotdot from the top", "get ../../etc/passwd " + L("p1")},
		{"cd up then get", "cd ../../..\nget etc/passwd " + L("p2")},
		{"dotdot inside a share", "get /docs/../../../etc/passwd " + L("p3")},
		{"dotdot into an ungranted share", "get /docs/../secret/x " + L("p4")},
		{"absolute symlink", "get /docs/etc/passwd " + L("p5")},
		{"relative symlink", "get /docs/up/passwd " + L("p6")},
		{"symlink to the parent", "get /docs/d/parent/d " + L("p7")},
		{"open a symlink", "get /docs/etc " + L("p8")},
		{"cd into a symlink", "cd /docs/etc"},
		{"recursive get of a symlink", "get -r /docs/etc " + L("p9")},
		{"write through a symlink", "put " + L("evil") + " /docs/etc/arkbox-evil"},
		{"write through a relative symlink", "put " + L("evil") + " /docs/up/arkbox-evil"},
		{"host path", "get /etc/passwd " + L("p10")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if out, code := f.sftp(f.alice, tc.batch); code != 1 {
				t.Errorf("exit %d, want 1:\n%s", code, out)
			}
		})
	}
	// Listing a symlink shows the link itself (pkg/sftp drops the
	// trailing slash that would ask for its target), never the target.
	for _, p := range []string{"/docs/etc/", "/docs/up/", "/docs/etc/."} {
		if out, _ := f.sftp(f.alice, "ls -l "+p); strings.Contains(out, "passwd") || strings.Contains(out, "hostname") {
			t.Errorf("ls %s shows host files:\n%s", p, out)
		}
	}
	// cd .. stops at the top, which lists the shares.
	if out := f.mustSftp(f.alice, "cd /docs/../../..\npwd\nls -1"); !strings.Contains(out, "Remote working directory: /\n") || strings.Contains(out, "passwd") {
		t.Errorf("cd above the top:\n%s", out)
	}
	ents, _ := os.ReadDir(local)
	if len(ents) != 1 {
		t.Errorf("files were downloaded: %v", ents)
	}
	if _, err := os.Lstat("/etc/arkbox-evil"); err == nil {
		t.Errorf("a file was written on the host")
	}
}

// TestReadOnlyGrant: bob may read docs but every change is refused.
func TestReadOnlyGrant(t *testing.T) {
	needBins(t, "sftp", "sshpass")
	f := newFixture(t, fixtureOptions{})
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "f"), []byte("data\n"), 0o644)
	f.mustSftp(f.alice, "mkdir /docs/dir\nput "+filepath.Join(local, "f")+" /docs/file")
	before := dumpShare(t, f.share("docs"), "/")
	tests := []struct{ name, batch string }{
		{"put new", "put " + filepath.Join(local, "f") + " /docs/new"},
		{"put over", "put " + filepath.Join(local, "f") + " /docs/file"},
		{"rm", "rm /docs/file"},
		{"mkdir", "mkdir /docs/newdir"},
		{"rmdir", "rmdir /docs/dir"},
		{"rename", "rename /docs/file /docs/file2"},
		{"chmod", "chmod 777 /docs/file"},
		{"symlink", "ln -s file /docs/link"},
		{"hard link", "ln /docs/file /docs/link"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := f.sftp(f.bob, tc.batch)
			if code != 1 || !strings.Contains(strings.ToLower(out), "permission denied") {
				t.Errorf("exit %d, want 1 and permission denied:\n%s", code, out)
			}
		})
	}
	f.mustSftp(f.bob, "get /docs/file "+filepath.Join(local, "back"))
	if d := diffTrees(dumpShare(t, f.share("docs"), "/"), before, true); d != "" {
		t.Errorf("a read-only user changed the share:\n%s", d)
	}
	// The top level is read-only for everybody.
	for _, cmd := range []string{"mkdir /newshare", "put " + filepath.Join(local, "f") + " /f", "rmdir /docs", "rename /docs /d2"} {
		if out, code := f.sftp(f.alice, cmd); code != 1 {
			t.Errorf("%s: exit %d, want 1:\n%s", cmd, code, out)
		}
	}
}

// TestSCP copies with scp -s (scp over the SFTP protocol) both ways.
func TestSCP(t *testing.T) {
	needBins(t, "scp", "sshpass")
	f := newFixture(t, fixtureOptions{})
	local := t.TempDir()
	src := filepath.Join(local, "up.bin")
	want := writeRandom(t, src, 3<<20)
	scp := func(lg login, args ...string) {
		t.Helper()
		a := append([]string{"-s", "-P", strconv.Itoa(f.port)}, f.sshOpts(lg)...)
		if out, code := f.run(lg, "scp", append(a, args...)...); code != 0 {
			t.Fatalf("scp %v: exit %d:\n%s", args, code, out)
		}
	}
	scp(f.aliceK, src, "alice@127.0.0.1:docs/")
	scp(f.alice, "alice@127.0.0.1:/docs/up.bin", filepath.Join(local, "down.bin"))
	if got, err := fileSum(filepath.Join(local, "down.bin")); err != nil || got != want {
		t.Fatalf("scp round trip: %s, %v; want %s", got, err, want)
	}
	tree := filepath.Join(local, "tree")
	os.MkdirAll(filepath.Join(tree, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(tree, "a", "b", "c.txt"), []byte("c\n"), 0o644)
	scp(f.aliceK, "-r", tree, "alice@127.0.0.1:/docs/")
	if b, err := f.shareFile("docs", "tree/a/b/c.txt"); err != nil || string(b) != "c\n" {
		t.Fatalf("scp -r: %q, %v", b, err)
	}
	a := append([]string{"-s", "-P", strconv.Itoa(f.port)}, f.sshOpts(f.bob)...)
	if out, code := f.run(f.bob, "scp", append(a, src, "bob@127.0.0.1:/docs/bob.bin")...); code == 0 {
		t.Errorf("scp into a read-only share succeeded:\n%s", out)
	}
}
