// Package sftpstore is an objstore.Store in a folder of an SFTP server (a
// datacenter host, another arkbox, a NAS), reached with
// golang.org/x/crypto/ssh and the github.com/pkg/sftp client.
//
// Object (kind, id) is PATH/KIND/ID[0:2]/ID, the directory store's layout.
// A Put writes a temporary file beside the object, fsyncs it (OpenSSH's
// fsync@openssh.com), checks its size and renames it into place, so a cut
// link never leaves a partial object under an object's name. The server's
// host key is pinned in a known_hosts file on first use and verified on
// every later connection. Operations are spread over Conns connections; a
// lost connection is dialled again by the next operation that needs it.
package sftpstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/arkbox/arkbox/storage/objstore"
)

// Options configure a connection.
type Options struct {
	Addr     string // HOST:PORT
	User     string
	Path     string // folder on the server ("" = the login folder)
	Password string
	// KeyFile is an OpenSSH private key (unencrypted) to log in with.
	KeyFile string
	// KnownHosts is the file pinning server host keys. A host not in it is
	// added on first use; a changed key is refused.
	KnownHosts string
	// Create makes Path when it does not exist.
	Create   bool
	ReadOnly bool
	// Conns is the number of SSH connections (1–10, default 1); each
	// pipelines many requests.
	Conns   int
	Timeout time.Duration // dial and handshake (default 30 s)
	// Dial, if set, makes the TCP connection (bandwidth limits, tests).
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger
}

// Store is a folder on an SFTP server.
type Store struct {
	opt  Options
	root string
	log  *slog.Logger
	cfg  *ssh.ClientConfig

	slots []*slot
	next  atomic.Uint32

	mu   sync.Mutex
	dirs map[string]bool // folders known to exist
}

// slot is one SSH connection; the store spreads operations over Conns of
// them.
type slot struct {
	mu     sync.Mutex
	conn   *ssh.Client
	client *sftp.Client
}

// Open connects, verifies the host key and checks the folder.
func Open(ctx context.Context, opt Options) (*Store, error) {
	if opt.Addr == "" || opt.User == "" {
		return nil, errors.New("sftp: host and user are required")
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 30 * time.Second
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var auth []ssh.AuthMethod
	if opt.KeyFile != "" {
		pem, err := os.ReadFile(opt.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("sftp: read key: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			return nil, fmt.Errorf("sftp: key %s: %w", opt.KeyFile, err)
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	if opt.Password != "" {
		pw := opt.Password
		auth = append(auth, ssh.Password(pw), ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			a := make([]string, len(qs))
			for i := range a {
				a[i] = pw
			}
			return a, nil
		}))
	}
	if len(auth) == 0 {
		return nil, errors.New("sftp: give a key file or a password")
	}
	if opt.KnownHosts == "" {
		return nil, errors.New("sftp: a known_hosts file is required to pin the server's host key")
	}
	s := &Store{opt: opt, log: log, dirs: map[string]bool{}}
	for range min(max(opt.Conns, 1), 10) {
		s.slots = append(s.slots, &slot{})
	}
	s.cfg = &ssh.ClientConfig{User: opt.User, Auth: auth, HostKeyCallback: s.checkHostKey, Timeout: opt.Timeout}
	c, err := s.get(ctx, s.slots[0])
	if err != nil {
		return nil, err
	}
	root := opt.Path
	if root == "" {
		root = "."
	}
	if !path.IsAbs(root) {
		wd, err := c.Getwd()
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("sftp: %s: login folder: %w", opt.Addr, err)
		}
		root = path.Join(wd, root)
	}
	s.root = path.Clean(root)
	st, err := c.Stat(s.root)
	if errors.Is(err, fs.ErrNotExist) && opt.Create && !opt.ReadOnly {
		err = c.MkdirAll(s.root)
		if err == nil {
			st, err = c.Stat(s.root)
		}
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("sftp: %s: folder %s: %w", opt.Addr, s.root, err)
	}
	if !st.IsDir() {
		s.Close()
		return nil, fmt.Errorf("sftp: %s: %s is not a folder", opt.Addr, s.root)
	}
	return s, nil
}

// checkHostKey pins the key on first use and refuses a changed one.
func (s *Store) checkHostKey(host string, remote net.Addr, key ssh.PublicKey) error {
	kh := s.opt.KnownHosts
	if err := os.MkdirAll(filepath.Dir(kh), 0o700); err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	f, err := os.OpenFile(kh, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	f.Close()
	cb, err := knownhosts.New(kh)
	if err != nil {
		return fmt.Errorf("known hosts %s: %w", kh, err)
	}
	err = cb(host, remote, key)
	var ke *knownhosts.KeyError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ke) && len(ke.Want) == 0:
		line := knownhosts.Line([]string{knownhosts.Normalize(host)}, key)
		f, err := os.OpenFile(kh, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("known hosts: %w", err)
		}
		_, err = fmt.Fprintln(f, line)
		if e := f.Close(); err == nil {
			err = e
		}
		if err != nil {
			return fmt.Errorf("known hosts: %w", err)
		}
		s.log.Info("sftp: pinned the server's host key on first use", "host", host, "fingerprint", ssh.FingerprintSHA256(key))
		return nil
	case errors.As(err, &ke):
		return fmt.Errorf("the host key of %s changed (now %s): if the server was really reinstalled, remove its line from %s; otherwise someone may be intercepting the connection",
			host, ssh.FingerprintSHA256(key), kh)
	}
	return err
}

