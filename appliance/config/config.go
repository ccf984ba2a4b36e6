// Package config is the appliance's server configuration: shares and their
// snapshot schedules with retention, users and their grants, the network
// services, the maintenance schedules (prune, scrub, verify) and the disk
// pool. It lives as one JSON file, arkbox.json, in the data directory; Load
// reads it strictly (unknown fields are errors), Validate names the field
// of every problem, Save writes it atomically.
//
// The file format is documented in doc/operations.md.
package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/arkbox/arkbox/appliance/users"
)

// FileName is the configuration file's name in the data directory.
const FileName = "arkbox.json"

// Version is the configuration format this package reads and writes.
const Version = 1

// Config is the whole server configuration.
type Config struct {
	Version int `json:"version"`
	// DataDir holds the configuration file, the repository (DataDir/repo)
	// and, by default, the disk folders. In the file, "" means the folder
	// of the file and a relative path is relative to it; Load resolves it.
	DataDir string `json:"data_dir,omitempty"`
	// TimeZone is the IANA zone schedules and retention are evaluated in,
	// e.g. "Europe/Berlin"; "" means the system's local zone.
	TimeZone string   `json:"time_zone,omitempty"`
	Pool     Pool     `json:"pool"`
	Shares   []Share  `json:"shares"`
	Users    []User   `json:"users"`
	Services Services `json:"services"`
	Prune    Task     `json:"prune"`
	Scrub    Task     `json:"scrub"`
	Verify   Verify   `json:"verify"`
}

// Pool is the set of disk folders the repository's objects are
// erasure-coded across. It is used when the pool is created; afterwards
// the pool records its own members and layout (arkbox pool add-disk …).
type Pool struct {
	// Disks are the folders, one per disk; relative paths are relative to
	// DataDir.
	Disks []string `json:"disks"`
	// Parity is the number of parity shards per object (disks that may
	// fail); -1 chooses by disk count (1 for up to 5 disks, 2 above).
	// With one disk, 1..4 keeps parity files on that disk against bad
	// sectors.
	Parity int `json:"parity"`
}

// Share is a writable tree that clients back up into and that is
// snapshotted on schedules.
type Share struct {
	Name      string             `json:"name"`
	Comment   string             `json:"comment,omitempty"`
	Snapshots []SnapshotSchedule `json:"snapshots"`
}

// SnapshotSchedule is one schedule on which a share is snapshotted, with
// the retention policy applied to the snapshots it takes. A share may have
// several (hourly kept for a day, daily kept for a month, …).
type SnapshotSchedule struct {
	// Name labels the schedule's snapshots (their tag), so that its
	// retention applies to its own snapshots only. Required when a share
	// has more than one schedule.
	Name     string `json:"name,omitempty"`
	Schedule string `json:"schedule"` // see package schedule
	Retention
}

// User is one account.
type User struct {
	Name string `json:"name"`
	// PasswordHash is an argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash);
	// "" disables password logins.
	PasswordHash string `json:"password_hash,omitempty"`
	// AuthorizedKeys are OpenSSH public keys ("ssh-ed25519 AAAA… comment").
	AuthorizedKeys []string `json:"authorized_keys,omitempty"`
	// Grants maps share names to "rw" or "ro".
	Grants map[string]string `json:"grants,omitempty"`
	// Admin administers the box (web UI, users, jobs) and reads and
	// writes every share.
	Admin bool `json:"admin,omitempty"`
}

// Services are the network services.
type Services struct {
	SFTP  Service `json:"sftp"`
	SMB   Service `json:"smb"`
	NFS   Service `json:"nfs"`
	Rsync Service `json:"rsync"`
	Web   Service `json:"web"`
}

// Service is one listening service.
type Service struct {
	Enabled bool   `json:"enabled"`
	Addr    string `json:"addr"` // host:port; host "" listens on every address; port 0 picks a free one
}

// Task is a maintenance job on a schedule.
type Task struct {
	Schedule string `json:"schedule"`
}

// Verify is the scheduled repository check.
type Verify struct {
	Schedule string `json:"schedule"`
	// ReadDataPercent is the share of pack data read and verified on each
	// run (0: structure only, 100: everything), as arkbox check
	// --read-data=N%.
	ReadDataPercent float64 `json:"read_data_percent"`
}

