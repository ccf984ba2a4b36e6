package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/config"
	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/storage/repo"
)

// asClient makes the test binary a control client (for the test that
// connects as another user): it dials the data folder named by the
// variable and prints what listing the shares gives.
const asClient = "ARKBOX_TEST_CONTROL_CLIENT"

func TestMain(m *testing.M) {
	if dir := os.Getenv(asClient); dir != "" {
		c, err := Dial(context.Background(), dir)
		if err == nil {
			_, err = c.Shares(context.Background())
		}
		fmt.Println(err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fake is an Ops that records its calls and answers what it is told.
type fake struct {
	mu    sync.Mutex
	calls []string
	err   error // returned by every operation
	block bool  // Snapshot waits for its context to end
	ended chan error
}

func (f *fake) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.err
}

func (f *fake) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

var (
	testShares = []config.Share{{Name: "docs", Comment: "the office's documents",
		Snapshots: []config.SnapshotSchedule{{Name: "hourly", Schedule: "every 1h", Retention: config.Retention{KeepHourly: 24}}}}}
	testUsers = []User{{Name: "anna", Keys: 1, Grants: map[string]string{"docs": "rw"}}, {Name: "admin", Admin: true}}
	testSnap  = Snapshot{ID: strings.Repeat("ab", 32), Short: "abababab", Time: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		Source: "share:docs", Paths: []string{"/"}, Tags: []string{"manual"}, Tree: strings.Repeat("cd", 32),
		Stats: repo.SnapshotStats{Files: 3, Bytes: 1234}}
	testJobs = []jobs.Record{{ID: 7, Kind: "snapshot", Target: "docs", Trigger: "manual", Result: jobs.OK,
		Started: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), Updated: time.Date(2026, 3, 1, 10, 0, 1, 0, time.UTC),
		Ended: time.Date(2026, 3, 1, 10, 0, 1, 0, time.UTC), Stats: jobs.Stats{Files: 3}}}
)

func (f *fake) Shares(ctx context.Context) ([]config.Share, error) {
	return testShares, f.record("shares")
}
func (f *fake) AddShare(ctx context.Context, s NewShare) error {
	return f.record("add share %s %q", s.Name, s.Schedule)
}
func (f *fake) RemoveShare(ctx context.Context, name string) error {
	return f.record("remove share %s", name)
}
func (f *fake) Users(ctx context.Context) ([]User, error) { return testUsers, f.record("users") }
func (f *fake) AddUser(ctx context.Context, u NewUser) error {
	return f.record("add user %s admin=%v password=%q keys=%q", u.Name, u.Admin, u.Password, u.AuthorizedKeys)
}
func (f *fake) SetPassword(ctx context.Context, user, password string) error {
	return f.record("passwd %s %q", user, password)
}
func (f *fake) AddKeys(ctx context.Context, user string, keys []string) error {
	return f.record("keys %s %q", user, keys)
}
func (f *fake) Grant(ctx context.Context, user, share, access string) error {
	return f.record("grant %s %s %s", user, share, access)
}
func (f *fake) Revoke(ctx context.Context, user, share string) error {
	return f.record("revoke %s %s", user, share)
}
func (f *fake) Snapshot(ctx context.Context, share string) (Snapshot, error) {
	if err := f.record("snapshot %s", share); err != nil {
		return Snapshot{}, err
	}
	if f.block {
		<-ctx.Done()
		f.ended <- ctx.Err()
		return Snapshot{}, ctx.Err()
	}
	return testSnap, nil
}
func (f *fake) Snapshots(ctx context.Context, flt SnapshotFilter) ([]Snapshot, error) {
	if err := f.record("snapshots %q", flt.Source); err != nil {
		return nil, err
	}
	if flt.Source == "none" {
		return nil, nil
	}
	return []Snapshot{testSnap}, nil
}
func (f *fake) Jobs(ctx context.Context, flt JobFilter) ([]jobs.Record, error) {
	return testJobs, f.record("jobs %q %d", flt.Kind, flt.Limit)
}

func (f *fake) ReloadReplication(ctx context.Context) error { return f.record("reload replication") }

// serve runs a control server for ops on a fresh data folder.
func serve(t *testing.T, ops Ops) (dir string, stop func()) {
	t.Helper()
	dir = t.TempDir()
	l, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, ops, ServeOptions{}) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return dir, stop
}