// get returns the slot's live client, dialling when there is none.
func (s *Store) get(ctx context.Context, sl *slot) (*sftp.Client, error) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.client != nil {
		return sl.client, nil
	}
	dial := (&net.Dialer{Timeout: s.opt.Timeout, KeepAlive: 15 * time.Second}).DialContext
	if s.opt.Dial != nil {
		dial = s.opt.Dial
	}
	nc, err := dial(ctx, "tcp", s.opt.Addr)
	if err != nil {
		return nil, fmt.Errorf("sftp: connect to %s: %w", s.opt.Addr, err)
	}
	nc.SetDeadline(time.Now().Add(s.opt.Timeout))
	cc, chans, reqs, err := ssh.NewClientConn(nc, s.opt.Addr, s.cfg)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("sftp: log in to %s as %s: %w", s.opt.Addr, s.opt.User, err)
	}
	nc.SetDeadline(time.Time{})
	conn := ssh.NewClient(cc, chans, reqs)
	client, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(64))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("sftp: start the sftp subsystem on %s: %w", s.opt.Addr, err)
	}
	sl.conn, sl.client = conn, client
	return client, nil
}

// drop forgets a client whose connection failed, so the next call dials.
func (s *Store) drop(sl *slot, c *sftp.Client) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.client == c && c != nil {
		sl.client.Close()
		sl.conn.Close()
		sl.client, sl.conn = nil, nil
	}
}

// do runs fn with a client; ctx ending closes the connection under it.
func (s *Store) do(ctx context.Context, fn func(c *sftp.Client) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sl := s.slots[int(s.next.Add(1))%len(s.slots)]
	c, err := s.get(ctx, sl)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.drop(sl, c) })
	err = fn(c)
	if !stop() {
		if err == nil {
			err = ctx.Err()
		}
		return err
	}
	if err != nil && connLost(err) {
		s.drop(sl, c)
	}
	return err
}

func connLost(err error) bool {
	var se *sftp.StatusError
	if errors.As(err, &se) {
		return false
	}
	return errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || isNetErr(err)
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

func (s *Store) path(kind objstore.Kind, id objstore.ID) string {
	h := id.String()
	return path.Join(s.root, string(kind), h[:2], h)
}

func checkKind(op string, kind objstore.Kind) error {
	if !kind.Valid() {
		return fmt.Errorf("sftp: %s: unknown kind %q", op, kind)
	}
	return nil
}

func (s *Store) wrap(op string, kind objstore.Kind, id objstore.ID, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sftp: %s %s/%s: %w", op, kind, id, objstore.ErrNotFound)
	}
	return fmt.Errorf("sftp: %s %s/%s on %s: %w", op, kind, id, s.opt.Addr, err)
}

func (s *Store) mkdir(c *sftp.Client, dir string) error {
	s.mu.Lock()
	ok := s.dirs[dir]
	s.mu.Unlock()
	if ok {
		return nil
	}
	if err := c.MkdirAll(dir); err != nil {
		return err
	}
	s.mu.Lock()
	s.dirs[dir] = true
	s.mu.Unlock()
	return nil
}

// Put implements objstore.Store.
func (s *Store) Put(ctx context.Context, kind objstore.Kind, id objstore.ID, data []byte) error {
	if err := checkKind("put", kind); err != nil {
		return err
	}
	if s.opt.ReadOnly {
		return fmt.Errorf("sftp: put %s/%s: %w", kind, id, objstore.ErrReadOnly)
	}
	if objstore.Sum(data) != id {
		return fmt.Errorf("sftp: put %s/%s: %w", kind, id, objstore.ErrIDMismatch)
	}
	final := s.path(kind, id)
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := path.Join(path.Dir(final), "."+id.String()[:16]+".tmp-"+hex.EncodeToString(rnd[:]))
	err := s.do(ctx, func(c *sftp.Client) error {
		if err := s.mkdir(c, path.Dir(final)); err != nil {
			return err
		}
		f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return err
		}
		_, err = f.ReadFromWithConcurrency(bytes.NewReader(data), 16)
		if err == nil {
			if e := f.Sync(); e != nil && !isUnsupported(e) {
				err = e
			}
		}
		if e := f.Close(); err == nil {
			err = e
		}
		if err == nil {
			var st fs.FileInfo
			st, err = c.Stat(tmp)
			if err == nil && st.Size() != int64(len(data)) {
				err = fmt.Errorf("uploaded %d bytes but the server holds %d", len(data), st.Size())
			}
		}
		if err == nil {
			err = c.PosixRename(tmp, final)
			if isUnsupported(err) {
				err = c.Rename(tmp, final)
				if err != nil {
					if _, e := c.Stat(final); e == nil { // already there: same name, same bytes
						err = nil
					}
				}
			}
		}
		if err != nil {
			c.Remove(tmp)
		}
		return err
	})
	if err != nil {
		return s.wrap("put", kind, id, err)
	}
	return nil
}

