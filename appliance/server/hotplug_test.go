package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/board"
	"github.com/arkbox/arkbox/appliance/control"
	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/appliance/pooldisks"
	"github.com/arkbox/arkbox/hw"
	"github.com/arkbox/arkbox/hw/hwtest"
	"github.com/google/uuid"
)

// folderMachine is a machine for package pooldisks whose disks are
// folders: a blank disk gets a filesystem UUID when adopted, and pulling
// a disk out or plugging it in is an event the test sends.
type folderMachine struct {
	mu     sync.Mutex
	disks  []hw.Disk
	fs     map[string]string // disk name → filesystem UUID, once adopted
	events chan hw.Event
}

// Disks lists the disks (they do not change once serve runs).
func (m *folderMachine) Disks(ctx context.Context) ([]hw.Disk, error) {
	return slices.Clone(m.disks), nil
}

func (m *folderMachine) Probe(ctx context.Context, d hw.Disk) (*hw.Content, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.fs[d.Name]
	if u == "" {
		return &hw.Content{Origin: hw.OriginBlank}, nil
	}
	return &hw.Content{Table: "gpt", Origin: hw.OriginArkbox,
		Partitions: []hw.PartitionContent{{Number: 1, Filesystem: &hw.Filesystem{Type: "ext4", UUID: u}}}}, nil
}

func (m *folderMachine) Adopt(ctx context.Context, d hw.Disk) (*hw.Adopted, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fs[d.Name] = uuid.NewString()
	return &hw.Adopted{Disk: d.Path, UUID: m.fs[d.Name]}, nil
}

// Mount makes the folder (a pulled disk's folder stays: the pool's
// Detach is what this test is about).
func (m *folderMachine) Mount(ctx context.Context, fsUUID, dir string) (string, error) {
	mp := filepath.Join(dir, fsUUID)
	return mp, os.MkdirAll(mp, 0o755)
}

func (m *folderMachine) Unmount(ctx context.Context, mountPoint string) error     { return nil }
func (m *folderMachine) UnmountLazy(ctx context.Context, mountPoint string) error { return nil }

func (m *folderMachine) Events(ctx context.Context) <-chan hw.Event { return m.events }

// ReadOnlyMounts: the folders are never remounted read-only.
func (m *folderMachine) ReadOnlyMounts(mountPoints ...string) ([]string, error) { return nil, nil }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServeHotPlug: serve follows its pool's disks: one pulled out makes
// the pool degraded and the activity LED blink, with a log line naming
// the disk; plugged in again, it is resynced as a recorded job, and the
// LED is steady again.
func TestServeHotPlug(t *testing.T) {
	dir := t.TempDir()
	fm := &folderMachine{fs: map[string]string{}, events: make(chan hw.Event, 16)}
	for _, n := range []string{"sda", "sdb", "sdc"} {
		fm.disks = append(fm.disks, hw.Disk{Name: n, Path: "/dev/" + n, Dev: "8:" + n[2:], Transport: hw.TransportUSB,
			Model: "USB Disk", Serial: "SN-" + n, SizeBytes: 1 << 30})
	}
	dlog := &syncBuf{}
	mgr, err := pooldisks.New(pooldisks.Options{MountDir: filepath.Join(t.TempDir(), "disks"), Adopt: 3, Poll: 5 * time.Millisecond,
		Wait: time.Second, Hardware: fm, Logger: slog.New(slog.NewTextHandler(dlog, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sys := hwtest.Board(t, 52)
	led, err := hw.FindActivityLED(sys)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := []byte(`{"shares": [{"name": "office"}],
		"prune": {"schedule": "never"}, "scrub": {"schedule": "never"}, "verify": {"schedule": "never"}}`)
	r := startWith(t, Options{DataDir: dir, Disks: mgr, InitConfig: tmpl,
		Board: board.Options{SysRoot: sys, Interval: 10 * time.Millisecond}})
	defer r.stop(t)
	waitFor(t, "a steady LED", func() bool { return led.State() == hw.LEDOK })
	for _, d := range fm.disks {
		fm.events <- hw.Event{Kind: hw.DiskAdded, Disk: d}
	}

	fm.events <- hw.Event{Kind: hw.DiskRemoved, Disk: fm.disks[1]}
	waitFor(t, "a blinking LED", func() bool { return led.State() == hw.LEDDegraded })
	if out := dlog.String(); !strings.Contains(out, "pool disk removed") || !strings.Contains(out, "serial=SN-sdb") {
		t.Errorf("no log line about the pulled disk:\n%s", out)
	}

	fm.events <- hw.Event{Kind: hw.DiskAdded, Disk: fm.disks[1]}
	cl, err := control.Dial(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rec jobs.Record
	waitFor(t, "a resync job", func() bool {
		recs, err := cl.Jobs(context.Background(), control.JobFilter{Kind: jobs.KindResync})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 || recs[0].Ended.IsZero() {
			return false
		}
		rec = recs[0]
		return true
	})
	if rec.Result != jobs.OK || rec.Trigger != "disk returned" || rec.Target == "" {
		t.Errorf("resync job: %+v", rec)
	}
	waitFor(t, "a steady LED again", func() bool { return led.State() == hw.LEDOK })
	if out := r.logs(); !strings.Contains(out, "board: temperature") {
		t.Errorf("no temperature logged:\n%s", out)
	}
}
