package sftp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/users"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

func TestHostKey(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	fi, err := os.Stat(f.hostKey)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %o, want 600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(f.hostKey)
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("host key type %s", signer.PublicKey().Type())
	}
	// A second server reuses the key; clients see it.
	srv2, err := New(Options{Store: f.store, Auth: f.srv.access.Load().auth, Authz: f.srv.authorizer(), HostKeyPath: f.hostKey})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if b2, _ := os.ReadFile(f.hostKey); !bytes.Equal(b, b2) {
		t.Error("the host key was rewritten")
	}
	var seen ssh.PublicKey
	cfg := &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.Password(alicePW)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error { seen = k; return nil }}
	sc, err := ssh.Dial("tcp", "127.0.0.1:"+strconv.Itoa(f.port), cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if seen == nil || !bytes.Equal(seen.Marshal(), signer.PublicKey().Marshal()) {
		t.Error("the server does not present the stored key")
	}
	if _, err := New(Options{Store: f.store, Auth: f.srv.access.Load().auth, Authz: f.srv.authorizer(), HostKeyPath: f.keyFile + ".pub"}); err != nil {
		// A missing file is generated; a garbage file is refused below.
		t.Fatal(err)
	}
	os.WriteFile(f.dir+"/garbage", []byte("not a key"), 0o600)
	if _, err := New(Options{Store: f.store, Auth: f.srv.access.Load().auth, Authz: f.srv.authorizer(), HostKeyPath: f.dir + "/garbage"}); err == nil {
		t.Error("a garbage host key was accepted")
	}
}

// TestShutdown: a shutdown waits for open files, refuses new ones, and
// at its deadline closes the rest; what was written is in the share.
func TestShutdown(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	idle := f.client(f.alice)
	busy := f.client(f.alice)
	stuck := f.client(f.aliceK)
	writeSome := func(name string) io.WriteCloser {
		c := busy
		if name == "/docs/stuck" {
			c = stuck
		}
		fh, err := c.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.Write([]byte("written before the shutdown\n")); err != nil {
			t.Fatal(err)
		}
		return fh
	}
	open := writeSome("/docs/open")
	stuckFile := writeSome("/docs/stuck")
	if _, err := idle.Stat("/docs"); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	go func() { done <- f.srv.Shutdown(ctx) }()
	// The idle connection goes at once.
	waitGone(t, idle, time.Second)
	// A busy one cannot open more files, but finishes the one it has.
	time.Sleep(50 * time.Millisecond)
	if _, err := busy.Create("/docs/late"); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("opening a file during the shutdown: %v", err)
	}
	if _, err := f.share("docs").Resolve("late"); err == nil {
		t.Error("a file refused during the shutdown was created")
	}
	if _, err := open.Write([]byte("and during it\n")); err != nil {
		t.Errorf("writing during the shutdown: %v", err)
	}
	if err := open.Close(); err != nil {
		t.Errorf("closing during the shutdown: %v", err)
	}
	waitGone(t, busy, time.Second)
	// The stuck one is closed at the deadline; its file is closed for it.
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the deadline", err)
	}
	stuckFile.Close()
	for name, want := range map[string]string{"open": "written before the shutdown\nand during it\n", "stuck": "written before the shutdown\n"} {
		if b, err := f.shareFile("docs", name); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
	// Close of a write handle made its data durable: the catalog has the
	// size (Store.Close would commit it, not recover it).
	if in, err := f.share("docs").Resolve("stuck"); err != nil || in.Size != 28 {
		t.Errorf("stuck: %+v, %v", in, err)
	}
	if err := <-f.serveErr; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v", err)
	}
	f.serveErr <- ErrServerClosed // for the fixture's cleanup
	if _, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(f.port)); err == nil {
		t.Error("still accepting after the shutdown")
	}
}

// waitGone waits until the server has closed the client's connection.
func waitGone(t *testing.T, c interface {
	Stat(string) (os.FileInfo, error)
}, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := c.Stat("/"); err != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("connection still open after %v", d)
}

