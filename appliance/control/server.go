package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// maxBody bounds a request body.
const maxBody = 1 << 20

// Listener is the control socket of a data folder, listening. Closing it
// removes the socket file (if it is still the one it made).
type Listener struct {
	*net.UnixListener
	path string
	made os.FileInfo

	closeOnce sync.Once
	closeErr  error
}

// Listen makes the data folder's control socket and listens on it: the
// folder run/ (created 0700, or set to 0700; it must belong to this
// process's user), then the socket, mode 0600. A socket file left by a
// server that ended without removing it is removed; if a server answers
// on it, Listen fails.
func Listen(dataDir string) (*Listener, error) {
	path := SocketPath(dataDir)
	if err := prepareDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	var ul *net.UnixListener
	err := withSockAddr(path, func(addr string) error {
		var err error
		ul, err = net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("control: listen on %s: %w", path, err)
	}
	// Removed by Close, by its real path (the listener may know it by
	// another name).
	ul.SetUnlinkOnClose(false)
	// The folder is the owner's alone, so nobody else could connect
	// before the socket's own mode is set.
	if err := os.Chmod(path, 0o600); err != nil {
		ul.Close()
		os.Remove(path)
		return nil, fmt.Errorf("control: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ul.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return &Listener{UnixListener: ul, path: path, made: fi}, nil
}

// Path returns the socket's path.
func (l *Listener) Path() string { return l.path }

// Close stops listening and removes the socket file.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.closeErr = l.UnixListener.Close()
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.made) {
			if err := os.Remove(l.path); err != nil && l.closeErr == nil {
				l.closeErr = fmt.Errorf("control: %w", err)
			}
		}
	})
	return l.closeErr
}

// prepareDir makes dir, the socket's folder, the owner's alone.
func prepareDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("control: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("control: %s is not a folder", dir)
	}
	if uid, ok := ownerOf(fi); ok && uid != os.Geteuid() {
		return fmt.Errorf("control: %s belongs to user id %d, not to this process's user (%d)", dir, uid, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("control: %w", err)
		}
	}
	return nil
}

// removeStale removes a socket file nobody listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control: %s exists and is not a socket: remove it", path)
	}
	err = withSockAddr(path, func(addr string) error {
		c, err := net.DialTimeout("unix", addr, 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	switch {
	case err == nil:
		return fmt.Errorf("control: another server listens on %s", path)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("control: remove the stale socket: %w", err)
		}
		return nil
	}
	return fmt.Errorf("control: %s: %w", path, err)
}

// ServeOptions tune Serve.
type ServeOptions struct {
	Logger *slog.Logger // nil: discard
	// Owner is the user id allowed besides root; -1 (or 0) means this
	// process's effective user id.
	Owner int
}

// Serve serves ops on l until ctx ends or l fails. Operations run with
// contexts that end with ctx (a snapshot in progress is canceled then).
// On the way out it waits for the requests in progress, closes l and
// returns nil, or l's error.
func Serve(ctx context.Context, l net.Listener, ops Ops, opt ServeOptions) error {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	owner := opt.Owner
	if owner <= 0 {
		owner = os.Geteuid()
	}
	srv := &http.Server{
		Handler:           newHandler(ops, log, owner),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			uid, err := peerUID(c)
			return context.WithValue(ctx, peerKey{}, peer{uid, err})
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	l.Close()
	if err == nil {
		err = <-errc
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("control: serve: %w", err)
	}
	return nil
}

type peerKey struct{}

// peer is who is on the other end of a connection: a user id, or -1 when
// the system does not tell (then the socket's modes are the only check).
type peer struct {
	uid int
	err error
}

// allowed reports whether a peer with user id uid may use a server owned
// by user id owner: the owner and root may.
func allowed(uid, owner int) bool { return uid == owner || uid == 0 }

type handler struct {
	ops   Ops
	log   *slog.Logger
	owner int
	mux   *http.ServeMux
}

func newHandler(ops Ops, log *slog.Logger, owner int) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{ops: ops, log: log, owner: owner, mux: http.NewServeMux()}
	m := h.mux
	m.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		reply(w, Status{PID: os.Getpid()}, nil)
	})
	m.HandleFunc("GET /v1/shares", func(w http.ResponseWriter, r *http.Request) {
		v, err := h.ops.Shares(r.Context())
		reply(w, nonNil(v), err)
	})
	m.HandleFunc("POST /v1/shares", func(w http.ResponseWriter, r *http.Request) {
		var s NewShare
		if decode(w, r, &s) {
			reply(w, nil, h.ops.AddShare(r.Context(), s))
		}
	})
	m.HandleFunc("DELETE /v1/shares/{share}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, h.ops.RemoveShare(r.Context(), r.PathValue("share")))
	})
	m.HandleFunc("POST /v1/shares/{share}/snapshot", func(w http.ResponseWriter, r *http.Request) {
		sn, err := h.ops.Snapshot(r.Context(), r.PathValue("share"))
		reply(w, sn, err)
	})
	m.HandleFunc("GET /v1/users", func(w http.ResponseWriter, r *http.Request) {
		v, err := h.ops.Users(r.Context())
		reply(w, nonNil(v), err)
	})
	m.HandleFunc("POST /v1/users", func(w http.ResponseWriter, r *http.Request) {
		var u NewUser
		if decode(w, r, &u) {
			reply(w, nil, h.ops.AddUser(r.Context(), u))
		}
	})
	m.HandleFunc("PUT /v1/users/{user}/password", func(w http.ResponseWriter, r *http.Request) {
		var p passwordBody
		if decode(w, r, &p) {
			reply(w, nil, h.ops.SetPassword(r.Context(), r.PathValue("user"), p.Password))
		}
	})
	m.HandleFunc("POST /v1/users/{user}/keys", func(w http.ResponseWriter, r *http.Request) {
		var k keysBody
		if decode(w, r, &k) {
			reply(w, nil, h.ops.AddKeys(r.Context(), r.PathValue("user"), k.AuthorizedKeys))
		}
	})
	m.HandleFunc("PUT /v1/users/{user}/grants/{share}", func(w http.ResponseWriter, r *http.Request) {
		var g grantBody
		if decode(w, r, &g) {
			reply(w, nil, h.ops.Grant(r.Context(), r.PathValue("user"), r.PathValue("share"), g.Access))
		}
	})
	m.HandleFunc("DELETE /v1/users/{user}/grants/{share}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, h.ops.Revoke(r.Context(), r.PathValue("user"), r.PathValue("share")))
	})
	m.HandleFunc("GET /v1/snapshots", func(w http.ResponseWriter, r *http.Request) {
		v, err := h.ops.Snapshots(r.Context(), SnapshotFilter{Source: r.URL.Query().Get("source")})
		reply(w, nonNil(v), err)
	})
	m.HandleFunc("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		f := JobFilter{Kind: r.URL.Query().Get("kind")}
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				replyError(w, http.StatusBadRequest, &Error{Message: fmt.Sprintf("limit %q: want a whole number, 0 or more", s), Usage: true})
				return
			}
			f.Limit = n
		}
		v, err := h.ops.Jobs(r.Context(), f)
		reply(w, nonNil(v), err)
	})
	m.HandleFunc("POST /v1/replication/reload", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, h.ops.ReloadReplication(r.Context()))
	})
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		replyError(w, http.StatusNotFound, &Error{Message: fmt.Sprintf("control: no operation %s %s", r.Method, r.URL.Path), Usage: true})
	})
	return h
}

