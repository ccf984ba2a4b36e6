// Package control is the local control endpoint of `arkbox serve`: the
// commands that change or inspect a running appliance (share, user,
// snapshot, snapshots, jobs) reach the server through it instead of
// opening the files the server holds. It speaks HTTP/1.1 with JSON bodies
// over a Unix socket in the data folder (run/arkbox.sock). Only the user
// the server runs as, and root, may use it: the folder is 0700, the socket
// 0600, and the server checks every connection's peer user id
// (SO_PEERCRED).
//
// Ops is the set of operations. Serve serves an Ops on the socket that
// Listen makes; Dial returns a Client, an Ops over the socket. The wire
// behaviour is documented in doc/control.md.
package control

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/arkbox/arkbox/appliance/config"
	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/storage/repo"
)

// Ops are the operations of the control endpoint. The server implements
// them on the running appliance; Client implements them over the socket.
// An error's message is meant to be shown as it is; an *Error with Usage
// set says the request itself was wrong.
type Ops interface {
	// Shares returns the configured shares.
	Shares(ctx context.Context) ([]config.Share, error)
	// AddShare configures a new share (and serves it, on a running server).
	AddShare(ctx context.Context, s NewShare) error
	// RemoveShare removes a share from the configuration, with the grants
	// to it; its data and snapshots stay.
	RemoveShare(ctx context.Context, name string) error
	// Users returns the accounts.
	Users(ctx context.Context) ([]User, error)
	// AddUser adds an account.
	AddUser(ctx context.Context, u NewUser) error
	// SetPassword sets a user's password (given in clear; stored hashed).
	SetPassword(ctx context.Context, user, password string) error
	// AddKeys adds OpenSSH public keys to a user's authorized keys.
	AddKeys(ctx context.Context, user string, keys []string) error
	// Grant gives a user access ("ro" or "rw") to a share.
	Grant(ctx context.Context, user, share, access string) error
	// Revoke withdraws a user's grant to a share.
	Revoke(ctx context.Context, user, share string) error
	// Snapshot runs the share's snapshot job now and returns the snapshot.
	Snapshot(ctx context.Context, share string) (Snapshot, error)
	// Snapshots lists the repository's snapshots, oldest first.
	Snapshots(ctx context.Context, f SnapshotFilter) ([]Snapshot, error)
	// Jobs lists job records, newest first.
	Jobs(ctx context.Context, f JobFilter) ([]jobs.Record, error)
	// ReloadReplication reschedules the sync jobs from the repository's
	// replication targets (after `arkbox replicate add|remove`).
	ReloadReplication(ctx context.Context) error
}

// NewShare is a share to add.
type NewShare struct {
	Name     string `json:"name"`
	Schedule string `json:"schedule"` // snapshot schedule; "" takes the default
}

// NewUser is an account to add. Password is the password in clear ("" for
// none): it crosses the socket only, and the server keeps its hash.
type NewUser struct {
	Name           string   `json:"name"`
	Admin          bool     `json:"admin,omitempty"`
	Password       string   `json:"password,omitempty"`
	AuthorizedKeys []string `json:"authorized_keys,omitempty"`
}

// User is an account as listed (arkbox user list --json).
type User struct {
	Name   string            `json:"name"`
	Admin  bool              `json:"admin"`
	Keys   int               `json:"authorized_keys"` // how many
	Grants map[string]string `json:"grants"`          // share → "ro" or "rw"
}

// Snapshot is a snapshot as listed (arkbox snapshots --json, backup
// --json, snapshot --json).
type Snapshot struct {
	ID       string             `json:"id"`
	Short    string             `json:"short_id"`
	Time     time.Time          `json:"time"`
	Source   string             `json:"source"`
	Host     string             `json:"host,omitempty"`
	Paths    []string           `json:"paths,omitempty"`
	Tags     []string           `json:"tags,omitempty"`
	Parent   string             `json:"parent,omitempty"`
	Tree     string             `json:"tree"`
	Archived bool               `json:"archived"`
	Stats    repo.SnapshotStats `json:"stats"`
}

// SnapshotOf returns the listing of a repository snapshot.
func SnapshotOf(sn *repo.Snapshot) Snapshot {
	j := Snapshot{ID: sn.ID.String(), Short: sn.ID.String()[:8], Time: sn.Time, Source: sn.Source, Host: sn.Host,
		Paths: sn.Paths, Tags: sn.Tags, Tree: sn.Tree.String(), Archived: sn.Archived, Stats: sn.Stats}
	if sn.Parent != nil {
		j.Parent = sn.Parent.String()
	}
	return j
}

// SnapshotFilter selects snapshots; zero fields select all.
type SnapshotFilter struct {
	Source string `json:"source,omitempty"` // e.g. "share:backups"
}

// JobFilter selects job records; zero fields select all.
type JobFilter struct {
	Kind  string `json:"kind,omitempty"`
	Limit int    `json:"limit,omitempty"` // at most this many, newest first; 0: all
}

// Error is a failed request as the client sees it: the message, to be
// shown as it is, and whether the request itself was wrong (a usage
// error, exit code 2 in the CLI) rather than the operation failing.
type Error struct {
	Message string `json:"error"`
	Usage   bool   `json:"usage,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// UsageError returns an *Error for a wrong request, with message msg.
func UsageError(msg string) error { return &Error{Message: msg, Usage: true} }

// ErrNoServer is returned by Dial when no server listens on the data
// folder's socket.
var ErrNoServer = errors.New("control: no server listens")

// SocketPath returns the control socket of a data folder.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "run", "arkbox.sock") }
