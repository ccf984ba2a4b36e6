package schedule

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// harness runs a Scheduler on a FakeClock and records the runs.
type harness struct {
	t     *testing.T
	clk   *FakeClock
	s     *Scheduler
	loc   *time.Location
	runs  chan RunInfo
	early []RunInfo // received before expected
	stop  context.CancelFunc
	done  chan struct{}
	mu    sync.Mutex
	count map[string]int
}

func newHarness(t *testing.T, loc *time.Location, start time.Time) *harness {
	t.Helper()
	h := &harness{t: t, clk: NewFakeClock(start), loc: loc, runs: make(chan RunInfo, 100), count: map[string]int{}}
	h.s = New(Options{Clock: h.clk, Location: loc})
	return h
}

// start runs the scheduler until the test ends.
func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		if err := h.s.Run(ctx); err != nil {
			h.t.Errorf("Run: %v", err)
		}
	}()
	h.t.Cleanup(func() { cancel(); <-h.done })
}

// job returns a Run function that records its runs and, if gate is not
// nil, waits for it.
func (h *harness) job(gate chan struct{}) func(context.Context) error {
	return func(ctx context.Context) error {
		info, _ := RunInfoFrom(ctx)
		h.mu.Lock()
		h.count[info.Job]++
		h.mu.Unlock()
		h.runs <- info
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
}

func (h *harness) add(j Job) {
	h.t.Helper()
	if j.Run == nil {
		j.Run = h.job(nil)
	}
	if err := h.s.Add(j); err != nil {
		h.t.Fatal(err)
	}
}

// expect waits for a run of job (runs started together may arrive in any
// order) and checks it.
func (h *harness) expect(job string, tr Trigger, scheduled time.Time) {
	h.t.Helper()
	check := func(r RunInfo) {
		h.t.Helper()
		if r.Trigger != tr || (!scheduled.IsZero() && !r.Scheduled.Equal(scheduled)) {
			h.t.Fatalf("run %+v; want %s (%s) for %v", r, job, tr, scheduled)
		}
	}
	for i, r := range h.early {
		if r.Job == job {
			h.early = append(h.early[:i], h.early[i+1:]...)
			check(r)
			return
		}
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-h.runs:
			if r.Job != job {
				h.early = append(h.early, r)
				continue
			}
			check(r)
			return
		case <-timeout:
			h.t.Fatalf("no run; want %s (%s) for %v; other runs: %+v", job, tr, scheduled, h.early)
		}
	}
}

// asleep reports whether the scheduler sleeps on a timer that has not
// fired, set from a fresh reading of the clock, with no wake-up queued.
// Advancing the clock then is seen by the scheduler.
func (h *harness) asleep() bool {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parked && !s.woken && h.clk.Timers() == 1
}

// idle reports whether the scheduler is asleep with no job running or
// queued.
func (h *harness) idle() bool {
	if !h.asleep() {
		return false
	}
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) == 0 && len(s.busy) == 0
}

// settle waits until the scheduler is idle, then checks that nothing else
// ran.
func (h *harness) settle() {
	h.t.Helper()
	waitFor(h.t, h.idle)
	if len(h.early) > 0 {
		h.t.Fatalf("unexpected runs %+v", h.early)
	}
	select {
	case r := <-h.runs:
		h.t.Fatalf("unexpected run %+v", r)
	default:
	}
}

// advance moves the clock once the scheduler sleeps. Jobs may be running
// (they do not change what the scheduler waits for until they end).
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	waitFor(h.t, h.asleep)
	h.clk.Advance(d)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func history(last time.Time) func(context.Context) (time.Time, bool, error) {
	return func(context.Context) (time.Time, bool, error) { return last, !last.IsZero(), nil }
}

