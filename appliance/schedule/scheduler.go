package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// Job is a function the Scheduler runs on a schedule.
type Job struct {
	Name     string // unique within the scheduler
	Schedule Schedule
	// Key serializes jobs: two runs with the same key never run at the
	// same time. A job that comes due while its key is busy waits; while it
	// waits it is queued once, however often it comes due again. "" means
	// the job's Name (a job never overlaps itself).
	Key string
	// Run does the work. Its context ends when the scheduler stops; the
	// scheduler waits for it to return. RunInfoFrom(ctx) says why it runs.
	Run func(ctx context.Context) error
	// LastRun reports when the job last started (normally read from the
	// job records). With it the scheduler catches up: a job whose last run
	// is older than its latest scheduled time, or that never ran, runs once
	// as soon as it is added, and a job that comes due but has already run
	// since that scheduled time (the wall clock jumped) is skipped. Without
	// it the job just runs at its next scheduled time.
	LastRun func(ctx context.Context) (time.Time, bool, error)
}

// Trigger says why a job runs.
type Trigger string

// Triggers.
const (
	TriggerSchedule Trigger = "schedule" // its scheduled time came
	TriggerCatchUp  Trigger = "catch-up" // a scheduled time passed while arkbox was not running
	TriggerManual   Trigger = "manual"   // RunNow
)

// RunInfo describes one run of a job.
type RunInfo struct {
	Job       string
	Trigger   Trigger
	Scheduled time.Time // the scheduled time being served (the request time for manual runs)
}

type runInfoKey struct{}

// RunInfoFrom returns the RunInfo of the run whose context ctx is.
func RunInfoFrom(ctx context.Context) (RunInfo, bool) {
	ri, ok := ctx.Value(runInfoKey{}).(RunInfo)
	return ri, ok
}

// Options configure a Scheduler.
type Options struct {
	Clock    Clock          // nil: RealClock()
	Location *time.Location // time zone of the schedules; nil: time.Local
	Logger   *slog.Logger   // nil: discard
	// MaxWait is the longest the scheduler sleeps before it reads the
	// clock again, so that it follows wall-clock jumps (the first NTP sync
	// of a box without a real-time clock). 0 means one minute.
	MaxWait time.Duration
}

// Scheduler runs jobs on their schedules. Add jobs before or while Run
// runs. It is safe for concurrent use.
type Scheduler struct {
	clock   Clock
	loc     *time.Location
	log     *slog.Logger
	maxWait time.Duration
	wake    chan struct{}

	mu      sync.Mutex
	running bool
	jobs    map[string]*entry
	queue   []*entry          // pending, in the order they came due
	busy    map[string]string // key → name of the job running with it
	lastNow time.Time
	parked  bool // the loop sleeps (or is about to), its timer set
	woken   bool // a wake-up is queued and not yet taken by the loop
	// freed is closed (and replaced) whenever a key stops being busy;
	// Exclusive waits on it.
	freed chan struct{}
}

type entry struct {
	job     Job
	key     string
	next    time.Time
	hasNext bool
	catchUp bool // next is a missed scheduled time to check at start

	pending   bool
	trigger   Trigger
	scheduled time.Time

	running   bool
	removed   bool
	lastStart time.Time
	lastEnd   time.Time
	lastErr   error
}

