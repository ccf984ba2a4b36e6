// Package server is `arkbox serve`: it opens (or, on first start, creates)
// the configuration, the pool, the repository and the shares, runs the
// protocol services and the scheduler (snapshots with retention, prune,
// scrub, verify), records every run as a job, serves the control socket
// (package control) through which the CLI changes shares, users and
// grants — applied at once — and asks for snapshots and listings, and
// shuts down gracefully. Offline carries out the same control operations
// on a data folder's files when no server runs.
package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/arkbox/arkbox/appliance/board"
	"github.com/arkbox/arkbox/appliance/config"
	"github.com/arkbox/arkbox/appliance/control"
	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/appliance/pooldisks"
	"github.com/arkbox/arkbox/appliance/schedule"
	"github.com/arkbox/arkbox/appliance/users"
	"github.com/arkbox/arkbox/hw"
	"github.com/arkbox/arkbox/services/sftp"
	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/crypto"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/maint"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/pool"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/retention"
	"github.com/arkbox/arkbox/storage/sharefs"
)

// Options are what the command line gives `serve`.
type Options struct {
	DataDir    string // the data folder (arkbox.json, repo/, disks/, secrets/)
	ConfigPath string // "" = DataDir/arkbox.json
	SFTPAddr   string // overrides the configuration
	// Passphrase of the repository; nil = read or create
	// DataDir/secrets/passphrase.
	Passphrase []byte
	// KDF for a new repository's key (zero: the default).
	KDF    crypto.KDFParams
	Hash   users.Params // password hashing for the first admin
	Out    io.Writer    // what a person starting the server reads
	Logger *slog.Logger
	Clock  schedule.Clock
	// Ready, if set, is called once the server accepts connections on
	// its control socket and (if enabled) on SFTP, whose address it
	// receives ("" when SFTP is off).
	Ready func(sftpAddr string)
	// InitConfig, if set, is the configuration a first start begins from
	// instead of the defaults (config.InitFrom).
	InitConfig []byte
	// Disks, if set, makes the pool's disks available before the pool is
	// created or opened (the appliance mounts whole disks); nil: the
	// pool's disk folders are plain folders, created as needed.
	Disks Disks
	// RetryDelay is how long to wait before trying again to open a pool
	// whose disks are managed by Disks; default 30 s.
	RetryDelay time.Duration
	// Board configures the activity LED and temperature log (sysfs root,
	// intervals); its Health and Logger are serve's.
	Board board.Options
}

// Disks prepares the disks of the pool (package pooldisks on the
// appliance). Both methods may wait for disks to be attached; they return
// ctx.Err() when ctx ends first.
type Disks interface {
	// NewPool returns the folders a new pool is created on.
	NewPool(ctx context.Context) ([]string, error)
	// OpenPool makes the folders of an existing pool available.
	OpenPool(ctx context.Context, dirs []string) error
	// Release undoes what NewPool or OpenPool did (unmounts the disks)
	// once the pool is closed.
	Release(ctx context.Context, dirs []string) error
	// Watch follows the pool's disks leaving and returning while the
	// pool is open, until ctx ends (pooldisks.Manager.Watch).
	Watch(ctx context.Context, o pooldisks.WatchOptions) error
}

