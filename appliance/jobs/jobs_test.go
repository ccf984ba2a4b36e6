package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/schedule"
	bolt "go.etcd.io/bbolt"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func openBolt(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func open(t *testing.T, opt Options) (*DB, *clock, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "catalog.db")
	b := openBolt(t, path)
	t.Cleanup(func() { b.Close() })
	clk := &clock{t: t0}
	if opt.Now == nil {
		opt.Now = clk.now
	}
	d, err := Open(context.Background(), b, opt)
	if err != nil {
		t.Fatal(err)
	}
	return d, clk, path
}

func TestRunLifecycle(t *testing.T) {
	ctx := context.Background()
	d, clk, _ := open(t, Options{ProgressInterval: time.Minute})
	run, err := d.Start(ctx, Spec{Kind: KindSnapshot, Target: "backups", Schedule: "hourly", Trigger: TriggerSchedule})
	if err != nil {
		t.Fatal(err)
	}
	if run.ID() != 1 {
		t.Errorf("first id %d", run.ID())
	}
	clk.add(10 * time.Second)
	run.Progress(Progress{Phase: "chunking", FilesDone: 10, BytesDone: 1 << 20, BytesTotal: 8 << 20})
	// In memory: List and Get see it, the stored record does not yet.
	got, err := d.Get(ctx, run.ID())
	if err != nil || got.Progress == nil || got.Progress.FilesDone != 10 || got.Result != Running {
		t.Fatalf("Get while running = %+v, %v", got, err)
	}
	if stored := storedRecord(t, d, run.ID()); stored.Progress.FilesDone != 0 || !stored.Updated.Equal(t0) {
		t.Errorf("progress written before the interval: %+v", stored)
	}
	clk.add(time.Minute)
	run.Progress(Progress{Phase: "chunking", FilesDone: 20})
	if stored := storedRecord(t, d, run.ID()); stored.Progress.FilesDone != 20 || !stored.Updated.Equal(t0.Add(70*time.Second)) {
		t.Errorf("progress not written after the interval: %+v", stored)
	}
	if a := d.Active(); len(a) != 1 || a[0].ID != run.ID() {
		t.Errorf("Active = %+v", a)
	}
	clk.add(time.Minute)
	st := Stats{Files: 1234, BytesTotal: 5 << 30, BytesNew: 12 << 20}
	if err := run.Finish("", nil, st); err != nil {
		t.Fatal(err)
	}
	if err := run.Finish("", nil, st); err == nil {
		t.Error("second Finish succeeded")
	}
	run.Progress(Progress{FilesDone: 99}) // ignored after Finish
	got, err = d.Get(ctx, run.ID())
	want := Record{ID: 1, Kind: "snapshot", Target: "backups", Schedule: "hourly", Trigger: "schedule",
		Started: t0, Updated: t0.Add(130 * time.Second), Ended: t0.Add(130 * time.Second), Result: OK, Stats: st}
	if err != nil || !equalRecords(got, want) {
		t.Errorf("Get after Finish = %+v, %v\nwant %+v", got, err, want)
	}
	if got.Duration(time.Time{}) != 130*time.Second {
		t.Errorf("Duration = %v", got.Duration(time.Time{}))
	}
	if len(d.Active()) != 0 {
		t.Error("finished run still active")
	}
	if _, err := d.Get(ctx, 99); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(99) = %v", err)
	}
}

