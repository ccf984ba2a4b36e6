// Package pooldisks makes the pool's disks available to `arkbox serve` on
// the appliance, where a pool disk is a whole USB (or SATA, NVMe) disk with
// one ext4 filesystem mounted at MountDir/<filesystem UUID>:
//
//   - before a pool exists, it waits for blank disks and, only when told
//     to (Options.Adopt), adopts them (hw.Adopt: GPT and ext4), mounts them
//     and hands their mount points to the new pool;
//   - before an existing pool is opened, it mounts the pool's disks by the
//     UUID their folder is named after, waiting for disks that are slow to
//     appear;
//   - while the pool is open, it follows disks coming and going (Watch):
//     a pool disk that vanishes is detached from the pool and lazily
//     unmounted, and when it returns it is mounted again and reattached,
//     which resyncs it; a pool disk the kernel remounts read-only after
//     file system errors is logged and marked read-only in the pool.
//
// Neither waits in a loop of errors: a box without its disks logs what it
// sees and what is missing, and keeps waiting.
package pooldisks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/arkbox/arkbox/hw"
	"github.com/google/uuid"
)

// Hardware is what a Manager needs of the machine. Machine implements it
// with package hw; tests use a fake.
type Hardware interface {
	// Disks lists the disks the kernel knows (sysfs facts, not probed).
	Disks(ctx context.Context) ([]hw.Disk, error)
	// Probe reads what is on a disk.
	Probe(ctx context.Context, d hw.Disk) (*hw.Content, error)
	// Adopt partitions and formats a disk that is blank (or adopted
	// earlier and holds no pool): hw.Adopt without a confirmation.
	Adopt(ctx context.Context, d hw.Disk) (*hw.Adopted, error)
	// Mount mounts the ext4 filesystem fsUUID at dir/fsUUID and returns
	// the mount point; an error matching hw.ErrNoSuchFilesystem means no
	// attached disk holds it.
	Mount(ctx context.Context, fsUUID, dir string) (string, error)
	// Unmount unmounts a mount point made by Mount (which writes out what
	// the filesystem holds in memory); one that is not mounted is left
	// alone.
	Unmount(ctx context.Context, mountPoint string) error
	// UnmountLazy detaches the mount point of a disk that has gone; one
	// that is not mounted is left alone.
	UnmountLazy(ctx context.Context, mountPoint string) error
	// Events reports disks appearing, vanishing and changing until ctx
	// ends (hw.Watcher); it first reports the disks present as added.
	Events(ctx context.Context) <-chan hw.Event
	// ReadOnlyMounts returns which of the mount points are read-only (the
	// kernel remounts a filesystem so after errors): hw.ReadOnlyMounts.
	ReadOnlyMounts(mountPoints ...string) ([]string, error)
}

// Machine is the Hardware of the running machine, through package hw.
type Machine struct {
	SysRoot   string // "" means "/sys"
	DevRoot   string // "" means "/dev"
	MountInfo string // "" means "/proc/self/mountinfo"
}

// Disks implements Hardware.
func (m Machine) Disks(ctx context.Context) ([]hw.Disk, error) {
	return hw.Discover(ctx, hw.DiscoverOptions{SysRoot: m.SysRoot, DevRoot: m.DevRoot, MountInfo: m.MountInfo})
}

// Probe implements Hardware.
func (m Machine) Probe(ctx context.Context, d hw.Disk) (*hw.Content, error) {
	return hw.ProbeFile(ctx, d.Path)
}

// Adopt implements Hardware.
func (m Machine) Adopt(ctx context.Context, d hw.Disk) (*hw.Adopted, error) {
	return hw.Adopt(ctx, d, hw.AdoptOptions{})
}

// Mount implements Hardware.
func (m Machine) Mount(ctx context.Context, fsUUID, dir string) (string, error) {
	return hw.Mount(ctx, hw.MountOptions{UUID: fsUUID, Dir: dir, SysRoot: m.SysRoot, DevRoot: m.DevRoot, MountInfo: m.MountInfo})
}

// Unmount implements Hardware.
func (m Machine) Unmount(ctx context.Context, mountPoint string) error {
	if ok, err := m.mounted(mountPoint); !ok {
		return err
	}
	return hw.Unmount(ctx, mountPoint)
}