// Run serves until ctx ends (SIGTERM), then shuts down: stops accepting,
// lets transfers finish, commits staged files and closes the catalog.
func Run(ctx context.Context, opt Options) error {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	if opt.Hash == (users.Params{}) {
		opt.Hash = users.DefaultParams()
	}
	dataDir, err := filepath.Abs(opt.DataDir)
	if err != nil {
		return err
	}
	cfgPath := opt.ConfigPath
	if cfgPath == "" {
		cfgPath = config.Path(dataDir)
	}
	cfg, err := config.Load(cfgPath)
	if errors.Is(err, fs.ErrNotExist) && opt.ConfigPath == "" {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return fmt.Errorf("serve: create data folder %s: %w", dataDir, err)
		}
		var pw string
		if opt.InitConfig != nil {
			cfg, pw, err = config.InitFrom(cfgPath, opt.InitConfig, opt.Hash)
		} else {
			cfg, pw, err = config.Init(cfgPath, opt.Hash)
		}
		if err != nil {
			return fmt.Errorf("serve: first start: %w", err)
		}
		fmt.Fprintf(opt.Out, "first start: wrote %s\n", cfgPath)
		if pw != "" {
			fmt.Fprintf(opt.Out, "administrator login: user admin, password %s\n", pw)
			fmt.Fprintln(opt.Out, "(shown once: note it now; change it with `arkbox user passwd admin`)")
		}
	} else if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fileCfg := cfg // as in the file, without the command line's overrides
	if opt.SFTPAddr != "" {
		cfg.Services.SFTP.Addr = opt.SFTPAddr
		cfg.Services.SFTP.Enabled = true
	}
	loc, err := cfg.Location()
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	secrets := filepath.Join(dataDir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	// Pool, catalog, repository.
	repoDir := cfg.RepoDir()
	newRepo := false
	if _, err := os.Stat(filepath.Join(repoDir, home.FileName)); errors.Is(err, fs.ErrNotExist) {
		newRepo = true
	}
	pass := opt.Passphrase
	if pass == nil {
		pass, err = localPassphrase(PassphrasePath(dataDir), newRepo)
		if err != nil {
			return err
		}
	}
	var h *home.Home
	var r *repo.Repository
	if newRepo {
		dirs := cfg.DiskDirs()
		if opt.Disks != nil {
			log.Info("no pool yet: preparing its disks")
			dirs, err = opt.Disks.NewPool(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil // stopped while waiting for disks
				}
				return fmt.Errorf("serve: disks for a new pool: %w", err)
			}
			fileCfg.Pool.Disks = dirs
			if err := config.Save(cfgPath, fileCfg); err != nil {
				return fmt.Errorf("serve: record the pool's disks: %w", err)
			}
		}
		h, err = home.Create(ctx, repoDir, dirs, home.Options{Logger: log, Parity: cfg.Pool.Parity})
		if err != nil {
			return fmt.Errorf("serve: create the pool: %w", err)
		}
		log.Info("pool created", "disks", dirs)
		r, err = repo.Init(ctx, h.Store, h.Catalog, pass, repo.Options{Logger: log, KDF: opt.KDF, KeyLabel: "appliance"})
	} else {
		h, err = openHome(ctx, opt, repoDir, log)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while waiting for disks
			}
			return fmt.Errorf("serve: %w", err)
		}
		r, err = repo.Open(ctx, h.Store, h.Catalog, pass, repo.Options{Logger: log})
	}
	if err != nil {
		h.Close()
		releaseDisks(opt, h, log)
		return fmt.Errorf("serve: %w", err)
	}
	defer releaseDisks(opt, h, log) // after h.Close: deferred calls run last first
	defer h.Close()
	defer r.Close(context.Background())

	shares, err := sharefs.Open(ctx, r, h.Catalog, filepath.Join(dataDir, "staging"), sharefs.Options{Logger: log, Capacity: capacity(h)})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer shares.Close(context.Background())
	clock := opt.Clock
	if clock == nil {
		clock = schedule.RealClock()
	}
	hl := &health{pool: h.Pool, failing: map[string]bool{}}
	jdb, err := jobs.Open(ctx, h.Catalog.DB(), jobs.Options{Logger: log, Now: clock.Now, OnFinish: hl.finished})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := hl.load(ctx, jdb); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	sched := schedule.New(schedule.Options{Clock: clock, Location: loc, Logger: log})
	w := &worker{h: h, r: r, shares: shares, jdb: jdb, log: log, loc: loc, now: clock.Now,
		readDataPercent: cfg.Verify.ReadDataPercent, sched: sched}
	ops := &live{configOps: &configOps{path: cfgPath, dir: dataDir, hash: opt.Hash},
		w: w, sched: sched, limiter: users.NewLimiter(users.LimiterOptions{}), log: log, snapJobs: map[string]snapJob{}}
	ops.configOps.apply = ops.applyConfig
	if err := ops.createShares(cfg); err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)

	// The board's LED and temperature; the pool's disks coming and
	// going, each return resynced as a job.
	var bg sync.WaitGroup
	bopt := opt.Board
	bopt.Health, bopt.Logger = hl.state, log
	mon := board.New(bopt)
	hl.setKick(mon.Kick)
	bg.Go(func() { mon.Run(ctx) })
	if h.Pool != nil {
		for _, rs := range h.Pool.Resyncs() {
			bg.Go(func() { w.resyncJob(ctx, rs, "open") })
		}
		if opt.Disks != nil {
			bg.Go(func() {
				err := opt.Disks.Watch(ctx, pooldisks.WatchOptions{Pool: h.Pool, Dirs: h.DiskDirs(), OnChange: mon.Kick,
					OnResync: func(rs *pool.Resync) { bg.Go(func() { w.resyncJob(ctx, rs, "disk returned") }) }})
				if err != nil && ctx.Err() == nil {
					errc <- fmt.Errorf("serve: watch disks: %w", err)
				}
			})
		}
	}
	defer func() { cancel(); bg.Wait() }() // before the pool and the catalog close

	// SFTP.
	var sftpSrv *sftp.Server
	sftpAddr := ""
	if cfg.Services.SFTP.Enabled {
		auth, authz, err := ops.accessOf(cfg)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		sftpSrv, err = sftp.New(sftp.Options{Store: shares, Auth: auth, Authz: authz,
			HostKeyPath: filepath.Join(secrets, "ssh_host_ed25519_key"), Logger: log})
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		ops.sftp = sftpSrv
		l, err := net.Listen("tcp", cfg.Services.SFTP.Addr)
		if err != nil {
			return fmt.Errorf("serve: sftp: listen on %s: %w", cfg.Services.SFTP.Addr, err)
		}
		sftpAddr = l.Addr().String()
		fmt.Fprintf(opt.Out, "SFTP on %s (sftp -P %s admin@%s)\n", l.Addr(), portOf(l.Addr()), hostOf(l.Addr()))
		go func() {
			if err := sftpSrv.Serve(ctx, l); err != nil && !errors.Is(err, sftp.ErrServerClosed) && ctx.Err() == nil {
				errc <- fmt.Errorf("serve: sftp: %w", err)
			}
		}()
	}

	// Scheduler.
	if err := w.addMaintenance(sched, cfg); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := w.addReplication(sched); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := ops.syncJobs(cfg); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		if err := sched.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("serve: scheduler: %w", err)
		}
	}()

	// The control socket, for the CLI.
	cl, err := control.Listen(dataDir)
	if err != nil {
		cancel()
		<-schedDone
		return fmt.Errorf("serve: %w", err)
	}
	controlDone := make(chan struct{})
	go func() {
		defer close(controlDone)
		if err := control.Serve(ctx, cl, ops, control.ServeOptions{Logger: log}); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("serve: %w", err)
		}
	}()
	fmt.Fprintf(opt.Out, "control socket %s\n", cl.Path())
	fmt.Fprintf(opt.Out, "arkbox serving %s (shares: %s)\n", dataDir, strings.Join(cfg.ShareNames(), ", "))
	if opt.Ready != nil {
		opt.Ready(sftpAddr)
	}
	log.Info("serving", "data", dataDir, "shares", cfg.ShareNames(), "sftp", sftpAddr)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("shutting down")
	cancel()
	// The control socket first: a snapshot asked for through it is
	// canceled, and nothing changes the configuration any more.
	<-controlDone
	if sftpSrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		sftpSrv.Shutdown(sctx)
		scancel()
	}
	<-schedDone
	bg.Wait()
	if err := shares.Close(context.Background()); err != nil && runErr == nil {
		runErr = fmt.Errorf("serve: commit staged files: %w", err)
	}
	return runErr
}