// TestRecordJSON pins the JSON form that arkbox jobs --json prints.
func TestRecordJSON(t *testing.T) {
	r := Record{ID: 7, Kind: "snapshot", Target: "backups", Schedule: "hourly", Trigger: "catch-up",
		Started: t0, Updated: t0.Add(time.Minute), Ended: t0.Add(time.Minute), Result: Warning,
		Error: "2 files unreadable", Stats: Stats{Files: 3, BytesTotal: 4, BytesNew: 5, Errors: 2}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":7,"kind":"snapshot","target":"backups","schedule":"hourly","trigger":"catch-up",` +
		`"started":"2026-03-01T10:00:00Z","updated":"2026-03-01T10:01:00Z","ended":"2026-03-01T10:01:00Z",` +
		`"result":"warning","error":"2 files unreadable","stats":{"files":3,"bytes_total":4,"bytes_new":5,"errors":2}}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
	running := Record{ID: 8, Kind: "scrub", Started: t0, Updated: t0, Result: Running,
		Progress: &Progress{Phase: "disk 1", FilesDone: 1, FilesTotal: 2, BytesDone: 3, BytesTotal: 4}}
	b, _ = json.Marshal(running)
	want = `{"id":8,"kind":"scrub","started":"2026-03-01T10:00:00Z","updated":"2026-03-01T10:00:00Z",` +
		`"result":"running","stats":{"files":0,"bytes_total":0,"bytes_new":0},` +
		`"progress":{"phase":"disk 1","files_done":1,"files_total":2,"bytes_done":3,"bytes_total":4}}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
}

func storedRecord(t *testing.T, d *DB, id uint64) Record {
	t.Helper()
	var r Record
	err := d.db.View(func(tx *bolt.Tx) error { return json.Unmarshal(tx.Bucket(bucketRecords).Get(idKey(id)), &r) })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func equalRecords(a, b Record) bool {
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	return string(aj) == string(bj)
}

func TestResults(t *testing.T) {
	ctx := context.Background()
	d, _, _ := open(t, Options{})
	wrapped := fmt.Errorf("snapshot backups: %w", context.Canceled)
	tests := []struct {
		res     Result
		err     error
		stats   Stats
		want    Result
		wantErr string
	}{
		{"", nil, Stats{}, OK, ""},
		{"", nil, Stats{Errors: 2}, Warning, ""},
		{"", errors.New("disk full"), Stats{}, Failed, "disk full"},
		{"", wrapped, Stats{}, Canceled, "snapshot backups: context canceled"},
		{"", context.DeadlineExceeded, Stats{}, Canceled, "context deadline exceeded"},
		{Warning, errors.New("3 files skipped"), Stats{}, Warning, "3 files skipped"},
		{Failed, nil, Stats{}, Failed, ""},
	}
	for _, tc := range tests {
		run, err := d.Start(ctx, Spec{Kind: KindPrune})
		if err != nil {
			t.Fatal(err)
		}
		if err := run.Finish(tc.res, tc.err, tc.stats); err != nil {
			t.Fatal(err)
		}
		got, _ := d.Get(ctx, run.ID())
		if got.Result != tc.want || got.Error != tc.wantErr {
			t.Errorf("Finish(%q, %v) recorded %s %q; want %s %q", tc.res, tc.err, got.Result, got.Error, tc.want, tc.wantErr)
		}
	}
	run, _ := d.Start(ctx, Spec{Kind: KindPrune})
	for _, bad := range []Result{Running, Interrupted, "done"} {
		if err := run.Finish(bad, nil, Stats{}); err == nil {
			t.Errorf("Finish(%q) succeeded", bad)
		}
	}
	for _, s := range []Spec{{}, {Kind: "a\nb"}, {Kind: "x", Target: strings.Repeat("t", 300)}} {
		if _, err := d.Start(ctx, s); err == nil {
			t.Errorf("Start(%+v) succeeded", s)
		}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.Start(canceled, Spec{Kind: KindPrune}); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a canceled context = %v", err)
	}
}

// TestInterrupted simulates a crash: runs still in progress when the
// database is closed are marked interrupted when it is opened again.
func TestInterrupted(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	clk := &clock{t: t0}
	b := openBolt(t, path)
	d, err := Open(ctx, b, Options{Now: clk.now, ProgressInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	done, _ := d.Start(ctx, Spec{Kind: KindScrub})
	clk.add(time.Minute)
	done.Finish("", nil, Stats{Files: 1})
	crashed, _ := d.Start(ctx, Spec{Kind: KindSnapshot, Target: "backups"})
	clk.add(5 * time.Minute)
	crashed.Progress(Progress{Phase: "chunking", FilesDone: 5})
	clk.add(5 * time.Minute)
	crashed.Progress(Progress{Phase: "chunking", FilesDone: 6}) // saved
	clk.add(500 * time.Millisecond)
	crashed.Progress(Progress{Phase: "chunking", FilesDone: 7}) // memory only
	b.Close()                                                   // the process dies

	b = openBolt(t, path)
	defer b.Close()
	clk.add(time.Hour)
	d, err = Open(ctx, b, Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Get(ctx, crashed.ID())
	if err != nil {
		t.Fatal(err)
	}
	lastSave := t0.Add(11 * time.Minute)
	if got.Result != Interrupted || !got.Ended.Equal(lastSave) || got.Progress != nil || !strings.Contains(got.Error, "stopped") {
		t.Errorf("crashed run after reopening: %+v", got)
	}
	if got, _ := d.Get(ctx, done.ID()); got.Result != OK {
		t.Errorf("finished run after reopening: %+v", got)
	}
	// Numbering goes on.
	next, _ := d.Start(ctx, Spec{Kind: KindVerify})
	if next.ID() != 3 {
		t.Errorf("id after reopening %d", next.ID())
	}
	// Opening again changes nothing more.
	next.Finish("", nil, Stats{})
	d, err = Open(ctx, b, Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if rs, _ := d.List(ctx, Filter{Results: []Result{Interrupted}}, 0); len(rs) != 1 {
		t.Errorf("interrupted runs: %+v", rs)
	}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	d, clk, _ := open(t, Options{})
	type spec struct {
		kind, target, sched string
		res                 Result
	}
	specs := []spec{
		{KindSnapshot, "backups", "hourly", OK},      // 1
		{KindSnapshot, "finance", "daily", OK},       // 2
		{KindPrune, "", "", OK},                      // 3
		{KindSnapshot, "backups", "hourly", Failed},  // 4
		{KindSnapshot, "backups", "daily", Canceled}, // 5
		{KindScrub, "", "", Warning},                 // 6
		{KindSnapshot, "backups", "hourly", Running}, // 7
	}
	for _, s := range specs {
		clk.add(time.Hour)
		run, err := d.Start(ctx, Spec{Kind: s.kind, Target: s.target, Schedule: s.sched})
		if err != nil {
			t.Fatal(err)
		}
		if s.res != Running {
			run.Finish(s.res, nil, Stats{})
		}
	}
	ids := func(rs []Record) string {
		var s []string
		for _, r := range rs {
			s = append(s, fmt.Sprint(r.ID))
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		f     Filter
		limit int
		want  string
	}{
		{Filter{}, 0, "7,6,5,4,3,2,1"},
		{Filter{}, 3, "7,6,5"},
		{Filter{Kind: KindSnapshot}, 0, "7,5,4,2,1"},
		{Filter{Kind: KindSnapshot, Target: "backups"}, 0, "7,5,4,1"},
		{Filter{Kind: KindSnapshot, Target: "backups", Schedule: "hourly"}, 0, "7,4,1"},
		{Filter{Results: []Result{OK, Warning}}, 0, "6,3,2,1"},
		{Filter{Results: []Result{Running}}, 0, "7"},
		{Filter{Since: t0.Add(5 * time.Hour)}, 0, "7,6,5"},
		{Filter{BeforeID: 5}, 2, "4,3"},
		{Filter{BeforeID: 1}, 0, ""},
		{Filter{BeforeID: 100}, 1, "7"},
		{Filter{Kind: "replicate"}, 0, ""},
	}
	for _, tc := range tests {
		rs, err := d.List(ctx, tc.f, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(rs); got != tc.want {
			t.Errorf("List(%+v, %d) = %s; want %s", tc.f, tc.limit, got, tc.want)
		}
	}
	if r, ok, err := d.Last(ctx, KindSnapshot, "backups"); err != nil || !ok || r.ID != 7 {
		t.Errorf("Last = %+v, %v, %v", r, ok, err)
	}
	if _, ok, err := d.Last(ctx, KindVerify, ""); err != nil || ok {
		t.Errorf("Last(verify) = %v, %v", ok, err)
	}
	// The scheduler's history: canceled and interrupted runs do not count.
	for _, tc := range []struct {
		target, sched string
		want          time.Time
		ok            bool
	}{
		{"backups", "hourly", t0.Add(7 * time.Hour), true}, // running
		{"backups", "daily", time.Time{}, false},           // canceled only
		{"finance", "daily", t0.Add(2 * time.Hour), true},
	} {
		last, ok, err := d.LastRunFunc(KindSnapshot, tc.target, tc.sched)(ctx)
		if err != nil || ok != tc.ok || !last.Equal(tc.want) {
			t.Errorf("LastRunFunc(%s, %s) = %v, %v, %v; want %v", tc.target, tc.sched, last, ok, err, tc.want)
		}
	}
}

func TestTrim(t *testing.T) {
	ctx := context.Background()
	d, _, _ := open(t, Options{MaxRecords: 5})
	for i := 0; i < 12; i++ {
		run, err := d.Start(ctx, Spec{Kind: KindSnapshot})
		if err != nil {
			t.Fatal(err)
		}
		run.Finish("", nil, Stats{})
	}
	rs, err := d.List(ctx, Filter{}, 0)
	if err != nil || len(rs) != 5 || rs[0].ID != 12 || rs[4].ID != 8 {
		t.Errorf("after trimming: %d records, %v", len(rs), err)
	}
}

func TestDo(t *testing.T) {
	ctx := context.Background()
	d, clk, _ := open(t, Options{})
	err := d.Do(ctx, Spec{Kind: KindVerify}, func(ctx context.Context, r *Run) (Stats, error) {
		clk.add(time.Minute)
		r.Progress(Progress{Phase: "packs"})
		return Stats{Files: 3}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := d.Do(ctx, Spec{Kind: KindVerify}, func(context.Context, *Run) (Stats, error) { return Stats{}, boom }); err != boom {
		t.Errorf("Do returned %v", err)
	}
	if err := d.Do(ctx, Spec{Kind: KindVerify}, func(context.Context, *Run) (Stats, error) { panic("oops") }); err == nil ||
		!strings.Contains(err.Error(), "panic: oops") {
		t.Errorf("Do of a panicking job returned %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	err = d.Do(cctx, Spec{Kind: KindVerify}, func(ctx context.Context, _ *Run) (Stats, error) {
		cancel()
		<-ctx.Done()
		return Stats{}, ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Do canceled = %v", err)
	}
	rs, _ := d.List(ctx, Filter{}, 0)
	var got []string
	for _, r := range rs {
		got = append(got, string(r.Result)+":"+r.Error)
	}
	if s := strings.Join(got, " "); s != "canceled:context canceled failed:panic: oops failed:boom ok:" {
		t.Errorf("records: %s", s)
	}
}

func TestConcurrentRuns(t *testing.T) {
	ctx := context.Background()
	d, _, _ := open(t, Options{ProgressInterval: time.Nanosecond, Now: time.Now})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				err := d.Do(ctx, Spec{Kind: KindSnapshot, Target: fmt.Sprint("share", g)}, func(ctx context.Context, r *Run) (Stats, error) {
					for p := 0; p < 5; p++ {
						r.Progress(Progress{FilesDone: int64(p)})
						d.List(ctx, Filter{Results: []Result{Running}}, 0)
					}
					return Stats{Files: 5}, nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	rs, err := d.List(ctx, Filter{Results: []Result{OK}}, 0)
	if err != nil || len(rs) != 80 {
		t.Errorf("%d ok runs, %v", len(rs), err)
	}
}

// TestSchedulerCatchUp wires the records to the scheduler as arkbox serve
// does: a snapshot schedule whose last recorded run is older than its
// latest scheduled time runs at start; an interrupted run is caught up.
func TestSchedulerCatchUp(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	clk := &clock{t: time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)}
	b := openBolt(t, path)
	d, err := Open(ctx, b, Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	// Yesterday's daily snapshot and scrub ran; today's scrub was
	// interrupted by a power cut at 02:10.
	snap, _ := d.Start(ctx, Spec{Kind: KindSnapshot, Target: "backups", Schedule: "daily"})
	snap.Finish("", nil, Stats{})
	clk.add(time.Hour) // 02:00
	d.Start(ctx, Spec{Kind: KindScrub, Schedule: "nightly"})
	b.Close()

	b = openBolt(t, path)
	defer b.Close()
	d, err = Open(ctx, b, Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	// The box comes back at 09:00.
	fake := schedule.NewFakeClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	s := schedule.New(schedule.Options{Clock: fake, Location: time.UTC})
	ran := make(chan string, 10)
	add := func(name, kind, target, sched, expr string) {
		err := s.Add(schedule.Job{
			Name: name, Schedule: schedule.MustParse(expr),
			LastRun: d.LastRunFunc(kind, target, sched),
			Run: func(ctx context.Context) error {
				info, _ := schedule.RunInfoFrom(ctx)
				return d.Do(ctx, Spec{Kind: kind, Target: target, Schedule: sched, Trigger: string(info.Trigger)},
					func(context.Context, *Run) (Stats, error) { ran <- name; return Stats{}, nil })
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	add("snapshot backups daily", KindSnapshot, "backups", "daily", "daily 00:30") // ran at 01:00 today: no catch-up
	add("scrub", KindScrub, "", "nightly", "daily 02:00")                          // interrupted: catch up
	add("snapshot finance", KindSnapshot, "finance", "hourly", "every 1h")         // never ran: catch up
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(rctx); close(done) }()
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case name := <-ran:
			got[name] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("caught up only %v", got)
		}
	}
	cancel()
	<-done
	if !got["scrub"] || !got["snapshot finance"] || len(ran) != 0 {
		t.Errorf("caught up %v", got)
	}
	rs, _ := d.List(ctx, Filter{Kind: KindScrub}, 0)
	if len(rs) != 2 || rs[0].Trigger != TriggerCatchUp || rs[0].Result != OK || rs[1].Result != Interrupted {
		t.Errorf("scrub records: %+v", rs)
	}
}

// TestLastResults: the newest finished run of each job, and OnFinish sees
// every run that ends.
func TestLastResults(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var finished []Result
	d, _, _ := open(t, Options{OnFinish: func(r Record) { mu.Lock(); finished = append(finished, r.Result); mu.Unlock() }})
	runs := []struct {
		spec Spec
		err  error
	}{
		{Spec{Kind: KindScrub, Target: "pool"}, errors.New("disk error")},
		{Spec{Kind: KindScrub, Target: "pool"}, nil},
		{Spec{Kind: KindVerify, Target: "repository"}, nil},
		{Spec{Kind: KindVerify, Target: "repository"}, errors.New("bad blob")},
	}
	for _, r := range runs {
		d.Do(ctx, r.spec, func(context.Context, *Run) (Stats, error) { return Stats{}, r.err })
	}
	run, err := d.Start(ctx, Spec{Kind: KindResync, Target: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	last, err := d.LastResults(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Result{
		(Record{Kind: KindScrub, Target: "pool"}).Key():        OK,
		(Record{Kind: KindVerify, Target: "repository"}).Key(): Failed,
	}
	if len(last) != len(want) {
		t.Fatalf("last results %+v", last)
	}
	for k, res := range want {
		if last[k].Result != res {
			t.Errorf("%q: %s, want %s", k, last[k].Result, res)
		}
	}
	run.Finish("", nil, Stats{})
	mu.Lock()
	defer mu.Unlock()
	if want := []Result{Failed, OK, OK, Failed, OK}; !slices.Equal(finished, want) {
		t.Errorf("OnFinish saw %v, want %v", finished, want)
	}
}
