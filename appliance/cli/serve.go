package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/arkbox/arkbox/appliance/config"
	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/appliance/pooldisks"
	"github.com/arkbox/arkbox/appliance/server"
	"github.com/arkbox/arkbox/appliance/users"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/sharefs"
)

// resolveRepo lets --repo name either a repository's home folder or the
// data folder of `arkbox serve` (which keeps the repository in repo/).
func resolveRepo(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, home.FileName)); err == nil {
		return dir
	}
	if _, err := os.Stat(config.Path(dir)); err == nil {
		return filepath.Join(dir, "repo")
	}
	return dir
}

// servePassphrase is the passphrase for a data folder: from the
// environment or --password-file, else the one `serve` keeps.
func (c *common) servePassphrase(e *env, dataDir string) ([]byte, error) {
	if _, ok := os.LookupEnv("ARKBOX_PASSWORD"); ok || c.pwFile != "" {
		return c.passphrase(e, false)
	}
	b, err := os.ReadFile(server.PassphrasePath(dataDir))
	if err != nil {
		return c.passphrase(e, false)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

func cmdServe(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags("serve", e, &c, false)
	cfgPath := fs.String("config", "", "configuration file (default: DIR/arkbox.json)")
	sftpAddr := fs.String("sftp-addr", "", "SFTP address HOST:PORT, e.g. :22 for every address (overrides the configuration)")
	initConfig := fs.String("init-config", "", "first start: begin the configuration from this file instead of the defaults")
	diskMounts := fs.String("disk-mounts", "", "the pool is on whole disks, each mounted at `DIR`/<filesystem UUID> (the appliance); a new pool waits for disks")
	adopt := fs.Int("adopt-blank-disks", 0, "with --disk-mounts: when there is no pool, wait for `N` blank USB/SATA/NVMe disks, partition and format them, and create the pool on them")
	diskWait := fs.Duration("disk-wait", 90*time.Second, "with --disk-mounts: how long to wait for missing pool disks before opening the pool without them")
	console := fs.String("console", "", "also write the log to this `file` (the appliance: /dev/console)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if c.repo == "" {
		return usagef("give --repo DIR (the data folder)")
	}
	if *adopt != 0 && *diskMounts == "" {
		return usagef("--adopt-blank-disks needs --disk-mounts")
	}
	logOut := e.stderr
	if *console != "" {
		f, err := os.OpenFile(*console, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("serve: open the console %s: %w", *console, err)
		}
		defer f.Close()
		logOut = teeWriter{e.stderr, f}
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	opt := server.Options{DataDir: c.repo, ConfigPath: *cfgPath, SFTPAddr: *sftpAddr, Out: e.stdout,
		Logger: log, KDF: kdfFromEnv()}
	opt.Hash = hashParams()
	if *initConfig != "" {
		b, err := os.ReadFile(*initConfig)
		if err != nil {
			return fmt.Errorf("serve: read the initial configuration: %w", err)
		}
		opt.InitConfig = b
	}
	if *diskMounts != "" {
		dir, err := filepath.Abs(*diskMounts)
		if err != nil {
			return err
		}
		m, err := pooldisks.New(pooldisks.Options{MountDir: dir, Adopt: *adopt, Wait: *diskWait, Logger: log})
		if err != nil {
			return usagef("%v", err)
		}
		opt.Disks = m
	}
	if _, ok := os.LookupEnv("ARKBOX_PASSWORD"); ok || c.pwFile != "" {
		pw, err := c.passphrase(e, false)
		if err != nil {
			return err
		}
		opt.Passphrase = pw
	}
	return server.Run(ctx, opt)
}

// teeWriter writes to its first writer and, ignoring errors (a console
// may go away), to its second.
type teeWriter struct{ w, also io.Writer }

func (t teeWriter) Write(p []byte) (int, error) {
	t.also.Write(p)
	return t.w.Write(p)
}

// hashParams are the password-hash parameters: the default, or cheap ones
// for tests (ARKBOX_TEST_KDF=1, like kdfFromEnv).
func hashParams() users.Params {
	if os.Getenv("ARKBOX_TEST_KDF") == "1" {
		return users.Params{MemoryKiB: 8 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	}
	return users.DefaultParams()
}

// loadConfig reads the data folder's configuration for editing.
func loadConfig(dir string) (config.Config, string, error) {
	if dir == "" {
		return config.Config{}, "", usagef("give --repo DIR (the data folder)")
	}
	p := config.Path(dir)
	cfg, err := config.Load(p)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, p, fmt.Errorf("no configuration in %s: start `arkbox serve --repo %s` once to create it", dir, dir)
	}
	return cfg, p, err
}

const restartNote = "a running server applies configuration changes when restarted"

func cmdShare(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("usage: arkbox share add|list|remove NAME --repo DIR")
	}
	sub := args[0]
	var c common
	fs := newFlags("share "+sub, e, &c, true)
	schedule := fs.String("schedule", "every 1h", "snapshot schedule of a new share")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	cfg, path, err := loadConfig(c.repo)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		if c.json {
			return printJSON(e.stdout, cfg.Shares)
		}
		for _, s := range cfg.Shares {
			var sch []string
			for _, ss := range s.Snapshots {
				sch = append(sch, ss.Schedule)
			}
			fmt.Fprintf(e.stdout, "%s\t%s\t%s\n", s.Name, strings.Join(sch, "; "), s.Comment)
		}
		return nil
	case "add":
		if len(pos) != 1 {
			return usagef("give the share's name")
		}
		if err := sharefs.ValidShareName(pos[0]); err != nil {
			return err
		}
		if _, ok := cfg.Share(pos[0]); ok {
			return fmt.Errorf("share %s exists", pos[0])
		}
		def := config.Default(cfg.DataDir)
		ss := def.Shares[0].Snapshots[0]
		ss.Schedule = *schedule
		cfg.Shares = append(cfg.Shares, config.Share{Name: pos[0], Snapshots: []config.SnapshotSchedule{ss}})
	case "remove":
		if len(pos) != 1 {
			return usagef("give the share's name")
		}
		var keep []config.Share
		for _, s := range cfg.Shares {
			if !strings.EqualFold(s.Name, pos[0]) {
				keep = append(keep, s)
			}
		}
		if len(keep) == len(cfg.Shares) {
			return fmt.Errorf("no share %s", pos[0])
		}
		cfg.Shares = keep
		for i := range cfg.Users {
			for s := range cfg.Users[i].Grants {
				if strings.EqualFold(s, pos[0]) {
					delete(cfg.Users[i].Grants, s)
				}
			}
		}
	default:
		return usagef("unknown share command %q", sub)
	}
	if err := config.Save(path, cfg); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: done (%s; its snapshots stay until retention removes them)\n", sub, restartNote)
	return nil
}

func cmdUser(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("usage: arkbox user add|list|passwd|grant|key NAME … --repo DIR")
	}
	sub := args[0]
	var c common
	fs := newFlags("user "+sub, e, &c, true)
	keyFile := fs.String("authorized-key", "", "a file of OpenSSH public keys for the user")
	rw := fs.Bool("rw", false, "grant read-write")
	ro := fs.Bool("ro", false, "grant read-only")
	admin := fs.Bool("admin", false, "make the user an administrator (add)")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	cfg, path, err := loadConfig(c.repo)
	if err != nil {
		return err
	}
	find := func(name string) (*config.User, error) {
		for i := range cfg.Users {
			if strings.EqualFold(cfg.Users[i].Name, name) {
				return &cfg.Users[i], nil
			}
		}
		return nil, fmt.Errorf("no user %s", name)
	}
	readKeys := func() ([]string, error) {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				if _, _, err := users.ParseAuthorizedKey(l); err != nil {
					return nil, err
				}
				out = append(out, l)
			}
		}
		return out, nil
	}
	newPassword := func() (string, error) {
		var pw []byte
		if c.pwFile != "" {
			b, err := readSecretFile(c.pwFile)
			if err != nil {
				return "", err
			}
			pw = b
		} else if v, ok := os.LookupEnv("ARKBOX_USER_PASSWORD"); ok {
			pw = []byte(v)
		} else {
			var err error
			if pw, err = prompt(e, "password: ", true); err != nil {
				return "", err
			}
		}
		if len(pw) < 8 {
			return "", errors.New("the password is shorter than 8 characters")
		}
		return users.HashPasswordParams(pw, hashParams())
	}
	switch sub {
	case "list":
		type row struct {
			Name   string            `json:"name"`
			Admin  bool              `json:"admin"`
			Keys   int               `json:"authorized_keys"`
			Grants map[string]string `json:"grants"`
		}
		var out []row
		for _, u := range cfg.Users {
			out = append(out, row{u.Name, u.Admin, len(u.AuthorizedKeys), u.Grants})
		}
		if c.json {
			return printJSON(e.stdout, out)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tADMIN\tKEYS\tGRANTS")
		for _, r := range out {
			var g []string
			for _, s := range sortedKeys(r.Grants) {
				g = append(g, s+":"+r.Grants[s])
			}
			fmt.Fprintf(tw, "%s\t%v\t%d\t%s\n", r.Name, r.Admin, r.Keys, strings.Join(g, " "))
		}
		return tw.Flush()
	case "add":
		if len(pos) != 1 {
			return usagef("give the user's name")
		}
		if _, err := find(pos[0]); err == nil {
			return fmt.Errorf("user %s exists", pos[0])
		}
		u := config.User{Name: pos[0], Admin: *admin}
		if *keyFile != "" {
			if u.AuthorizedKeys, err = readKeys(); err != nil {
				return err
			}
		}
		if *keyFile == "" || c.pwFile != "" {
			if u.PasswordHash, err = newPassword(); err != nil {
				return err
			}
		}
		cfg.Users = append(cfg.Users, u)
	case "passwd":
		if len(pos) != 1 {
			return usagef("give the user's name")
		}
		u, err := find(pos[0])
		if err != nil {
			return err
		}
		if u.PasswordHash, err = newPassword(); err != nil {
			return err
		}
	case "key":
		if len(pos) != 2 || pos[0] != "add" || *keyFile == "" {
			return usagef("usage: arkbox user key add NAME --authorized-key FILE")
		}
		u, err := find(pos[1])
		if err != nil {
			return err
		}
		keys, err := readKeys()
		if err != nil {
			return err
		}
		u.AuthorizedKeys = append(u.AuthorizedKeys, keys...)
	case "grant":
		if len(pos) != 2 || *rw == *ro {
			return usagef("usage: arkbox user grant NAME SHARE --rw|--ro")
		}
		u, err := find(pos[0])
		if err != nil {
			return err
		}
		if _, ok := cfg.Share(pos[1]); !ok {
			return fmt.Errorf("no share %s", pos[1])
		}
		if u.Grants == nil {
			u.Grants = map[string]string{}
		}
		u.Grants[pos[1]] = map[bool]string{true: "rw", false: "ro"}[*rw]
	default:
		return usagef("unknown user command %q", sub)
	}
	if err := config.Save(path, cfg); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "user %s: done (%s)\n", sub, restartNote)
	return nil
}

