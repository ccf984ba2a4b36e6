//go:build linux

package pooldisks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/arkbox/arkbox/hw"
	"github.com/arkbox/arkbox/hw/hwtest"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/pool"
	"github.com/google/uuid"
)

// loopMachine is the real machine, except that disk events come from the
// test: hw.Watcher leaves loop devices out.
type loopMachine struct {
	Machine
	events chan hw.Event
}

func (l loopMachine) Events(ctx context.Context) <-chan hw.Event { return l.events }

// loopDisk makes an ext4 filesystem with the given UUID on a new loop
// device and returns the image file and the device.
func loopDisk(t *testing.T, fsUUID string) (img, dev string) {
	t.Helper()
	img = filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 96<<20); err != nil {
		t.Fatal(err)
	}
	dev = hwtest.Losetup(t, img)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-U", fsUUID, dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img, dev
}

func mountedAt(t *testing.T, dir string) bool {
	t.Helper()
	ms, err := hw.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.MountPoint == dir {
			return true
		}
	}
	return false
}

// TestWatchLoopDevices pulls a real ext4 pool disk (a loop device) out
// while the pool is open: it is detached and lazily unmounted, the loop
// device goes away, and when the image comes back on another loop device
// it is mounted by UUID, reattached and resynced.
func TestWatchLoopDevices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop devices and mounts need root")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lm := loopMachine{events: make(chan hw.Event, 16)}
	m, _, mnt := newManager(t, nil, 0, 10*time.Second)
	m.o.Hardware = lm
	var dirs, imgs []string
	var disks []hw.Disk
	for range 3 {
		u := uuid.NewString()
		img, dev := loopDisk(t, u)
		imgs = append(imgs, img)
		disks = append(disks, hw.Disk{Name: filepath.Base(dev), Path: dev, Model: "loop", Serial: filepath.Base(img)})
		dirs = append(dirs, filepath.Join(mnt, u))
	}
	p, put := mountedPool(t, m, dirs)
	ids := []objstore.ID{put("before ")}
	var mu sync.Mutex
	var resyncs []*pool.Resync
	go m.Watch(ctx, WatchOptions{Pool: p, Dirs: dirs, OnResync: func(r *pool.Resync) { mu.Lock(); resyncs = append(resyncs, r); mu.Unlock() }})
	for _, d := range disks {
		lm.events <- hw.Event{Kind: hw.DiskAdded, Disk: d}
	}

	lm.events <- hw.Event{Kind: hw.DiskRemoved, Disk: disks[1]}
	eventually(t, "the pulled disk's mount to go", func() bool { return !mountedAt(t, dirs[1]) })
	if !p.Status(ctx).Degraded {
		t.Fatal("pool not degraded")
	}
	if out, err := exec.Command("losetup", "-d", disks[1].Path).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d: %v: %s", err, out)
	}
	ids = append(ids, put("during "))

	dev := hwtest.Losetup(t, imgs[1])
	lm.events <- hw.Event{Kind: hw.DiskAdded, Disk: hw.Disk{Name: filepath.Base(dev), Path: dev, Model: "loop", Serial: filepath.Base(imgs[1])}}
	eventually(t, "a resync", func() bool { mu.Lock(); defer mu.Unlock(); return len(resyncs) == 1 })
	rep, err := resyncs[0].Wait(ctx)
	if err != nil || rep.ShardsWritten == 0 {
		t.Fatalf("resync: %+v, %v", rep, err)
	}
	if !mountedAt(t, dirs[1]) || p.Status(ctx).Degraded {
		t.Fatalf("after the return: mounted %v, status %+v", mountedAt(t, dirs[1]), p.Status(ctx))
	}
	rs, err := p.Scrub(ctx, pool.ScrubOptions{})
	if err != nil || rs.ProblemCount != 0 || rs.Objects != int64(len(ids)) {
		t.Fatalf("scrub: %+v, %v", rs, err)
	}
}