func TestSchedulerRunsOnSchedule(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	start := time.Date(2026, 1, 10, 9, 59, 0, 0, berlin)
	h := newHarness(t, berlin, start)
	h.add(Job{Name: "daily", Schedule: MustParse("daily 10:00,22:00")})
	h.add(Job{Name: "quarter", Schedule: MustParse("every 15m")})
	h.add(Job{Name: "weekly", Schedule: MustParse("weekly sun 03:00")})
	h.add(Job{Name: "monthly", Schedule: MustParse("monthly last-fri 22:00")})
	h.add(Job{Name: "once", Schedule: MustParse("once 2026-01-11T12:00")})
	h.add(Job{Name: "never", Schedule: MustParse("never")})
	h.start()
	h.settle()
	h.advance(time.Minute) // 10:00
	h.expect("daily", TriggerSchedule, start.Add(time.Minute))
	h.expect("quarter", TriggerSchedule, start.Add(time.Minute))
	h.settle()
	h.advance(14 * time.Minute) // 10:14
	h.settle()
	h.advance(time.Minute) // 10:15
	h.expect("quarter", TriggerSchedule, start.Add(16*time.Minute))
	h.settle()

	// A long sleep (the fake clock jumps) serves each job once, for the
	// latest time that passed.
	h.advance(2 * 24 * time.Hour) // Monday 10:15
	h.expect("daily", TriggerSchedule, time.Date(2026, 1, 12, 10, 0, 0, 0, berlin))
	h.expect("once", TriggerSchedule, time.Date(2026, 1, 11, 12, 0, 0, 0, berlin))
	h.expect("weekly", TriggerSchedule, time.Date(2026, 1, 11, 3, 0, 0, 0, berlin))
	h.expect("quarter", TriggerSchedule, time.Date(2026, 1, 12, 10, 15, 0, 0, berlin))
	h.settle()
	// The wall clock jumps; the scheduler notices when it next wakes.
	h.clk.Set(time.Date(2026, 1, 30, 21, 58, 0, 0, berlin))
	h.advance(time.Minute)
	h.expect("daily", TriggerSchedule, time.Date(2026, 1, 30, 10, 0, 0, 0, berlin))
	h.expect("quarter", TriggerSchedule, time.Date(2026, 1, 30, 21, 45, 0, 0, berlin))
	h.expect("weekly", TriggerSchedule, time.Date(2026, 1, 25, 3, 0, 0, 0, berlin))
	h.settle()
	h.advance(time.Minute)
	h.expect("daily", TriggerSchedule, time.Date(2026, 1, 30, 22, 0, 0, 0, berlin))
	h.expect("monthly", TriggerSchedule, time.Date(2026, 1, 30, 22, 0, 0, 0, berlin))
	h.expect("quarter", TriggerSchedule, time.Date(2026, 1, 30, 22, 0, 0, 0, berlin))
	h.settle()

	var names []string
	for _, st := range h.s.Status() {
		names = append(names, st.Name)
		if st.Name == "once" || st.Name == "never" {
			if !st.Next.IsZero() {
				t.Errorf("%s: next run %v", st.Name, st.Next)
			}
		} else if !st.Next.After(h.clk.Now()) {
			t.Errorf("%s: next run %v", st.Name, st.Next)
		}
	}
	if got := strings.Join(names, " "); got != "daily monthly never once quarter weekly" {
		t.Errorf("Status lists %s", got)
	}
}

