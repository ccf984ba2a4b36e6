package pooldisks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbox/arkbox/hw"
	"github.com/google/uuid"
)

// fake is a machine whose disks and filesystems the test sets.
type fake struct {
	mu       sync.Mutex
	disks    []hw.Disk
	content  map[string]*hw.Content // by disk name
	attached map[string]bool        // filesystem UUIDs on attached disks
	failFor  map[string]int         // fs UUID: how many more mounts fail as "not there yet"
	adopted  []string               // disk names, in order
	mounts   int
	// lateMounts is how many mounts of a new filesystem fail first.
	lateMounts int
	unmounted  []string // fs UUIDs
	adoptFails map[string]bool
	lazy       []string        // fs UUIDs unmounted lazily
	events     chan hw.Event   // what Events reports
	readOnly   map[string]bool // mount points the "kernel" remounted read-only
}

func newFake() *fake {
	return &fake{content: map[string]*hw.Content{}, attached: map[string]bool{}, failFor: map[string]int{},
		events: make(chan hw.Event, 16)}
}

// UnmountLazy takes the filesystem out of the tree: its folder moves
// aside until it is mounted again.
func (f *fake) UnmountLazy(ctx context.Context, mountPoint string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lazy = append(f.lazy, filepath.Base(mountPoint))
	return os.Rename(mountPoint, mountPoint+".unmounted")
}

func (f *fake) Events(ctx context.Context) <-chan hw.Event { return f.events }

func (f *fake) ReadOnlyMounts(mountPoints ...string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ro []string
	for _, mp := range mountPoints {
		if f.readOnly[mp] {
			ro = append(ro, mp)
		}
	}
	return ro, nil
}

func (f *fake) add(name string, tr hw.Transport, c *hw.Content) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disks = append(f.disks, hw.Disk{Name: name, Path: "/dev/" + name, Dev: "8:" + name, Transport: tr,
		Model: "Disk", Serial: "S-" + name, SizeBytes: 1 << 30})
	f.content[name] = c
}

func (f *fake) Disks(ctx context.Context) ([]hw.Disk, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.disks), nil
}

func (f *fake) Probe(ctx context.Context, d hw.Disk) (*hw.Content, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.content[d.Name]; c != nil {
		return c, nil
	}
	return nil, errors.New("read error")
}

func (f *fake) Adopt(ctx context.Context, d hw.Disk) (*hw.Adopted, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.content[d.Name]; c == nil || (c.Origin != hw.OriginBlank && !(c.Origin == hw.OriginArkbox && c.PoolMember() == nil)) {
		return nil, fmt.Errorf("fake: adopt %s: %w", d.Name, hw.ErrNeedsConfirmation)
	}
	if f.adoptFails[d.Name] {
		return nil, fmt.Errorf("fake: adopt %s: write error", d.Name)
	}
	u := uuid.NewString()
	f.adopted = append(f.adopted, d.Name)
	f.content[d.Name] = arkboxContent(u, nil)
	f.attached[u] = true
	f.failFor[u] = f.lateMounts
	return &hw.Adopted{Disk: d.Path, UUID: u, Label: "arkbox-" + u[:8]}, nil
}

func (f *fake) Mount(ctx context.Context, fsUUID, dir string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.attached[fsUUID] {
		return "", fmt.Errorf("fake: mount %s: %w", fsUUID, hw.ErrNoSuchFilesystem)
	}
	if f.failFor[fsUUID] > 0 {
		f.failFor[fsUUID]--
		return "", fmt.Errorf("fake: mount %s: partition table not read yet", fsUUID)
	}
	f.mounts++
	mp := filepath.Join(dir, fsUUID)
	if _, err := os.Stat(mp + ".unmounted"); err == nil {
		return mp, os.Rename(mp+".unmounted", mp)
	}
	return mp, os.MkdirAll(mp, 0o755)
}

func (f *fake) Unmount(ctx context.Context, mountPoint string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unmounted = append(f.unmounted, filepath.Base(mountPoint))
	return nil
}

func (f *fake) attach(fsUUID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached[fsUUID] = true
}

func arkboxContent(fsUUID string, pool *hw.PoolMarker) *hw.Content {
	return &hw.Content{Table: "gpt", Origin: hw.OriginArkbox, Partitions: []hw.PartitionContent{{Number: 1, Name: hw.PartitionName,
		Filesystem: &hw.Filesystem{Type: "ext4", UUID: fsUUID, Label: "arkbox-" + fsUUID[:8], Pool: pool}}}}
}