// mounted reports whether something is mounted at mountPoint.
func (m Machine) mounted(mountPoint string) (bool, error) {
	mi := m.MountInfo
	if mi == "" {
		mi = "/proc/self/mountinfo"
	}
	ms, err := hw.ReadMountInfo(mi)
	if err != nil {
		return false, err
	}
	for _, x := range ms {
		if x.MountPoint == filepath.Clean(mountPoint) {
			return true, nil
		}
	}
	return false, nil
}

// UnmountLazy implements Hardware.
func (m Machine) UnmountLazy(ctx context.Context, mountPoint string) error {
	if ok, err := m.mounted(mountPoint); !ok {
		return err
	}
	return hw.UnmountLazy(ctx, mountPoint)
}

// ReadOnlyMounts implements Hardware.
func (m Machine) ReadOnlyMounts(mountPoints ...string) ([]string, error) {
	mi := m.MountInfo
	if mi == "" {
		mi = "/proc/self/mountinfo"
	}
	return hw.ReadOnlyMounts(mi, mountPoints...)
}

// Events implements Hardware.
func (m Machine) Events(ctx context.Context) <-chan hw.Event {
	w := &hw.Watcher{Options: hw.DiscoverOptions{SysRoot: m.SysRoot, DevRoot: m.DevRoot}}
	return w.Watch(ctx)
}

// Options configure a Manager.
type Options struct {
	// MountDir is where pool disks are mounted, each at MountDir/<UUID>.
	MountDir string
	// Adopt is how many blank disks to adopt for a new pool: NewPool waits
	// until that many are attached, then formats them. 0 never adopts:
	// NewPool only reports the disks it sees and waits (adopting erases a
	// disk, so it happens only when the configuration says so).
	Adopt int
	// Eligible says which disks may become pool disks; default: disks on
	// USB, SATA or NVMe (not the SD card, eMMC or a virtual disk).
	Eligible func(hw.Disk) bool
	// Wait is how long OpenPool waits for missing pool disks once at
	// least one is mounted, and how long NewPool waits for an adopted
	// disk's new partition to show up; default 90 s.
	Wait time.Duration
	// Poll is how often disks are looked for; default 2 s.
	Poll time.Duration
	// Remind is how often a continuing wait is logged again; default 1 min.
	Remind time.Duration
	// Hardware is the machine; default Machine{}.
	Hardware Hardware
	Logger   *slog.Logger
}

// Manager prepares the pool's disks. It holds no state between calls.
type Manager struct {
	o   Options
	log *slog.Logger
}