// New returns a Scheduler with no jobs.
func New(opts Options) *Scheduler {
	s := &Scheduler{
		clock: opts.Clock, loc: opts.Location, log: opts.Logger, maxWait: opts.MaxWait,
		wake: make(chan struct{}, 1),
		jobs: map[string]*entry{}, busy: map[string]string{}, freed: make(chan struct{}),
	}
	if s.clock == nil {
		s.clock = RealClock()
	}
	if s.loc == nil {
		s.loc = time.Local
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxWait <= 0 {
		s.maxWait = time.Minute
	}
	return s
}

// pokeLocked wakes the loop up to look at the jobs again. The flag woken
// stays set until the loop has woken, so that "parked and not woken" means
// the loop sleeps.
func (s *Scheduler) pokeLocked() {
	s.woken = true
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Add registers a job. A job with LastRun whose latest scheduled time has
// passed without a run is caught up (see Job.LastRun).
func (s *Scheduler) Add(j Job) error {
	if j.Name == "" {
		return errors.New("schedule: add job: no name")
	}
	if j.Run == nil {
		return fmt.Errorf("schedule: add job %s: no Run function", j.Name)
	}
	e := &entry{job: j, key: j.Key}
	if e.key == "" {
		e.key = j.Name
	}
	now := s.clock.Now().Round(0)
	if j.LastRun != nil {
		e.next, e.catchUp = j.Schedule.Prev(now, s.loc)
		e.hasNext = e.catchUp
	}
	if !e.hasNext {
		e.next, e.hasNext = j.Schedule.Next(now, s.loc)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.jobs[j.Name]; dup {
		return fmt.Errorf("schedule: add job %s: a job of that name exists", j.Name)
	}
	s.jobs[j.Name] = e
	s.pokeLocked()
	return nil
}

// Remove unregisters a job; it reports whether there was one. A run in
// progress is not stopped: it finishes, and a queued run is dropped.
func (s *Scheduler) Remove(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.jobs[name]
	if !ok {
		return false
	}
	e.removed = true
	delete(s.jobs, name)
	s.queue = slices.DeleteFunc(s.queue, func(q *entry) bool { return q == e })
	s.pokeLocked()
	return true
}

// RunNow queues a run of the job now (it still waits for its key). A job
// that is already queued is not queued twice.
func (s *Scheduler) RunNow(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.jobs[name]
	if !ok {
		return fmt.Errorf("schedule: run %s: no such job", name)
	}
	s.enqueueLocked(e, TriggerManual, s.clock.Now().Round(0))
	s.pokeLocked()
	return nil
}

// Exclusive runs fn now, outside the schedule, holding key as a run of a
// job with that key would: it waits until no job with the key runs (or
// until ctx ends: it then returns ctx's error without running fn), and a
// job with the key that comes due while fn runs waits for it. A run a
// person asks for (a snapshot of a share now) goes this way so that it
// never overlaps a scheduled run of the same kind. fn runs in the
// caller's goroutine, with ctx; Exclusive returns its error. It works
// whether or not Run runs.
func (s *Scheduler) Exclusive(ctx context.Context, key string, fn func(ctx context.Context) error) error {
	if key == "" {
		return errors.New("schedule: exclusive run: no key")
	}
	s.mu.Lock()
	for {
		if _, busy := s.busy[key]; !busy {
			break
		}
		freed := s.freed
		s.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	s.busy[key] = "(exclusive)"
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.releaseLocked(key)
		s.mu.Unlock()
	}()
	return fn(ctx)
}

// releaseLocked frees key: queued jobs with it may start, and Exclusive
// calls waiting for it look again.
func (s *Scheduler) releaseLocked(key string) {
	delete(s.busy, key)
	close(s.freed)
	s.freed = make(chan struct{})
	s.pokeLocked()
}

func (s *Scheduler) enqueueLocked(e *entry, tr Trigger, scheduled time.Time) {
	if e.pending || e.removed {
		return
	}
	e.pending, e.trigger, e.scheduled = true, tr, scheduled
	s.queue = append(s.queue, e)
}

// Status is the state of one job.
type Status struct {
	Name      string    `json:"name"`
	Key       string    `json:"key"`
	Schedule  string    `json:"schedule"`
	Next      time.Time `json:"next,omitzero"` // zero: no further run
	Running   bool      `json:"running"`
	Pending   bool      `json:"pending"` // due, waiting for its key
	LastStart time.Time `json:"last_start,omitzero"`
	LastEnd   time.Time `json:"last_end,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// Status returns the state of every job, by name. Last* describe the runs
// of this process only; the job records hold the history.
func (s *Scheduler) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.jobs))
	for _, e := range s.jobs {
		st := Status{
			Name: e.job.Name, Key: e.key, Schedule: e.job.Schedule.String(),
			Running: e.running, Pending: e.pending,
			LastStart: e.lastStart, LastEnd: e.lastEnd,
		}
		if e.hasNext {
			st.Next = e.next
		}
		if e.lastErr != nil {
			st.LastError = e.lastErr.Error()
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Run runs jobs as they come due until ctx ends, then waits for the
// running jobs (whose contexts end with ctx) to return, and returns nil. It
// fails only if the scheduler is already running.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("schedule: scheduler already running")
	}
	s.running = true
	s.mu.Unlock()
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
	for ctx.Err() == nil {
		now := s.clock.Now().Round(0)
		for _, d := range s.collectDue(now) {
			if !s.shouldRun(ctx, d.e, now) {
				continue
			}
			s.mu.Lock()
			s.enqueueLocked(d.e, d.trigger, d.scheduled)
			s.mu.Unlock()
		}
		wait := s.startRunnable(ctx, &wg, now)
		t := s.clock.NewTimer(wait)
		s.mu.Lock()
		s.parked = true
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-t.C():
		case <-s.wake:
		}
		s.mu.Lock()
		s.parked, s.woken = false, false
		select {
		case <-s.wake: // taken now: the next round sees what it announced
		default:
		}
		s.mu.Unlock()
		t.Stop()
	}
	s.log.Info("scheduler stopping: waiting for running jobs")
	return nil
}

type dueRun struct {
	e         *entry
	trigger   Trigger
	scheduled time.Time
}

// collectDue advances every job whose next time has come and returns them.
func (s *Scheduler) collectDue(now time.Time) []dueRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.lastNow) {
		s.log.Warn("clock went back: rescheduling", "from", s.lastNow, "to", now)
		for _, e := range s.jobs {
			e.next, e.hasNext = e.job.Schedule.Next(now, s.loc)
			e.catchUp = false
		}
	}
	s.lastNow = now
	var due []dueRun
	for _, e := range s.jobs {
		if !e.hasNext || e.next.After(now) {
			continue
		}
		d := dueRun{e: e, trigger: TriggerSchedule, scheduled: e.next}
		if e.catchUp {
			d.trigger = TriggerCatchUp
		}
		if prev, ok := e.job.Schedule.Prev(now, s.loc); ok && prev.After(d.scheduled) {
			d.scheduled = prev // several passed (the clock jumped): serve the latest
		}
		e.next, e.hasNext = e.job.Schedule.Next(now, s.loc)
		e.catchUp = false
		due = append(due, d)
	}
	slices.SortFunc(due, func(a, b dueRun) int {
		if c := a.scheduled.Compare(b.scheduled); c != 0 {
			return c
		}
		return strings.Compare(a.e.job.Name, b.e.job.Name)
	})
	return due
}

// shouldRun asks the job's history whether the scheduled time that has
// come was already served.
func (s *Scheduler) shouldRun(ctx context.Context, e *entry, now time.Time) bool {
	if e.job.LastRun == nil {
		return true
	}
	prev, ok := e.job.Schedule.Prev(now, s.loc)
	if !ok {
		return true
	}
	last, ran, err := e.job.LastRun(ctx)
	if err != nil {
		s.log.Warn("job history unreadable: running the job", "job", e.job.Name, "err", err)
		return true
	}
	if ran && !last.Before(prev) {
		s.log.Info("job already ran since its scheduled time", "job", e.job.Name, "scheduled", prev, "last_run", last)
		return false
	}
	return true
}

// startRunnable starts the queued jobs whose keys are free and returns how
// long to sleep until the next job comes due.
func (s *Scheduler) startRunnable(ctx context.Context, wg *sync.WaitGroup, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.queue[:0]
	for _, e := range s.queue {
		if _, busy := s.busy[e.key]; busy || ctx.Err() != nil {
			kept = append(kept, e)
			continue
		}
		e.pending, e.running, e.lastStart = false, true, now
		s.busy[e.key] = e.job.Name
		info := RunInfo{Job: e.job.Name, Trigger: e.trigger, Scheduled: e.scheduled}
		wg.Add(1)
		go s.execute(ctx, wg, e, info, now)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	wait := s.maxWait
	for _, e := range s.jobs {
		if e.hasNext {
			wait = min(wait, e.next.Sub(now))
		}
	}
	return wait
}

func (s *Scheduler) execute(ctx context.Context, wg *sync.WaitGroup, e *entry, info RunInfo, start time.Time) {
	defer wg.Done()
	log := s.log.With("job", info.Job, "trigger", string(info.Trigger))
	log.Info("job started", "scheduled", info.Scheduled)
	err := runSafely(context.WithValue(ctx, runInfoKey{}, info), e.job.Run)
	end := s.clock.Now().Round(0)
	s.mu.Lock()
	e.running, e.lastEnd, e.lastErr = false, end, err
	s.releaseLocked(e.key)
	s.mu.Unlock()
	switch {
	case err == nil:
		log.Info("job finished", "took", end.Sub(start))
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		log.Info("job canceled", "err", err)
	default:
		log.Error("job failed", "err", err)
	}
}

// runSafely runs f, turning a panic into an error.
func runSafely(ctx context.Context, f func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return f(ctx)
}
