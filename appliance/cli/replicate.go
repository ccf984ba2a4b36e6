package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/arkbox/arkbox/appliance/control"
	"github.com/arkbox/arkbox/replicate"
	"github.com/arkbox/arkbox/replicate/bwlimit"
	"github.com/arkbox/arkbox/replicate/target"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
)

// targetFlags are the flags that say how to reach a target URL.
type targetFlags struct {
	accessKey, secretKeyFile, region, caFile, keyFile, sftpPwFile, knownHosts string
	virtualHost, insecure                                                     bool
}

func (t *targetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.accessKey, "access-key", "", "S3 access key (or ARKBOX_S3_ACCESS_KEY)")
	fs.StringVar(&t.secretKeyFile, "secret-key-file", "", "file holding the S3 secret key (or ARKBOX_S3_SECRET_KEY)")
	fs.StringVar(&t.region, "region", "", "S3 region")
	fs.BoolVar(&t.virtualHost, "virtual-host", false, "S3: address the bucket as BUCKET.HOST (default HOST/BUCKET)")
	fs.StringVar(&t.caFile, "ca-file", "", "PEM file of the certificate authorities to trust (S3 over TLS)")
	fs.BoolVar(&t.insecure, "insecure", false, "S3 over plain HTTP (a LAN or test server)")
	fs.StringVar(&t.keyFile, "key-file", "", "SFTP: OpenSSH private key to log in with")
	fs.StringVar(&t.sftpPwFile, "sftp-password-file", "", "SFTP: file holding the password (or ARKBOX_SFTP_PASSWORD)")
	fs.StringVar(&t.knownHosts, "known-hosts", "", "SFTP: known_hosts file pinning the server's key")
}

func (t *targetFlags) spec(url string) target.Spec {
	return target.Spec{URL: url, AccessKey: t.accessKey, SecretKeyFile: t.secretKeyFile, Region: t.region,
		VirtualHost: t.virtualHost, CAFile: t.caFile, Insecure: t.insecure, KeyFile: t.keyFile,
		PasswordFile: t.sftpPwFile, KnownHosts: t.knownHosts}
}

// homeDir returns the repository home folder --repo names (a serve data
// folder resolves to its repository).
func (c *common) homeDir() (string, error) {
	if c.repo == "" {
		return "", usagef("no repository: give --repo DIR or set ARKBOX_REPO")
	}
	if target.IsURL(c.repo) {
		return "", usagef("--repo must be the box's own repository here, not a URL")
	}
	dir := resolveRepo(c.repo)
	if _, err := os.Stat(filepath.Join(dir, home.FileName)); err != nil {
		return "", fmt.Errorf("%s: %w", dir, home.ErrNoHome)
	}
	return filepath.Abs(dir)
}

// openTarget opens a configured target with its bandwidth limiter.
func openTarget(ctx context.Context, e *env, homeDir string, t target.Target, opt target.Options) (objstore.Store, *bwlimit.Limiter, error) {
	opt.Logger = e.log
	return target.OpenConfigured(ctx, homeDir, t, opt)
}

