// Package sftp serves the shares over SSH: the SFTP subsystem (and so
// OpenSSH's sftp, scp -s and sshfs) on top of the share filesystem
// (storage/sharefs). Users log in with a password or a public key checked
// by appliance/users, which also limits failed logins per address; each
// user sees at "/" the shares granted to them, read-only or read-write.
// Commands and shells are refused. The wire behaviour — paths, the symlink
// policy, error codes — is described in doc/sftp.md.
package sftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/arkbox/arkbox/appliance/users"
	"github.com/arkbox/arkbox/storage/sharefs"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"
)

// Authenticator checks logins; *users.Authenticator is one. Password
// counts failures against the client's address and refuses locked-out
// addresses (with a *users.LockedOutError); PublicKey refuses them too.
type Authenticator interface {
	Password(ctx context.Context, addr, user string, pw []byte) (string, error)
	PublicKey(addr, user string, key ssh.PublicKey) (string, error)
}

// Authorizer tells what a user may do in a share; *users.Authorizer is one.
type Authorizer interface {
	Access(user, share string) users.Access
}

// Options configure a Server.
type Options struct {
	Store *sharefs.Store // the shares
	Auth  Authenticator
	Authz Authorizer
	// HostKeyPath is the SSH host key (OpenSSH private key format). If it
	// does not exist, an ed25519 key is generated and stored there with
	// mode 0600, and reused from then on.
	HostKeyPath string
	Logger      *slog.Logger // nil: discard
	// IdleTimeout closes a connection on which nothing was received (or
	// could be sent) for this long; 0 means 15 minutes, negative never.
	IdleTimeout time.Duration
	// LoginTimeout bounds the time from connecting to being logged in;
	// 0 means 30 seconds.
	LoginTimeout time.Duration
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("sftp: server closed")

// Server is the SSH server. Its methods are safe for concurrent use.
type Server struct {
	opt     Options
	log     *slog.Logger
	config  *ssh.ServerConfig
	started time.Time
	access  atomic.Pointer[access]

	// ctx ends when the server is closed; logins waiting for a turn to
	// check a password give up then.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	stopping  bool           // Shutdown or Close called
	wg        sync.WaitGroup // connections
}

type access struct {
	auth  Authenticator
	authz Authorizer
}

// extUser is the permissions extension that carries the logged-in user's
// name from authentication to the connection.
const extUser = "arkbox-user"

// New makes a server: it loads (or creates) the host key.
func New(opt Options) (*Server, error) {
	if opt.Store == nil || opt.Auth == nil || opt.Authz == nil {
		return nil, errors.New("sftp: Store, Auth and Authz are required")
	}
	if opt.HostKeyPath == "" {
		return nil, errors.New("sftp: no host key path")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.IdleTimeout == 0 {
		opt.IdleTimeout = 15 * time.Minute
	}
	if opt.LoginTimeout <= 0 {
		opt.LoginTimeout = 30 * time.Second
	}
	key, err := loadHostKey(opt.HostKeyPath, opt.Logger)
	if err != nil {
		return nil, err
	}
	s := &Server{opt: opt, log: opt.Logger, started: time.Now(),
		listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.access.Store(&access{opt.Auth, opt.Authz})
	s.config = &ssh.ServerConfig{
		Config:            ssh.Config{Ciphers: ciphers(runtime.GOARCH, cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ)},
		ServerVersion:     "SSH-2.0-arkbox",
		PasswordCallback:  s.password,
		PublicKeyCallback: s.publicKey,
		AuthLogCallback:   s.authLog,
	}
	s.config.AddHostKey(key)
	s.log.Info("sftp: host key", "fingerprint", ssh.FingerprintSHA256(key.PublicKey()))
	return s, nil
}

// ciphers returns the SSH ciphers the server offers on arch: every cipher
// x/crypto/ssh implements and deems secure, except ChaCha20-Poly1305 on
// amd64 with AES instructions (aesni). There Go's ChaCha20 has no assembly
// and runs at a fraction of AES in hardware, and OpenSSH's client, which
// prefers ChaCha20, then picks its next choice, AES (CTR with
// HMAC-SHA2-ETM, or GCM). Elsewhere (arm64: assembly; no AES) it stays.
func ciphers(arch string, aesni bool) []string {
	all := ssh.SupportedAlgorithms().Ciphers
	if arch != "amd64" || !aesni {
		return all
	}
	out := make([]string, 0, len(all))
	for _, c := range all {
		if c != ssh.CipherChaCha20Poly1305 {
			out = append(out, c)
		}
	}
	return out
}

// SetUsers replaces the authenticator and authorizer, after the accounts
// or grants changed. New logins use the new authenticator; open sessions
// stay connected and see the new grants from their next request on, reads
// and writes of files opened before included (a withdrawn grant makes
// them fail with permission denied; the files can still be closed).
func (s *Server) SetUsers(auth Authenticator, authz Authorizer) {
	s.access.Store(&access{auth, authz})
}

func (s *Server) authorizer() Authorizer { return s.access.Load().authz }

func (s *Server) password(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
	user, err := s.access.Load().auth.Password(s.ctx, c.RemoteAddr().String(), c.User(), pw)
	return s.loggedIn(user, err)
}

func (s *Server) publicKey(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	user, err := s.access.Load().auth.PublicKey(c.RemoteAddr().String(), c.User(), key)
	return s.loggedIn(user, err)
}

// loggedIn records the user's name in the permissions, or tells a
// locked-out client why (as an authentication banner OpenSSH prints).
func (s *Server) loggedIn(user string, err error) (*ssh.Permissions, error) {
	var lock *users.LockedOutError
	if errors.As(err, &lock) {
		return nil, &ssh.BannerError{Err: err, Message: fmt.Sprintf(
			"Too many failed logins from your address: try again in %v.\n", lock.RetryAfter.Round(time.Second))}
	}
	if err != nil {
		return nil, err
	}
	return &ssh.Permissions{Extensions: map[string]string{extUser: user}}, nil
}

// authLog logs failed logins: method, user and address, never a password.
// (The authenticator logs password failures and lockouts too, for every
// protocol; this says which SSH method failed.)
func (s *Server) authLog(c ssh.ConnMetadata, method string, err error) {
	if err == nil || method == "none" {
		return
	}
	var lock *users.LockedOutError
	switch {
	case errors.As(err, &lock):
		s.log.Warn("sftp: login refused, address locked out", "user", c.User(), "addr", c.RemoteAddr().String(),
			"method", method, "retry_after", lock.RetryAfter.Round(time.Second))
	case method == "publickey":
		// Clients offer each of their keys in turn: not worth a warning.
		s.log.Debug("sftp: public key not accepted", "user", c.User(), "addr", c.RemoteAddr().String())
	default:
		s.log.Info("sftp: login failed", "user", c.User(), "addr", c.RemoteAddr().String(), "method", method)
	}
}

// Serve accepts connections on l until l fails, Shutdown or Close is
// called (it then returns ErrServerClosed) or ctx ends (it then closes the
// server as Close does and returns ctx's error).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	s.log.Info("sftp: listening", "addr", l.Addr().String())
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			stopping := s.stopping
			s.mu.Unlock()
			switch {
			case ctx.Err() != nil:
				s.Close()
				return ctx.Err()
			case stopping:
				return ErrServerClosed
			case temporary(err):
				// Out of file descriptors and the like: back off.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("sftp: accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("sftp: accept on %s: %w", l.Addr(), err)
		}
		delay = 0
		c := &conn{srv: s, nc: nc, addr: nc.RemoteAddr().String()}
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// temporary reports whether an Accept error is worth retrying.
func temporary(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Shutdown stops the server gracefully: it stops accepting connections
// and ends every connection that has no open file; a connection with open
// files may finish them (opening more is refused) and ends once it has
// answered the close of its last one. A connection ends by closing its
// SFTP channels and its side of the TCP connection, so the client reads
// every answer before it sees the end. When ctx ends first, every
// remaining connection is closed at once. Either way Shutdown returns
// after every file was closed — what was written is durable — and every
// connection has ended; it returns ctx's error if that forced them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		if c.handles == 0 {
			c.drain()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
	}
	s.cancel()
	return err
}

// Close stops the server at once: connections are closed, open files are
// closed (and so synced) before it returns.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
	return nil
}

// conn is one client connection.
type conn struct {
	srv  *Server
	nc   net.Conn
	addr string

	// Guarded by srv.mu:
	handles int           // open files
	chans   []ssh.Channel // SFTP sessions being served

	drainOnce sync.Once
}

// acquire counts a file being opened; it fails while the server shuts
// down.
func (c *conn) acquire() error {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	if c.srv.stopping {
		return errShuttingDown
	}
	c.handles++
	return nil
}

// release counts a file closed. (During a shutdown, the connection ends
// once the answer to that close is sent: see sftpChannel.)
func (c *conn) release() {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	c.handles--
}

// drainIfDone ends the connection if the server is shutting down and the
// connection has no open file.
func (c *conn) drainIfDone() {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	if c.srv.stopping && c.handles == 0 {
		c.drain()
	}
}

// drain ends the connection gracefully (once; called with srv.mu held):
// it closes the SFTP channels — after what was already sent — and then
// its side of the TCP connection; the client sees the end after every
// answer, and hangs up. Shutdown's deadline closes it if not.
func (c *conn) drain() {
	c.drainOnce.Do(func() {
		chans := slices.Clone(c.chans)
		go func() {
			for _, ch := range chans {
				ch.Close()
			}
			if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			} else {
				c.nc.Close()
			}
		}()
	})
}

