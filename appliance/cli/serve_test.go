package cli_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// The serve tests run `arkbox serve` in a child process and the commands
// that reach it (share, user, snapshot, snapshots, jobs) in others, then
// the same commands with the server stopped: both ways they must work,
// print the same and exit with the same codes.

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// served is a running `arkbox serve` child.
type served struct {
	t        *testing.T
	cmd      *exec.Cmd
	out, err *lockedBuf
	done     chan struct{}
	sftpAddr string
}

// serve starts `arkbox serve --repo dir` on a free SFTP port and waits
// until it serves.
func serve(t *testing.T, dir string) *served {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--repo", dir, "--sftp-addr", "127.0.0.1:0")
	cmd.Env = []string{asCLI + "=1", "ARKBOX_TEST_KDF=1", "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ARKBOX_") && !strings.HasPrefix(kv, "GORACE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	s := &served{t: t, cmd: cmd, out: &lockedBuf{}, err: &lockedBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.err
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			cmd.Process.Kill()
			<-s.done
		}
	})
	deadline := time.After(childTimeout)
	for !strings.Contains(s.out.String(), "arkbox serving") {
		select {
		case <-s.done:
			t.Fatalf("serve ended:\n%s\n%s", s.out, s.err)
		case <-deadline:
			t.Fatalf("serve did not come up:\n%s\n%s", s.out, s.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	m := regexp.MustCompile(`SFTP on (\S+)`).FindStringSubmatch(s.out.String())
	if m == nil {
		t.Fatalf("no SFTP address:\n%s", s.out)
	}
	s.sftpAddr = m[1]
	return s
}

// stop ends the server as the system would (SIGTERM) and checks that it
// shut down cleanly.
func (s *served) stop() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(childTimeout):
		s.t.Fatal("serve did not stop")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Errorf("serve exited %d:\n%s", code, s.err)
	}
	if strings.Contains(s.err.String(), "WARNING: DATA RACE") {
		s.t.Errorf("data race in serve:\n%s", s.err)
	}
}

func (s *served) adminPassword() string {
	m := regexp.MustCompile(`user admin, password (\S+)`).FindStringSubmatch(s.out.String())
	if m == nil {
		s.t.Fatalf("no admin password:\n%s", s.out)
	}
	return m[1]
}

