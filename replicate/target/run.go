package target

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/arkbox/arkbox/replicate"
	"github.com/arkbox/arkbox/replicate/bwlimit"
	"github.com/arkbox/arkbox/replicate/keep"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/retention"
)

// OpenConfigured opens a configured target of the home folder with its
// bandwidth limiter: the limiter paces a network target's connections,
// or is returned for the sync to pace a folder target.
func OpenConfigured(ctx context.Context, home string, t Target, opt Options) (objstore.Store, *bwlimit.Limiter, error) {
	t = t.Resolve(home)
	sch, err := bwlimit.Parse(t.BWLimit)
	if err != nil {
		return nil, nil, err
	}
	var lim *bwlimit.Limiter
	if len(sch.Rules) > 0 {
		lim = bwlimit.New(sch, nil)
	}
	loc, err := Parse(t.URL)
	if err != nil {
		return nil, nil, err
	}
	if lim != nil && loc.Scheme != "file" {
		opt.Dial = lim.Dialer(opt.Dial)
		lim = nil
	}
	st, err := Open(ctx, t.Spec, opt)
	if err != nil {
		return nil, nil, err
	}
	return st, lim, nil
}

// Sync runs one sync of the configured target t of the home folder from
// local (the box's store), with t's settings. r, the box's repository, is
// needed only by a target with its own retention (Keep); nil otherwise.
func Sync(ctx context.Context, home string, local objstore.Store, t Target, r *repo.Repository, log *slog.Logger, progress func(replicate.Progress)) (*replicate.Report, error) {
	var policy retention.Policy
	if t.Keep != nil {
		if r == nil {
			return nil, fmt.Errorf("replicate %s: %w", t.Name, keep.ErrNeedsKey)
		}
		var err error
		if policy, err = t.Keep.Policy(); err != nil {
			return nil, fmt.Errorf("replicate %s: keep: %w", t.Name, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(home, "replicate"), 0o700); err != nil {
		return nil, err
	}
	st, err := replicate.OpenState(StatePath(home, t.Name))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	conns := t.Parallel
	if conns <= 0 {
		conns = 4
	}
	remote, lim, err := OpenConfigured(ctx, home, t, Options{Create: true, Logger: log, Conns: conns})
	if err != nil {
		return nil, fmt.Errorf("replicate %s: %w", t.Name, err)
	}
	defer remote.Close()
	grace, err := t.GraceDuration()
	if err != nil {
		return nil, err
	}
	opt := replicate.Options{Name: t.Name, Parallel: t.Parallel, Grace: grace,
		AppendOnly: t.AppendOnly, Limiter: lim, Logger: log, Progress: progress}
	if t.Keep != nil {
		opt.Protect = func(ctx context.Context, loc, inv map[objstore.Kind]map[objstore.ID]int64) (map[objstore.Kind]map[objstore.ID]bool, error) {
			written, sum, err := st.KeepIndexes()
			if err != nil {
				return nil, err
			}
			res, err := keep.Plan(ctx, keep.Options{Repo: r, Local: local, Remote: remote, Policy: policy, Location: time.Local,
				Now: time.Now(), Written: written, LastSum: sum, Logger: log}, loc, inv)
			if err != nil {
				return nil, err
			}
			if res.Wrote {
				b, err := remote.Stat(ctx, objstore.KindIndex, res.Index)
				if err != nil {
					return nil, err
				}
				if err := st.Add(b); err != nil {
					return nil, err
				}
				// Earlier target indexes stay listed until they are gone.
				var still []objstore.ID
				for _, w := range written {
					if _, ok := inv[objstore.KindIndex][w]; ok {
						still = append(still, w)
					}
				}
				if err := st.SetKeepIndexes(append(still, res.Index), res.Sum); err != nil {
					return nil, err
				}
			}
			if len(res.Kept) > 0 || len(res.Dropped) > 0 {
				log.Info("replicate: the target's own retention", "target", t.Name, "kept_snapshots", len(res.Kept), "dropped_snapshots", len(res.Dropped))
			}
			return res.Protect, nil
		}
	}
	return replicate.Sync(ctx, local, remote, st, opt)
}
