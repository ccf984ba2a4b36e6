package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/arkbox/arkbox/appliance/config"
	"github.com/arkbox/arkbox/appliance/control"
	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/appliance/users"
	"github.com/arkbox/arkbox/storage/crypto"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/sharefs"
)

// minPasswordLen is the shortest password a user may be given.
const minPasswordLen = 8

// configOps are the configuration operations of control.Ops, the same
// for a running server and for the files alone: each change reads the
// configuration file, changes it, validates and saves it (config.Save),
// then hands the saved configuration to apply (a running server's; nil
// when no server runs, whose next start reads the file).
type configOps struct {
	path  string       // the configuration file
	dir   string       // the data folder, for messages
	hash  users.Params // for new passwords
	apply func(ctx context.Context, cfg config.Config) error

	mu sync.Mutex // one change at a time, apply included
}

// load reads the configuration file.
func (o *configOps) load() (config.Config, error) {
	cfg, err := config.Load(o.path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, fmt.Errorf("no configuration in %s: start `arkbox serve --repo %s` once to create it", o.dir, o.dir)
	}
	return cfg, err
}

// change applies fn to the configuration, saves and applies the result.
func (o *configOps) change(ctx context.Context, fn func(cfg *config.Config) error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	cfg, err := o.load()
	if err != nil {
		return err
	}
	if err := fn(&cfg); err != nil {
		return err
	}
	if err := config.Save(o.path, cfg); err != nil {
		return err
	}
	if o.apply != nil {
		if err := o.apply(ctx, cfg); err != nil {
			return fmt.Errorf("the configuration was saved, but the running server could not apply all of it (it will at its next start): %w", err)
		}
	}
	return nil
}

func (o *configOps) Shares(ctx context.Context) ([]config.Share, error) {
	cfg, err := o.load()
	if err != nil {
		return nil, err
	}
	return cfg.Shares, nil
}

func (o *configOps) AddShare(ctx context.Context, s control.NewShare) error {
	if err := sharefs.ValidShareName(s.Name); err != nil {
		return err
	}
	return o.change(ctx, func(cfg *config.Config) error {
		if _, ok := cfg.Share(s.Name); ok {
			return fmt.Errorf("share %s exists", s.Name)
		}
		// The default share's schedule and retention.
		ss := config.Default(cfg.DataDir).Shares[0].Snapshots[0]
		if s.Schedule != "" {
			ss.Schedule = s.Schedule
		}
		cfg.Shares = append(cfg.Shares, config.Share{Name: s.Name, Snapshots: []config.SnapshotSchedule{ss}})
		return nil
	})
}

func (o *configOps) RemoveShare(ctx context.Context, name string) error {
	return o.change(ctx, func(cfg *config.Config) error {
		n := len(cfg.Shares)
		cfg.Shares = slices.DeleteFunc(cfg.Shares, func(s config.Share) bool { return strings.EqualFold(s.Name, name) })
		if len(cfg.Shares) == n {
			return fmt.Errorf("no share %s", name)
		}
		for i := range cfg.Users {
			for s := range cfg.Users[i].Grants {
				if strings.EqualFold(s, name) {
					delete(cfg.Users[i].Grants, s)
				}
			}
		}
		return nil
	})
}

func (o *configOps) Users(ctx context.Context) ([]control.User, error) {
	cfg, err := o.load()
	if err != nil {
		return nil, err
	}
	out := []control.User{}
	for _, u := range cfg.Users {
		out = append(out, control.User{Name: u.Name, Admin: u.Admin, Keys: len(u.AuthorizedKeys), Grants: u.Grants})
	}
	return out, nil
}

// hashPassword checks and hashes a new password.
func (o *configOps) hashPassword(pw string) (string, error) {
	if len(pw) < minPasswordLen {
		return "", fmt.Errorf("the password is shorter than %d characters", minPasswordLen)
	}
	return users.HashPasswordParams([]byte(pw), o.hash)
}

// findUser returns the user named name (ignoring case) in cfg.
func findUser(cfg *config.Config, name string) (*config.User, error) {
	for i := range cfg.Users {
		if strings.EqualFold(cfg.Users[i].Name, name) {
			return &cfg.Users[i], nil
		}
	}
	return nil, fmt.Errorf("no user %s", name)
}

