// Package testpeer starts the real servers the replication tests run
// against, on 127.0.0.1: versitygw (an S3 server) and OpenSSH's sshd.
package testpeer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// require reports a missing peer: a test failure when ARKBOX_REQUIRE_PEERS
// is set (make test installs every peer), else a skip.
func require(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (make test-deps installs it)"
	if os.Getenv("ARKBOX_REQUIRE_PEERS") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// FreePort returns a TCP address on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Versitygw returns the path of the versitygw binary: $ARKBOX_VERSITYGW,
// the cache make test-deps builds into, or $PATH.
func Versitygw() string {
	if p := os.Getenv("ARKBOX_VERSITYGW"); p != "" {
		return p
	}
	if dir, err := os.UserCacheDir(); err == nil {
		p := filepath.Join(dir, "arkbox", "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	return ""
}

// S3Server is a running versitygw.
type S3Server struct {
	Endpoint  string // 127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Dir       string // where it keeps buckets (BUCKET/KEY files)
}

// S3 starts versitygw on a fresh folder; it stops when the test ends.
func S3(t testing.TB) *S3Server { return startS3(t, "", "") }

// S3TLS starts versitygw serving HTTPS with a certificate for 127.0.0.1
// signed by a fresh certificate authority, whose PEM file it returns.
func S3TLS(t testing.TB) (*S3Server, string) {
	t.Helper()
	dir := t.TempDir()
	ca, cert, key := makeCerts(t, dir)
	return startS3(t, cert, key), ca
}

func startS3(t testing.TB, cert, key string) *S3Server {
	t.Helper()
	bin := Versitygw()
	if bin == "" {
		require(t, "versitygw is not installed")
	}
	s := &S3Server{AccessKey: "arkboxtest", SecretKey: randHex(16), Dir: t.TempDir()}
	for attempt := 0; ; attempt++ {
		s.Endpoint = FreePort(t)
		ctx, cancel := context.WithCancel(context.Background())
		args := []string{"--port", s.Endpoint, "--access", s.AccessKey, "--secret", s.SecretKey}
		if cert != "" {
			args = append(args, "--cert", cert, "--key", key)
		}
		cmd := exec.CommandContext(ctx, bin, append(args, "posix", s.Dir)...)
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY=", "ROOT_SECRET_KEY=")
		log, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start versitygw: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		if waitHTTP(s.Endpoint, cert != "", done) {
			t.Cleanup(func() { cancel(); <-done; log.Close() })
			return s
		}
		cancel()
		<-done
		out, _ := os.ReadFile(log.Name())
		log.Close()
		if attempt == 2 {
			t.Fatalf("versitygw did not start: %s", out)
		}
	}
}

func waitHTTP(addr string, tls bool, done <-chan struct{}) bool {
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false
		default:
		}
		resp, err := client.Get(scheme + addr + "/")
		if err == nil {
			resp.Body.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// SSHServer is a running OpenSSH sshd.
type SSHServer struct {
	Addr    string // 127.0.0.1:PORT
	User    string
	KeyFile string // the client's private key, authorized on the server
	Dir     string // an empty folder the user can write
}

// SSHD starts OpenSSH's sshd with a temporary configuration that lets the
// current user log in with a fresh key; it stops when the test ends.
func SSHD(t testing.TB) *SSHServer {
	t.Helper()
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		require(t, "OpenSSH's sshd is not installed (Debian package openssh-server)")
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		require(t, "ssh-keygen is not installed (Debian package openssh-client)")
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	cfgDir := t.TempDir()
	os.Chmod(cfgDir, 0o700)
	hostKey := filepath.Join(cfgDir, "host_ed25519")
	clientKey := filepath.Join(cfgDir, "client_ed25519")
	for _, k := range []string{hostKey, clientKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(cfgDir, "authorized_keys")
	if err := os.WriteFile(auth, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	if u.Uid == "0" {
		os.MkdirAll("/run/sshd", 0o755) // privilege separation folder
	}
	s := &SSHServer{User: u.Username, KeyFile: clientKey, Dir: t.TempDir()}
	for attempt := 0; ; attempt++ {
		s.Addr = FreePort(t)
		host, port, _ := net.SplitHostPort(s.Addr)
		conf := strings.Join([]string{
			"ListenAddress " + host + ":" + port,
			"HostKey " + hostKey,
			"AuthorizedKeysFile " + auth,
			"PidFile none",
			"UsePAM no",
			"StrictModes no",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PermitRootLogin prohibit-password",
			"Subsystem sftp internal-sftp",
			"LogLevel ERROR",
		}, "\n") + "\n"
		cf := filepath.Join(cfgDir, "sshd_config")
		if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, sshd, "-D", "-e", "-f", cf)
		logf := filepath.Join(cfgDir, "sshd.log")
		log, _ := os.Create(logf)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start sshd: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		if waitTCP(s.Addr, done) {
			t.Cleanup(func() { cancel(); <-done; log.Close() })
			return s
		}
		cancel()
		<-done
		out, _ := os.ReadFile(logf)
		log.Close()
		if attempt == 2 {
			t.Fatalf("sshd did not start: %s", out)
		}
	}
}

func waitTCP(addr string, done <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(30 * time.Millisecond)
	}
	return false
}