// cmdSnapshot takes a snapshot of a share (with the server stopped).
func cmdSnapshot(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags("snapshot", e, &c, true)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give the share's name")
	}
	cfg, _, err := loadConfig(c.repo)
	if err != nil {
		return err
	}
	h, err := home.Open(ctx, cfg.RepoDir(), home.Options{Logger: e.log})
	if err != nil {
		return err
	}
	defer h.Close()
	pw, err := c.servePassphrase(e, cfg.DataDir)
	if err != nil {
		return err
	}
	r, err := repo.Open(ctx, h.Store, h.Catalog, pw, repo.Options{Logger: e.log})
	if err != nil {
		return err
	}
	defer r.Close(ctx)
	st, err := sharefs.Open(ctx, r, h.Catalog, filepath.Join(cfg.DataDir, "staging"), sharefs.Options{Logger: e.log})
	if err != nil {
		return err
	}
	defer st.Close(ctx)
	sh, err := st.Share(pos[0])
	if err != nil {
		return err
	}
	sn, err := sh.Snapshot(ctx, time.Now(), []string{"manual"})
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(e.stdout, snapJSON(sn))
	}
	fmt.Fprintf(e.stdout, "snapshot %s of share %s: %d files, %s\n", sn.ID.String()[:8], pos[0], sn.Stats.Files, humanBytes(sn.Stats.Bytes))
	return nil
}

func cmdJobs(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags("jobs", e, &c, true)
	kind := fs.String("kind", "", "only jobs of this kind (snapshot, prune, scrub, verify)")
	limit := fs.Int("n", 50, "how many, newest first")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if c.repo == "" {
		return usagef("give --repo DIR")
	}
	h, err := home.Open(ctx, resolveRepo(c.repo), home.Options{Logger: e.log, ReadOnly: true})
	if err != nil {
		return err
	}
	defer h.Close()
	jdb, err := jobs.Open(ctx, h.Catalog.DB(), jobs.Options{})
	if err != nil {
		return err
	}
	recs, err := jdb.List(ctx, jobs.Filter{Kind: *kind}, *limit)
	if err != nil {
		return err
	}
	if c.json {
		if recs == nil {
			recs = []jobs.Record{}
		}
		return printJSON(e.stdout, recs)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].ID > recs[j].ID })
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tTARGET\tSTARTED\tDURATION\tRESULT\tNEW\tERROR")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Kind, r.Target, r.Started.Local().Format("2006-01-02 15:04:05"),
			r.Duration(time.Now()).Round(time.Millisecond), r.Result, humanBytes(uint64(r.Stats.BytesNew)), r.Error)
	}
	return tw.Flush()
}
