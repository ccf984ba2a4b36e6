//go:build linux

package hw

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arkbox/arkbox/hw/hwtest"
	"golang.org/x/sys/unix"
)

// losetup attaches a loop device (needs root and losetup), detached at the
// end of the test.
func losetup(t *testing.T, args ...string) string {
	t.Helper()
	return hwtest.Losetup(t, args...)
}

// TestAdoptLoopDevice adopts a loop device, checks the result with e2fsck,
// mounts it by UUID, writes to it, sees a read-only remount in mountinfo
// and reads the pool marker the kernel wrote back without mounting.
func TestAdoptLoopDevice(t *testing.T) {
	ctx := context.Background()
	img := newImage(t, 256<<20)
	dev := losetup(t, img)
	d, err := FindDisk(ctx, DiscoverOptions{}, filepath.Base(dev))
	if err != nil {
		t.Fatal(err)
	}
	if d.SizeBytes != 256<<20 {
		t.Fatalf("loop disk %+v", d)
	}
	res, err := Adopt(ctx, d, AdoptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("adopted %s: %+v", dev, res)

	// The kernel here may not scan partitions of loop devices: expose the
	// partition as a loop device of its own.
	part := losetup(t, "-o", strconv.FormatInt(res.StartBytes, 10), "--sizelimit", strconv.FormatInt(res.SizeBytes, 10), img)
	out, err := exec.Command("e2fsck", "-fn", part).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", part, err, out)
	}

	base := t.TempDir()
	mp, err := Mount(ctx, MountOptions{UUID: strings.ToUpper(res.UUID), Dir: base})
	if err != nil {
		t.Fatal(err)
	}
	mounted := true
	defer func() {
		if mounted {
			unix.Unmount(mp, unix.MNT_DETACH)
		}
	}()
	if mp != filepath.Join(base, res.UUID) {
		t.Errorf("mount point %s", mp)
	}
	if again, err := Mount(ctx, MountOptions{UUID: res.UUID, Dir: base}); err != nil || again != mp {
		t.Errorf("second Mount: %s, %v", again, err)
	}
	if err := os.MkdirAll(filepath.Join(mp, "arkbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mp, PoolMarkerPath), []byte(testPoolJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	if m, err := ReadPoolMarker(mp); err != nil || m == nil || m.Pool != "4f0c7a52-8d1e-4b8a-9a55-0c2c9d1f6e3b" {
		t.Errorf("ReadPoolMarker: %+v, %v", m, err)
	}
	ms, err := ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.MountPoint == mp && (!hasOpt(m.Options, "noatime") || !hasOpt(m.Options, "nodev") || m.ReadOnly()) {
			t.Errorf("mount options %v %v", m.Options, m.SuperOptions)
		}
	}
	if ro, _ := ReadOnlyMounts("/proc/self/mountinfo", mp); len(ro) != 0 {
		t.Errorf("read-only before remount: %v", ro)
	}
	if err := unix.Mount("", mp, "", unix.MS_REMOUNT|unix.MS_RDONLY|MountFlags, ""); err != nil {
		t.Fatal(err)
	}
	if ro, _ := ReadOnlyMounts("/proc/self/mountinfo", mp); len(ro) != 1 {
		t.Errorf("read-only after remount: %v", ro)
	}
	if err := Unmount(ctx, mp); err != nil {
		t.Fatal(err)
	}
	mounted = false

	if out, err := exec.Command("e2fsck", "-fn", part).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn after the kernel wrote to it: %v\n%s", err, out)
	}
	c, err := ProbeFile(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	if m := c.PoolMember(); m == nil || m.Disk != "9d2f5e10-3b7c-4a1e-8f0d-6a4b2c8e1f57" {
		t.Fatalf("pool marker written by the kernel: %+v", m)
	}
	d, _ = FindDisk(ctx, DiscoverOptions{}, filepath.Base(dev))
	if _, err := Adopt(ctx, d, AdoptOptions{}); !errors.Is(err, ErrNeedsConfirmation) {
		t.Errorf("adopting a pool member: %v", err)
	}
	if _, err := Mount(ctx, MountOptions{UUID: "00000000-0000-0000-0000-000000000000", Dir: base}); err == nil {
		t.Error("mounted a UUID that does not exist")
	}
}

// TestKernelRemountsReadOnlyAfterErrors makes the kernel itself find an
// error on an adopted, mounted disk — a directory block overwritten behind
// ext4's back fails its checks when read again (hwtest.BreakDirectory) —
// and checks that ext4 remounts it read-only (the MountData hw mounts
// with), that ReadOnlyMounts, which the appliance reports from, sees it,
// and that writes fail with EROFS. Nothing remounts it by hand.
func TestKernelRemountsReadOnlyAfterErrors(t *testing.T) {
	ctx := context.Background()
	hwtest.RequireRoot(t, "losetup", "debugfs")
	img := newImage(t, 128<<20)
	dev := losetup(t, img)
	d, err := FindDisk(ctx, DiscoverOptions{}, filepath.Base(dev))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Adopt(ctx, d, AdoptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	part := losetup(t, "-o", strconv.FormatInt(res.StartBytes, 10), "--sizelimit", strconv.FormatInt(res.SizeBytes, 10), img)
	mp, err := Mount(ctx, MountOptions{UUID: res.UUID, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mp, unix.MNT_DETACH)
	if err := os.WriteFile(filepath.Join(mp, "before"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ro, err := ReadOnlyMounts("/proc/self/mountinfo", mp); err != nil || len(ro) != 0 {
		t.Fatalf("read-only before the error: %v, %v", ro, err)
	}

	hwtest.BreakDirectory(t, part, mp, "victim")
	// The kernel may remount from a work queue: a moment later.
	var ro []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ro, err = ReadOnlyMounts("/proc/self/mountinfo", mp); err != nil || len(ro) == 1 || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || len(ro) != 1 || ro[0] != mp {
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		var sfs unix.Statfs_t
		unix.Statfs(mp, &sfs)
		werr := os.WriteFile(filepath.Join(mp, "after"), []byte("x"), 0o644)
		t.Fatalf("after the kernel's error: read-only mounts %v, %v\nstatfs flags %#x, write: %v\n%s", ro, err, sfs.Flags, werr, mi)
	}
	if err := os.WriteFile(filepath.Join(mp, "after"), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write after the remount: %v, want EROFS", err)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "before")); err != nil || string(b) != "x" {
		t.Errorf("file written before the error: %q, %v", b, err)
	}
}
