package pooldisks

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/board"
	"github.com/arkbox/arkbox/hw"
	"github.com/arkbox/arkbox/hw/hwtest"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/pool"
	"github.com/google/uuid"
)

// mountedPool mounts the disk folders dirs through m, makes a pool on
// them, and returns it with a function that stores an object (of a
// little over 200 KiB, striped) and returns its id.
func mountedPool(t *testing.T, m *Manager, dirs []string) (*pool.Pool, func(string) objstore.ID) {
	t.Helper()
	ctx := context.Background()
	if err := m.OpenPool(ctx, dirs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Release(context.Background(), dirs) })
	p, err := pool.Create(ctx, dirs, pool.CreateOptions{Parity: -1, Logger: m.log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, func(s string) objstore.ID {
		data := []byte(strings.Repeat(s, 30000))
		id := objstore.Sum(data)
		if err := p.Put(ctx, objstore.KindPack, id, data); err != nil {
			t.Fatal(err)
		}
		return id
	}
}

// threeDiskPool makes a Manager on f with three attached USB pool disks
// (sda, sdb, sdc), and a pool on them (see mountedPool).
func threeDiskPool(t *testing.T, f *fake) (*Manager, *logBuf, []string, *pool.Pool, func(string) objstore.ID) {
	t.Helper()
	m, logs, dir := newManager(t, f, 0, 5*time.Second)
	var dirs []string
	for _, name := range []string{"sda", "sdb", "sdc"} {
		u := uuid.NewString()
		f.attach(u)
		f.add(name, hw.TransportUSB, arkboxContent(u, nil))
		dirs = append(dirs, filepath.Join(dir, u))
	}
	p, put := mountedPool(t, m, dirs)
	return m, logs, dirs, p, put
}

// eventually waits until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWatchHotPlug: a pool disk pulled out while the pool is open makes
// it degraded and the LED blink; plugged in again (on another port), it
// is mounted, reattached and resynced, and the LED is steady again. A
// disk that is not a pool disk is only logged.
func TestWatchHotPlug(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFake()
	m, logs, dirs, p, put := threeDiskPool(t, f)
	first := put("before ")

	sys := hwtest.Board(t, 50)
	led, err := hw.FindActivityLED(sys)
	if err != nil {
		t.Fatal(err)
	}
	mon := board.New(board.Options{SysRoot: sys, Interval: 5 * time.Millisecond, Health: func(ctx context.Context) hw.LEDState {
		if p.Status(ctx).Degraded {
			return hw.LEDDegraded
		}
		return hw.LEDOK
	}})
	go mon.Run(ctx)
	var mu sync.Mutex
	var resyncs []*pool.Resync
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- m.Watch(ctx, WatchOptions{Pool: p, Dirs: dirs, OnChange: mon.Kick,
			OnResync: func(r *pool.Resync) { mu.Lock(); resyncs = append(resyncs, r); mu.Unlock() }})
	}()
	disks, _ := f.Disks(ctx)
	for _, d := range disks {
		f.events <- hw.Event{Kind: hw.DiskAdded, Disk: d}
	}
	eventually(t, "a steady LED", func() bool { return led.State() == hw.LEDOK })

	// sdb is pulled out.
	f.events <- hw.Event{Kind: hw.DiskRemoved, Disk: disks[1]}
	eventually(t, "a degraded pool", func() bool { return p.Status(ctx).Degraded })
	eventually(t, "a blinking LED", func() bool { return led.State() == hw.LEDDegraded })
	member := ""
	for _, d := range p.Status(ctx).Disks {
		if d.State == pool.DiskMissing {
			member = d.UUID
		}
	}
	out := logs.String()
	for _, want := range []string{"pool disk removed", "serial=S-sdb", "fs_uuid=" + filepath.Base(dirs[1]), "pool_disk=" + member} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	eventually(t, "a lazy unmount of the removed disk", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return strings.Join(f.lazy, " ") == filepath.Base(dirs[1])
	})
	during := put("during ")
	if err := p.Delete(ctx, objstore.KindPack, first); err != nil {
		t.Fatal(err)
	}

	// A disk that is no pool disk is attached: logged, never touched.
	f.add("sdd", hw.TransportUSB, blank)
	f.events <- hw.Event{Kind: hw.DiskAdded, Disk: hw.Disk{Name: "sdd", Model: "Disk", Serial: "S-sdd"}}
	// sdb comes back as sde.
	back := disks[1]
	back.Name = "sde"
	f.mu.Lock()
	f.content["sde"] = f.content["sdb"]
	f.mu.Unlock()
	f.events <- hw.Event{Kind: hw.DiskAdded, Disk: back}
	eventually(t, "a resync", func() bool { mu.Lock(); defer mu.Unlock(); return len(resyncs) == 1 })
	rep, err := resyncs[0].Wait(ctx)
	if err != nil || rep.Disk != member || rep.Full || rep.ShardsWritten == 0 || rep.ShardsRemoved == 0 {
		t.Fatalf("resync: %+v, %v", rep, err)
	}
	mon.Kick()
	eventually(t, "a steady LED again", func() bool { return led.State() == hw.LEDOK })
	if s := p.Status(ctx); s.Degraded {
		t.Fatalf("status after the resync: %+v", s)
	}
	if _, err := p.Get(ctx, objstore.KindPack, during); err != nil {
		t.Fatal(err)
	}
	rs, err := p.Scrub(ctx, pool.ScrubOptions{})
	if err != nil || rs.ProblemCount != 0 || rs.Objects != 1 {
		t.Fatalf("scrub: %+v, %v", rs, err)
	}
	out = logs.String()
	for _, want := range []string{"pool disk returned", "disk=sde", "not a pool disk, left alone", "disk=sdd"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if len(f.adopted) != 0 {
		t.Errorf("adopted %v", f.adopted)
	}
	cancel()
	if err := <-watchDone; err != context.Canceled {
		t.Errorf("Watch = %v", err)
	}
}