// login logs in over SFTP with a password.
func login(addr, user, pw string) (*sftp.Client, error) {
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	c, err := sftp.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func mustLogin(t *testing.T, addr, user, pw string) *sftp.Client {
	t.Helper()
	c, err := login(addr, user, pw)
	if err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func put(c *sftp.Client, p, content string) error {
	f, err := c.Create(p)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(content)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// jobRec is the documented JSON of a job record (jobs --json).
type jobRec struct {
	ID      uint64 `json:"id"`
	Kind    string `json:"kind"`
	Target  string `json:"target"`
	Trigger string `json:"trigger"`
	Result  string `json:"result"`
	Stats   struct {
		Files int64 `json:"files"`
	} `json:"stats"`
}

// idle waits until no job runs, so that the listings stay as they are.
func idle(t *testing.T, ark *arkbox) {
	t.Helper()
	deadline := time.Now().Add(childTimeout)
	for {
		var recs []jobRec
		ark.okJSON(&recs, "jobs", "--json")
		if !slices.ContainsFunc(recs, func(r jobRec) bool { return r.Result == "running" }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs still running: %+v", recs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errorCases are commands that fail the same way with and without a
// server: exit code and message.
var errorCases = []struct {
	args []string
	code int
	msg  string
}{
	{[]string{"user", "grant", "nobody", "backups", "--rw"}, 1, "arkbox user: no user nobody\n"},
	{[]string{"user", "grant", "carol", "nothing", "--ro"}, 1, "arkbox user: no share nothing\n"},
	{[]string{"user", "grant", "carol", "backups"}, 2, "arkbox user: usage: arkbox user grant NAME SHARE --rw|--ro\n"},
	{[]string{"user", "revoke", "carol", "backups"}, 1, "arkbox user: user carol has no grant to share backups\n"},
	{[]string{"user", "frob"}, 2, "arkbox user: unknown user command \"frob\"\n"},
	{[]string{"share", "add"}, 2, "arkbox share: give the share's name\n"},
	{[]string{"share", "add", "backups"}, 1, "arkbox share: share backups exists\n"},
	{[]string{"share", "remove", "nothing"}, 1, "arkbox share: no share nothing\n"},
	{[]string{"share", "add", "x", "--schedule", "evry 5m"}, 1, "schedule"},
	{[]string{"snapshot", "nothing"}, 1, "arkbox snapshot: no share nothing\n"},
	{[]string{"snapshot"}, 2, "arkbox snapshot: give the share's name\n"},
	{[]string{"snapshots", "--share", "a", "--source", "b"}, 2, "arkbox snapshots: give --source or --share, not both\n"},
}

func checkErrors(t *testing.T, ark *arkbox, mode string) {
	t.Helper()
	for _, tc := range errorCases {
		r := ark.run(tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) || (strings.HasSuffix(tc.msg, "\n") && r.stderr != tc.msg) {
			t.Errorf("%s: arkbox %s: exit %d, stderr %q; want exit %d, %q", mode, strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.msg)
		}
	}
}

// errorCasesReading are reading commands that fail the same way with and
// without a server.
func errorCasesReading(id string) []struct {
	args []string
	code int
	msg  string
} {
	return []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"ls", id + ":nothing"}, 1, "arkbox ls: snapshot path nothing: no such file or directory in the snapshot\n"},
		{[]string{"ls", "ffffffff"}, 1, "arkbox ls: repo: no snapshot with id \"ffffffff\" (list them with `arkbox snapshots`)\n"},
		{[]string{"diff", id}, 2, "arkbox diff: give two snapshots\n"},
		{[]string{"restore", id}, 2, "arkbox restore: give SNAPSHOT[:PATH] and --target DIR\n"},
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServeCommands: while `arkbox serve` runs, the CLI changes users,
// grants and shares and they apply at once; a snapshot asked for is
// listed with its job; ls, diff, restore and the other commands that
// read the repository work beside the server; the same commands then
// work with the server stopped, the listings print the same both ways
// and the restores are the same, bit for bit, as what was written.
func TestServeCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := serve(t, dir)
	adminPW := srv.adminPassword()
	ark := &arkbox{t: t, repo: dir} // the data folder's own passphrase
	pwFile := filepath.Join(t.TempDir(), "pw")
	writeFile(t, pwFile, []byte("carol's password\n"), 0o600)

	// A user added while serving logs in at once; a grant opens a share
	// to that session, a revoke closes it.
	if out := ark.ok("user", "add", "carol", "--password-file", pwFile); out != "user add: done\n" {
		t.Errorf("user add says %q", out)
	}
	carol := mustLogin(t, srv.sftpAddr, "carol", "carol's password")
	ark.ok("user", "grant", "carol", "backups", "--rw")
	if err := put(carol, "/backups/a.txt", "alpha"); err != nil {
		t.Fatalf("write after the grant: %v", err)
	}
	ark.ok("user", "revoke", "carol", "backups")
	if _, err := carol.Stat("/backups/a.txt"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat after the revoke: %v", err)
	}

	// A share added while serving is writable and snapshotted.
	if out := ark.ok("share", "add", "projects"); out != "share projects added\n" {
		t.Errorf("share add says %q", out)
	}
	ark.ok("user", "grant", "carol", "projects", "--rw")
	if err := put(carol, "/projects/plan.txt", "the plan"); err != nil {
		t.Fatalf("write to a share added while serving: %v", err)
	}
	var sn snap
	ark.okJSON(&sn, "snapshot", "projects", "--json")
	if sn.Source != "share:projects" || sn.Stats.Files != 1 || !slices.Equal(sn.Tags, []string{"manual"}) {
		t.Errorf("snapshot --json: %+v", sn)
	}
	var snaps []snap
	ark.okJSON(&snaps, "snapshots", "--json", "--share", "projects")
	if !slices.ContainsFunc(snaps, func(s snap) bool { return s.ID == sn.ID }) {
		t.Errorf("snapshots --json --share projects lacks %s: %+v", sn.ID, snaps)
	}
	var recs []jobRec
	ark.okJSON(&recs, "jobs", "--json", "--kind", "snapshot", "-n", "1")
	if len(recs) != 1 || recs[0].Target != "projects" || recs[0].Trigger != "manual" || recs[0].Result != "ok" || recs[0].Stats.Files != 1 {
		t.Errorf("jobs --json after snapshot: %+v", recs)
	}
	if out := ark.ok("snapshot", "projects"); !regexp.MustCompile(`^snapshot [0-9a-f]{8} of share projects: \d+ files, \d+ B\n$`).MatchString(out) {
		t.Errorf("snapshot says %q", out)
	}
	checkErrors(t, ark, "serving")

	// Nested folders and a file of several chunks in the share, and two
	// snapshots, for the commands that read snapshots.
	content := map[string][]byte{
		"plan.txt":          []byte("the plan"),
		"docs/a.txt":        []byte("alpha"),
		"docs/deep/b.bin":   randomBytes(t, 3<<20+17),
		"docs/deep/c.txt":   []byte("first c"),
		"media/photo.jpg":   randomBytes(t, 70000),
		"media/empty.dat":   nil,
		"media/raw/x.raw":   randomBytes(t, 1000),
		"media/raw/y/z.txt": []byte("zed"),
	}
	for p, b := range content {
		if err := carol.MkdirAll(path.Dir("/projects/" + p)); err != nil {
			t.Fatal(err)
		}
		if err := put(carol, "/projects/"+p, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	var before, after snap
	ark.okJSON(&before, "snapshot", "projects", "--json")
	content["docs/deep/c.txt"] = []byte("second c, longer")
	if err := put(carol, "/projects/docs/deep/c.txt", string(content["docs/deep/c.txt"])); err != nil {
		t.Fatal(err)
	}
	if err := carol.Remove("/projects/media/raw/x.raw"); err != nil {
		t.Fatal(err)
	}
	delete(content, "media/raw/x.raw")
	ark.okJSON(&after, "snapshot", "projects", "--json")
	if before.Stats.Files != 8 || after.Stats.Files != 7 || after.Stats.Dirs != 6 {
		t.Errorf("snapshot figures %+v then %+v; want 8 files, then 7 files in 6 folders", before.Stats, after.Stats)
	}
	// The commands that read the repository run beside the server with
	// a catalog of their own in the user's cache folder.
	cache := t.TempDir()
	reader := ark.with("XDG_CACHE_HOME=" + cache)
	restoreTo := func(mode string) string {
		target := filepath.Join(t.TempDir(), mode)
		var res struct {
			Files, Dirs, Bytes uint64
		}
		reader.okJSON(&res, "restore", after.ID, "--target", target, "--json")
		if res.Files != 7 || res.Dirs != 5 {
			t.Errorf("%s: restore --json says %+v", mode, res)
		}
		got := takeManifest(t, target)
		for p, b := range content {
			if n := got[p]; n.Sum != sha256.Sum256(b) || n.Size != int64(len(b)) {
				t.Errorf("%s: restored %s: %d bytes, want %d bytes as written", mode, p, n.Size, len(b))
			}
		}
		return target
	}
	// restored is what restoreTo wrote, but the target folder itself.
	restored := func(target string) manifest {
		m := takeManifest(t, target)
		delete(m, ".")
		return m
	}

	// The listings, then the same with the server stopped.
	idle(t, ark)
	listings := [][]string{
		{"share", "list"}, {"share", "list", "--json"}, {"user", "list"}, {"user", "list", "--json"},
		{"snapshots", "--json"}, {"snapshots"}, {"snapshots", "--json", "--share", "projects"}, {"jobs", "--json"},
		{"ls", before.ID}, {"ls", "-l", after.Short}, {"ls", "--json", after.ID + ":docs"}, {"ls", "--json", after.ID + ":docs/deep/b.bin"},
		{"diff", before.ID, after.ID}, {"diff", "--json", before.Short, after.Short},
		{"snapshots", "--json", "--repo", filepath.Join(dir, "repo"), "--password-file", filepath.Join(dir, "secrets", "passphrase")}, {"key", "list", "--json"}, {"stats", "--json"}, {"check", "--read-data"},
	}
	serving := map[string]string{}
	for _, args := range listings {
		serving[strings.Join(args, " ")] = reader.ok(args...)
	}
	if got := serving["diff "+before.ID+" "+after.ID]; got != "M /docs/deep/c.txt\n- /media/raw/x.raw\n" {
		t.Errorf("diff while serving prints %q", got)
	}
	if m, _ := filepath.Glob(filepath.Join(cache, "arkbox", "local", "*", "catalog.db")); len(m) != 1 {
		t.Errorf("catalog of the commands that read beside the server: %v", m)
	}
	for _, tc := range errorCasesReading(before.ID) {
		r := reader.run(tc.args...)
		if r.code != tc.code || r.stderr != tc.msg {
			t.Errorf("serving: arkbox %s: exit %d, stderr %q; want exit %d, %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.msg)
		}
	}
	reader.ok("pool", "status")
	restoredServing := restoreTo("serving")
	srv.stop()
	if _, err := os.Lstat(filepath.Join(dir, "run", "arkbox.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left after serve stopped: %v", err)
	}
	for _, args := range listings {
		k := strings.Join(args, " ")
		if got := reader.ok(args...); got != serving[k] {
			t.Errorf("arkbox %s prints differently without the server:\nserving:\n%s\nstopped:\n%s", k, serving[k], got)
		}
	}
	for _, tc := range errorCasesReading(before.ID) {
		r := reader.run(tc.args...)
		if r.code != tc.code || r.stderr != tc.msg {
			t.Errorf("stopped: arkbox %s: exit %d, stderr %q; want exit %d, %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.msg)
		}
	}
	if d := restored(restoredServing).diff(restored(restoreTo("stopped")), 10); len(d) > 0 {
		t.Errorf("restored while serving and stopped differ:\n%s", strings.Join(d, "\n"))
	}
	checkErrors(t, ark, "stopped")

	// Changes and a snapshot with the server stopped.
	ark.ok("share", "add", "offline", "--schedule", "daily 02:00")
	writeFile(t, pwFile, []byte("dave's password\n"), 0o600)
	ark.ok("user", "add", "dave", "--password-file", pwFile)
	ark.ok("user", "grant", "dave", "offline", "--ro")
	ark.okJSON(&sn, "snapshot", "offline", "--json")
	if sn.Source != "share:offline" {
		t.Errorf("snapshot without a server: %+v", sn)
	}
	ark.okJSON(&recs, "jobs", "--json", "-n", "1")
	if len(recs) != 1 || recs[0].Target != "offline" || recs[0].Trigger != "manual" || recs[0].Result != "ok" {
		t.Errorf("job of the snapshot without a server: %+v", recs)
	}
	if out := ark.ok("share", "remove", "projects"); !strings.HasPrefix(out, "share projects removed") {
		t.Errorf("share remove says %q", out)
	}

	// The next start serves what was changed while it was stopped.
	srv = serve(t, dir)
	defer srv.stop()
	dave := mustLogin(t, srv.sftpAddr, "dave", "dave's password")
	if names, err := dave.ReadDir("/"); err != nil || len(names) != 1 || names[0].Name() != "offline" {
		t.Errorf("dave sees %v, %v; want the offline share", names, err)
	}
	admin := mustLogin(t, srv.sftpAddr, "admin", adminPW)
	if _, err := admin.Stat("/projects"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a share removed while stopped is served: %v", err)
	}
}
