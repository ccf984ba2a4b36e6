package server

import (
	"context"
	"errors"
	"log/slog"

	"github.com/arkbox/arkbox/appliance/config"
	"github.com/arkbox/arkbox/appliance/control"
	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/appliance/schedule"
	"github.com/arkbox/arkbox/appliance/users"
	"github.com/arkbox/arkbox/services/sftp"
	"github.com/arkbox/arkbox/storage/repo"
)

// live is the control operations of the running server: configuration
// changes are saved and then applied at once (applyConfig), snapshots run as
// the scheduler's snapshot job, listings come from the open repository.
type live struct {
	*configOps
	w       *worker
	sched   *schedule.Scheduler
	sftp    *sftp.Server // nil when SFTP is off
	limiter *users.Limiter
	log     *slog.Logger

	// snapJobs are the scheduled snapshot jobs, by name. Guarded by
	// configOps.mu (apply runs under it), or owned by Run before serving.
	snapJobs map[string]snapJob
}

var _ control.Ops = (*live)(nil)

// applyConfig makes the running server follow cfg's shares, users and grants:
// it creates the shares it does not have yet, swaps the SFTP server's
// authenticator and authorizer (a share no longer configured is no
// longer served: no grant reaches it, its data and snapshots stay), and
// adds, removes or replaces the snapshot jobs whose schedules changed.
// The rest of the configuration (services, pool, maintenance schedules)
// applies at the next start.
func (l *live) applyConfig(ctx context.Context, cfg config.Config) error {
	var errs []error
	if err := l.createShares(cfg); err != nil {
		errs = append(errs, err)
	}
	if err := l.setUsers(cfg); err != nil {
		errs = append(errs, err)
	}
	if err := l.syncJobs(cfg); err != nil {
		errs = append(errs, err)
	}
	l.log.Info("configuration applied", "shares", len(cfg.Shares), "users", len(cfg.Users))
	return errors.Join(errs...)
}

// createShares creates the configured shares the share store lacks.
func (l *live) createShares(cfg config.Config) error {
	have := map[string]bool{}
	for _, n := range l.w.shares.Shares() {
		have[n] = true
	}
	for _, n := range cfg.ShareNames() {
		if have[n] {
			continue
		}
		if _, err := l.w.shares.CreateShare(n); err != nil {
			return err
		}
		l.log.Info("share created", "share", n)
	}
	return nil
}

// accessOf returns the authenticator and authorizer for cfg's accounts.
func (l *live) accessOf(cfg config.Config) (*users.Authenticator, *users.Authorizer, error) {
	acc := cfg.Accounts()
	auth, err := users.NewAuthenticator(acc, users.AuthOptions{Limiter: l.limiter, Logger: l.log})
	if err != nil {
		return nil, nil, err
	}
	return auth, users.NewAuthorizer(acc, cfg.ShareNames()), nil
}

// setUsers swaps the SFTP server's accounts and grants.
func (l *live) setUsers(cfg config.Config) error {
	if l.sftp == nil {
		return nil
	}
	auth, authz, err := l.accessOf(cfg)
	if err != nil {
		return err
	}
	l.sftp.SetUsers(auth, authz)
	return nil
}

// syncJobs makes the scheduled snapshot jobs those of cfg. A run in
// progress of a job removed or replaced finishes.
func (l *live) syncJobs(cfg config.Config) error {
	want := snapshotJobs(cfg)
	for name, j := range l.snapJobs {
		if w, ok := want[name]; !ok || w != j {
			l.sched.Remove(name)
			delete(l.snapJobs, name)
			l.log.Info("snapshot job removed", "job", name)
		}
	}
	var errs []error
	for name, j := range want {
		if _, ok := l.snapJobs[name]; ok {
			continue
		}
		if err := l.w.addSnapshot(l.sched, name, j); err != nil {
			errs = append(errs, err)
			continue
		}
		l.snapJobs[name] = j
		l.log.Info("snapshot job added", "job", name, "schedule", j.ss.Schedule)
	}
	return errors.Join(errs...)
}

// Snapshot runs the share's snapshot job now, after a scheduled run of
// the share in progress, and keeps the scheduled runs out while it runs.
func (l *live) Snapshot(ctx context.Context, name string) (control.Snapshot, error) {
	sh, _, err := l.configuredShare(name)
	if err != nil {
		return control.Snapshot{}, err
	}
	var sn *repo.Snapshot
	err = l.sched.Exclusive(ctx, shareKey(sh.Name), func(ctx context.Context) error {
		var err error
		sn, err = l.w.manualSnapshot(ctx, sh)
		return err
	})
	if err != nil {
		return control.Snapshot{}, err
	}
	return control.SnapshotOf(sn), nil
}

func (l *live) Snapshots(ctx context.Context, f control.SnapshotFilter) ([]control.Snapshot, error) {
	return snapshotList(l.w.r, f)
}

func (l *live) Jobs(ctx context.Context, f control.JobFilter) ([]jobs.Record, error) {
	return l.w.jdb.List(ctx, jobs.Filter{Kind: f.Kind}, f.Limit)
}