func isUnsupported(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxOpUnsupported
}

// Get implements objstore.Store: the object, verified against its name.
func (s *Store) Get(ctx context.Context, kind objstore.Kind, id objstore.ID) ([]byte, error) {
	if err := checkKind("get", kind); err != nil {
		return nil, err
	}
	var data []byte
	err := s.do(ctx, func(c *sftp.Client) error {
		f, err := c.Open(s.path(kind, id))
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		data = make([]byte, st.Size())
		n, err := f.ReadAt(data, 0)
		if err != nil && !(errors.Is(err, io.EOF) && n == len(data)) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap("get", kind, id, err)
	}
	if objstore.Sum(data) != id {
		return nil, fmt.Errorf("sftp: get %s/%s: %d bytes do not match the name: %w", kind, id, len(data), objstore.ErrCorrupt)
	}
	return data, nil
}

// GetRange implements objstore.Store.
func (s *Store) GetRange(ctx context.Context, kind objstore.Kind, id objstore.ID, off, n int64) ([]byte, error) {
	if err := checkKind("get range", kind); err != nil {
		return nil, err
	}
	var buf []byte
	err := s.do(ctx, func(c *sftp.Client) error {
		f, err := c.Open(s.path(kind, id))
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if off < 0 || n < 0 || off+n > st.Size() {
			return fmt.Errorf("[%d,+%d) of %d bytes: %w", off, n, st.Size(), objstore.ErrRange)
		}
		buf = make([]byte, n)
		if n == 0 {
			return nil
		}
		got, err := f.ReadAt(buf, off)
		if err != nil && !(errors.Is(err, io.EOF) && int64(got) == n) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap("get range", kind, id, err)
	}
	return buf, nil
}

// Stat implements objstore.Store.
func (s *Store) Stat(ctx context.Context, kind objstore.Kind, id objstore.ID) (objstore.Info, error) {
	if err := checkKind("stat", kind); err != nil {
		return objstore.Info{}, err
	}
	var size int64
	err := s.do(ctx, func(c *sftp.Client) error {
		st, err := c.Stat(s.path(kind, id))
		if err != nil {
			return err
		}
		size = st.Size()
		return nil
	})
	if err != nil {
		return objstore.Info{}, s.wrap("stat", kind, id, err)
	}
	return objstore.Info{Kind: kind, ID: id, Size: size}, nil
}

// List implements objstore.Store.
func (s *Store) List(ctx context.Context, kind objstore.Kind, fn func(objstore.Info) error) error {
	if err := checkKind("list", kind); err != nil {
		return err
	}
	base := path.Join(s.root, string(kind))
	var infos []objstore.Info
	err := s.do(ctx, func(c *sftp.Client) error {
		subs, err := c.ReadDirContext(ctx, base)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, sub := range subs {
			if !sub.IsDir() || len(sub.Name()) != 2 {
				continue
			}
			ents, err := c.ReadDirContext(ctx, path.Join(base, sub.Name()))
			if err != nil {
				return err
			}
			for _, e := range ents {
				if !e.Mode().IsRegular() || strings.HasPrefix(e.Name(), ".") {
					continue
				}
				id, err := objstore.ParseID(e.Name())
				if err != nil {
					continue
				}
				infos = append(infos, objstore.Info{Kind: kind, ID: id, Size: e.Size()})
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sftp: list %s on %s: %w", kind, s.opt.Addr, err)
	}
	for _, i := range infos {
		if err := fn(i); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements objstore.Store.
func (s *Store) Delete(ctx context.Context, kind objstore.Kind, id objstore.ID) error {
	if err := checkKind("delete", kind); err != nil {
		return err
	}
	if s.opt.ReadOnly {
		return fmt.Errorf("sftp: delete %s/%s: %w", kind, id, objstore.ErrReadOnly)
	}
	err := s.do(ctx, func(c *sftp.Client) error { return c.Remove(s.path(kind, id)) })
	if err != nil {
		return s.wrap("delete", kind, id, err)
	}
	return nil
}

// Close implements objstore.Store.
func (s *Store) Close() error {
	for _, sl := range s.slots {
		sl.mu.Lock()
		c := sl.client
		sl.mu.Unlock()
		s.drop(sl, c)
	}
	return nil
}