func dial(t *testing.T, dir string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestOps: every operation crosses the socket with its arguments, and
// its answer or error comes back as it was.
func TestOps(t *testing.T) {
	f := &fake{}
	dir, _ := serve(t, f)
	c := dial(t, dir)
	ctx := context.Background()
	for _, tc := range []struct {
		call string // what the fake records
		do   func() (any, error)
		want any // the answer (nil: none)
	}{
		{"shares", func() (any, error) { return c.Shares(ctx) }, testShares},
		{`add share new "daily 02:00"`, func() (any, error) { return nil, c.AddShare(ctx, NewShare{Name: "new", Schedule: "daily 02:00"}) }, nil},
		{"remove share odd name.x", func() (any, error) { return nil, c.RemoveShare(ctx, "odd name.x") }, nil},
		{"users", func() (any, error) { return c.Users(ctx) }, testUsers},
		{`add user bob admin=true password="s3cret pass/word" keys=["ssh-ed25519 AAAA k"]`, func() (any, error) {
			return nil, c.AddUser(ctx, NewUser{Name: "bob", Admin: true, Password: "s3cret pass/word", AuthorizedKeys: []string{"ssh-ed25519 AAAA k"}})
		}, nil},
		{`passwd bob "another one"`, func() (any, error) { return nil, c.SetPassword(ctx, "bob", "another one") }, nil},
		{`keys bob ["k1" "k2"]`, func() (any, error) { return nil, c.AddKeys(ctx, "bob", []string{"k1", "k2"}) }, nil},
		{"grant bob docs ro", func() (any, error) { return nil, c.Grant(ctx, "bob", "docs", "ro") }, nil},
		{"revoke bob docs", func() (any, error) { return nil, c.Revoke(ctx, "bob", "docs") }, nil},
		{"snapshot docs", func() (any, error) { return c.Snapshot(ctx, "docs") }, testSnap},
		{`snapshots "share:docs"`, func() (any, error) { return c.Snapshots(ctx, SnapshotFilter{Source: "share:docs"}) }, []Snapshot{testSnap}},
		{`snapshots "none"`, func() (any, error) { return c.Snapshots(ctx, SnapshotFilter{Source: "none"}) }, []Snapshot{}},
		{`jobs "snapshot" 5`, func() (any, error) { return c.Jobs(ctx, JobFilter{Kind: "snapshot", Limit: 5}) }, testJobs},
		{"reload replication", func() (any, error) { return nil, c.ReloadReplication(ctx) }, nil},
	} {
		got, err := tc.do()
		if err != nil {
			t.Errorf("%s: %v", tc.call, err)
			continue
		}
		if f.last() != tc.call {
			t.Errorf("server did %q, want %q", f.last(), tc.call)
		}
		if tc.want != nil && !sameJSON(t, got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.call, got, tc.want)
		}
	}

	// Errors come back with their message; usage errors say so.
	f.err = errors.New("no user bob")
	err := c.Grant(ctx, "bob", "docs", "rw")
	var ce *Error
	if !errors.As(err, &ce) || ce.Message != "no user bob" || ce.Usage {
		t.Errorf("failed operation: %#v", err)
	}
	f.err = UsageError("give the share's name")
	if _, err := c.Snapshot(ctx, "x"); !errors.As(err, &ce) || ce.Message != "give the share's name" || !ce.Usage {
		t.Errorf("usage error: %#v", err)
	}
}

// sameJSON compares what a and b encode to, as the CLI prints them.
func sameJSON(t *testing.T, a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return string(ja) == string(jb)
}

// TestWire: malformed requests are usage errors (400) with a JSON body;
// unknown operations are 404.
func TestWire(t *testing.T) {
	f := &fake{}
	dir, _ := serve(t, f)
	c := dial(t, dir)
	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/v1/shares", `{"name": "x", "bogus": 1}`, 400, "unknown field"},
		{"POST", "/v1/shares", `{"name": "x"} {}`, 400, "data after"},
		{"POST", "/v1/shares", `[`, 400, "request body"},
		{"GET", "/v1/jobs?limit=-1", "", 400, "limit"},
		{"GET", "/v1/nothing", "", 404, "no operation GET /v1/nothing"},
		{"PATCH", "/v1/shares", "", 404, "no operation PATCH"},
		{"GET", "/v1/status", "", 200, `"pid":`},
		{"DELETE", "/v1/shares/docs", "", 204, ""},
	} {
		req, _ := http.NewRequest(tc.method, "http://arkbox"+tc.path, strings.NewReader(tc.body))
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s %s: %d %s; want %d with %q", tc.method, tc.path, resp.StatusCode, b, tc.status, tc.want)
		}
		if tc.status >= 400 {
			var e Error
			if json.Unmarshal(b, &e) != nil || e.Message == "" || !e.Usage {
				t.Errorf("%s %s: error body %s is not a usage error", tc.method, tc.path, b)
			}
		}
	}
}

