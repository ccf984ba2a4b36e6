// Package jobs records the runs of the appliance's jobs (snapshots, prune,
// scrub, verify, replication, …) in a bbolt bucket of their own: when each
// started and ended, its result, its statistics and, while it runs, its
// progress. Records survive restarts; a run that was in progress when the
// process died is marked interrupted when the records are next opened.
// The records also tell the scheduler when a job last ran, for catch-up.
//
// The record fields are documented in doc/operations.md.
package jobs

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unicode"

	bolt "go.etcd.io/bbolt"
)

// Result is the outcome of a run.
type Result string

// Results.
const (
	Running     Result = "running"     // in progress
	OK          Result = "ok"          // finished
	Warning     Result = "warning"     // finished, but some items failed (Stats.Errors)
	Failed      Result = "failed"      // stopped by an error
	Canceled    Result = "canceled"    // stopped on request (shutdown, a user)
	Interrupted Result = "interrupted" // arkbox stopped (crash, power loss) while it ran
)

// Final reports whether r is the result of a finished run.
func (r Result) Final() bool {
	switch r {
	case OK, Warning, Failed, Canceled, Interrupted:
		return true
	}
	return false
}

// Kinds of jobs the appliance runs. Kind is free text; these are the
// names the appliance uses.
const (
	KindSnapshot  = "snapshot"
	KindForget    = "forget"
	KindPrune     = "prune"
	KindScrub     = "scrub"
	KindVerify    = "verify"
	KindReplicate = "replicate"
	KindResync    = "resync" // a pool disk that returned is brought up to date
)

// Triggers: why a run started (the scheduler's triggers, plus "manual" for
// a user's request).
const (
	TriggerSchedule = "schedule"
	TriggerCatchUp  = "catch-up"
	TriggerManual   = "manual"
)

// Stats are the figures of a run.
type Stats struct {
	Files      int64 `json:"files"`            // files (or objects) processed
	BytesTotal int64 `json:"bytes_total"`      // bytes processed
	BytesNew   int64 `json:"bytes_new"`        // bytes added to the repository
	Errors     int64 `json:"errors,omitempty"` // items that failed without stopping the run
}

// Progress is how far a running job is. Totals of 0 are unknown.
type Progress struct {
	Phase      string `json:"phase,omitempty"`
	FilesDone  int64  `json:"files_done"`
	FilesTotal int64  `json:"files_total,omitempty"`
	BytesDone  int64  `json:"bytes_done"`
	BytesTotal int64  `json:"bytes_total,omitempty"`
}

// Record is one run of a job; its JSON form is what arkbox jobs --json
// prints.
type Record struct {
	ID       uint64    `json:"id"`
	Kind     string    `json:"kind"`
	Target   string    `json:"target,omitempty"`   // share, remote, …; "" for the whole box
	Schedule string    `json:"schedule,omitempty"` // name of the schedule that started it
	Trigger  string    `json:"trigger,omitempty"`  // schedule, catch-up, manual
	Started  time.Time `json:"started"`
	Updated  time.Time `json:"updated"` // last saved while running (or the end)
	Ended    time.Time `json:"ended,omitzero"`
	Result   Result    `json:"result"`
	Error    string    `json:"error,omitempty"`
	Stats    Stats     `json:"stats"`
	Progress *Progress `json:"progress,omitempty"` // while running
}

// Duration returns how long the run took, or has taken by now.
func (r Record) Duration(now time.Time) time.Duration {
	if !r.Ended.IsZero() {
		return r.Ended.Sub(r.Started)
	}
	return now.Sub(r.Started)
}

// Spec names a run to start.
type Spec struct {
	Kind     string
	Target   string
	Schedule string
	Trigger  string
}

// Options tune a DB.
type Options struct {
	Now func() time.Time // clock (time.Now)
	// ProgressInterval is how often a running job's progress is saved at
	// most (30s); in between it is kept in memory, where List sees it.
	ProgressInterval time.Duration
	// MaxRecords is how many records are kept (50000); the oldest go.
	MaxRecords int
	Logger     *slog.Logger // nil: discard
	// OnFinish, if set, is called with the record of each run that
	// finishes, after it is saved.
	OnFinish func(Record)
}