func TestSchedulerCatchUp(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	now := time.Date(2026, 1, 10, 12, 0, 0, 0, berlin)
	today2 := time.Date(2026, 1, 10, 2, 0, 0, 0, berlin)
	h := newHarness(t, berlin, now)
	// The box was off at 02:00: the last run is two days old.
	h.add(Job{Name: "a-missed", Schedule: MustParse("daily 02:00"), LastRun: history(today2.AddDate(0, 0, -2))})
	// It ran today at 02:00 (a few seconds late).
	h.add(Job{Name: "b-done", Schedule: MustParse("daily 02:00"), LastRun: history(today2.Add(3 * time.Second))})
	// It never ran: overdue.
	h.add(Job{Name: "c-never-ran", Schedule: MustParse("daily 02:00"), LastRun: history(time.Time{})})
	// No history: no catch-up.
	h.add(Job{Name: "d-no-history", Schedule: MustParse("daily 02:00")})
	// A one-off whose time passed while the box was off runs once; one that
	// ran does not run again.
	h.add(Job{Name: "e-once-missed", Schedule: MustParse("once 2026-01-09T18:00"), LastRun: history(time.Time{})})
	h.add(Job{Name: "f-once-done", Schedule: MustParse("once 2026-01-09T18:00"),
		LastRun: history(time.Date(2026, 1, 9, 18, 0, 1, 0, berlin))})
	h.add(Job{Name: "g-once-ahead", Schedule: MustParse("once 2026-01-10T13:00"), LastRun: history(time.Time{})})
	// History that fails to read: run rather than miss a backup.
	h.add(Job{Name: "h-history-broken", Schedule: MustParse("daily 02:00"),
		LastRun: func(context.Context) (time.Time, bool, error) { return time.Time{}, false, errors.New("disk gone") }})
	h.start()
	h.expect("a-missed", TriggerCatchUp, today2)
	h.expect("c-never-ran", TriggerCatchUp, today2)
	h.expect("e-once-missed", TriggerCatchUp, time.Date(2026, 1, 9, 18, 0, 0, 0, berlin))
	h.expect("h-history-broken", TriggerCatchUp, today2)
	h.settle()
	h.advance(time.Hour)
	h.expect("g-once-ahead", TriggerSchedule, now.Add(time.Hour))
	h.settle()
}

// TestSchedulerWallClockJumps checks that a due job that already ran since
// its scheduled time is skipped (the wall clock jumped to a time the
// history already covers), and that a clock going back reschedules.
func TestSchedulerWallClockJumps(t *testing.T) {
	// A box without a real-time clock boots in 1970; NTP then sets the
	// clock. History says what ran before the reboot.
	h := newHarness(t, time.UTC, time.Unix(10, 0))
	lastScrub := time.Date(2026, 6, 7, 4, 0, 0, 0, time.UTC) // a Sunday
	h.add(Job{Name: "scrub", Schedule: MustParse("weekly sun 04:00"), LastRun: history(lastScrub)})
	h.add(Job{Name: "snapshot", Schedule: MustParse("every 1h"), LastRun: history(time.Date(2026, 6, 10, 9, 0, 0, 0, time.UTC))})
	h.start()
	h.settle()
	h.clk.Set(time.Date(2026, 6, 10, 11, 29, 0, 0, time.UTC))
	h.advance(time.Minute)
	h.expect("snapshot", TriggerSchedule, time.Date(2026, 6, 10, 11, 0, 0, 0, time.UTC))
	h.settle() // the scrub of Sunday is in the history: no scrub on every boot

	// The clock goes back a day: jobs are rescheduled from the new time
	// instead of waiting a day.
	h.clk.Set(time.Date(2026, 6, 9, 11, 29, 0, 0, time.UTC))
	h.advance(time.Minute)
	h.settle()
	for _, st := range h.s.Status() {
		if st.Name == "snapshot" && !st.Next.Equal(time.Date(2026, 6, 9, 12, 0, 0, 0, time.UTC)) {
			t.Errorf("after the clock went back, snapshot next at %v", st.Next)
		}
	}
}