func (c *conn) serve() {
	s := c.srv
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	var nc net.Conn = c.nc
	if s.opt.IdleTimeout > 0 {
		nc = &idleConn{Conn: c.nc, timeout: s.opt.IdleTimeout}
	}
	loginTimer := time.AfterFunc(s.opt.LoginTimeout, func() { c.nc.Close() })
	sc, chans, reqs, err := ssh.NewServerConn(nc, s.config)
	if !loginTimer.Stop() && err == nil {
		sc.Close()
		err = errors.New("login took too long")
	}
	if err != nil {
		s.log.Debug("sftp: connection closed before login", "addr", c.addr, "err", err)
		return
	}
	user := sc.Permissions.Extensions[extUser]
	log := s.log.With("user", user, "addr", c.addr)
	log.Info("sftp: logged in", "client", string(sc.ClientVersion()))
	start := time.Now()
	go ssh.DiscardRequests(reqs) // global requests: no port forwarding
	var sessions sync.WaitGroup
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.Prohibited, "only sessions are served")
			continue
		}
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			nch.Reject(ssh.ResourceShortage, "the server is shutting down")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			log.Debug("sftp: accept channel", "err", err)
			continue
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			c.session(ch, creqs, user, log)
		}()
	}
	sessions.Wait()
	werr := sc.Wait()
	log.Info("sftp: disconnected", "duration", time.Since(start).Round(time.Millisecond), "reason", disconnectReason(werr))
}

