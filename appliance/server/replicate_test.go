package server

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/control"
	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/appliance/schedule"
	"github.com/arkbox/arkbox/replicate/target"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/objstore"
)

// countObjects counts the objects of every kind in st.
func countObjects(t *testing.T, st objstore.Store) int {
	t.Helper()
	n := 0
	for _, k := range objstore.Kinds {
		if err := st.List(context.Background(), k, func(objstore.Info) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// TestServeReplicates: serve syncs a target on its schedule (caught up at
// start) and another after each snapshot, under a fake clock, and records
// both as jobs.
func TestServeReplicates(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir)
	// Let the first start's catch-up snapshot finish, so that the restart
	// below has no snapshot to catch up.
	func() {
		cl, err := control.Dial(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		deadline := time.Now().Add(60 * time.Second)
		for {
			recs, err := cl.Jobs(context.Background(), control.JobFilter{Kind: "snapshot"})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) > 0 && !recs[0].Ended.IsZero() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no snapshot at the first start")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	r.stop(t)
	hourly, after := t.TempDir(), t.TempDir()
	ts := []target.Target{
		{Name: "hourly", Spec: target.Spec{URL: "file://" + hourly}, Schedule: "every 1h"},
		{Name: "aftersnap", Spec: target.Spec{URL: "file://" + after}, Schedule: "after each snapshot"},
	}
	if err := target.Save(filepath.Join(dir, "repo"), ts); err != nil {
		t.Fatal(err)
	}

	clock := schedule.NewFakeClock(time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		done <- Run(ctx, Options{DataDir: dir, SFTPAddr: "127.0.0.1:0", Hash: fastHash, KDF: fastKDF, Clock: clock,
			Ready: func(a string) { ready <- a }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				cancel()
				<-done
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	dirObjects := func(p string) int {
		d, err := objstore.OpenDir(p, objstore.DirOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return countObjects(t, d)
	}
	cl, err := control.Dial(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// synced reports whether a sync of target has ended well.
	synced := func(target string) bool {
		recs, err := cl.Jobs(ctx, control.JobFilter{Kind: "replicate"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Target == target && !r.Ended.IsZero() && r.Result == jobs.OK {
				return true
			}
		}
		return false
	}
	// The hourly target never ran: it catches up at start.
	waitFor("the catch-up sync", func() bool { return synced("hourly") })
	if synced("aftersnap") {
		t.Fatal("the after-snapshot target synced before any snapshot")
	}
	// An hour later the share's snapshot runs, then the after-snapshot sync.
	clock.Advance(61 * time.Minute)
	waitFor("the after-snapshot sync", func() bool { return synced("aftersnap") })
	// A target added while serving is scheduled at once (a reload over the
	// control socket, as `arkbox replicate add` does).
	late := t.TempDir()
	ts = append(ts, target.Target{Name: "late", Spec: target.Spec{URL: "file://" + late}, Schedule: "daily 03:00"})
	if err := target.Save(filepath.Join(dir, "repo"), ts); err != nil {
		t.Fatal(err)
	}
	if err := cl.ReloadReplication(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor("the new target's catch-up sync", func() bool { return synced("late") })
	cl.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	h, err := home.Open(context.Background(), filepath.Join(dir, "repo"), home.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got, want := dirObjects(after), countObjects(t, h.Store); got != want {
		t.Errorf("after-snapshot target holds %d objects, the box %d", got, want)
	}
	jdb, err := jobs.Open(context.Background(), h.Catalog.DB(), jobs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := jdb.List(context.Background(), jobs.Filter{Kind: "replicate"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, rec := range recs {
		b, _ := json.Marshal(rec)
		if rec.Result != jobs.OK {
			t.Errorf("replicate job failed: %s", b)
		}
		seen[rec.Target] = true
	}
	if !seen["hourly"] || !seen["aftersnap"] {
		t.Fatalf("replicate job records: %+v", recs)
	}
}
