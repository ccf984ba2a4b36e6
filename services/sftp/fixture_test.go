package sftp

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/users"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/crypto"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/sharefs"
	"github.com/arkbox/arkbox/storage/tree"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// cheap are argon2id parameters that make logins fast in tests.
var cheap = users.Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// login is how a test client logs in: with a password, or with the key
// file at key.
type login struct {
	user, password, key string
}

// Test accounts. alice writes docs and big; bob reads docs; nobody but
// the admin sees secret.
const (
	alicePW = "alice-Pa55-word"
	bobPW   = "bob-Pa55-word"
)

// fixture is a server on 127.0.0.1 over a fresh repository and share
// store with the shares docs, big and secret.
type fixture struct {
	t       *testing.T
	repo    *repo.Repository
	store   *sharefs.Store
	srv     *Server
	port    int
	dir     string
	keyFile string // alice's private key
	hostKey string
	logs    *syncBuffer
	alice   login
	aliceK  login
	bob     login

	serveErr chan error
	logLevel string // OpenSSH's LogLevel: ERROR unless a test changes it
}

type fixtureOptions struct {
	limiter *users.LimiterOptions
	idle    time.Duration // Options.IdleTimeout
	login   time.Duration // Options.LoginTimeout
	staging string        // the share store's staging folder ("": in the fixture's folder)
}

