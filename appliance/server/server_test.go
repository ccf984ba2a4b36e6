package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/config"
	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/appliance/pooldisks"
	"github.com/arkbox/arkbox/appliance/users"
	"github.com/arkbox/arkbox/storage/crypto"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

var fastHash = users.Params{MemoryKiB: 8 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
var fastKDF = crypto.KDFParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}

type running struct {
	cancel context.CancelFunc
	done   chan error
	out    *syncBuf
	log    *syncBuf
	addr   string
}

func (r *running) logs() string { return r.log.String() }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func start(t *testing.T, dir string) *running {
	t.Helper()
	return startWith(t, Options{DataDir: dir})
}

// startWith starts serve with opt, on 127.0.0.1 with cheap hashes.
func startWith(t *testing.T, opt Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), out: &syncBuf{}, log: &syncBuf{}}
	ready := make(chan string, 1)
	opt.SFTPAddr, opt.Hash, opt.KDF, opt.Out = "127.0.0.1:0", fastHash, fastKDF, r.out
	opt.Logger = slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opt.Ready = func(a string) { ready <- a }
	go func() { r.done <- Run(ctx, opt) }()
	select {
	case r.addr = <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("serve: %v\n%s", err, r.out)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not come up")
	}
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("serve ended with %v", err)
	}
}

func dialSFTP(t *testing.T, addr, user, pw string) *sftp.Client {
	t.Helper()
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("ssh login as %s: %v", user, err)
	}
	c, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

// TestServeFirstStartAndRestart: a fresh folder gets a configuration, a
// pool and an admin; a file uploaded over SFTP is there after a restart,
// and the snapshot job ran and left a record.
func TestServeFirstStartAndRestart(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir)
	m := regexp.MustCompile(`user admin, password (\S+)`).FindStringSubmatch(r.out.String())
	if m == nil {
		t.Fatalf("no admin password printed:\n%s", r.out)
	}
	pw := m[1]
	c := dialSFTP(t, r.addr, "admin", pw)
	data := bytes.Repeat([]byte("office backup "), 100000)
	f, err := c.Create("/backups/report.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	r.stop(t)
	for _, p := range []string{"arkbox.json", "repo/home.json", "disks/disk1/arkbox/pool.json", "secrets/passphrase", "secrets/ssh_host_ed25519_key"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("after first start: %v", err)
		}
	}

	r = start(t, dir)
	if strings.Contains(r.out.String(), "password") {
		t.Errorf("restart printed a password again:\n%s", r.out)
	}
	c = dialSFTP(t, r.addr, "admin", pw)
	g, err := c.Open("/backups/report.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(g)
	g.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after restart: %d bytes (%v), want %d\nlog:\n%s", len(got), err, len(data), r.log)
	}
	if _, err := dialSFTPErr(r.addr, "admin", "wrong password"); err == nil {
		t.Error("wrong password accepted")
	}
	c.Close()
	r.stop(t)

	// The catch-up snapshot at the first start was recorded as a job.
	h, err := home.Open(context.Background(), filepath.Join(dir, "repo"), home.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	jdb, err := jobs.Open(context.Background(), h.Catalog.DB(), jobs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := jdb.List(context.Background(), jobs.Filter{Kind: "snapshot"}, 10)
	if err != nil || len(recs) == 0 || recs[0].Result != jobs.OK {
		t.Fatalf("snapshot jobs: %+v %v", recs, err)
	}
}

func dialSFTPErr(addr, user, pw string) (*ssh.Client, error) {
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
}

// TestServeInvalidConfig: a broken configuration stops serve with an error
// naming the field, and nothing in the folder changes.
func TestServeInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	// A person editing the file mistypes a schedule.
	good, err := config.Marshal(config.Default(dir))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(good, []byte(`"every 1h"`), []byte(`"evry 5m"`), 1)
	if bytes.Equal(bad, good) {
		t.Fatalf("default configuration has no hourly schedule to break:\n%s", good)
	}
	if err := os.WriteFile(config.Path(dir), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), Options{DataDir: dir, SFTPAddr: "127.0.0.1:0", Hash: fastHash, KDF: fastKDF})
	if err == nil || !strings.Contains(err.Error(), "schedule") {
		t.Fatalf("serve with a bad schedule: %v", err)
	}
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		t.Errorf("error does not carry the field: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("serve changed the folder: %d entries", len(ents))
	}
	after, _ := os.ReadFile(config.Path(dir))
	if !bytes.Equal(after, bad) {
		t.Error("serve rewrote the configuration")
	}
}