// TestWatchReadOnly: a pool disk the kernel remounts read-only after
// errors (seen in the mount table) is logged, naming the disk, marked
// read-only in the pool — degraded, the LED blinks — and the pool writes
// around it, losing nothing.
func TestWatchReadOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFake()
	m, logs, dirs, p, put := threeDiskPool(t, f)
	before := put("before ")
	changes := make(chan struct{}, 4)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- m.Watch(ctx, WatchOptions{Pool: p, Dirs: dirs, OnChange: func() { changes <- struct{}{} }})
	}()
	disks, _ := f.Disks(ctx)
	for _, d := range disks {
		f.events <- hw.Event{Kind: hw.DiskAdded, Disk: d}
	}
	time.Sleep(20 * time.Millisecond) // a few polls: nothing is read-only
	if p.Status(ctx).Degraded {
		t.Fatal("degraded before anything happened")
	}

	f.mu.Lock()
	f.readOnly = map[string]bool{dirs[2]: true}
	f.mu.Unlock()
	eventually(t, "the disk marked read-only", func() bool {
		for _, d := range p.Status(ctx).Disks {
			if d.Path == dirs[2] {
				return d.State == pool.DiskReadOnly
			}
		}
		return false
	})
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("OnChange was not called")
	}
	time.Sleep(20 * time.Millisecond) // more polls: logged once
	out := logs.String()
	if n := strings.Count(out, "pool disk is read-only"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, out)
	}
	for _, want := range []string{"disk=sdc", "serial=S-sdc", "fs_uuid=" + filepath.Base(dirs[2]), "arkbox disks"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	after := put("after ")
	for _, id := range []objstore.ID{before, after} {
		if _, err := p.Get(ctx, objstore.KindPack, id); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-watchDone
}

// TestWatchReadOnlyEachTime: the watch reports a pool disk once each time
// its mount turns read-only — also when the pool has marked the disk
// read-only already (its Status does where statfs shows the remount, on
// kernels before 6.18), and again after the disk was mounted writable and
// turned read-only once more.
func TestWatchReadOnlyEachTime(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFake()
	m, logs, dirs, p, _ := threeDiskPool(t, f)
	watchDone := make(chan error, 1)
	go func() { watchDone <- m.Watch(ctx, WatchOptions{Pool: p, Dirs: dirs}) }()
	disks, _ := f.Disks(ctx)
	for _, d := range disks {
		f.events <- hw.Event{Kind: hw.DiskAdded, Disk: d}
	}
	setRO := func(ro bool) {
		f.mu.Lock()
		f.readOnly = map[string]bool{dirs[1]: ro}
		f.mu.Unlock()
	}
	reports := func() int { return strings.Count(logs.String(), "pool disk is read-only") }
	member := ""
	for _, d := range p.Status(ctx).Disks {
		if d.Path == dirs[1] {
			member = d.UUID
		}
	}
	if !p.MarkReadOnly(member, errors.New("statfs says read-only")) {
		t.Fatal("MarkReadOnly changed nothing")
	}
	setRO(true)
	eventually(t, "a report of the disk the pool marked first", func() bool { return reports() == 1 })
	setRO(false)
	time.Sleep(20 * time.Millisecond) // a few polls: the mount is writable
	if n := reports(); n != 1 {
		t.Fatalf("%d reports while writable, want 1:\n%s", n, logs.String())
	}
	setRO(true)
	eventually(t, "a second report", func() bool { return reports() == 2 })
	time.Sleep(20 * time.Millisecond)
	if n := reports(); n != 2 || !strings.Contains(logs.String(), "serial=S-sdb") {
		t.Fatalf("%d reports, want 2 naming sdb:\n%s", n, logs.String())
	}
	cancel()
	<-watchDone
}
