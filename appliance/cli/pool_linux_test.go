package cli_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arkbox/arkbox/hw"
	"github.com/arkbox/arkbox/hw/hwtest"
	"github.com/arkbox/arkbox/storage/pool"
	"golang.org/x/sys/unix"
)

// TestPoolStatusKernelReadOnly: `arkbox pool status` shows a disk the
// kernel remounted read-only after errors as read-only, saying what to
// do, though statfs, which the pool itself looks at, says writable on
// Linux 6.18. The disk is ext4 on a loop device, mounted as the
// appliance mounts its disks (errors=remount-ro), and the kernel itself
// meets a damaged directory on it.
func TestPoolStatusKernelReadOnly(t *testing.T) {
	hwtest.RequireRoot(t, "losetup", "mkfs.ext4", "debugfs")
	base := t.TempDir()
	img := filepath.Join(base, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	dev := hwtest.Losetup(t, img)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	d3 := filepath.Join(base, "d3")
	if err := os.Mkdir(d3, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dev, d3, "ext4", hw.MountFlags, hw.MountData); err != nil {
		t.Fatalf("mount %s: %v", dev, err)
	}
	t.Cleanup(func() { unix.Unmount(d3, unix.MNT_DETACH) })
	disks := []string{filepath.Join(base, "d1"), filepath.Join(base, "d2"), d3}
	ark := newArkbox(t, filepath.Join(base, "repo"))
	ark.ok("init", "--disk", disks[0], "--disk", disks[1], "--disk", disks[2])

	status := func() pool.Status {
		var st pool.Status
		ark.okJSON(&st, "pool", "status", "--json")
		if len(st.Disks) != 3 {
			t.Fatalf("pool status lists %d disks: %+v", len(st.Disks), st)
		}
		return st
	}
	if st := status(); st.Degraded {
		t.Fatalf("degraded before anything happened: %+v", st)
	}

	hwtest.BreakDirectory(t, dev, d3, "victim")
	deadline := time.Now().Add(10 * time.Second)
	for {
		ro, err := hw.ReadOnlyMounts("/proc/self/mountinfo", d3)
		if err != nil {
			t.Fatal(err)
		}
		if len(ro) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the kernel did not remount the disk read-only")
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := status()
	for _, d := range st.Disks {
		want := pool.DiskOK
		if d.Path == d3 {
			want = pool.DiskReadOnly
			if !strings.Contains(d.Error, "remounted its file system read-only") || !strings.Contains(d.Error, "arkbox disks") {
				t.Errorf("the read-only disk's error: %q", d.Error)
			}
		}
		if d.State != want {
			t.Errorf("disk at %s: %s, want %s", d.Path, d.State, want)
		}
	}
	if !st.Degraded {
		t.Error("pool not degraded")
	}
	var line string
	for _, l := range strings.Split(ark.ok("pool", "status"), "\n") {
		if strings.Contains(l, d3) {
			line = l
		}
	}
	if !strings.Contains(line, "read-only") || !strings.Contains(line, "arkbox disks") {
		t.Errorf("pool status line of the disk: %q", line)
	}
}
