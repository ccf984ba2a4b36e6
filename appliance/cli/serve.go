package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/arkbox/arkbox/appliance/config"
	"github.com/arkbox/arkbox/appliance/control"
	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/appliance/pooldisks"
	"github.com/arkbox/arkbox/appliance/server"
	"github.com/arkbox/arkbox/appliance/users"
	"github.com/arkbox/arkbox/storage/home"
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
	if Build != "" {
		log.Info("starting", "version", Version, "build", Build)
	} else {
		log.Info("starting", "version", Version)
	}
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

// isDataFolder reports whether dir is a data folder of `arkbox serve` (it
// holds the configuration file).
func isDataFolder(dir string) bool {
	if dir == "" {
		return false
	}
	_, err := os.Stat(config.Path(dir))
	return err == nil
}

// controlOps returns the control operations on the data folder --repo
// names: the running server's, through its control socket, or — when no
// server runs there — the same operations on the files. The returned
// function releases them.
func (c *common) controlOps(ctx context.Context, e *env) (control.Ops, func(), error) {
	if c.repo == "" {
		return nil, nil, usagef("give --repo DIR (the data folder)")
	}
	cl, err := control.Dial(ctx, c.repo)
	if err == nil {
		return cl, func() { cl.Close() }, nil
	}
	if !errors.Is(err, control.ErrNoServer) {
		return nil, nil, err
	}
	dir := c.repo
	return server.Offline(server.OfflineOptions{DataDir: dir, Hash: hashParams(), KDF: kdfFromEnv(), Logger: e.log,
		Passphrase: func() ([]byte, error) { return c.servePassphrase(e, dir) }}), func() {}, nil
}

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
	switch sub {
	case "list", "add", "remove":
	default:
		return usagef("unknown share command %q", sub)
	}
	if sub != "list" && len(pos) != 1 {
		return usagef("give the share's name")
	}
	ops, done, err := c.controlOps(ctx, e)
	if err != nil {
		return err
	}
	defer done()
	switch sub {
	case "list":
		shares, err := ops.Shares(ctx)
		if err != nil {
			return err
		}
		if shares == nil {
			shares = []config.Share{}
		}
		if c.json {
			return printJSON(e.stdout, shares)
		}
		for _, s := range shares {
			var sch []string
			for _, ss := range s.Snapshots {
				sch = append(sch, ss.Schedule)
			}
			fmt.Fprintf(e.stdout, "%s\t%s\t%s\n", s.Name, strings.Join(sch, "; "), s.Comment)
		}
		return nil
	case "add":
		if err := ops.AddShare(ctx, control.NewShare{Name: pos[0], Schedule: *schedule}); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "share %s added\n", pos[0])
	case "remove":
		if err := ops.RemoveShare(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "share %s removed: no longer served; its files and snapshots are kept (adding the share again serves them)\n", pos[0])
	}
	return nil
}

func cmdUser(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("usage: arkbox user add|list|passwd|grant|revoke|key NAME … --repo DIR")
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
	switch {
	case sub == "list":
	case sub == "add" || sub == "passwd":
		if len(pos) != 1 {
			return usagef("give the user's name")
		}
	case sub == "key":
		if len(pos) != 2 || pos[0] != "add" || *keyFile == "" {
			return usagef("usage: arkbox user key add NAME --authorized-key FILE")
		}
	case sub == "grant":
		if len(pos) != 2 || *rw == *ro {
			return usagef("usage: arkbox user grant NAME SHARE --rw|--ro")
		}
	case sub == "revoke":
		if len(pos) != 2 {
			return usagef("usage: arkbox user revoke NAME SHARE")
		}
	default:
		return usagef("unknown user command %q", sub)
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
	// The new password is read here and sent in clear over the control
	// socket (or hashed here when no server runs); it is never logged.
	newPassword := func() (string, error) {
		if c.pwFile != "" {
			b, err := readSecretFile(c.pwFile)
			return string(b), err
		}
		if v, ok := os.LookupEnv("ARKBOX_USER_PASSWORD"); ok {
			return v, nil
		}
		pw, err := prompt(e, "password: ", true)
		return string(pw), err
	}
	ops, done, err := c.controlOps(ctx, e)
	if err != nil {
		return err
	}
	defer done()
	switch sub {
	case "list":
		list, err := ops.Users(ctx)
		if err != nil {
			return err
		}
		if list == nil {
			list = []control.User{}
		}
		if c.json {
			return printJSON(e.stdout, list)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tADMIN\tKEYS\tGRANTS")
		for _, r := range list {
			var g []string
			for _, s := range sortedKeys(r.Grants) {
				g = append(g, s+":"+r.Grants[s])
			}
			fmt.Fprintf(tw, "%s\t%v\t%d\t%s\n", r.Name, r.Admin, r.Keys, strings.Join(g, " "))
		}
		return tw.Flush()
	case "add":
		u := control.NewUser{Name: pos[0], Admin: *admin}
		if *keyFile != "" {
			if u.AuthorizedKeys, err = readKeys(); err != nil {
				return err
			}
		}
		if *keyFile == "" || c.pwFile != "" {
			if u.Password, err = newPassword(); err != nil {
				return err
			}
			if u.Password == "" {
				return errors.New("the password is empty")
			}
		}
		err = ops.AddUser(ctx, u)
	case "passwd":
		var pw string
		if pw, err = newPassword(); err == nil {
			err = ops.SetPassword(ctx, pos[0], pw)
		}
	case "key":
		var keys []string
		if keys, err = readKeys(); err == nil {
			err = ops.AddKeys(ctx, pos[1], keys)
		}
	case "grant":
		err = ops.Grant(ctx, pos[0], pos[1], map[bool]string{true: "rw", false: "ro"}[*rw])
	case "revoke":
		err = ops.Revoke(ctx, pos[0], pos[1])
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "user %s: done\n", sub)
	return nil
}

// cmdSnapshot takes a snapshot of a share now: through the running server
// (after a scheduled snapshot of the share in progress), or on the files
// when no server runs.
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
	ops, done, err := c.controlOps(ctx, e)
	if err != nil {
		return err
	}
	defer done()
	sn, err := ops.Snapshot(ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(e.stdout, sn)
	}
	fmt.Fprintf(e.stdout, "snapshot %s of share %s: %d files, %s\n", sn.Short, pos[0], sn.Stats.Files, humanBytes(sn.Stats.Bytes))
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
	var recs []jobs.Record
	if isDataFolder(c.repo) {
		ops, done, err := c.controlOps(ctx, e)
		if err != nil {
			return err
		}
		defer done()
		if recs, err = ops.Jobs(ctx, control.JobFilter{Kind: *kind, Limit: *limit}); err != nil {
			return err
		}
	} else {
		h, err := home.Open(ctx, c.repo, home.Options{Logger: e.log, ReadOnly: true})
		if err != nil {
			return err
		}
		defer h.Close()
		jdb, err := jobs.Open(ctx, h.Catalog.DB(), jobs.Options{})
		if err != nil {
			return err
		}
		if recs, err = jdb.List(ctx, jobs.Filter{Kind: *kind}, *limit); err != nil {
			return err
		}
	}
	if recs == nil {
		recs = []jobs.Record{}
	}
	if c.json {
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
