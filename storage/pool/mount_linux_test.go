package pool

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/arkbox/arkbox/storage/objstore"
	"golang.org/x/sys/unix"
)

// tmpfsDisk mounts a tmpfs with the given options on a new folder and
// unmounts it when the test ends. It skips the test when not root or
// when mounting is not allowed.
func tmpfsDisk(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func remountRO(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", dir, err)
	}
}

func diskStatus(p *Pool, path string) DiskStatus {
	for _, d := range p.Status(context.Background()).Disks {
		if d.Path == path {
			return d
		}
	}
	return DiskStatus{}
}

func TestReadOnlyDisk(t *testing.T) {
	ctx := context.Background()
	t.Run("member-of-three", func(t *testing.T) {
		ro := tmpfsDisk(t, "size=64m")
		dirs := append(diskDirs(t, 2), ro)
		p := createPool(t, dirs, -1)
		before := putObjs(t, p, 1, 2)
		// The file system goes read-only under the open pool.
		remountRO(t, ro)
		after := putObjs(t, p, 2, 2)
		ds := diskStatus(p, ro)
		if ds.State != DiskReadOnly || !strings.Contains(ds.Error, "read-only") {
			t.Fatalf("status of the read-only disk: %+v", ds)
		}
		checkObjs(t, p, append(before, after...))
		p.Close()
		// Reopened, the disk is seen read-only at once.
		p = openPool(t, dirs, false)
		if ds := diskStatus(p, ro); ds.State != DiskReadOnly {
			t.Fatalf("status after reopen: %+v", ds)
		}
		more := putObjs(t, p, 3, 2)
		checkObjs(t, p, append(before, append(after, more...)...))
	})
	t.Run("noticed-without-a-write", func(t *testing.T) {
		ro := tmpfsDisk(t, "size=64m")
		dirs := append(diskDirs(t, 2), ro)
		var logs bytes.Buffer
		p, err := Create(ctx, dirs, CreateOptions{Parity: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		before := putObjs(t, p, 1, 2)
		remountRO(t, ro)
		// What the appliance's health check (every 2 s) sees, before
		// anything is written.
		st := p.Status(ctx)
		ds := diskStatus(p, ro)
		if !st.Degraded || ds.State != DiskReadOnly || !strings.Contains(ds.Error, "mounted read-only") {
			t.Fatalf("status after the remount: degraded %v, disk %+v", st.Degraded, ds)
		}
		if n := strings.Count(logs.String(), "pool: disk became read-only"); n != 1 || !strings.Contains(logs.String(), ds.UUID) {
			t.Fatalf("logged %d times (want once, naming disk %s):\n%s", n, ds.UUID, logs.String())
		}
		after := putObjs(t, p, 2, 2)
		checkObjs(t, p, append(before, after...))
	})
	t.Run("single-disk", func(t *testing.T) {
		ro := tmpfsDisk(t, "size=64m")
		p := createPool(t, []string{ro}, -1)
		defer p.Close()
		remountRO(t, ro)
		d := randBytes(4, 3*blockSize)
		err := p.Put(ctx, objstore.KindPack, objstore.Sum(d), d)
		if err == nil {
			t.Fatal("put on a read-only disk succeeded")
		}
		uuid := p.Status(ctx).Disks[0].UUID
		if !strings.Contains(err.Error(), uuid) || !strings.Contains(err.Error(), ro) || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("error does not name the read-only disk %s at %s: %v", uuid, ro, err)
		}
	})
}

func TestFullDisk(t *testing.T) {
	ctx := context.Background()
	big := randBytes(5, 2<<20)
	t.Run("single-disk", func(t *testing.T) {
		full := tmpfsDisk(t, "size=1m")
		p := createPool(t, []string{full}, -1)
		defer p.Close()
		err := p.Put(ctx, objstore.KindPack, objstore.Sum(big), big)
		if err == nil {
			t.Fatal("put of 2 MiB on a 1 MiB disk succeeded")
		}
		uuid := p.Status(ctx).Disks[0].UUID
		want := "disk " + uuid + " at " + full + " is full"
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
		ents, _ := os.ReadDir(filepath.Join(full, poolDirName, tmpDirName))
		if len(ents) != 0 {
			t.Fatalf("temp files left behind: %v", ents)
		}
		if _, err := p.Stat(ctx, objstore.KindPack, objstore.Sum(big)); err == nil {
			t.Fatal("failed put left a visible object")
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("put on a full disk: %v does not wrap ENOSPC", err)
		}
		// Now known to be full, the disk is skipped: still ENOSPC.
		err = p.Put(ctx, objstore.KindPack, objstore.Sum(big), big)
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("second put on a full disk: %v does not wrap ENOSPC", err)
		}
		// Small objects still fit.
		small := randBytes(6, 1000)
		if err := p.Put(ctx, objstore.KindPack, objstore.Sum(small), small); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("mirror-half-full", func(t *testing.T) {
		full := tmpfsDisk(t, "size=1m")
		dirs := append(diskDirs(t, 1), full)
		p := createPool(t, dirs, -1)
		defer p.Close()
		if err := p.Put(ctx, objstore.KindPack, objstore.Sum(big), big); err != nil {
			t.Fatalf("degraded put: %v", err)
		}
		if ds := diskStatus(p, full); ds.State != DiskFull || !strings.Contains(ds.Error, "no space") {
			t.Fatalf("status of the full disk: %+v", ds)
		}
		got, err := p.Get(ctx, objstore.KindPack, objstore.Sum(big))
		if err != nil || len(got) != len(big) {
			t.Fatalf("get: %v", err)
		}
	})
}
