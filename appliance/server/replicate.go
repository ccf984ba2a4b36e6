package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/appliance/schedule"
	"github.com/arkbox/arkbox/replicate/target"
)

// afterSnapshot is the schedule of a target synced after every snapshot.
const afterSnapshot = "after each snapshot"

// addReplication schedules a sync job for every replication target of the
// repository (replicate.json in its home folder), replacing the sync jobs
// it scheduled before (a reload). A target whose schedule
// is "after each snapshot" runs when any snapshot job succeeds; one
// without a schedule runs only by hand.
func (w *worker) addReplication(s *schedule.Scheduler) error {
	ts, err := target.Load(w.h.Dir)
	if err != nil {
		return err
	}
	w.replMu.Lock()
	defer w.replMu.Unlock()
	for _, name := range w.replJobs {
		s.Remove(name)
	}
	w.replJobs, w.afterSnap = nil, nil
	for _, t := range ts {
		t := t
		name := "replicate " + t.Name
		expr := t.Schedule
		if expr == "" || strings.EqualFold(strings.TrimSpace(expr), afterSnapshot) {
			expr = "never"
		}
		if strings.EqualFold(strings.TrimSpace(t.Schedule), afterSnapshot) {
			w.afterSnap = append(w.afterSnap, name)
		}
		w.replJobs = append(w.replJobs, name)
		sc, err := schedule.Parse(expr)
		if err != nil {
			return fmt.Errorf("replication target %s: schedule: %w", t.Name, err)
		}
		err = s.Add(schedule.Job{Name: name, Schedule: sc, Key: "replicate:" + t.Name,
			LastRun: w.jdb.LastRunFunc("replicate", t.Name, ""),
			Run: func(ctx context.Context) error {
				trig := ""
				if info, ok := schedule.RunInfoFrom(ctx); ok {
					trig = string(info.Trigger)
				}
				err := w.jdb.Do(ctx, jobs.Spec{Kind: "replicate", Target: t.Name, Trigger: trig}, func(ctx context.Context, run *jobs.Run) (jobs.Stats, error) {
					rep, err := target.Sync(ctx, w.h.Dir, w.h.Store, t, w.r, w.log, nil)
					if rep == nil {
						return jobs.Stats{}, err
					}
					return jobs.Stats{Files: rep.UploadedTotal.Objects, BytesNew: rep.UploadedTotal.Bytes, BytesTotal: rep.Local.Bytes,
						Errors: int64(len(rep.Failed))}, err
				})
				if err != nil {
					w.log.Error("job failed", "job", name, "err", err)
				}
				return err
			}})
		if err != nil {
			return err
		}
		w.log.Info("replication scheduled", "target", t.Name, "url", t.URL, "schedule", t.Schedule)
	}
	return nil
}

// snapshotDone starts the syncs that follow every snapshot.
func (w *worker) snapshotDone() {
	if w.sched == nil {
		return
	}
	w.replMu.Lock()
	names := append([]string(nil), w.afterSnap...)
	w.replMu.Unlock()
	for _, name := range names {
		if err := w.sched.RunNow(name); err != nil {
			w.log.Error("start the sync after a snapshot", "job", name, "err", err)
		}
	}
}

// ReloadReplication implements control.Ops: the targets of replicate.json
// are scheduled anew (a sync in progress finishes first).
func (l *live) ReloadReplication(ctx context.Context) error {
	if err := l.w.addReplication(l.sched); err != nil {
		return fmt.Errorf("reload replication targets: %w", err)
	}
	return nil
}