func TestSchedulerNoOverlap(t *testing.T) {
	start := time.Date(2026, 1, 10, 9, 59, 0, 0, time.UTC)
	h := newHarness(t, time.UTC, start)
	gateA, gateB := make(chan struct{}), make(chan struct{})
	h.add(Job{Name: "a-prune", Key: "repo", Schedule: MustParse("daily 10:00"), Run: h.job(gateA)})
	h.add(Job{Name: "b-snapshot", Key: "repo", Schedule: MustParse("every 1m"), Run: h.job(gateB)})
	h.add(Job{Name: "c-other", Schedule: MustParse("every 1m")})
	h.start()
	h.settle()
	h.advance(time.Minute)
	h.expect("a-prune", TriggerSchedule, start.Add(time.Minute))
	h.expect("c-other", TriggerSchedule, start.Add(time.Minute))
	// b-snapshot waits for a-prune, however often it comes due.
	for i := 0; i < 3; i++ {
		h.advance(time.Minute)
		h.expect("c-other", TriggerSchedule, time.Time{})
	}
	waitFor(t, func() bool {
		for _, st := range h.s.Status() {
			if st.Name == "b-snapshot" {
				return st.Pending && !st.Running
			}
		}
		return false
	})
	select {
	case r := <-h.runs:
		t.Fatalf("%+v ran while a-prune holds the key", r)
	default:
	}
	close(gateA)
	// Queued once, for the first time it came due (with a-prune).
	h.expect("b-snapshot", TriggerSchedule, start.Add(time.Minute))
	// It now overruns itself: it is queued again, once.
	h.advance(time.Minute)
	h.expect("c-other", TriggerSchedule, time.Time{})
	h.advance(time.Minute)
	h.expect("c-other", TriggerSchedule, time.Time{})
	waitFor(t, func() bool {
		for _, st := range h.s.Status() {
			if st.Name == "b-snapshot" {
				return st.Pending && st.Running
			}
		}
		return false
	})
	gateB <- struct{}{}
	h.expect("b-snapshot", TriggerSchedule, start.Add(5*time.Minute))
	gateB <- struct{}{}
	h.settle()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count["b-snapshot"] != 2 || h.count["a-prune"] != 1 {
		t.Errorf("runs: %v", h.count)
	}
}

func TestSchedulerDST(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	// 2026-03-29 01:00 CET; at 02:00 CET clocks go to 03:00 CEST.
	start := time.Date(2026, 3, 29, 1, 0, 0, 0, berlin)
	h := newHarness(t, berlin, start)
	h.add(Job{Name: "snapshot", Schedule: MustParse("daily 02:30")})
	h.add(Job{Name: "hourly", Schedule: MustParse("every 1h")})
	h.start()
	h.settle()
	h.advance(time.Hour) // 03:00 CEST
	h.expect("hourly", TriggerSchedule, start.Add(time.Hour))
	h.expect("snapshot", TriggerSchedule, start.Add(time.Hour))
	h.settle()
	h.advance(time.Hour) // 04:00 CEST
	h.expect("hourly", TriggerSchedule, start.Add(2*time.Hour))
	h.settle()

	// 2026-10-25: 02:30 happens twice; the daily job runs at the first.
	h.clk.Set(time.Date(2026, 10, 24, 23, 59, 0, 0, time.UTC))
	h.advance(time.Minute) // 02:00 CEST
	h.expect("hourly", TriggerSchedule, time.Date(2026, 10, 25, 0, 0, 0, 0, time.UTC))
	h.expect("snapshot", TriggerSchedule, time.Date(2026, 10, 24, 2, 30, 0, 0, berlin))
	h.settle()
	h.advance(30 * time.Minute) // 02:30 CEST
	h.expect("snapshot", TriggerSchedule, time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC))
	h.settle()
	h.advance(30 * time.Minute) // 02:00 CET
	h.expect("hourly", TriggerSchedule, time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC))
	h.settle()
	h.advance(30 * time.Minute) // 02:30 CET: no second snapshot
	h.settle()
}

func TestSchedulerRunNowAndRemove(t *testing.T) {
	start := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	h := newHarness(t, time.UTC, start)
	h.add(Job{Name: "scrub", Schedule: MustParse("never")})
	h.add(Job{Name: "gone", Schedule: MustParse("every 1m")})
	if err := h.s.Add(Job{Name: "scrub", Schedule: MustParse("never"), Run: h.job(nil)}); err == nil {
		t.Error("Add accepted a second job named scrub")
	}
	if err := h.s.Add(Job{Name: "", Run: h.job(nil)}); err == nil {
		t.Error("Add accepted a job without a name")
	}
	if err := h.s.Add(Job{Name: "x"}); err == nil {
		t.Error("Add accepted a job without a Run function")
	}
	h.start()
	h.settle()
	if err := h.s.RunNow("scrub"); err != nil {
		t.Fatal(err)
	}
	h.expect("scrub", TriggerManual, start)
	if err := h.s.RunNow("nope"); err == nil {
		t.Error("RunNow of an unknown job succeeded")
	}
	if !h.s.Remove("gone") || h.s.Remove("gone") {
		t.Error("Remove")
	}
	h.settle()
	h.advance(time.Minute)
	h.settle()
	// Jobs can be added while the scheduler runs.
	h.add(Job{Name: "late", Schedule: MustParse("every 1m")})
	h.advance(time.Minute)
	h.expect("late", TriggerSchedule, start.Add(2*time.Minute))
	h.settle()
}

