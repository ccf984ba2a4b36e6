package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/arkbox/arkbox/appliance/config"
	"github.com/arkbox/arkbox/appliance/jobs"
)

// Client is Ops over a data folder's control socket. It is safe for
// concurrent use.
type Client struct {
	path string
	hc   *http.Client
}

var _ Ops = (*Client)(nil)

// Dial connects to the control socket of the server running on a data
// folder and checks that it answers. It returns an error matching
// ErrNoServer when no server listens there (no socket, or a socket left
// by a server that ended); any other error means a server may be running
// but cannot be reached (e.g. the socket belongs to another user).
func Dial(ctx context.Context, dataDir string) (*Client, error) {
	path := SocketPath(dataDir)
	c := &Client{path: path}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			var conn net.Conn
			err := withSockAddr(path, func(addr string) error {
				var err error
				conn, err = d.DialContext(ctx, "unix", addr)
				return err
			})
			return conn, err
		},
		DisableCompression: true,
		MaxIdleConns:       1,
		IdleConnTimeout:    30 * time.Second,
	}}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w on %s", ErrNoServer, dataDir)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var st Status
	err := c.call(pctx, http.MethodGet, "/v1/status", nil, &st)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
		c.Close()
		return nil, fmt.Errorf("%w on %s", ErrNoServer, dataDir)
	case errors.Is(err, fs.ErrPermission):
		c.Close()
		return nil, fmt.Errorf("control: %s: permission denied: only the user running arkbox serve (and root) may use it", path)
	}
	c.Close()
	return nil, err
}

// Close releases the client's idle connection.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// call sends a request with body in (nil: none) and decodes the answer
// into out (nil: none expected).
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("control: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://arkbox"+path, body)
	if err != nil {
		return fmt.Errorf("control: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("control: %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("control: %s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return &e
		}
		return &Error{Message: fmt.Sprintf("control: %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("control: %s %s: decode the answer: %w", method, path, err)
	}
	return nil
}

func seg(s string) string { return url.PathEscape(s) }

// Shares implements Ops.
func (c *Client) Shares(ctx context.Context) ([]config.Share, error) {
	var out []config.Share
	return out, c.call(ctx, http.MethodGet, "/v1/shares", nil, &out)
}

// AddShare implements Ops.
func (c *Client) AddShare(ctx context.Context, s NewShare) error {
	return c.call(ctx, http.MethodPost, "/v1/shares", s, nil)
}

// RemoveShare implements Ops.
func (c *Client) RemoveShare(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, "/v1/shares/"+seg(name), nil, nil)
}

// Users implements Ops.
func (c *Client) Users(ctx context.Context) ([]User, error) {
	var out []User
	return out, c.call(ctx, http.MethodGet, "/v1/users", nil, &out)
}

// AddUser implements Ops.
func (c *Client) AddUser(ctx context.Context, u NewUser) error {
	return c.call(ctx, http.MethodPost, "/v1/users", u, nil)
}

// SetPassword implements Ops.
func (c *Client) SetPassword(ctx context.Context, user, password string) error {
	return c.call(ctx, http.MethodPut, "/v1/users/"+seg(user)+"/password", passwordBody{password}, nil)
}

// AddKeys implements Ops.
func (c *Client) AddKeys(ctx context.Context, user string, keys []string) error {
	return c.call(ctx, http.MethodPost, "/v1/users/"+seg(user)+"/keys", keysBody{keys}, nil)
}

// Grant implements Ops.
func (c *Client) Grant(ctx context.Context, user, share, access string) error {
	return c.call(ctx, http.MethodPut, "/v1/users/"+seg(user)+"/grants/"+seg(share), grantBody{access}, nil)
}

// Revoke implements Ops.
func (c *Client) Revoke(ctx context.Context, user, share string) error {
	return c.call(ctx, http.MethodDelete, "/v1/users/"+seg(user)+"/grants/"+seg(share), nil, nil)
}

// ReloadReplication implements Ops.
func (c *Client) ReloadReplication(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/v1/replication/reload", nil, nil)
}

// Snapshot implements Ops.
func (c *Client) Snapshot(ctx context.Context, share string) (Snapshot, error) {
	var out Snapshot
	return out, c.call(ctx, http.MethodPost, "/v1/shares/"+seg(share)+"/snapshot", nil, &out)
}

// Snapshots implements Ops.
func (c *Client) Snapshots(ctx context.Context, f SnapshotFilter) ([]Snapshot, error) {
	q := url.Values{}
	if f.Source != "" {
		q.Set("source", f.Source)
	}
	var out []Snapshot
	return out, c.call(ctx, http.MethodGet, "/v1/snapshots"+query(q), nil, &out)
}

// Jobs implements Ops.
func (c *Client) Jobs(ctx context.Context, f JobFilter) ([]jobs.Record, error) {
	q := url.Values{}
	if f.Kind != "" {
		q.Set("kind", f.Kind)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out []jobs.Record
	return out, c.call(ctx, http.MethodGet, "/v1/jobs"+query(q), nil, &out)
}

func query(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}