// checkKeys parses authorized-key lines.
func checkKeys(keys []string) error {
	for _, k := range keys {
		if _, _, err := users.ParseAuthorizedKey(k); err != nil {
			return err
		}
	}
	return nil
}

func (o *configOps) AddUser(ctx context.Context, nu control.NewUser) error {
	if err := checkKeys(nu.AuthorizedKeys); err != nil {
		return err
	}
	if nu.Password == "" && len(nu.AuthorizedKeys) == 0 {
		return control.UsageError("give the user a password or an authorized key")
	}
	return o.change(ctx, func(cfg *config.Config) error {
		if _, err := findUser(cfg, nu.Name); err == nil {
			return fmt.Errorf("user %s exists", nu.Name)
		}
		u := config.User{Name: nu.Name, Admin: nu.Admin, AuthorizedKeys: slices.Clone(nu.AuthorizedKeys)}
		if nu.Password != "" {
			var err error
			if u.PasswordHash, err = o.hashPassword(nu.Password); err != nil {
				return err
			}
		}
		cfg.Users = append(cfg.Users, u)
		return nil
	})
}

func (o *configOps) SetPassword(ctx context.Context, name, pw string) error {
	return o.change(ctx, func(cfg *config.Config) error {
		u, err := findUser(cfg, name)
		if err != nil {
			return err
		}
		u.PasswordHash, err = o.hashPassword(pw)
		return err
	})
}

func (o *configOps) AddKeys(ctx context.Context, name string, keys []string) error {
	if err := checkKeys(keys); err != nil {
		return err
	}
	return o.change(ctx, func(cfg *config.Config) error {
		u, err := findUser(cfg, name)
		if err != nil {
			return err
		}
		u.AuthorizedKeys = append(u.AuthorizedKeys, keys...)
		return nil
	})
}

func (o *configOps) Grant(ctx context.Context, name, share, access string) error {
	if _, err := users.ParseAccess(access); err != nil {
		return control.UsageError(fmt.Sprintf("access %q: want ro or rw", access))
	}
	return o.change(ctx, func(cfg *config.Config) error {
		u, err := findUser(cfg, name)
		if err != nil {
			return err
		}
		sh, ok := cfg.Share(share)
		if !ok {
			return fmt.Errorf("no share %s", share)
		}
		if u.Grants == nil {
			u.Grants = map[string]string{}
		}
		for s := range u.Grants {
			if strings.EqualFold(s, sh.Name) {
				delete(u.Grants, s)
			}
		}
		u.Grants[sh.Name] = access // spelled as the share is
		return nil
	})
}

func (o *configOps) Revoke(ctx context.Context, name, share string) error {
	return o.change(ctx, func(cfg *config.Config) error {
		u, err := findUser(cfg, name)
		if err != nil {
			return err
		}
		n := len(u.Grants)
		for s := range u.Grants {
			if strings.EqualFold(s, share) {
				delete(u.Grants, s)
			}
		}
		if len(u.Grants) == n {
			return fmt.Errorf("user %s has no grant to share %s", u.Name, share)
		}
		return nil
	})
}

// configuredShare returns the configured share named name (ignoring case).
func (o *configOps) configuredShare(name string) (config.Share, config.Config, error) {
	cfg, err := o.load()
	if err != nil {
		return config.Share{}, cfg, err
	}
	sh, ok := cfg.Share(name)
	if !ok {
		return sh, cfg, fmt.Errorf("no share %s", name)
	}
	return sh, cfg, nil
}

// snapshotList filters and converts the repository's snapshots.
func snapshotList(r *repo.Repository, f control.SnapshotFilter) ([]control.Snapshot, error) {
	snaps, err := r.Snapshots()
	if err != nil {
		return nil, err
	}
	out := []control.Snapshot{}
	for _, sn := range snaps {
		if f.Source == "" || sn.Source == f.Source {
			out = append(out, control.SnapshotOf(sn))
		}
	}
	return out, nil
}