var blank = &hw.Content{Origin: hw.OriginBlank}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func newManager(t *testing.T, f *fake, adopt int, wait time.Duration) (*Manager, *logBuf, string) {
	t.Helper()
	dir := t.TempDir()
	lb := &logBuf{}
	m, err := New(Options{MountDir: dir, Adopt: adopt, Wait: wait, Poll: 2 * time.Millisecond, Remind: time.Hour,
		Hardware: f, Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	return m, lb, dir
}

func TestNewPoolAdoptsOnlyBlankDataDisks(t *testing.T) {
	f := newFake()
	f.add("vda", hw.TransportVirtio, blank) // the system disk's bus: never a pool disk
	f.add("sda", hw.TransportUSB, blank)
	f.add("sdb", hw.TransportUSB, &hw.Content{Table: "mbr", Origin: hw.OriginUnknown})
	other := uuid.NewString()
	f.add("sdc", hw.TransportUSB, arkboxContent(other, &hw.PoolMarker{Format: 1, Pool: "p-1", Disk: "d-1"}))
	f.add("sdd", hw.TransportUSB, nil) // unreadable
	m, logs, dir := newManager(t, f, 2, time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		dirs []string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		d, err := m.NewPool(ctx)
		done <- result{d, err}
	}()
	// One usable disk: it waits for a second.
	time.Sleep(50 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("NewPool returned with one blank disk: %v, %v", r.dirs, r.err)
	default:
	}
	// The unreadable disk becomes readable (and holds a leftover adopted
	// filesystem without a pool): now there are two.
	f.mu.Lock()
	f.content["sdd"] = arkboxContent(uuid.NewString(), nil)
	f.mu.Unlock()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if want := []string{"sda", "sdd"}; !slices.Equal(f.adopted, want) {
		t.Errorf("adopted %v; want %v", f.adopted, want)
	}
	if len(r.dirs) != 2 {
		t.Fatalf("mount points %v", r.dirs)
	}
	for _, d := range r.dirs {
		if filepath.Dir(d) != dir {
			t.Errorf("mount point %s not in %s", d, dir)
		}
		if _, ok := m.mountUUID(d); !ok {
			t.Errorf("mount point %s is not named by a UUID", d)
		}
	}
	out := logs.String()
	for _, want := range []string{"not a data disk (virtio)", "holds data", "member of pool p-1", "unreadable", "disk adopted", "pool disk mounted"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestNewPoolWithoutAdoptionWaits(t *testing.T) {
	f := newFake()
	f.add("sda", hw.TransportUSB, blank)
	f.add("sdb", hw.TransportUSB, blank)
	m, logs, _ := newManager(t, f, 0, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	dirs, err := m.NewPool(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || dirs != nil {
		t.Fatalf("NewPool = %v, %v; want it to wait until the context ends", dirs, err)
	}
	if len(f.adopted) != 0 {
		t.Errorf("adopted %v without being allowed to", f.adopted)
	}
	if out := logs.String(); !strings.Contains(out, "--adopt-blank-disks") || strings.Count(out, "no pool yet") != 1 {
		t.Errorf("want one message saying how to allow adoption:\n%s", out)
	}
}

func TestNewPoolWaitsForPartition(t *testing.T) {
	f := newFake()
	f.add("sda", hw.TransportUSB, blank)
	f.lateMounts = 3 // as while the kernel re-reads the new partition table
	m, _, _ := newManager(t, f, 1, 5*time.Second)
	dirs, err := m.NewPool(context.Background())
	if err != nil || len(dirs) != 1 {
		t.Fatalf("NewPool = %v, %v", dirs, err)
	}
	if f.failFor[filepath.Base(dirs[0])] != 0 {
		t.Error("mounted before the partition showed up")
	}
}

func TestNewPoolMountTimesOut(t *testing.T) {
	f := newFake()
	f.add("sda", hw.TransportUSB, blank)
	m, logs, _ := newManager(t, f, 1, 20*time.Millisecond)
	m.o.Hardware = &noMount{f}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// It does not fail (serve would be restarted at once, and fail again):
	// it sets the disk aside and waits.
	if dirs, err := m.NewPool(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NewPool = %v, %v; want it to wait", dirs, err)
	}
	if out := logs.String(); !strings.Contains(out, "adopting disks failed") || !strings.Contains(out, "adoption failed") {
		t.Errorf("log:\n%s", out)
	}
	if len(f.adopted) != 1 {
		t.Errorf("adopted %v; want sda once (set aside after the failure)", f.adopted)
	}
}

func TestNewPoolSetsAsideAFailingDisk(t *testing.T) {
	f := newFake()
	f.add("sda", hw.TransportUSB, blank)
	f.add("sdb", hw.TransportUSB, blank)
	f.add("sdc", hw.TransportUSB, blank)
	f.adoptFails = map[string]bool{"sdb": true}
	m, _, _ := newManager(t, f, 2, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dirs, err := m.NewPool(ctx)
	if err != nil || len(dirs) != 2 {
		t.Fatalf("NewPool = %v, %v", dirs, err)
	}
	// sda was formatted in the first round, then again with sdc.
	if want := []string{"sda", "sda", "sdc"}; !slices.Equal(f.adopted, want) {
		t.Errorf("adopted %v; want %v", f.adopted, want)
	}
}

// noMount never finds a filesystem.
type noMount struct{ *fake }

func (n *noMount) Mount(ctx context.Context, fsUUID, dir string) (string, error) {
	return "", hw.ErrNoSuchFilesystem
}

func TestOpenPoolWaitsForEveryDisk(t *testing.T) {
	f := newFake()
	m, logs, dir := newManager(t, f, 0, time.Hour)
	u1, u2 := uuid.NewString(), uuid.NewString()
	f.attach(u1)
	done := make(chan error, 1)
	go func() {
		done <- m.OpenPool(context.Background(), []string{filepath.Join(dir, u1), filepath.Join(dir, strings.ToUpper(u2)), "/elsewhere/disk3"})
	}()
	time.Sleep(30 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("OpenPool returned with a disk missing: %v", err)
	default:
	}
	f.attach(u2)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{u1, u2} {
		if fi, err := os.Stat(filepath.Join(dir, u)); err != nil || !fi.IsDir() {
			t.Errorf("%s not mounted: %v", u, err)
		}
	}
	if f.mounts != 2 {
		t.Errorf("%d mounts; want 2 (each disk once)", f.mounts)
	}
	if !strings.Contains(logs.String(), "pool disk mounted") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestOpenPoolDegradedAfterWait(t *testing.T) {
	f := newFake()
	m, logs, dir := newManager(t, f, 0, 30*time.Millisecond)
	u1, u2 := uuid.NewString(), uuid.NewString()
	f.attach(u1)
	t0 := time.Now()
	if err := m.OpenPool(context.Background(), []string{filepath.Join(dir, u1), filepath.Join(dir, u2)}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el < 30*time.Millisecond {
		t.Errorf("returned after %v, before the wait", el)
	}
	if out := logs.String(); !strings.Contains(out, "without some of its disks") || !strings.Contains(out, u2) {
		t.Errorf("log does not name the missing disk:\n%s", out)
	}
}

func TestOpenPoolWithoutDisksKeepsWaiting(t *testing.T) {
	f := newFake()
	m, _, dir := newManager(t, f, 0, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := m.OpenPool(ctx, []string{filepath.Join(dir, uuid.NewString())})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("OpenPool = %v; want it to wait while no disk is there", err)
	}
	// Plain folders need nothing.
	if err := m.OpenPool(context.Background(), []string{"/perm/arkbox/disks/disk1", filepath.Join(dir, "not-a-uuid")}); err != nil {
		t.Errorf("OpenPool of plain folders = %v", err)
	}
}

func TestNewChecksOptions(t *testing.T) {
	for _, o := range []Options{{MountDir: "relative"}, {MountDir: "/mnt", Adopt: -1}, {MountDir: "/mnt", Adopt: 256}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v): no error", o)
		}
	}
}

func TestRelease(t *testing.T) {
	f := newFake()
	m, logs, dir := newManager(t, f, 0, time.Second)
	u1, u2 := uuid.NewString(), uuid.NewString()
	if err := m.Release(context.Background(), []string{filepath.Join(dir, u1), "/elsewhere/" + u2, filepath.Join(dir, u2)}); err != nil {
		t.Fatal(err)
	}
	if want := []string{u1, u2}; !slices.Equal(f.unmounted, want) {
		t.Errorf("unmounted %v; want %v (only folders in the mount folder)", f.unmounted, want)
	}
	if strings.Count(logs.String(), "pool disk unmounted") != 2 {
		t.Errorf("log:\n%s", logs)
	}
}

func TestMachineUnmountLeavesUnmountedAlone(t *testing.T) {
	mi := filepath.Join(t.TempDir(), "mountinfo")
	line := "36 35 8:1 / /perm/arkbox/disks/other rw,noatime - ext4 /dev/sda1 rw\n"
	if err := os.WriteFile(mi, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	m := Machine{MountInfo: mi}
	if err := m.Unmount(context.Background(), "/perm/arkbox/disks/"+uuid.NewString()); err != nil {
		t.Errorf("Unmount of a folder that is not mounted: %v", err)
	}
}