func cmdReplicate(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("usage: arkbox replicate add|list|remove|run|status|verify NAME … --repo DIR")
	}
	sub := args[0]
	var c common
	fs := newFlags("replicate "+sub, e, &c, true)
	tf := &c.tf
	var parallel *int
	var bw, grace, schedule *string
	var appendOnly, noCheck, repair *bool
	var rd pctFlag
	var keepFlags target.Keep
	switch sub {
	case "add":
		parallel = fs.Int("parallel", 4, "parallel connections, 1–10")
		bw = fs.String("bwlimit", "", `bandwidth limit, e.g. "2MB/s Mon-Fri 08:00-18:00" (unlimited otherwise)`)
		grace = fs.String("grace", "168h", "delay before deleting on the target what the box deleted")
		appendOnly = fs.Bool("append-only", false, "never delete on the target")
		schedule = fs.String("schedule", "", `sync schedule under serve: "daily 01:00", "every 6h", "after each snapshot" (default: by hand only)`)
		noCheck = fs.Bool("no-check", false, "do not connect to the target now")
		fs.IntVar(&keepFlags.Last, "keep-last", 0, "the target's own retention: keep the N newest snapshots of each source")
		fs.StringVar(&keepFlags.Within, "keep-within", "", "… keep all snapshots taken within this time (e.g. 90d, 2y)")
		fs.IntVar(&keepFlags.Daily, "keep-daily", 0, "… keep one snapshot for each of the last N days")
		fs.IntVar(&keepFlags.Weekly, "keep-weekly", 0, "… weeks")
		fs.IntVar(&keepFlags.Monthly, "keep-monthly", 0, "… months")
		fs.IntVar(&keepFlags.Yearly, "keep-yearly", 0, "… years")
	case "verify":
		fs.Var(&rd, "read-data", "download and check all packs, or --read-data=N% of them (indexes, keys, snapshots are always read)")
		repair = fs.Bool("repair", false, "send damaged or missing objects again from the box")
	}
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	dir, err := c.homeDir()
	if err != nil {
		return err
	}
	targets, err := target.Load(dir)
	if err != nil {
		return err
	}
	if sub == "list" {
		return replicateList(e, dir, targets, c.json)
	}
	if len(pos) == 0 {
		return usagef("give the target's name")
	}
	name := pos[0]
	if sub == "add" {
		if len(pos) != 2 {
			return usagef("usage: arkbox replicate add NAME URL [flags] --repo DIR")
		}
		if _, ok := target.Find(targets, name); ok {
			return fmt.Errorf("target %s exists (remove it first to change it)", name)
		}
		t := target.Target{Name: name, Spec: tf.spec(pos[1]), Parallel: *parallel, BWLimit: *bw, Grace: *grace,
			AppendOnly: *appendOnly, Schedule: *schedule}
		if keepFlags != (target.Keep{}) {
			t.Keep = &keepFlags
		}
		if err := addTarget(ctx, e, dir, &t, !*noCheck); err != nil {
			return err
		}
		if err := target.Save(dir, append(targets, t)); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "target %s added: %s%s\n", name, t.URL, tellServer(ctx, &c, dir))
		return nil
	}
	t, ok := target.Find(targets, name)
	if !ok {
		return fmt.Errorf("no target %s (see `arkbox replicate list`)", name)
	}
	switch sub {
	case "remove":
		var keep []target.Target
		for _, x := range targets {
			if x.Name != name {
				keep = append(keep, x)
			}
		}
		if err := target.Save(dir, keep); err != nil {
			return err
		}
		os.Remove(target.StatePath(dir, name))
		fmt.Fprintf(e.stdout, "target %s removed; what it holds is left as it is%s\n", name, tellServer(ctx, &c, dir))
		return nil
	case "run":
		rep, err := runSync(ctx, e, &c, dir, t, !c.json)
		if c.json && rep != nil {
			if e := printJSON(e.stdout, rep); e != nil && err == nil {
				err = e
			}
		} else if rep != nil {
			printSyncReport(e, rep)
		}
		return err
	case "status":
		return replicateStatus(ctx, e, dir, t, c.json)
	case "verify":
		return replicateVerify(ctx, e, dir, t, rd.v/100, *repair, c.json)
	}
	return usagef("unknown replicate command %q", sub)
}

