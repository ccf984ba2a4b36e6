//go:build linux

package pooldisks

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
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