func TestSchedulerStopsRunningJobs(t *testing.T) {
	start := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	h := newHarness(t, time.UTC, start)
	var sawCancel bool
	h.add(Job{Name: "long", Schedule: MustParse("every 1m"), Run: func(ctx context.Context) error {
		h.runs <- RunInfo{Job: "long", Trigger: TriggerSchedule}
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond) // cleaning up
		sawCancel = true
		return ctx.Err()
	}})
	h.add(Job{Name: "panics", Schedule: MustParse("every 1m"), Run: func(context.Context) error { panic("boom") }})
	h.start()
	h.advance(time.Minute)
	h.expect("long", TriggerSchedule, time.Time{})
	waitFor(t, func() bool {
		for _, st := range h.s.Status() {
			if st.Name == "panics" {
				return strings.Contains(st.LastError, "panic: boom")
			}
		}
		return false
	})
	if err := h.s.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded")
	}
	h.stop()
	<-h.done
	if !sawCancel {
		t.Error("Run returned before the running job did")
	}
}

// TestSchedulerExclusive: a run outside the schedule holding a key waits
// for the job running with that key, and a job with the key that comes
// due meanwhile waits for it in turn.
func TestSchedulerExclusive(t *testing.T) {
	start := time.Date(2026, 1, 10, 11, 59, 0, 0, time.UTC)
	h := newHarness(t, time.UTC, start)
	gate := make(chan struct{})
	h.add(Job{Name: "snapshot docs", Key: "share:docs", Schedule: MustParse("every 1m"), Run: h.job(gate)})
	h.start()
	h.settle()
	h.advance(time.Minute)
	h.expect("snapshot docs", TriggerSchedule, start.Add(time.Minute))

	// The scheduled run holds the key: Exclusive waits for it.
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- h.s.Exclusive(context.Background(), "share:docs", func(context.Context) error {
			close(inside)
			<-release
			return errors.New("manual run's error")
		})
	}()
	select {
	case <-inside:
		t.Fatal("Exclusive ran while the scheduled job held the key")
	case <-time.After(50 * time.Millisecond):
	}
	// Giving up while waiting runs nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.s.Exclusive(ctx, "share:docs", func(context.Context) error { t.Error("ran"); return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Exclusive with an ended context: %v", err)
	}
	// Another key is free.
	if err := h.s.Exclusive(context.Background(), "share:other", func(context.Context) error { return nil }); err != nil {
		t.Errorf("Exclusive on a free key: %v", err)
	}
	gate <- struct{}{}
	<-inside

	// The job comes due while Exclusive holds the key: it waits.
	h.advance(time.Minute)
	waitFor(t, func() bool {
		for _, st := range h.s.Status() {
			if st.Name == "snapshot docs" {
				return st.Pending && !st.Running
			}
		}
		return false
	})
	select {
	case r := <-h.runs:
		t.Fatalf("%+v ran while Exclusive held the key", r)
	default:
	}
	close(release)
	if err := <-done; err == nil || err.Error() != "manual run's error" {
		t.Errorf("Exclusive returned %v, want fn's error", err)
	}
	h.expect("snapshot docs", TriggerSchedule, start.Add(2*time.Minute))
	gate <- struct{}{}
	h.settle()
	if err := h.s.Exclusive(context.Background(), "", func(context.Context) error { return nil }); err == nil {
		t.Error("Exclusive without a key succeeded")
	}
}