// addTarget copies the target's secret files into the home folder (so the
// box keeps working when the originals go) and connects once.
func addTarget(ctx context.Context, e *env, dir string, t *target.Target, check bool) error {
	loc, err := target.Parse(t.URL)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		return err
	}
	// keep stores a secret (the file *p names, else the environment
	// variable env) as secrets/replicate-NAME+suffix and points *p at it.
	keep := func(p *string, env, suffix string) error {
		var b []byte
		switch {
		case *p != "":
			var err error
			if b, err = os.ReadFile(*p); err != nil {
				return fmt.Errorf("target %s: %w", t.Name, err)
			}
		case env != "" && os.Getenv(env) != "":
			b = []byte(os.Getenv(env))
		default:
			return nil
		}
		rel := filepath.Join("secrets", "replicate-"+t.Name+suffix)
		if err := objstore.WriteFileAtomic(filepath.Join(dir, rel), b); err != nil {
			return err
		}
		*p = rel
		return nil
	}
	var secretEnv, passwordEnv string
	switch loc.Scheme {
	case "s3":
		secretEnv = "ARKBOX_S3_SECRET_KEY"
		if t.AccessKey == "" {
			t.AccessKey = os.Getenv("ARKBOX_S3_ACCESS_KEY")
		}
	case "sftp":
		passwordEnv = "ARKBOX_SFTP_PASSWORD"
	}
	for _, f := range []struct {
		p        *string
		env, suf string
	}{{&t.SecretKeyFile, secretEnv, ".secret"}, {&t.PasswordFile, passwordEnv, ".password"}, {&t.KeyFile, "", ".key"}, {&t.CAFile, "", ".ca.pem"}} {
		if err := keep(f.p, f.env, f.suf); err != nil {
			return err
		}
	}
	if loc.Scheme == "sftp" && t.KnownHosts == "" {
		t.KnownHosts = filepath.Join("secrets", "known_hosts")
	}
	if err := t.Validate(); err != nil {
		return err
	}
	if !check {
		return nil
	}
	st, _, err := openTarget(ctx, e, dir, *t, target.Options{Create: true})
	if err != nil {
		return fmt.Errorf("target %s: cannot reach it (fix the URL or credentials, or add --no-check): %w", t.Name, err)
	}
	return st.Close()
}

// runSync syncs one target now, with a progress line when asked. A target
// with its own retention needs the repository open (its key); any other
// works on the objects alone, beside a running server.
func runSync(ctx context.Context, e *env, c *common, dir string, t target.Target, show bool) (*replicate.Report, error) {
	var local objstore.Store
	var r *repo.Repository
	if t.Keep != nil {
		o, err := c.open(ctx, e)
		if err != nil {
			return nil, err
		}
		defer o.Close()
		local, r = o.home.Store, o.Repository
	} else {
		st, err := home.OpenStore(ctx, dir, home.Options{Logger: e.log, ReadOnly: true})
		if err != nil {
			return nil, err
		}
		defer st.Close()
		local = st
	}
	var mu sync.Mutex
	var last replicate.Progress
	stop := func() {}
	if show {
		stop = progress(e, func() string {
			mu.Lock()
			defer mu.Unlock()
			return syncLine(last)
		})
	}
	rep, err := target.Sync(ctx, dir, local, t, r, e.log, func(p replicate.Progress) {
		mu.Lock()
		last = p
		mu.Unlock()
	})
	stop()
	return rep, err
}

func syncLine(p replicate.Progress) string {
	switch p.Phase {
	case "upload":
		s := fmt.Sprintf("uploading %s: %d/%d objects, %s/%s", p.Kind, p.DoneObjects, p.TotalObjs, humanBytes(uint64(p.DoneBytes)), humanBytes(uint64(p.TotalBytes)))
		if p.DoneBytes > 0 && p.Elapsed > 0 {
			rate := float64(p.DoneBytes) / p.Elapsed.Seconds()
			eta := time.Duration(float64(p.TotalBytes-p.DoneBytes)/rate) * time.Second
			s += fmt.Sprintf(", %s/s, ETA %s", humanBytes(uint64(rate)), eta.Round(time.Second))
		}
		return s
	case "":
		return "starting"
	}
	return p.Phase
}

