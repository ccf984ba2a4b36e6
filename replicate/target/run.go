package target

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/arkbox/arkbox/replicate"
	"github.com/arkbox/arkbox/replicate/bwlimit"
	"github.com/arkbox/arkbox/storage/objstore"
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
// local (the box's store), with t's settings.
func Sync(ctx context.Context, home string, local objstore.Store, t Target, log *slog.Logger, progress func(replicate.Progress)) (*replicate.Report, error) {
	if err := os.MkdirAll(filepath.Join(home, "replicate"), 0o700); err != nil {
		return nil, err
	}
	st, err := replicate.OpenState(StatePath(home, t.Name))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	remote, lim, err := OpenConfigured(ctx, home, t, Options{Create: true, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("replicate %s: %w", t.Name, err)
	}
	defer remote.Close()
	grace, err := t.GraceDuration()
	if err != nil {
		return nil, err
	}
	return replicate.Sync(ctx, local, remote, st, replicate.Options{Name: t.Name, Parallel: t.Parallel, Grace: grace,
		AppendOnly: t.AppendOnly, Limiter: lim, Logger: log, Progress: progress})
}