// New checks the options and returns a Manager.
func New(o Options) (*Manager, error) {
	if !filepath.IsAbs(o.MountDir) {
		return nil, fmt.Errorf("pooldisks: mount folder %q: not an absolute path", o.MountDir)
	}
	o.MountDir = filepath.Clean(o.MountDir)
	if o.Adopt < 0 || o.Adopt > 255 {
		return nil, fmt.Errorf("pooldisks: adopt %d disks: want 0 to 255", o.Adopt)
	}
	if o.Eligible == nil {
		o.Eligible = DataDiskBus
	}
	if o.Wait <= 0 {
		o.Wait = 90 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
	if o.Remind <= 0 {
		o.Remind = time.Minute
	}
	if o.Hardware == nil {
		o.Hardware = Machine{}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{o: o, log: log}, nil
}

// DataDiskBus is the default Eligible: a disk on USB, SATA or NVMe.
func DataDiskBus(d hw.Disk) bool {
	switch d.Transport {
	case hw.TransportUSB, hw.TransportSATA, hw.TransportNVMe:
		return true
	}
	return false
}

// minDiskBytes is the smallest disk worth adopting (hw.Adopt refuses
// smaller ones too).
const minDiskBytes = 64 << 20

// candidate is a disk as NewPool judges it.
type candidate struct {
	disk   hw.Disk
	ok     bool   // may be adopted
	retry  bool   // could not be read: probe again at the next look
	reason string // what it is, or why not
}

// NewPool returns the mount points of the disks a new pool is to be
// created on. It waits until Options.Adopt disks that may be adopted are
// attached — blank ones, or ones adopted earlier that hold no pool — takes
// the first that many by kernel name, adopts and mounts them. A disk that
// fails to be adopted or mounted is set aside (until it is plugged in
// again, or a minute later) and the wait goes on. With Adopt 0 it logs the
// disks it sees and waits until ctx ends. It returns only the mount
// points, or ctx.Err() when ctx ends first.
func (m *Manager) NewPool(ctx context.Context) ([]string, error) {
	probed := map[string]*candidate{} // by diskKey; only disks present at the last look
	lastSeen := ""
	var lastLog time.Time
	for {
		disks, err := m.o.Hardware.Disks(ctx)
		if err != nil {
			m.log.Warn("pool disks: list disks", "err", err)
		}
		now := time.Now()
		remind := now.Sub(lastLog) >= m.o.Remind
		if remind {
			clear(probed) // look at every disk afresh now and then
		}
		var usable []hw.Disk
		var seen []string
		present := map[string]*candidate{}
		for _, d := range disks {
			c, ok := probed[diskKey(d)]
			if !ok || c.retry || len(c.disk.Mounted) != len(d.Mounted) {
				c = m.judge(ctx, d)
			}
			present[diskKey(d)] = c
			seen = append(seen, diskKey(d)+"|"+strconv.FormatBool(c.ok)+strconv.FormatBool(c.retry))
			if c.ok {
				usable = append(usable, d)
			}
		}
		probed = present // a disk unplugged and plugged in again is probed again
		if s := strings.Join(seen, "\n"); s != lastSeen || remind {
			lastSeen, lastLog = s, now
			for _, d := range disks {
				c := probed[diskKey(d)]
				m.log.Info("disk", "disk", d.Name, "transport", d.Transport, "model", d.Model, "serial", d.Serial,
					"size_bytes", d.SizeBytes, "usable", c.ok, "content", c.reason)
			}
			switch {
			case m.o.Adopt == 0:
				m.log.Warn("no pool yet: waiting; disks are adopted only when the configuration allows it (serve --adopt-blank-disks N)",
					"usable_disks", len(usable))
			default:
				m.log.Info("no pool yet: waiting for blank disks to adopt", "want", m.o.Adopt, "have", len(usable))
			}
		}
		if m.o.Adopt > 0 && len(usable) >= m.o.Adopt {
			dirs, bad, err := m.adopt(ctx, usable[:m.o.Adopt])
			if err == nil {
				return dirs, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			m.log.Error("adopting disks failed: setting the disk aside and waiting", "disk", bad.Name, "err", err)
			probed[diskKey(bad)] = &candidate{disk: bad, reason: "adoption failed: " + err.Error()}
			lastSeen = "" // report the disks again
		}
		if err := sleep(ctx, m.o.Poll); err != nil {
			return nil, err
		}
	}
}

// judge probes a disk and says whether it may be adopted.
func (m *Manager) judge(ctx context.Context, d hw.Disk) *candidate {
	c := &candidate{disk: d}
	switch {
	case !m.o.Eligible(d):
		c.reason = "not a data disk (" + string(d.Transport) + ")"
	case d.ReadOnly:
		c.reason = "read-only"
	case len(d.Mounted) > 0:
		c.reason = "in use (mounted at " + strings.Join(d.Mounted, ", ") + ")"
	case d.SizeBytes < minDiskBytes:
		c.reason = "too small"
	}
	if c.reason != "" {
		return c
	}
	content, err := m.o.Hardware.Probe(ctx, d)
	switch {
	case err != nil:
		c.retry, c.reason = true, "unreadable: "+err.Error()
	case content.Origin == hw.OriginBlank:
		c.ok, c.reason = true, "blank"
	case content.Origin == hw.OriginArkbox && content.PoolMember() == nil:
		c.ok, c.reason = true, "adopted earlier, no pool"
	case content.Origin == hw.OriginArkbox:
		c.reason = "member of pool " + content.PoolMember().Pool + " (not adopted again without confirmation)"
	default:
		c.reason = "holds data (" + string(content.Origin) + ", table " + orNone(content.Table) + "): never adopted without confirmation"
	}
	return c
}

// adopt formats the disks and mounts them, returning the mount points. On
// failure it returns the disk that failed, having unmounted what it
// mounted.
func (m *Manager) adopt(ctx context.Context, disks []hw.Disk) (dirs []string, failed hw.Disk, err error) {
	var uuids []string
	for _, d := range disks {
		m.log.Info("adopting disk: partitioning and formatting", "disk", d.Name, "model", d.Model, "serial", d.Serial, "size_bytes", d.SizeBytes)
		t0 := time.Now()
		a, err := m.o.Hardware.Adopt(ctx, d)
		if err != nil {
			return nil, d, fmt.Errorf("pooldisks: adopt %s: %w", d.Name, err)
		}
		m.log.Info("disk adopted", "disk", d.Name, "fs_uuid", a.UUID, "label", a.Label, "seconds", time.Since(t0).Seconds(), "reread", a.Reread)
		uuids = append(uuids, a.UUID)
	}
	defer func() {
		if err != nil {
			if rerr := m.Release(context.WithoutCancel(ctx), dirs); rerr != nil {
				m.log.Warn("pool disks: unmount after a failed adoption", "err", rerr)
			}
			dirs = nil
		}
	}()
	deadline := time.Now().Add(m.o.Wait)
	for i, u := range uuids {
		for {
			mp, err := m.o.Hardware.Mount(ctx, u, m.o.MountDir)
			if err == nil {
				m.log.Info("pool disk mounted", "fs_uuid", u, "at", mp)
				dirs = append(dirs, mp)
				break
			}
			if time.Now().After(deadline) {
				return dirs, disks[i], fmt.Errorf("pooldisks: mount adopted disk %s (%s): %w", disks[i].Name, u, err)
			}
			m.log.Debug("adopted disk not mountable yet", "fs_uuid", u, "err", err)
			if err := sleep(ctx, m.o.Poll); err != nil {
				return dirs, disks[i], err
			}
		}
	}
	return dirs, hw.Disk{}, nil
}

// OpenPool mounts the pool's disks: each of dirs that is MountDir/<UUID>
// is mounted from the filesystem with that UUID (other folders are left
// alone). It returns once every disk is mounted or, when at least one is,
// after Options.Wait; then the pool opens with the disks present (and
// reports the missing ones). While none is attached it keeps waiting,
// logging what is missing. It returns ctx.Err() when ctx ends first.
func (m *Manager) OpenPool(ctx context.Context, dirs []string) error {
	var missing []string
	for _, d := range dirs {
		if u, ok := m.mountUUID(d); ok {
			missing = append(missing, u)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	total := len(missing)
	start := time.Now()
	var lastLog time.Time
	for {
		var still []string
		for _, u := range missing {
			mp, err := m.o.Hardware.Mount(ctx, u, m.o.MountDir)
			if err != nil {
				if !errors.Is(err, hw.ErrNoSuchFilesystem) {
					m.log.Warn("pool disk: mount", "fs_uuid", u, "err", err)
				}
				still = append(still, u)
				continue
			}
			m.log.Info("pool disk mounted", "fs_uuid", u, "at", mp)
		}
		missing = still
		if len(missing) == 0 {
			return nil
		}
		now := time.Now()
		if len(missing) < total && now.Sub(start) >= m.o.Wait {
			m.log.Warn("opening the pool without some of its disks: not attached", "missing", missing,
				"present", total-len(missing), "of", total)
			return nil
		}
		if now.Sub(lastLog) >= m.o.Remind {
			lastLog = now
			m.log.Info("waiting for the pool's disks", "missing", missing, "present", total-len(missing), "of", total)
		}
		if err := sleep(ctx, m.o.Poll); err != nil {
			return err
		}
	}
}

// Release unmounts the pool's disks that OpenPool or NewPool mounted, once
// the pool is closed. On the appliance this matters before a reboot:
// gokrazy unmounts /perm and then reboots without a sync, and a disk
// still mounted inside /perm would keep /perm mounted and lose what both
// hold in memory.
func (m *Manager) Release(ctx context.Context, dirs []string) error {
	var errs []error
	for _, d := range dirs {
		u, ok := m.mountUUID(d)
		if !ok {
			continue
		}
		mp := filepath.Join(m.o.MountDir, u)
		if err := m.o.Hardware.Unmount(ctx, mp); err != nil {
			errs = append(errs, fmt.Errorf("pooldisks: release %s: %w", u, err))
			continue
		}
		m.log.Info("pool disk unmounted", "fs_uuid", u, "at", mp)
	}
	return errors.Join(errs...)
}

// mountUUID returns the filesystem UUID a pool folder is the mount point
// of: the folder's name, when the folder is directly in MountDir.
func (m *Manager) mountUUID(dir string) (string, bool) {
	dir = filepath.Clean(dir)
	if filepath.Dir(dir) != m.o.MountDir {
		return "", false
	}
	u, err := uuid.Parse(filepath.Base(dir))
	if err != nil {
		return "", false
	}
	return u.String(), true
}

func diskKey(d hw.Disk) string {
	return d.Name + "|" + d.Dev + "|" + d.Serial + "|" + d.Model + "|" + strconv.FormatInt(d.SizeBytes, 10)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