// Status is what GET /v1/status answers: that an arkbox server listens.
type Status struct {
	PID int `json:"pid"`
}

type passwordBody struct {
	Password string `json:"password"`
}

type keysBody struct {
	AuthorizedKeys []string `json:"authorized_keys"`
}

type grantBody struct {
	Access string `json:"access"`
}

// ServeHTTP checks the peer, logs the request (never its body: it may
// hold a password) and contains panics to the request.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p, ok := r.Context().Value(peerKey{}).(peer)
	if !ok {
		p = peer{uid: -1}
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		if v := recover(); v != nil {
			h.log.Error("control: request handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			replyError(rec, http.StatusInternalServerError, &Error{Message: "control: internal error"})
		}
		h.log.Info("control: request", "method", r.Method, "path", r.URL.Path, "uid", p.uid, "status", rec.status,
			"took", time.Since(start).Round(time.Millisecond))
	}()
	switch {
	case p.err != nil:
		h.log.Warn("control: peer unknown: refused", "err", p.err)
		replyError(rec, http.StatusForbidden, &Error{Message: fmt.Sprintf("control: cannot tell who is connecting: %v", p.err)})
		return
	case p.uid >= 0 && !allowed(p.uid, h.owner):
		h.log.Warn("control: refused a user", "uid", p.uid)
		replyError(rec, http.StatusForbidden, &Error{Message: fmt.Sprintf(
			"control: user id %d may not control this server (only its owner, user id %d, and root)", p.uid, h.owner)})
		return
	}
	h.mux.ServeHTTP(rec, r)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// decode reads a JSON request body into v; on failure it answers 400 and
// returns false.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, e := dec.Token(); e != io.EOF {
			err = errors.New("data after the request object")
		}
	}
	if err != nil {
		replyError(w, http.StatusBadRequest, &Error{Message: fmt.Sprintf("control: request body: %v", err), Usage: true})
		return false
	}
	return true
}

// nonNil makes a nil list an empty one, so that it is sent as [].
func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

// reply answers with v (200), nothing (204, v nil) or err.
func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Usage {
			replyError(w, http.StatusBadRequest, e)
			return
		}
		replyError(w, http.StatusUnprocessableEntity, &Error{Message: err.Error()})
		return
	}
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func replyError(w http.ResponseWriter, status int, e *Error) { writeJSON(w, status, e) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(&Error{Message: "control: encode the answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