// fakeDisks stands in for the appliance's disk management: NewPool waits
// for gate (if set), then makes three folders named like mount points.
type fakeDisks struct {
	base     string
	gate     chan struct{}
	mu       sync.Mutex
	news     int
	opened   [][]string
	released [][]string
}

func (f *fakeDisks) NewPool(ctx context.Context) ([]string, error) {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.news++
	var dirs []string
	for _, n := range []string{"2b1d4c9e-0000-4000-8000-000000000001", "2b1d4c9e-0000-4000-8000-000000000002", "2b1d4c9e-0000-4000-8000-000000000003"} {
		d := filepath.Join(f.base, n)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

func (f *fakeDisks) Release(ctx context.Context, dirs []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, dirs)
	return nil
}

func (f *fakeDisks) Watch(ctx context.Context, o pooldisks.WatchOptions) error {
	<-ctx.Done()
	return ctx.Err()
}

func (f *fakeDisks) OpenPool(ctx context.Context, dirs []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = append(f.opened, dirs)
	return nil
}

// TestServeManagedDisks: with Disks set, a first start writes the
// configuration from the template and prints the password, then waits for
// disks (and stops cleanly while waiting); the pool is created on the
// folders NewPool returns, recorded in arkbox.json, and opened through
// OpenPool at the next start.
func TestServeManagedDisks(t *testing.T) {
	dir := t.TempDir()
	disks := &fakeDisks{base: filepath.Join(t.TempDir(), "mnt"), gate: make(chan struct{})}
	// No maintenance jobs (their catch-up runs at the first start): this
	// test is about the disks.
	tmpl := []byte(`{"shares": [{"name": "office", "snapshots": [{"schedule": "every 1m", "keep_last": 10}]}],
		"prune": {"schedule": "never"}, "scrub": {"schedule": "never"}, "verify": {"schedule": "never"}}`)

	// First start: no disks yet. It waits, and stops cleanly.
	out := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{DataDir: dir, SFTPAddr: "127.0.0.1:0", Hash: fastHash, KDF: fastKDF, Out: out,
			InitConfig: tmpl, Disks: disks})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "password") && time.Now().Before(deadline) {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve ended before waiting for disks: %v\n%s", err, out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve stopped while waiting for disks: %v", err)
	}
	m := regexp.MustCompile(`user admin, password (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no admin password printed:\n%s", out)
	}
	pw := m[1]
	if _, err := os.Stat(filepath.Join(dir, "repo", home.FileName)); err == nil {
		t.Fatal("a pool was created without disks")
	}

	// Second start: the disks come.
	close(disks.gate)
	r := startWith(t, Options{DataDir: dir, Disks: disks})
	if strings.Contains(r.out.String(), "password") {
		t.Errorf("the password was printed again:\n%s", r.out)
	}
	c := dialSFTP(t, r.addr, "admin", pw)
	data := bytes.Repeat([]byte("disk "), 50000)
	f, err := c.Create("/office/a.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	r.stop(t)
	cfg, err := config.Load(config.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	wantDirs, _ := disks.NewPool(context.Background())
	if !slices.Equal(cfg.DiskDirs(), wantDirs) {
		t.Errorf("arkbox.json pool disks %v; want %v", cfg.DiskDirs(), wantDirs)
	}
	if cfg.Services.SFTP.Addr == "127.0.0.1:0" {
		t.Error("the command line's SFTP address was written to arkbox.json")
	}
	if _, ok := cfg.Share("office"); !ok || cfg.Shares[0].Snapshots[0].Schedule != "every 1m" {
		t.Errorf("template not applied: %+v", cfg.Shares)
	}
	for _, d := range wantDirs {
		if _, err := os.Stat(filepath.Join(d, "arkbox", "pool.json")); err != nil {
			t.Errorf("pool not on disk %s: %v", d, err)
		}
	}

	// Third start: the pool's disks are prepared through OpenPool.
	r = startWith(t, Options{DataDir: dir, Disks: disks})
	c = dialSFTP(t, r.addr, "admin", pw)
	g, err := c.Open("/office/a.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(g)
	g.Close()
	c.Close()
	r.stop(t)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after restart: %d bytes (%v)", len(got), err)
	}
	disks.mu.Lock()
	defer disks.mu.Unlock()
	if len(disks.opened) != 1 || !slices.Equal(disks.opened[0], wantDirs) {
		t.Errorf("OpenPool calls %v; want one with %v", disks.opened, wantDirs)
	}
	if len(disks.released) != 2 || !slices.Equal(disks.released[1], wantDirs) {
		t.Errorf("Release calls %v; want one per stop with %v", disks.released, wantDirs)
	}
}