// OfflineOptions are what Offline needs to work on a data folder's files.
type OfflineOptions struct {
	DataDir string
	Hash    users.Params // for new passwords (zero: the default)
	// Passphrase returns the repository's passphrase; it is called only
	// by the operations that open the repository (snapshot, snapshots).
	Passphrase func() ([]byte, error)
	KDF        crypto.KDFParams
	Logger     *slog.Logger // nil: discard
}

// Offline returns the control operations working on a data folder's files
// directly, for when no server runs on it: configuration changes are saved
// for the next start, and snapshot, snapshots and jobs open the
// repository for the one operation (and fail while a server holds it).
func Offline(opt OfflineOptions) control.Ops {
	if opt.Hash == (users.Params{}) {
		opt.Hash = users.DefaultParams()
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	return &offline{configOps: &configOps{path: config.Path(opt.DataDir), dir: opt.DataDir, hash: opt.Hash}, opt: opt}
}

type offline struct {
	*configOps
	opt OfflineOptions
}

// open opens the repository of cfg.
func (o *offline) open(ctx context.Context, cfg config.Config, readOnly bool) (*home.Home, *repo.Repository, error) {
	h, err := home.Open(ctx, cfg.RepoDir(), home.Options{Logger: o.opt.Logger, ReadOnly: readOnly})
	if err != nil {
		return nil, nil, err
	}
	pw, err := o.opt.Passphrase()
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	r, err := repo.Open(ctx, h.Store, h.Catalog, pw, repo.Options{Logger: o.opt.Logger, KDF: o.opt.KDF})
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return h, r, nil
}

// ReloadReplication implements control.Ops: with no server running there
// is nothing scheduled to change.
func (o *offline) ReloadReplication(ctx context.Context) error { return nil }

func (o *offline) Snapshot(ctx context.Context, name string) (_ control.Snapshot, err error) {
	sh, cfg, err := o.configuredShare(name)
	if err != nil {
		return control.Snapshot{}, err
	}
	loc, err := cfg.Location()
	if err != nil {
		return control.Snapshot{}, err
	}
	h, r, err := o.open(ctx, cfg, false)
	if err != nil {
		return control.Snapshot{}, err
	}
	defer h.Close()
	defer func() {
		if cerr := r.Close(context.Background()); err == nil && cerr != nil {
			err = cerr
		}
	}()
	st, err := sharefs.Open(ctx, r, h.Catalog, filepath.Join(cfg.DataDir, "staging"), sharefs.Options{Logger: o.opt.Logger})
	if err != nil {
		return control.Snapshot{}, err
	}
	defer func() {
		if cerr := st.Close(context.Background()); err == nil && cerr != nil {
			err = cerr
		}
	}()
	// A share added while no server ran is created by the next start;
	// create it now, as that start would.
	if _, err := st.Share(sh.Name); errors.Is(err, sharefs.ErrNotExist) {
		if _, err := st.CreateShare(sh.Name); err != nil {
			return control.Snapshot{}, err
		}
	}
	jdb, err := jobs.Open(ctx, h.Catalog.DB(), jobs.Options{Logger: o.opt.Logger})
	if err != nil {
		return control.Snapshot{}, err
	}
	w := &worker{h: h, r: r, shares: st, jdb: jdb, log: o.opt.Logger, loc: loc, now: time.Now}
	sn, err := w.manualSnapshot(ctx, sh)
	if err != nil {
		return control.Snapshot{}, err
	}
	return control.SnapshotOf(sn), nil
}

func (o *offline) Snapshots(ctx context.Context, f control.SnapshotFilter) ([]control.Snapshot, error) {
	cfg, err := o.load()
	if err != nil {
		return nil, err
	}
	h, r, err := o.open(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	defer r.Close(context.Background())
	return snapshotList(r, f)
}

func (o *offline) Jobs(ctx context.Context, f control.JobFilter) ([]jobs.Record, error) {
	cfg, err := o.load()
	if err != nil {
		return nil, err
	}
	h, err := home.Open(ctx, cfg.RepoDir(), home.Options{Logger: o.opt.Logger, ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer h.Close()
	jdb, err := jobs.Open(ctx, h.Catalog.DB(), jobs.Options{Logger: o.opt.Logger})
	if err != nil {
		return nil, err
	}
	return jdb.List(ctx, jobs.Filter{Kind: f.Kind}, f.Limit)
}