func disconnectReason(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "idle timeout"
	}
	return err.Error()
}

// refusal is what a client asking for a command or a shell reads.
const refusal = "This server offers SFTP only (sftp, scp -s, sshfs): commands and shells are not available.\r\n"

// session serves one session channel: the "sftp" subsystem, and nothing
// else.
func (c *conn) session(ch ssh.Channel, reqs <-chan *ssh.Request, user string, log *slog.Logger) {
	var served sync.WaitGroup
	defer served.Wait()
	started := false
	for req := range reqs {
		switch req.Type {
		case "subsystem":
			var p struct{ Name string }
			if started || ssh.Unmarshal(req.Payload, &p) != nil || p.Name != "sftp" {
				log.Info("sftp: subsystem refused", "subsystem", p.Name)
				req.Reply(false, nil)
				continue
			}
			started = true
			req.Reply(true, nil)
			served.Add(1)
			go func() {
				defer served.Done()
				c.serveSFTP(ch, user, log)
			}()
		case "exec", "shell":
			log.Info("sftp: " + req.Type + " refused")
			req.Reply(!started, nil)
			if !started {
				ch.Stderr().Write([]byte(refusal))
				exit(ch, 1)
				ch.Close()
			}
		default: // pty-req, env, x11-req, …
			req.Reply(false, nil)
		}
	}
}

func (c *conn) serveSFTP(ch ssh.Channel, user string, log *slog.Logger) {
	c.srv.mu.Lock()
	c.chans = append(c.chans, ch)
	c.srv.mu.Unlock()
	defer func() {
		c.srv.mu.Lock()
		c.chans = slices.DeleteFunc(c.chans, func(x ssh.Channel) bool { return x == ch })
		c.srv.mu.Unlock()
	}()
	ss := &session{srv: c.srv, conn: c, user: user, log: log}
	ss.ch = newSFTPChannel(ch, c)
	// The allocator reuses request buffers (the handlers copy what they
	// keep): uploading 256 MiB costs about 0.8 s of CPU instead of 1.1 s.
	rs := sftp.NewRequestServer(ss.ch, ss.handlers(), sftp.WithRSAllocator())
	err := rs.Serve()
	code := uint32(0)
	if err != nil && !errors.Is(err, io.EOF) {
		code = 1
		log.Debug("sftp: session ended", "err", err)
	}
	log.Info("sftp: session", "files_opened", ss.opened.Load(), "bytes_read", ss.read.Load(), "bytes_written", ss.written.Load())
	exit(ch, code)
	ch.Close()
}