func TestIdleTimeout(t *testing.T) {
	f := newFixture(t, fixtureOptions{idle: 500 * time.Millisecond})
	c := f.client(f.alice)
	if _, err := c.Stat("/docs"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := c.Stat("/docs"); err == nil {
		t.Fatal("an idle connection stayed open")
	}
	if !strings.Contains(f.logs.String(), `reason="idle timeout"`) {
		t.Error("idle disconnect not logged as such")
	}
}

// TestLoginTimeout: a client that connects and says nothing is dropped.
func TestLoginTimeout(t *testing.T) {
	f := newFixture(t, fixtureOptions{login: 200 * time.Millisecond})
	nc, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(f.port))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

// TestSetUsers: a grant withdrawn while a session is open applies to its
// next request, reads and writes of files opened before included.
func TestSetUsers(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.client(f.alice)
	if _, err := c.Stat("/big"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Create("/big/open-for-writing")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	dw, err := c.Create("/docs/still-writable")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dw.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	r, err := c.Open("/big/open-for-writing")
	if err != nil {
		t.Fatal(err)
	}
	accounts := []users.Account{{Name: "alice", PasswordHash: hash(t, alicePW), Grants: map[string]users.Access{"docs": users.ReadOnly}}}
	auth, err := users.NewAuthenticator(accounts, users.AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.SetUsers(auth, users.NewAuthorizer(accounts, f.store.Shares()))
	if _, err := c.Stat("/big"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("withdrawn share: %v", err)
	}
	if err := c.Mkdir("/docs/x"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("grant lowered to ro: %v", err)
	}
	// Files opened before: no more reads or writes where the grant went,
	// no more writes where it became read-only; closing still works.
	if _, err := w.Write([]byte("after")); !errors.Is(err, os.ErrPermission) {
		t.Errorf("write to a file of a withdrawn share: %v", err)
	}
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, os.ErrPermission) {
		t.Errorf("read of a file of a withdrawn share: %v", err)
	}
	if _, err := dw.Write([]byte("after")); !errors.Is(err, os.ErrPermission) {
		t.Errorf("write to a file of a share now read-only: %v", err)
	}
	for _, h := range []*sftp.File{w, r, dw} {
		if err := h.Close(); err != nil {
			t.Errorf("close %s: %v", h.Name(), err)
		}
	}
	if g, err := c.Open("/docs/still-writable"); err != nil {
		t.Error(err)
	} else if b, err := io.ReadAll(g); err != nil || string(b) != "before" {
		t.Errorf("read-only share: read %q, %v; want what was written before", b, err)
	}
}

// TestServeContext: ending Serve's context closes the server.
func TestServeContext(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, l) }()
	c := f.client(f.alice)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve = %v, want context.Canceled", err)
	}
	if _, err := c.Stat("/"); err == nil {
		t.Error("a connection survived the end of Serve's context")
	}
}

type panicky struct{}

func (panicky) Access(user, share string) users.Access { panic("authorizer bug") }

// TestPanicContained: a panic below a request handler fails that request
// only; the server and the session go on.
func TestPanicContained(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.client(f.alice)
	a := f.srv.access.Load()
	f.srv.SetUsers(a.auth, panicky{})
	if _, err := c.Stat("/docs"); code(err) != "failure" {
		t.Errorf("stat with a panicking authorizer: %v", err)
	}
	f.srv.SetUsers(a.auth, a.authz)
	if _, err := c.Stat("/docs"); err != nil {
		t.Errorf("stat afterwards: %v", err)
	}
	if !strings.Contains(f.logs.String(), "request handler panicked") {
		t.Error("panic not logged")
	}
}

func TestCiphers(t *testing.T) {
	for _, tc := range []struct {
		arch       string
		aesni      bool
		wantChaCha bool
	}{
		{"amd64", true, false},
		{"amd64", false, true},
		{"arm64", true, true},
		{"arm64", false, true},
	} {
		got := ciphers(tc.arch, tc.aesni)
		if slices.Contains(got, ssh.CipherChaCha20Poly1305) != tc.wantChaCha {
			t.Errorf("%s aesni=%v: %v", tc.arch, tc.aesni, got)
		}
		for _, c := range []string{ssh.CipherAES128GCM, ssh.CipherAES128CTR} {
			if !slices.Contains(got, c) {
				t.Errorf("%s aesni=%v: %s missing from %v", tc.arch, tc.aesni, c, got)
			}
		}
	}
}