// Default returns the embedded defaults for a data directory: a pool of
// three folders under dataDir (disks/disk1…3, 2 data + 1 parity), one share
// "backups" snapshotted hourly keeping 24 hourly, 7 daily, 4 weekly and 12
// monthly snapshots, prune daily at 03:30, scrub weekly on Sunday at
// 04:00, verify on the 1st of the month at 05:00 reading 10% of the data,
// SFTP on 127.0.0.1:2222 and the web UI on 127.0.0.1:8080, no users.
func Default(dataDir string) Config {
	c := defaults()
	c.DataDir = dataDir
	c.Shares = defaultShares()
	c.Pool.Disks = defaultDisks()
	c.Users = []User{}
	return c
}

// defaults returns Default without the slices (which JSON decoding would
// merge into rather than replace) and without a data directory.
func defaults() Config {
	return Config{
		Version: Version,
		Pool:    Pool{Parity: 1},
		Users:   nil,
		Services: Services{
			SFTP:  Service{Enabled: true, Addr: "127.0.0.1:2222"},
			SMB:   Service{Enabled: false, Addr: "127.0.0.1:4450"},
			NFS:   Service{Enabled: false, Addr: "127.0.0.1:2049"},
			Rsync: Service{Enabled: false, Addr: "127.0.0.1:8730"},
			Web:   Service{Enabled: true, Addr: "127.0.0.1:8080"},
		},
		Prune:  Task{Schedule: "daily 03:30"},
		Scrub:  Task{Schedule: "weekly sun 04:00"},
		Verify: Verify{Schedule: "monthly 1 05:00", ReadDataPercent: 10},
	}
}

func defaultShares() []Share {
	return []Share{{
		Name:    "backups",
		Comment: "backups of this office's computers",
		Snapshots: []SnapshotSchedule{{
			Name: "hourly", Schedule: "every 1h",
			Retention: Retention{KeepHourly: 24, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12},
		}},
	}}
}

func defaultDisks() []string {
	return []string{"disks/disk1", "disks/disk2", "disks/disk3"}
}

// Path returns the configuration file of a data directory.
func Path(dataDir string) string { return filepath.Join(dataDir, FileName) }

// RepoDir returns the repository's home folder: DataDir/repo.
func (c Config) RepoDir() string { return filepath.Join(c.DataDir, "repo") }

// DiskDirs returns the pool's disk folders, relative ones resolved against
// DataDir.
func (c Config) DiskDirs() []string {
	out := make([]string, len(c.Pool.Disks))
	for i, d := range c.Pool.Disks {
		out[i] = c.resolve(d)
	}
	return out
}

func (c Config) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.DataDir, p)
}

// Location returns the time zone of schedules and retention: TimeZone, or
// time.Local if it is empty. (A program that runs where no zone database
// is installed, such as a gokrazy appliance, imports time/tzdata.)
func (c Config) Location() (*time.Location, error) {
	if c.TimeZone == "" {
		return time.Local, nil
	}
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("config: time_zone %q: %w", c.TimeZone, err)
	}
	return loc, nil
}

// ShareNames returns the names of the shares, in configuration order.
func (c Config) ShareNames() []string {
	out := make([]string, len(c.Shares))
	for i, s := range c.Shares {
		out[i] = s.Name
	}
	return out
}

// Share returns the share named name (case-insensitively).
func (c Config) Share(name string) (Share, bool) {
	i := slices.IndexFunc(c.Shares, func(s Share) bool { return strings.EqualFold(s.Name, name) })
	if i < 0 {
		return Share{}, false
	}
	return c.Shares[i], true
}

// User returns the user named name (case-insensitively).
func (c Config) User(name string) (User, bool) {
	i := slices.IndexFunc(c.Users, func(u User) bool { return strings.EqualFold(u.Name, name) })
	if i < 0 {
		return User{}, false
	}
	return c.Users[i], true
}

// Accounts returns the users in the form package users works with (for
// users.NewAuthorizer and users.NewAuthenticator). Grants that do not
// parse are left out; Validate reports them.
func (c Config) Accounts() []users.Account {
	out := make([]users.Account, 0, len(c.Users))
	for _, u := range c.Users {
		a := users.Account{Name: u.Name, PasswordHash: u.PasswordHash,
			AuthorizedKeys: slices.Clone(u.AuthorizedKeys), Admin: u.Admin, Grants: map[string]users.Access{}}
		for share, g := range u.Grants {
			if access, err := users.ParseAccess(g); err == nil {
				a.Grants[share] = access
			}
		}
		out = append(out, a)
	}
	return out
}
