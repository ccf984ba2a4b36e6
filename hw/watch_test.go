package hw

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWatcher(t *testing.T) {
	root := fakeSysfs(t, "virtio")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &Watcher{Options: DiscoverOptions{SysRoot: root}, Interval: 20 * time.Millisecond}
	events := w.Watch(ctx)
	next := func(kind EventKind, name string) Event {
		t.Helper()
		select {
		case e := <-events:
			if e.Kind != kind || e.Disk.Name != name {
				t.Fatalf("event %s %s, want %s %s", e.Kind, e.Disk.Name, kind, name)
			}
			return e
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event for %s", kind, name)
		}
		return Event{}
	}
	next(DiskAdded, "vda")

	// Plug in a USB disk (and the Pi's SD card, from the same fixture).
	applyFixture(t, root, filepath.Join("testdata", "sysfs", "usb.txt"))
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case e := <-events:
			switch e.Kind {
			case DiskAdded:
				got[e.Disk.Name] = true
			case DiskChanged: // seen half-written
			default:
				t.Fatalf("event %+v", e)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("plugged disks not noticed")
		}
	}
	if !got["sda"] || !got["mmcblk0"] {
		t.Fatalf("added %v", got)
	}
	// Swap the medium: same name, another size.
	sizeFile := filepath.Join(root, "block", "sda", "size")
	if err := os.WriteFile(sizeFile, []byte("3907029168\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// (The fixture was written file by file while the watcher polled, so
	// earlier DiskChanged events may show it half-written.)
	for {
		select {
		case e := <-events:
			if e.Kind != DiskChanged {
				t.Fatalf("event %s %s, want changed sda", e.Kind, e.Disk.Name)
			}
			if e.Disk.Name != "sda" || e.Disk.SizeBytes != 3907029168*512 {
				continue
			}
		case <-time.After(5 * time.Second):
			t.Fatal("size change not noticed")
		}
		break
	}

	// Unplug it: the sysfs entry vanishes.
	if err := os.Remove(filepath.Join(root, "block", "sda")); err != nil {
		t.Fatal(err)
	}
	if e := next(DiskRemoved, "sda"); e.Disk.Serial != "0000000000001E5A" {
		t.Errorf("removed disk %+v", e.Disk)
	}

	cancel()
	for range events {
	}
}

func TestWatcherNoticesWithinSeconds(t *testing.T) {
	// The default interval: a disk plugged in is reported within ~2 s.
	root := fakeSysfs(t)
	mustMkdir(t, filepath.Join(root, "block"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := (&Watcher{Options: DiscoverOptions{SysRoot: root}}).Watch(ctx)
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	applyFixture(t, root, filepath.Join("testdata", "sysfs", "sata.txt"))
	select {
	case e := <-events:
		if e.Kind != DiskAdded || e.Disk.Name != "sdb" {
			t.Fatalf("event %+v", e)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("noticed after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not noticed within 5 s")
	}
}