func newFixture(t *testing.T, fo fixtureOptions) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, dir: t.TempDir(), logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// Repository, catalog and share store, as storage's own tests make
	// them (storage/internal/testrepo is not importable from here).
	st, err := objstore.OpenDir(filepath.Join(f.dir, "objects"), objstore.DirOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Open(filepath.Join(f.dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	f.repo, err = repo.Init(ctx, st, cat, []byte("test passphrase"),
		repo.Options{KDF: crypto.KDFParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	staging := cmp.Or(fo.staging, filepath.Join(f.dir, "staging"))
	f.store, err = sharefs.Open(ctx, f.repo, cat, staging, sharefs.Options{CommitDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.store.Close(ctx)
		f.repo.Close(ctx)
		cat.Close()
	})
	shares := []string{"docs", "big", "secret"}
	for _, n := range shares {
		if _, err := f.store.CreateShare(n); err != nil {
			t.Fatal(err)
		}
	}

	// Accounts.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	f.keyFile = filepath.Join(f.dir, "alice_key")
	if err := os.WriteFile(f.keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	accounts := []users.Account{
		{Name: "alice", PasswordHash: hash(t, alicePW), AuthorizedKeys: []string{string(ssh.MarshalAuthorizedKey(sshPub))},
			Grants: map[string]users.Access{"docs": users.ReadWrite, "big": users.ReadWrite}},
		{Name: "bob", PasswordHash: hash(t, bobPW), Grants: map[string]users.Access{"docs": users.ReadOnly}},
	}
	f.alice = login{user: "alice", password: alicePW}
	f.aliceK = login{user: "alice", key: f.keyFile}
	f.bob = login{user: "bob", password: bobPW}
	var lim *users.Limiter
	if fo.limiter != nil {
		lim = users.NewLimiter(*fo.limiter)
	}
	auth, err := users.NewAuthenticator(accounts, users.AuthOptions{Limiter: lim, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	f.hostKey = filepath.Join(f.dir, "etc", "ssh_host_ed25519_key")
	f.srv, err = New(Options{Store: f.store, Auth: auth, Authz: users.NewAuthorizer(accounts, shares),
		HostKeyPath: f.hostKey, Logger: log, IdleTimeout: fo.idle, LoginTimeout: fo.login})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.port = l.Addr().(*net.TCPAddr).Port
	f.serveErr = make(chan error, 1)
	go func() { f.serveErr <- f.srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		f.srv.Close()
		if err := <-f.serveErr; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		// Passwords never reach a log.
		for _, pw := range []string{alicePW, bobPW, "wrong-password"} {
			if strings.Contains(f.logs.String(), pw) {
				t.Errorf("a password is in the log")
			}
		}
		if t.Failed() {
			t.Logf("server log:\n%s", f.logs.String())
		}
	})
	return f
}

func hash(t *testing.T, pw string) string {
	h, err := users.HashPasswordParams([]byte(pw), cheap)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// needBins skips the test when a client program is missing. They come
// from the Debian packages openssh-client (sftp, scp, ssh, ssh-keygen),
// sshpass, sshfs and fuse3 (fusermount3).
func needBins(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s is not installed (Debian packages: openssh-client sshpass sshfs fuse3)", b)
		}
	}
}

// sshOpts are the OpenSSH client options every test connection uses.
func (f *fixture) sshOpts(lg login) []string {
	opts := []string{"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=" + cmp.Or(f.logLevel, "ERROR"), "-o", "ConnectTimeout=20", "-o", "Ciphers=aes128-gcm@openssh.com", "-F", "/dev/null"}
	if lg.key != "" {
		return append(opts, "-i", lg.key, "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey",
			"-o", "BatchMode=yes")
	}
	return append(opts, "-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no")
}

// run runs an OpenSSH client program (sftp, scp, ssh) logging in as lg;
// a password goes through sshpass. It returns the combined output and
// the exit code.
func (f *fixture) run(lg login, prog string, args ...string) (string, int) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	if lg.password != "" {
		cmd = exec.CommandContext(ctx, "sshpass", append([]string{"-p", lg.password, prog}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, prog, args...)
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		f.t.Fatalf("%s: %v", prog, err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// sftp runs sftp with the batch commands (one a line) as lg.
func (f *fixture) sftp(lg login, batch string) (string, int) {
	f.t.Helper()
	bf, err := os.CreateTemp(f.dir, "batch-*")
	if err != nil {
		f.t.Fatal(err)
	}
	bf.WriteString(batch + "\n")
	bf.Close()
	args := append([]string{"-P", strconv.Itoa(f.port)}, f.sshOpts(lg)...)
	args = append(args, "-b", bf.Name(), lg.user+"@127.0.0.1")
	return f.run(lg, "sftp", args...)
}

// mustSftp runs a batch that must succeed.
func (f *fixture) mustSftp(lg login, batch string) string {
	f.t.Helper()
	out, code := f.sftp(lg, batch)
	if code != 0 {
		f.t.Fatalf("sftp as %s exited %d:\n%s\nbatch:\n%s", lg.user, code, out, batch)
	}
	return out
}

// client is the Go SFTP client logged in as alice (or as lg), for
// checking status codes precisely.
func (f *fixture) client(lg login) *sftp.Client {
	f.t.Helper()
	cfg := &ssh.ClientConfig{User: lg.user, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second}
	if lg.key != "" {
		b, err := os.ReadFile(lg.key)
		if err != nil {
			f.t.Fatal(err)
		}
		signer, err := ssh.ParsePrivateKey(b)
		if err != nil {
			f.t.Fatal(err)
		}
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}
	} else {
		cfg.Auth = []ssh.AuthMethod{ssh.Password(lg.password)}
	}
	sc, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.port)), cfg)
	if err != nil {
		f.t.Fatalf("ssh login as %s: %v", lg.user, err)
	}
	c, err := sftp.NewClient(sc, sftp.UseConcurrentWrites(true))
	if err != nil {
		sc.Close()
		f.t.Fatalf("sftp session: %v", err)
	}
	f.t.Cleanup(func() { c.Close(); sc.Close() })
	return c
}

func (f *fixture) share(name string) *sharefs.Share {
	sh, err := f.store.Share(name)
	if err != nil {
		f.t.Fatal(err)
	}
	return sh
}

// shareFile reads a file of a share directly from sharefs.
func (f *fixture) shareFile(share, p string) ([]byte, error) {
	sh := f.share(share)
	in, err := sh.Resolve(p)
	if err != nil {
		return nil, err
	}
	fh, err := sh.OpenFile(in.Ino, false, false)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.NewSectionReader(fh, 0, int64(in.Size)))
}

// entry describes a file for comparisons: type, permissions, content
// hash or link target.
type entry struct {
	kind   string
	perm   fs.FileMode
	sum    string
	target string
	mtime  int64 // seconds; only compared where times are preserved
}

func (e entry) String() string {
	return fmt.Sprintf("%s %o %s%s @%d", e.kind, e.perm, e.sum, e.target, e.mtime)
}

// dumpDir describes every entry below root by its slash path.
func dumpDir(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{perm: fi.Mode().Perm(), mtime: fi.ModTime().Unix()}
		switch {
		case fi.Mode().IsRegular():
			e.kind = "file"
			e.sum, err = fileSum(p)
			if err != nil {
				return err
			}
		case fi.IsDir():
			e.kind = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.kind = "symlink"
			e.perm = 0
			e.target, err = os.Readlink(p)
			if err != nil {
				return err
			}
		default:
			e.kind = "other"
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dumpShare describes every entry below p in a share, as dumpDir does.
func dumpShare(t *testing.T, sh *sharefs.Share, p string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	root, err := sh.Resolve(p)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(ino uint64, rel string)
	walk = func(ino uint64, rel string) {
		ents, err := sh.ReadDir(ino)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ents {
			q := path.Join(rel, d.Name)
			in := d.Inode
			e := entry{perm: fs.FileMode(in.Mode & 0o777), mtime: time.Unix(0, in.MTime).Unix()}
			switch in.Type {
			case tree.File:
				e.kind = "file"
				fh, err := sh.OpenFile(in.Ino, false, false)
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.New()
				_, err = io.Copy(h, io.NewSectionReader(fh, 0, int64(in.Size)))
				fh.Close()
				if err != nil {
					t.Fatal(err)
				}
				e.sum = hex.EncodeToString(h.Sum(nil))
			case tree.Dir:
				e.kind = "dir"
				walk(in.Ino, q)
			case tree.Symlink:
				e.kind, e.perm, e.target = "symlink", 0, in.Target
			default:
				e.kind = "other"
			}
			out[q] = e
		}
	}
	walk(root.Ino, "")
	return out
}

func fileSum(p string) (string, error) {
	fh, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// diffTrees lists the differences between two dumps; with times, the
// modification times are compared too.
func diffTrees(got, want map[string]entry, times bool) string {
	var sb strings.Builder
	n := 0
	check := func(k string) {
		g, gok := got[k]
		w, wok := want[k]
		if !times {
			g.mtime, w.mtime = 0, 0
		}
		if gok && wok && g == w {
			return
		}
		if n++; n <= 20 {
			fmt.Fprintf(&sb, "%s: got %v (present %v), want %v (present %v)\n", k, g, gok, w, wok)
		}
	}
	for k := range want {
		check(k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			check(k)
		}
	}
	if n > 20 {
		fmt.Fprintf(&sb, "… %d differences in all\n", n)
	}
	return sb.String()
}

// copyTree copies the regular files and directories below src to dst.
func copyTree(t *testing.T, src, dst string) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files++
			return os.WriteFile(target, b, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