// sftpChannel is the channel pkg/sftp reads requests from and writes
// answers to. It follows the packet boundaries both ways, for two things
// pkg/sftp does not do:
//
//   - Order: pkg/sftp runs reads and writes on workers of their own, apart
//     from every other request, so a SETSTAT or FSETSTAT could overtake
//     writes the client sent before it (sshfs does, for cp -a: the times
//     set would then be lost, or a truncation undone). pkg/sftp sends
//     answers in request order, so a setstat waits (awaitEarlier) until
//     every request before it has been answered.
//   - Shutdown: the connection ends right after the status packet that
//     answers the close of its last open file has been sent.
type sftpChannel struct {
	ssh.Channel
	conn *conn

	// Only pkg/sftp's receiver reads, one goroutine.
	in        [5]byte // header of the request being read
	inN       int
	inLeft    int    // bytes of the request's body still to come
	handshake int    // whole requests read at the start (see limits.go)
	pre       []byte // a whole request read, still to hand on

	// Only pkg/sftp's sender writes, one packet at a time, under its lock.
	left      int  // bytes of the current answer still to come
	status    bool // the current answer is an SSH_FXP_STATUS
	versioned bool // the VERSION answer went out

	mu       sync.Mutex
	cond     sync.Cond
	received uint64   // requests read
	answered uint64   // answers written
	setstats []uint64 // sequence numbers of the setstats not yet handled
	ended    bool     // no more answers will be written
}

func newSFTPChannel(ch ssh.Channel, c *conn) *sftpChannel {
	w := &sftpChannel{Channel: ch, conn: c}
	w.cond.L = &w.mu
	return w
}

// SFTP packet types the channel looks for.
const (
	fxpSetstat  = 9
	fxpFsetstat = 10
	fxpStatus   = 101
)

func (w *sftpChannel) Read(p []byte) (int, error) {
	for len(w.pre) == 0 && w.handshake < handshakeRequests && w.inN == 0 && w.inLeft == 0 {
		if err := w.readWhole(); err != nil {
			w.end()
			return 0, err
		}
	}
	if len(w.pre) > 0 {
		n := copy(p, w.pre)
		w.pre = w.pre[n:]
		return n, nil
	}
	n, err := w.Channel.Read(p)
	for b := p[:n]; len(b) > 0; {
		if w.inLeft > 0 {
			k := min(len(b), w.inLeft)
			w.inLeft -= k
			b = b[k:]
			continue
		}
		k := copy(w.in[w.inN:], b)
		w.inN += k
		b = b[k:]
		if w.inN == len(w.in) {
			w.inN = 0
			w.inLeft = max(int(binary.BigEndian.Uint32(w.in[:4]))-1, 0)
			w.count(w.in[4])
		}
	}
	if err != nil {
		w.end()
	}
	return n, err
}

func (w *sftpChannel) Write(p []byte) (int, error) {
	if !w.versioned {
		w.versioned = true
		if q, ok := withLimits(p); ok {
			if _, err := w.Write(q); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	n, err := w.Channel.Write(p)
	if err != nil {
		w.end()
		return n, err
	}
	if w.left == 0 && len(p) >= 5 {
		w.left = 4 + int(binary.BigEndian.Uint32(p))
		w.status = p[4] == fxpStatus
	}
	if w.left -= len(p); w.left <= 0 {
		w.left = 0
		w.mu.Lock()
		w.answered++
		w.cond.Broadcast()
		w.mu.Unlock()
		if w.status {
			w.conn.drainIfDone()
		}
	}
	return n, err
}

// count records a request of type t handed on to pkg/sftp.
func (w *sftpChannel) count(t byte) {
	w.mu.Lock()
	w.received++
	if t == fxpSetstat || t == fxpFsetstat {
		w.setstats = append(w.setstats, w.received)
	}
	w.mu.Unlock()
}

// end records that no more answers will come, releasing waiters.
func (w *sftpChannel) end() {
	w.mu.Lock()
	w.ended = true
	w.cond.Broadcast()
	w.mu.Unlock()
}

// awaitEarlier is called by the setstat handler: it waits until every
// request the client sent before that setstat has been answered. (pkg/sftp
// hands setstats to the handler in the order they came; an FSETSTAT it
// answers itself, with a bad handle, leaves a stale entry that makes a
// later setstat wait for less, never for a request after it.)
func (w *sftpChannel) awaitEarlier() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.setstats) == 0 {
		return
	}
	seq := w.setstats[0]
	w.setstats = w.setstats[1:]
	for w.answered < seq-1 && !w.ended {
		w.cond.Wait()
	}
}

func exit(ch ssh.Channel, code uint32) {
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Code uint32 }{code}))
}

// idleConn moves its deadlines forward with every read and write, so a
// connection that stays silent for timeout fails.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) Read(b []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(b)
}

func (c *idleConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(b)
}