func printSyncReport(e *env, r *replicate.Report) {
	if r.Kept.Objects > 0 {
		fmt.Fprintf(e.stdout, "target %s keeps %d objects (%s) the box no longer has, for its own retention\n", r.Target, r.Kept.Objects, humanBytes(uint64(r.Kept.Bytes)))
	}
	fmt.Fprintf(e.stdout, "target %s: uploaded %d objects (%s), %d retried; deleted %d (%s); %d (%s) wait for their delayed deletion; took %s\n",
		r.Target, r.UploadedTotal.Objects, humanBytes(uint64(r.UploadedTotal.Bytes)), r.Retried, r.Deleted.Objects,
		humanBytes(uint64(r.Deleted.Bytes)), r.PendingDelete.Objects, humanBytes(uint64(r.PendingDelete.Bytes)), r.End.Sub(r.Start).Round(time.Millisecond))
}

func replicateList(e *env, dir string, targets []target.Target, asJSON bool) error {
	type row struct {
		target.Target
		LastEnd   time.Time `json:"last_end,omitzero"`
		LastError string    `json:"last_error,omitempty"`
	}
	var rows []row
	for _, t := range targets {
		r := row{Target: t}
		if st, err := replicate.OpenState(target.StatePath(dir, t.Name)); err == nil {
			if last, _, err := st.LastRuns(); err == nil && last != nil {
				r.LastEnd, r.LastError = last.End, last.Error
			}
			st.Close()
		} else if !errors.Is(err, fs.ErrNotExist) && errors.Is(err, replicate.ErrBusy) {
			r.LastError = "a sync is running"
		}
		rows = append(rows, r)
	}
	if asJSON {
		if rows == nil {
			rows = []row{}
		}
		return printJSON(e.stdout, rows)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tURL\tSCHEDULE\tLAST SYNC\tRESULT")
	for _, r := range rows {
		when, res := "never", ""
		if !r.LastEnd.IsZero() {
			when, res = r.LastEnd.Local().Format("2006-01-02 15:04:05"), "ok"
		}
		if r.LastError != "" {
			res = r.LastError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.URL, r.Schedule, when, res)
	}
	return tw.Flush()
}

func replicateStatus(ctx context.Context, e *env, dir string, t target.Target, asJSON bool) error {
	st, local, closeAll, err := openTargetState(ctx, e, dir, t.Name)
	if err != nil {
		return err
	}
	defer closeAll()
	s, err := replicate.GetStatus(ctx, local, st, t.Name, time.Now())
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(e.stdout, s)
	}
	fmt.Fprintf(e.stdout, "target:          %s (%s)\n", t.Name, t.URL)
	fmt.Fprintf(e.stdout, "on the target:   %d objects, %s\n", s.Remote.Objects, humanBytes(uint64(s.Remote.Bytes)))
	fmt.Fprintf(e.stdout, "pending:         %d objects, %s\n", s.Pending.Objects, humanBytes(uint64(s.Pending.Bytes)))
	fmt.Fprintf(e.stdout, "pending delete:  %d objects, %s\n", s.PendingDelete.Objects, humanBytes(uint64(s.PendingDelete.Bytes)))
	switch {
	case s.LastEnd.IsZero():
		fmt.Fprintln(e.stdout, "last sync:       never")
	default:
		res := "ok"
		if s.LastError != "" {
			res = "failed: " + s.LastError
		}
		fmt.Fprintf(e.stdout, "last sync:       %s (%s)\n", s.LastEnd.Local().Format("2006-01-02 15:04:05"), res)
	}
	switch {
	case s.Pending.Objects == 0:
		fmt.Fprintln(e.stdout, "lag:             none (the target has everything the box has)")
	case s.LagSeconds < 0:
		fmt.Fprintln(e.stdout, "lag:             never synced")
	default:
		fmt.Fprintf(e.stdout, "lag:             %s, %s\n", humanBytes(uint64(s.Pending.Bytes)), (time.Duration(s.LagSeconds) * time.Second).String())
	}
	return nil
}