// TestSocketFile: the folder is 0700, the socket 0600; the socket goes
// at shutdown; a stale one is replaced; a live one or a file in its way
// stops Listen.
func TestSocketFile(t *testing.T) {
	f := &fake{}
	dir, stop := serve(t, f)
	path := SocketPath(dir)
	for p, want := range map[string]fs.FileMode{filepath.Dir(path): fs.ModeDir | 0o700, path: fs.ModeSocket | 0o600} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
	if _, err := Listen(dir); err == nil || !strings.Contains(err.Error(), "another server listens") {
		t.Errorf("second Listen on a live socket: %v", err)
	}
	stop()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after shutdown: %v", err)
	}
	if _, err := Dial(context.Background(), dir); !errors.Is(err, ErrNoServer) {
		t.Errorf("Dial without a server: %v", err)
	}

	// A server that died leaves its socket: Dial says nobody listens,
	// Listen replaces it.
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	if _, err := Dial(context.Background(), dir); !errors.Is(err, ErrNoServer) {
		t.Errorf("Dial on a stale socket: %v", err)
	}
	os.Chmod(filepath.Dir(path), 0o755)
	l, err := Listen(dir)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	if fi, _ := os.Lstat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Errorf("run folder left at %v", fi.Mode().Perm())
	}
	l.Close()

	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(dir); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
}

// TestLongPath: a data folder whose socket path is too long for a socket
// address still works.
func TestLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("a-long-folder-name/", 6))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if len(SocketPath(dir)) <= maxSockPath {
		t.Fatalf("path %s is not long enough", SocketPath(dir))
	}
	l, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, &fake{}, ServeOptions{}) }()
	c := dial(t, dir)
	if _, err := c.Users(context.Background()); err != nil {
		t.Error(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if _, err := os.Lstat(SocketPath(dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left: %v", err)
	}
}

// TestShutdownCancels: an operation in progress when the server stops
// sees its context end, and the client gets an answer or a closed
// connection, not a hang.
func TestShutdownCancels(t *testing.T) {
	f := &fake{block: true, ended: make(chan error, 1)}
	dir, stop := serve(t, f)
	c := dial(t, dir)
	errc := make(chan error, 1)
	go func() { _, err := c.Snapshot(context.Background(), "docs"); errc <- err }()
	for f.last() != "snapshot docs" {
		time.Sleep(time.Millisecond)
	}
	stop()
	if err := <-f.ended; !errors.Is(err, context.Canceled) {
		t.Errorf("operation's context: %v", err)
	}
	if err := <-errc; err == nil {
		t.Error("snapshot canceled by shutdown reported success")
	}
}

// TestPeerCheck: only the owner and root pass.
func TestPeerCheck(t *testing.T) {
	for _, tc := range []struct {
		uid, owner int
		ok         bool
	}{
		{1000, 1000, true},
		{0, 1000, true},
		{1001, 1000, false},
		{65534, 0, false},
		{0, 0, true},
	} {
		if got := allowed(tc.uid, tc.owner); got != tc.ok {
			t.Errorf("allowed(%d, %d) = %v", tc.uid, tc.owner, got)
		}
	}
	// The handler refuses a peer the check refuses, before any operation.
	f := &fake{}
	h := newHandler(f, nil, 1000)
	for _, tc := range []struct {
		peer   peer
		status int
		want   string
	}{
		{peer{uid: 1001}, 403, "user id 1001 may not control this server (only its owner, user id 1000, and root)"},
		{peer{uid: -1, err: errors.New("no credentials")}, 403, "cannot tell who is connecting"},
		{peer{uid: 1000}, 200, ""},
		{peer{uid: 0}, 200, ""},
		{peer{uid: -1}, 200, ""}, // the system does not tell: the socket's modes decide
	} {
		req := httptest.NewRequest("GET", "/v1/shares", nil)
		req = req.WithContext(context.WithValue(req.Context(), peerKey{}, tc.peer))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("peer %+v: %d %s", tc.peer, rec.Code, rec.Body)
		}
	}
	if n := len(f.calls); n != 3 {
		t.Errorf("%d operations ran, want 3 (the allowed peers')", n)
	}
}

// TestOtherUser: a process of another user cannot connect (the socket's
// modes), and when the modes are opened up the server still refuses it
// (its peer user id). It needs root, to run a process as nobody.
func TestOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	const nobody = 65534
	f := &fake{}
	dir, _ := serve(t, f)
	// A copy of the test binary that nobody may run.
	bin := filepath.Join(t.TempDir(), "control.test")
	os.Chmod(filepath.Dir(bin), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(bin)), 0o755)
	exe, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	asNobody := func() string {
		t.Helper()
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), asClient+"="+dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as nobody: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out := asNobody(); !strings.Contains(out, "permission denied") {
		t.Errorf("another user through the socket's modes: %s", out)
	}
	os.Chmod(filepath.Dir(SocketPath(dir)), 0o755)
	os.Chmod(SocketPath(dir), 0o666)
	if out := asNobody(); !strings.Contains(out, fmt.Sprintf("user id %d may not control this server", nobody)) {
		t.Errorf("another user past the socket's modes: %s", out)
	}
	if len(f.calls) != 0 {
		t.Errorf("operations ran for another user: %q", f.calls)
	}
	// The owner (root here) still gets through.
	if _, err := dial(t, dir).Shares(context.Background()); err != nil {
		t.Error(err)
	}
}