// TestWatchKernelReadOnly: the kernel itself remounts a pool disk (ext4
// on a loop device, mounted as the appliance mounts it, errors=remount-ro)
// read-only when it meets a damaged directory on it — nothing remounts it
// by hand. The watch finds it in the mount table and, before anything is
// written, marks it read-only in the pool and logs it once, naming the
// disk and what to do: the pool is degraded, new objects go to the two
// other disks, and what was stored before reads back. Then what the log
// says to do: the disk is unplugged, its file system checked (e2fsck) and
// the disk plugged in again; it is mounted, reattached and resynced, and
// a scrub gives the objects written meanwhile their missing shard.
func TestWatchKernelReadOnly(t *testing.T) {
	hwtest.RequireRoot(t, "losetup", "mkfs.ext4", "debugfs", "e2fsck")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Unbuffered: when a send returns, the watch has the event, and it
	// handles it before its next look at the mount table.
	lm := loopMachine{events: make(chan hw.Event)}
	m, logs, mnt := newManager(t, nil, 0, 10*time.Second)
	m.o.Hardware = lm
	var dirs, imgs []string
	var disks []hw.Disk
	for i := range 3 {
		u := uuid.NewString()
		img, dev := loopDisk(t, u)
		imgs = append(imgs, img)
		disks = append(disks, hw.Disk{Name: filepath.Base(dev), Path: dev, Model: "loop", Serial: fmt.Sprintf("LOOP-%d", i)})
		dirs = append(dirs, filepath.Join(mnt, u))
	}
	p, put := mountedPool(t, m, dirs)
	ids := []objstore.ID{put("before "), put("also before ")}
	changes := make(chan struct{}, 8)
	var mu sync.Mutex
	var resyncs []*pool.Resync
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- m.Watch(ctx, WatchOptions{Pool: p, Dirs: dirs,
			OnChange: func() { changes <- struct{}{} },
			OnResync: func(r *pool.Resync) { mu.Lock(); resyncs = append(resyncs, r); mu.Unlock() }})
	}()
	for _, d := range disks {
		lm.events <- hw.Event{Kind: hw.DiskAdded, Disk: d}
	}
	state := func() pool.DiskStatus {
		for _, d := range p.Status(ctx).Disks {
			if d.Path == dirs[2] {
				return d
			}
		}
		t.Fatalf("no pool disk at %s", dirs[2])
		return pool.DiskStatus{}
	}
	if st := p.Status(ctx); st.Degraded {
		t.Fatalf("degraded before anything happened: %+v", st)
	}

	hwtest.BreakDirectory(t, disks[2].Path, dirs[2], "victim")
	eventually(t, "the disk marked read-only in the pool", func() bool { return state().State == pool.DiskReadOnly })
	if ro, err := hw.ReadOnlyMounts("/proc/self/mountinfo", dirs...); err != nil || len(ro) != 1 || ro[0] != dirs[2] {
		t.Fatalf("read-only mounts: %v, %v", ro, err)
	}
	if err := os.WriteFile(filepath.Join(dirs[2], "probe"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write to the disk's file system: %v, want EROFS", err)
	}
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("OnChange was not called")
	}
	// The disk's error says what to do (the watch's words, or the pool's
	// where statfs showed the remount first, as on kernels before 6.18).
	if st, ds := p.Status(ctx), state(); !st.Degraded || !strings.Contains(ds.Error, "read-only") || !strings.Contains(ds.Error, "arkbox disks") {
		t.Fatalf("pool status: degraded %v, disk %+v", st.Degraded, ds)
	}
	time.Sleep(50 * time.Millisecond) // many more looks at the mount table
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "pool disk is read-only") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("logged %d times, want once:\n%s", len(lines), logs.String())
	}
	t.Logf("the watch logged: %s", lines[0])
	for _, want := range []string{"level=ERROR", "disk=" + disks[2].Name, "model=loop", "serial=LOOP-2",
		"fs_uuid=" + filepath.Base(dirs[2]), "at=" + dirs[2], "arkbox disks", "replace-disk", "e2fsck"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the log line lacks %q: %s", want, lines[0])
		}
	}

	// The pool writes around the disk (a degraded write: two shards of
	// three) and loses nothing.
	after := put("after ")
	ids = append(ids, after)
	for _, id := range ids {
		data, err := p.Get(ctx, objstore.KindPack, id)
		if err != nil || objstore.Sum(data) != id {
			t.Fatalf("get %s: %d bytes, %v", id.Short(), len(data), err)
		}
	}
	if on, _ := filepath.Glob(filepath.Join(dirs[2], "arkbox", string(objstore.KindPack), after.String()[:2], after.String()+".*")); len(on) != 0 {
		t.Errorf("shards written to the read-only disk: %v", on)
	}

	// What the log says: unplug the disk, check its file system, plug it
	// in again.
	lm.events <- hw.Event{Kind: hw.DiskRemoved, Disk: disks[2]}
	eventually(t, "the unplugged disk's mount to go", func() bool { return !mountedAt(t, dirs[2]) })
	if out, err := exec.Command("losetup", "-d", disks[2].Path).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d: %v: %s", err, out)
	}
	// The loop device lets go of the image once the kernel has let go
	// of the lazily unmounted file system.
	backing := filepath.Join("/sys/block", disks[2].Name, "loop", "backing_file")
	eventually(t, "the file system to be released", func() bool { _, err := os.Stat(backing); return err != nil })
	// e2fsck exits 1 when it corrected errors.
	if out, err := exec.Command("e2fsck", "-fy", imgs[2]).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("e2fsck -fy: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command("e2fsck", "-fn", imgs[2]).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn after the repair: %v\n%s", err, out)
	}
	dev := hwtest.Losetup(t, imgs[2])
	lm.events <- hw.Event{Kind: hw.DiskAdded, Disk: hw.Disk{Name: filepath.Base(dev), Path: dev, Model: "loop", Serial: "LOOP-2"}}
	eventually(t, "a resync", func() bool { mu.Lock(); defer mu.Unlock(); return len(resyncs) == 1 })
	if _, err := resyncs[0].Wait(ctx); err != nil {
		t.Fatalf("resync: %v", err)
	}
	if st := p.Status(ctx); st.Degraded {
		t.Fatalf("status after the return: %+v", st)
	}
	if ro, err := hw.ReadOnlyMounts("/proc/self/mountinfo", dirs[2]); err != nil || len(ro) != 0 {
		t.Fatalf("read-only after the return: %v, %v", ro, err)
	}
	rs, err := p.Scrub(ctx, pool.ScrubOptions{Repair: true})
	if err != nil || rs.Repaired == 0 || len(rs.Unrepairable) != 0 {
		t.Fatalf("scrub with repair: %+v, %v", rs, err)
	}
	rs, err = p.Scrub(ctx, pool.ScrubOptions{})
	if err != nil || rs.ProblemCount != 0 || rs.Objects != int64(len(ids)) {
		t.Fatalf("scrub after the repair: %+v, %v", rs, err)
	}
	if on, _ := filepath.Glob(filepath.Join(dirs[2], "arkbox", string(objstore.KindPack), after.String()[:2], after.String()+".*")); len(on) != 1 {
		t.Errorf("shards of the object written meanwhile on the returned disk: %v", on)
	}
	if n := strings.Count(logs.String(), "pool disk is read-only"); n != 1 {
		t.Errorf("logged read-only %d times in all, want once", n)
	}
	cancel()
	<-watchDone
}