func replicateVerify(ctx context.Context, e *env, dir string, t target.Target, readData float64, repair, asJSON bool) error {
	st, local, closeAll, err := openTargetState(ctx, e, dir, t.Name)
	if err != nil {
		return err
	}
	defer closeAll()
	remote, _, err := openTarget(ctx, e, dir, t, target.Options{})
	if err != nil {
		return fmt.Errorf("verify %s: %w", t.Name, err)
	}
	defer remote.Close()
	var mu sync.Mutex
	var done, total int64
	stop := progress(e, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("read %d/%d objects", done, total)
	})
	rep, err := replicate.Verify(ctx, local, remote, st, replicate.VerifyOptions{Name: t.Name, ReadData: readData, Repair: repair,
		Progress: func(d, n int64) { mu.Lock(); done, total = d, n; mu.Unlock() }})
	stop()
	if err != nil {
		return err
	}
	if asJSON {
		if err := printJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "target %s: %d objects (%s); read and checked %d (%s); not yet sent %d; kept on the target only %d\n",
			t.Name, rep.Objects, humanBytes(uint64(rep.Bytes)), rep.Read.Objects, humanBytes(uint64(rep.Read.Bytes)), rep.Pending, rep.NotLocal)
		for _, l := range []struct {
			what  string
			items []string
		}{{"missing", rep.Missing}, {"wrong size", rep.BadSize}, {"corrupt", rep.Corrupt}, {"unreadable", rep.ReadError}, {"repaired", rep.Repaired}} {
			for _, it := range l.items {
				fmt.Fprintf(e.stdout, "%s: %s\n", l.what, it)
			}
		}
	}
	if !rep.OK() {
		return fmt.Errorf("the target has problems (listed above): run `arkbox replicate verify %s --repair` to send those objects again", t.Name)
	}
	if !asJSON {
		fmt.Fprintln(e.stdout, "no problems found")
	}
	return nil
}

// openRemote opens a replica (--repo URL) read-only, with a catalog in
// the user's cache folder built from the replica's indexes.
func (c *common) openRemote(ctx context.Context, e *env) (*openRepo, error) {
	spec := c.tf.spec(c.repo)
	if spec.KnownHosts == "" {
		if d, err := os.UserConfigDir(); err == nil {
			spec.KnownHosts = filepath.Join(d, "arkbox", "known_hosts")
		}
	}
	st, err := target.Open(ctx, spec, target.Options{ReadOnly: true, Logger: e.log})
	if err != nil {
		return nil, err
	}
	cat, cleanup, err := cacheCatalog("remote", c.repo)
	if err != nil {
		st.Close()
		return nil, err
	}
	return c.openIn(ctx, e, &home.Home{Dir: filepath.Dir(cat.Path()), Store: st, Catalog: cat}, cleanup)
}

// openTargetState opens a target's state file (creating its folder) and
// the box's object store, read-only; closeAll closes both.
func openTargetState(ctx context.Context, e *env, dir, name string) (*replicate.State, objstore.Store, func(), error) {
	if err := os.MkdirAll(filepath.Join(dir, "replicate"), 0o700); err != nil {
		return nil, nil, nil, err
	}
	st, err := replicate.OpenState(target.StatePath(dir, name))
	if err != nil {
		return nil, nil, nil, err
	}
	local, err := home.OpenStore(ctx, dir, home.Options{Logger: e.log, ReadOnly: true})
	if err != nil {
		st.Close()
		return nil, nil, nil, err
	}
	return st, local, func() { local.Close(); st.Close() }, nil
}

// tellServer asks a server running on the repository to schedule the
// targets anew, and says how it went.
func tellServer(ctx context.Context, c *common, dir string) string {
	for _, d := range []string{c.repo, filepath.Dir(dir)} {
		cl, err := control.Dial(ctx, d)
		if err != nil {
			continue
		}
		defer cl.Close()
		if err := cl.ReloadReplication(ctx); err != nil {
			return fmt.Sprintf(" (the running server could not take it: %v; it applies at its next start)", err)
		}
		return "; the running server has it scheduled"
	}
	return ""
}