// ErrNotFound is returned by Get for an unknown id.
var ErrNotFound = errors.New("jobs: no such run")

// Bucket names in the bbolt database.
var (
	bucketRecords = []byte("jobs")
	bucketRunning = []byte("jobs.running")
)

// DB is the job record store. It is safe for concurrent use.
type DB struct {
	db  *bolt.DB
	opt Options
	log *slog.Logger

	mu     sync.Mutex
	active map[uint64]*Run
}

// Open opens the job records in db (creating their buckets) and marks the
// runs that were in progress when the previous process stopped as
// interrupted (ended at their last saved update), logging each.
func Open(ctx context.Context, db *bolt.DB, opt Options) (*DB, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.ProgressInterval <= 0 {
		opt.ProgressInterval = 30 * time.Second
	}
	if opt.MaxRecords <= 0 {
		opt.MaxRecords = 50000
	}
	d := &DB{db: db, opt: opt, log: opt.Logger, active: map[uint64]*Run{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var interrupted []Record
	err := db.Update(func(tx *bolt.Tx) error {
		recs, err := tx.CreateBucketIfNotExists(bucketRecords)
		if err != nil {
			return err
		}
		running, err := tx.CreateBucketIfNotExists(bucketRunning)
		if err != nil {
			return err
		}
		var ids [][]byte
		if err := running.ForEach(func(k, _ []byte) error {
			ids = append(ids, slices.Clone(k))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range ids {
			if err := running.Delete(k); err != nil {
				return err
			}
			v := recs.Get(k)
			if v == nil {
				continue // trimmed away
			}
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("record %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if r.Result != Running {
				continue
			}
			r.Result, r.Ended, r.Progress = Interrupted, r.Updated, nil
			r.Error = "arkbox stopped while the job ran"
			if err := putRecord(recs, r); err != nil {
				return err
			}
			interrupted = append(interrupted, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: open: %w", err)
	}
	for _, r := range interrupted {
		d.log.Warn("job was interrupted", "id", r.ID, "kind", r.Kind, "target", r.Target, "started", r.Started)
	}
	return d, nil
}

func idKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

func putRecord(b *bolt.Bucket, r Record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.Put(idKey(r.ID), v)
}

func (d *DB) now() time.Time { return d.opt.Now().Round(0) }

func checkLabel(what, s string, required bool) error {
	if s == "" && required {
		return fmt.Errorf("jobs: start: no %s", what)
	}
	if len(s) > 256 {
		return fmt.Errorf("jobs: start: %s longer than 256 bytes", what)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("jobs: start: %s %q has control characters", what, s)
		}
	}
	return nil
}

// Start records the start of a run and returns it. Finish it when it ends.
func (d *DB) Start(ctx context.Context, s Spec) (*Run, error) {
	for _, f := range []struct {
		what, v  string
		required bool
	}{{"kind", s.Kind, true}, {"target", s.Target, false}, {"schedule", s.Schedule, false}, {"trigger", s.Trigger, false}} {
		if err := checkLabel(f.what, f.v, f.required); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := d.now()
	r := Record{Kind: s.Kind, Target: s.Target, Schedule: s.Schedule, Trigger: s.Trigger,
		Started: now, Updated: now, Result: Running, Progress: &Progress{}}
	err := d.db.Update(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		id, err := recs.NextSequence()
		if err != nil {
			return err
		}
		r.ID = id
		if err := putRecord(recs, r); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRunning).Put(idKey(id), nil); err != nil {
			return err
		}
		return d.trim(recs, id)
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: start %s %s: %w", s.Kind, s.Target, err)
	}
	run := &Run{d: d, rec: r, saved: now}
	d.mu.Lock()
	d.active[r.ID] = run
	d.mu.Unlock()
	return run, nil
}

// trim deletes the oldest records beyond MaxRecords. Ids are consecutive
// and only the oldest are ever deleted, so the count is last-first+1.
func (d *DB) trim(recs *bolt.Bucket, last uint64) error {
	c := recs.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.First() {
		first := binary.BigEndian.Uint64(k)
		if last-first+1 <= uint64(d.opt.MaxRecords) {
			return nil
		}
		if err := recs.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Run is a run in progress. Its methods are safe for concurrent use.
type Run struct {
	d     *DB
	mu    sync.Mutex
	rec   Record
	saved time.Time // when the record was last written
	done  bool
}

// ID returns the run's record id.
func (r *Run) ID() uint64 { return r.rec.ID }

// Record returns the run's record as it is now.
func (r *Run) Record() Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.copyLocked()
}

func (r *Run) copyLocked() Record {
	rec := r.rec
	if rec.Progress != nil {
		p := *rec.Progress
		rec.Progress = &p
	}
	return rec
}

// Progress updates the run's progress. It is kept in memory and written
// at most every ProgressInterval; a failed write is logged, not returned
// (progress is not worth failing a job for).
func (r *Run) Progress(p Progress) {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return
	}
	r.rec.Progress = &p
	now := r.d.now()
	if now.Sub(r.saved) < r.d.opt.ProgressInterval {
		r.mu.Unlock()
		return
	}
	r.saved = now
	r.rec.Updated = now
	rec := r.copyLocked()
	r.mu.Unlock()
	err := r.d.db.Update(func(tx *bolt.Tx) error {
		// A Finish that ran meanwhile wrote the final record: keep it.
		recs := tx.Bucket(bucketRecords)
		if tx.Bucket(bucketRunning).Get(idKey(rec.ID)) == nil {
			return nil
		}
		return putRecord(recs, rec)
	})
	if err != nil {
		r.d.log.Warn("job progress not saved", "id", rec.ID, "kind", rec.Kind, "err", err)
	}
}

// Finish records the end of the run. An empty res is derived from err:
// nil is OK (Warning if st.Errors > 0), context.Canceled or
// context.DeadlineExceeded is Canceled, anything else Failed. err's
// message is recorded whatever res is. A run finishes once. It takes no
// context: the end is recorded even when the job's context has ended
// (that is how a canceled run ends).
func (r *Run) Finish(res Result, err error, st Stats) error {
	if res == "" {
		res = ResultOf(err, st)
	}
	if !res.Final() || res == Interrupted {
		return fmt.Errorf("jobs: finish run %d: result %q: want ok, warning, failed or canceled", r.rec.ID, res)
	}
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return fmt.Errorf("jobs: finish run %d: already finished", r.rec.ID)
	}
	r.done = true
	now := r.d.now()
	r.rec.Ended, r.rec.Updated, r.rec.Result, r.rec.Stats, r.rec.Progress = now, now, res, st, nil
	if err != nil {
		r.rec.Error = err.Error()
	}
	rec := r.copyLocked()
	r.mu.Unlock()
	werr := r.d.db.Update(func(tx *bolt.Tx) error {
		if err := putRecord(tx.Bucket(bucketRecords), rec); err != nil {
			return err
		}
		return tx.Bucket(bucketRunning).Delete(idKey(rec.ID))
	})
	r.d.mu.Lock()
	delete(r.d.active, rec.ID)
	r.d.mu.Unlock()
	if werr != nil {
		return fmt.Errorf("jobs: finish run %d (%s %s): %w", rec.ID, rec.Kind, rec.Target, werr)
	}
	if r.d.opt.OnFinish != nil {
		r.d.opt.OnFinish(rec)
	}
	return nil
}

// ResultOf derives a run's result from its error and statistics.
func ResultOf(err error, st Stats) Result {
	switch {
	case err == nil && st.Errors > 0:
		return Warning
	case err == nil:
		return OK
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return Canceled
	}
	return Failed
}

// Do records a run of fn: it starts a record, runs fn and finishes the
// record with fn's statistics and error (a panic in fn is recorded as a
// failure and returned as an error). It returns fn's error, or the
// recording's if fn succeeded.
func (d *DB) Do(ctx context.Context, s Spec, fn func(ctx context.Context, r *Run) (Stats, error)) (err error) {
	run, err := d.Start(ctx, s)
	if err != nil {
		return err
	}
	var st Stats
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		st, err = fn(ctx, run)
	}()
	ferr := run.Finish("", err, st)
	if err == nil {
		err = ferr
	} else if ferr != nil {
		d.log.Error("job end not recorded", "id", run.ID(), "err", ferr)
	}
	return err
}

// Filter selects records. Zero fields select everything.
type Filter struct {
	Kind     string
	Target   string
	Schedule string
	Results  []Result
	Since    time.Time // started at or after
	BeforeID uint64    // only records with smaller ids (paging)
}

func (f Filter) match(r Record) bool {
	return (f.Kind == "" || r.Kind == f.Kind) &&
		(f.Target == "" || r.Target == f.Target) &&
		(f.Schedule == "" || r.Schedule == f.Schedule) &&
		(len(f.Results) == 0 || slices.Contains(f.Results, r.Result)) &&
		(f.Since.IsZero() || !r.Started.Before(f.Since))
}

// List returns the records f selects, newest first, at most limit of them
// (limit ≤ 0: all). Running runs show their current progress.
func (d *DB) List(ctx context.Context, f Filter, limit int) ([]Record, error) {
	d.mu.Lock()
	live := make(map[uint64]*Run, len(d.active))
	for id, r := range d.active {
		live[id] = r
	}
	d.mu.Unlock()
	out := []Record{}
	err := d.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		var k, v []byte
		if f.BeforeID > 0 {
			k, v = c.Seek(idKey(f.BeforeID))
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		} else {
			k, v = c.Last()
		}
		for n := 0; k != nil; k, v = c.Prev() {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("record %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if f.BeforeID > 0 && r.ID >= f.BeforeID {
				continue
			}
			if run, ok := live[r.ID]; ok {
				r = run.Record()
			}
			if f.match(r) {
				out = append(out, r)
				if limit > 0 && len(out) >= limit {
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: list: %w", err)
	}
	return out, nil
}

// Get returns the record of run id.
func (d *DB) Get(ctx context.Context, id uint64) (Record, error) {
	d.mu.Lock()
	run := d.active[id]
	d.mu.Unlock()
	if run != nil {
		return run.Record(), nil
	}
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	var r Record
	err := d.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRecords).Get(idKey(id))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &r)
	})
	if err != nil {
		return Record{}, fmt.Errorf("jobs: get run %d: %w", id, err)
	}
	return r, nil
}

// Last returns the newest record of kind and target, whatever its result.
func (d *DB) Last(ctx context.Context, kind, target string) (Record, bool, error) {
	rs, err := d.List(ctx, Filter{Kind: kind, Target: target}, 1)
	if err != nil || len(rs) == 0 {
		return Record{}, false, err
	}
	return rs[0], true, nil
}

// LastRunFunc returns the history function of a scheduled job (for
// schedule.Job.LastRun): the start of the newest run of kind, target and
// schedule that is running or ended ok, with a warning or failed. Canceled
// and interrupted runs do not count, so the scheduler catches them up.
func (d *DB) LastRunFunc(kind, target, schedule string) func(context.Context) (time.Time, bool, error) {
	f := Filter{Kind: kind, Target: target, Schedule: schedule, Results: []Result{Running, OK, Warning, Failed}}
	return func(ctx context.Context) (time.Time, bool, error) {
		rs, err := d.List(ctx, f, 1)
		if err != nil || len(rs) == 0 {
			return time.Time{}, false, err
		}
		return rs[0].Started, true, nil
	}
}

// Active returns the runs in progress in this process, oldest first.
func (d *DB) Active() []Record {
	d.mu.Lock()
	runs := make([]*Run, 0, len(d.active))
	for _, r := range d.active {
		runs = append(runs, r)
	}
	d.mu.Unlock()
	out := make([]Record, len(runs))
	for i, r := range runs {
		out[i] = r.Record()
	}
	slices.SortFunc(out, func(a, b Record) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Key names the job a record is a run of: its kind, target and schedule.
func (r Record) Key() string { return r.Kind + "\x00" + r.Target + "\x00" + r.Schedule }

// LastResults returns the newest finished record of each job (Record.Key)
// among the newest scan records, by key.
func (d *DB) LastResults(ctx context.Context, scan int) (map[string]Record, error) {
	recs, err := d.List(ctx, Filter{}, scan)
	if err != nil {
		return nil, err
	}
	out := map[string]Record{}
	for _, r := range recs {
		if _, ok := out[r.Key()]; !ok && r.Result.Final() {
			out[r.Key()] = r
		}
	}
	return out, nil
}