// openHome opens the repository's home folder. With opt.Disks it first
// makes the pool's disks available and, when the pool does not open (too
// few disks), waits and tries again instead of failing: on the appliance a
// failed start is restarted at once, which would only repeat the failure.
func openHome(ctx context.Context, opt Options, repoDir string, log *slog.Logger) (*home.Home, error) {
	if opt.Disks == nil {
		return home.Open(ctx, repoDir, home.Options{Logger: log})
	}
	delay := opt.RetryDelay
	if delay <= 0 {
		delay = 30 * time.Second
	}
	for {
		dirs, err := home.ReadDiskDirs(repoDir)
		if err != nil {
			return nil, err
		}
		if err := opt.Disks.OpenPool(ctx, dirs); err != nil {
			return nil, fmt.Errorf("pool disks: %w", err)
		}
		h, err := home.Open(ctx, repoDir, home.Options{Logger: log})
		if err == nil {
			return h, nil
		}
		log.Error("the pool does not open: trying again", "err", err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// releaseDisks hands the pool's disks back (unmounts them) after the pool
// is closed.
func releaseDisks(opt Options, h *home.Home, log *slog.Logger) {
	if opt.Disks == nil {
		return
	}
	if err := opt.Disks.Release(context.Background(), h.DiskDirs()); err != nil {
		log.Warn("pool disks not released", "err", err)
	}
}

// PassphrasePath is where serve keeps the repository passphrase of a data
// folder (made at the first start unless one is given).
func PassphrasePath(dataDir string) string { return filepath.Join(dataDir, "secrets", "passphrase") }

// localPassphrase reads the repository passphrase kept on the box, or makes
// one for a new repository.
func localPassphrase(path string, create bool) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if !errors.Is(err, fs.ErrNotExist) || !create {
		return nil, fmt.Errorf("serve: repository passphrase: %w (give it with ARKBOX_PASSWORD or --password-file)", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	pw := base64.RawURLEncoding.EncodeToString(raw[:])
	if err := objstore.WriteFileAtomic(path, []byte(pw+"\n")); err != nil {
		return nil, fmt.Errorf("serve: store the repository passphrase: %w", err)
	}
	return []byte(pw), nil
}

func capacity(h *home.Home) func() (uint64, uint64, error) {
	if h.Pool == nil {
		return nil
	}
	return func() (uint64, uint64, error) {
		total, free := poolCapacity(h.Pool.Status(context.Background()))
		return total, free, nil
	}
}

// poolCapacity is the pool's usable size and free space, as statfs
// reports them to clients: disks that are present count in the size (a
// full or read-only disk is still part of the pool), only writable ones
// in the free space; both scaled to the data shards of k+m.
func poolCapacity(st pool.Status) (total, free uint64) {
	for _, d := range st.Disks {
		switch d.State {
		case pool.DiskOK, pool.DiskFull:
			total += d.BytesTotal
			free += d.BytesFree
		case pool.DiskReadOnly, pool.DiskFailing, pool.DiskResyncing:
			total += d.BytesTotal
		}
	}
	if st.K > 0 {
		total = total * uint64(st.K) / uint64(st.K+st.M)
		free = free * uint64(st.K) / uint64(st.K+st.M)
	}
	return total, free
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

func hostOf(a net.Addr) string {
	h, _, _ := net.SplitHostPort(a.String())
	return h
}

// worker holds what the jobs use.
type worker struct {
	h      *home.Home
	r      *repo.Repository
	shares *sharefs.Store
	jdb    *jobs.DB
	log    *slog.Logger
	loc    *time.Location
	now    func() time.Time
	// readDataPercent is the verify job's share of data to read.
	readDataPercent float64
	// sched runs the jobs; afterSnap are the sync jobs it starts after
	// each successful snapshot.
	sched *schedule.Scheduler
	// replMu guards the sync jobs scheduled (replJobs) and those started
	// after each snapshot (afterSnap), which a reload replaces.
	replMu    sync.Mutex
	replJobs  []string
	afterSnap []string
}

// shareKey is the scheduler key of a share's snapshot runs: one at a time
// per share, scheduled or asked for.
func shareKey(share string) string { return "share:" + share }

// snapJob is one scheduled snapshot job: a share and one of its schedules.
type snapJob struct {
	share string
	ss    config.SnapshotSchedule
}

// snapshotJobs returns the scheduled snapshot jobs of cfg, by job name.
func snapshotJobs(cfg config.Config) map[string]snapJob {
	out := map[string]snapJob{}
	for _, sh := range cfg.Shares {
		for i, ss := range sh.Snapshots {
			name := fmt.Sprintf("snapshot %s #%d", sh.Name, i+1)
			if ss.Name != "" {
				name = "snapshot " + sh.Name + " " + ss.Name
			}
			out[name] = snapJob{share: sh.Name, ss: ss}
		}
	}
	return out
}

// trigger is why the scheduler runs the job whose context ctx is.
func trigger(ctx context.Context) string {
	if info, ok := schedule.RunInfoFrom(ctx); ok {
		return string(info.Trigger)
	}
	return ""
}

// addMaintenance schedules prune, scrub and verify.
func (w *worker) addMaintenance(s *schedule.Scheduler, cfg config.Config) error {
	add := func(kind, target, expr string, fn func(ctx context.Context, run *jobs.Run) (jobs.Stats, error)) error {
		sc, err := schedule.Parse(expr)
		if err != nil {
			return fmt.Errorf("job %s: %w", kind, err)
		}
		return s.Add(schedule.Job{Name: kind, Schedule: sc, Key: "repository",
			LastRun: w.jdb.LastRunFunc(kind, target, ""),
			Run: func(ctx context.Context) error {
				err := w.jdb.Do(ctx, jobs.Spec{Kind: kind, Target: target, Trigger: trigger(ctx)}, fn)
				if err != nil {
					w.log.Error("job failed", "job", kind, "err", err)
				}
				return err
			}})
	}
	if err := add("prune", "repository", cfg.Prune.Schedule, w.prune); err != nil {
		return err
	}
	if err := add("scrub", "pool", cfg.Scrub.Schedule, w.scrub); err != nil {
		return err
	}
	return add("verify", "repository", cfg.Verify.Schedule, w.verify)
}

// addSnapshot schedules a snapshot job.
func (w *worker) addSnapshot(s *schedule.Scheduler, name string, j snapJob) error {
	sc, err := schedule.Parse(j.ss.Schedule)
	if err != nil {
		return fmt.Errorf("job %s: %w", name, err)
	}
	var tags []string
	if j.ss.Name != "" {
		tags = []string{j.ss.Name}
	}
	return s.Add(schedule.Job{Name: name, Schedule: sc, Key: shareKey(j.share),
		LastRun: w.jdb.LastRunFunc(jobs.KindSnapshot, j.share, j.ss.Name),
		Run: func(ctx context.Context) error {
			spec := jobs.Spec{Kind: jobs.KindSnapshot, Target: j.share, Schedule: j.ss.Name, Trigger: trigger(ctx)}
			_, err := w.snapshotJob(ctx, spec, tags, []config.SnapshotSchedule{j.ss})
			if err != nil {
				w.log.Error("job failed", "job", name, "err", err)
			}
			return err
		}})
}

// manualSnapshot is the snapshot of a share a person asks for: the share's
// snapshot job run now, its snapshot tagged "manual", with the retention
// of each of the share's schedules applied after it. The caller keeps it
// from overlapping a scheduled run (Scheduler.Exclusive with shareKey).
func (w *worker) manualSnapshot(ctx context.Context, sh config.Share) (*repo.Snapshot, error) {
	spec := jobs.Spec{Kind: jobs.KindSnapshot, Target: sh.Name, Trigger: jobs.TriggerManual}
	return w.snapshotJob(ctx, spec, []string{"manual"}, sh.Snapshots)
}

// snapshotJob snapshots the share spec.Target as a recorded job: the
// snapshot, tagged tags, then the retention of each schedule in rets,
// applied to that schedule's snapshots.
func (w *worker) snapshotJob(ctx context.Context, spec jobs.Spec, tags []string, rets []config.SnapshotSchedule) (*repo.Snapshot, error) {
	var sn *repo.Snapshot
	err := w.jdb.Do(ctx, spec, func(ctx context.Context, run *jobs.Run) (jobs.Stats, error) {
		sh, err := w.shares.Share(spec.Target)
		if err != nil {
			return jobs.Stats{}, err
		}
		sn, err = sh.Snapshot(ctx, w.now(), tags)
		if err != nil {
			return jobs.Stats{}, err
		}
		st := jobs.Stats{Files: int64(sn.Stats.Files), BytesTotal: int64(sn.Stats.Bytes), BytesNew: int64(sn.Stats.NewStoredBytes)}
		for _, ss := range rets {
			if err := w.retain(ctx, spec.Target, ss); err != nil {
				return st, err
			}
		}
		return st, nil
	})
	if err == nil {
		w.snapshotDone()
	}
	return sn, err
}

// retain applies a schedule's retention to the snapshots of a share it
// took (all of the share's snapshots for a schedule without a name).
func (w *worker) retain(ctx context.Context, share string, ss config.SnapshotSchedule) error {
	pol, err := ss.Retention.Policy()
	if err != nil || pol.Empty() {
		return err
	}
	snaps, err := w.r.Snapshots()
	if err != nil {
		return err
	}
	var in []retention.Snapshot
	byID := map[string]*repo.Snapshot{}
	for _, s := range snaps {
		if s.Source != sharefs.SourcePrefix+share || (ss.Name != "" && !hasTag(s.Tags, ss.Name)) {
			continue
		}
		byID[s.ID.String()] = s
		in = append(in, retention.Snapshot{ID: s.ID.String(), Time: s.Time, Archived: s.Archived})
	}
	ds, err := retention.Apply(in, pol, w.now(), w.loc)
	if err != nil {
		return err
	}
	for _, d := range ds {
		if !d.Keep {
			if err := w.r.DeleteSnapshot(ctx, byID[d.Snapshot.ID].ID); err != nil {
				return err
			}
			w.log.Info("retention removed a snapshot", "share", share, "snapshot", d.Snapshot.ID[:8])
		}
	}
	return nil
}

func hasTag(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

func (w *worker) prune(ctx context.Context, run *jobs.Run) (jobs.Stats, error) {
	var rep *maint.PruneReport
	err := w.shares.Exclusive(func() error {
		var err error
		rep, err = maint.Prune(ctx, w.r, maint.PruneOptions{Logger: w.log, Roots: func(ctx context.Context, markTree, markData func(blob.ID) error) error {
			return sharefs.LiveRoots(ctx, w.h.Catalog.DB(), markTree, markData)
		}})
		return err
	})
	if err != nil {
		return jobs.Stats{}, err
	}
	return jobs.Stats{Files: int64(rep.PacksDeleted + rep.PacksRepacked), BytesTotal: rep.BytesFreed}, nil
}

func (w *worker) scrub(ctx context.Context, run *jobs.Run) (jobs.Stats, error) {
	if w.h.Pool == nil {
		return jobs.Stats{}, nil
	}
	rep, err := w.h.Pool.Scrub(ctx, pool.ScrubOptions{Repair: true})
	if err != nil {
		return jobs.Stats{}, err
	}
	st := jobs.Stats{Files: rep.Objects, BytesTotal: rep.Bytes, Errors: int64(len(rep.Unrepairable))}
	if len(rep.Unrepairable) > 0 {
		return st, fmt.Errorf("scrub: %d objects cannot be rebuilt from the disks present", len(rep.Unrepairable))
	}
	return st, nil
}

func (w *worker) verify(ctx context.Context, run *jobs.Run) (jobs.Stats, error) {
	rep, err := maint.Check(ctx, w.r, maint.CheckOptions{ReadDataPercent: w.readDataPercent})
	if err != nil {
		return jobs.Stats{}, err
	}
	st := jobs.Stats{Files: int64(rep.BlobsRead), BytesTotal: rep.BytesRead, Errors: int64(len(rep.Errors))}
	if !rep.OK() {
		return st, fmt.Errorf("verify: %d errors, first: %s: %s", len(rep.Errors), rep.Errors[0].Object, rep.Errors[0].What)
	}
	return st, nil
}

// health is what the activity LED shows: blinking while the pool is
// degraded (a disk missing, resyncing, failing, full or read-only) or the
// last run of some job failed, steady otherwise.
type health struct {
	pool *pool.Pool // nil: the objects are in a plain folder

	mu      sync.Mutex
	failing map[string]bool // jobs whose last run failed, by jobs.Record.Key
	kick    func()
}

// healthScan is how many of the newest job records are read at start to
// find jobs whose last run failed.
const healthScan = 2000

// load reads which jobs' last runs failed.
func (hl *health) load(ctx context.Context, jdb *jobs.DB) error {
	last, err := jdb.LastResults(ctx, healthScan)
	if err != nil {
		return err
	}
	hl.mu.Lock()
	defer hl.mu.Unlock()
	for k, r := range last {
		if r.Result == jobs.Failed {
			hl.failing[k] = true
		}
	}
	return nil
}

func (hl *health) setKick(f func()) {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	hl.kick = f
}

// finished notes the result of a run (jobs.Options.OnFinish).
func (hl *health) finished(r jobs.Record) {
	hl.mu.Lock()
	switch r.Result {
	case jobs.Failed:
		hl.failing[r.Key()] = true
	case jobs.OK, jobs.Warning:
		delete(hl.failing, r.Key())
	}
	kick := hl.kick
	hl.mu.Unlock()
	if kick != nil {
		kick()
	}
}

// state is what the LED is to show (board.Options.Health).
func (hl *health) state(ctx context.Context) hw.LEDState {
	if hl.pool != nil && hl.pool.Status(ctx).Degraded {
		return hw.LEDDegraded
	}
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if len(hl.failing) > 0 {
		return hw.LEDFailed
	}
	return hw.LEDOK
}

// resyncPoll is how often a resync job's progress is recorded.
const resyncPoll = 2 * time.Second

// resyncJob records the resync of a pool disk that returned as a job: its
// progress while it runs, then the objects and bytes repaired and its
// errors.
func (w *worker) resyncJob(ctx context.Context, rs *pool.Resync, trig string) {
	err := w.jdb.Do(ctx, jobs.Spec{Kind: jobs.KindResync, Target: rs.Disk(), Trigger: trig}, func(ctx context.Context, run *jobs.Run) (jobs.Stats, error) {
		t := time.NewTicker(resyncPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return jobs.Stats{}, ctx.Err()
			case <-t.C:
				pr := rs.Progress()
				phase := "journal"
				if pr.Full {
					phase = "every object"
				}
				run.Progress(jobs.Progress{Phase: phase, FilesDone: pr.Done, FilesTotal: pr.Total, BytesDone: pr.BytesWritten})
			case <-rs.Done():
				rep, err := rs.Wait(ctx)
				st := jobs.Stats{Files: rep.Repaired, BytesTotal: rep.BytesWritten, Errors: rep.Errors + int64(len(rep.Unrepairable))}
				if err == nil && len(rep.Unrepairable) > 0 {
					err = fmt.Errorf("resync of disk %s: %d objects cannot be rebuilt from the disks present", rs.Disk(), len(rep.Unrepairable))
				}
				return st, err
			}
		}
	})
	if err != nil {
		w.log.Error("job failed", "job", jobs.KindResync, "disk", rs.Disk(), "err", err)
	}
}
