package pooldisks

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/arkbox/arkbox/hw"
	"github.com/arkbox/arkbox/storage/pool"
)

// Pool is what Watch needs of the pool; *pool.Pool implements it.
type Pool interface {
	Status(ctx context.Context) pool.Status
	Detach(uuid string, reason error) error
	Reattach(ctx context.Context, uuid, dir string) (*pool.Resync, error)
}

// WatchOptions say what Watch works on.
type WatchOptions struct {
	// Pool is the open pool; Dirs its disk folders (those named
	// MountDir/<filesystem UUID> are watched).
	Pool Pool
	Dirs []string
	// OnResync, if set, is called with the resync of each pool disk
	// that returned.
	OnResync func(*pool.Resync)
	// OnChange, if set, is called after a pool disk left or returned.
	OnChange func()
}

// seenDisk is a disk Watch has seen, with the filesystems on it.
type seenDisk struct {
	disk hw.Disk
	fs   []string // filesystem UUIDs, lowercase
}

// Watch follows disks coming and going while the pool is open, until ctx
// ends: a pool disk that vanishes is logged, detached from the pool (which
// is then degraded and records what the disk misses) and lazily
// unmounted; when it returns — the same filesystem, on any port — it is
// mounted by UUID and reattached, and the pool resyncs it. Other disks
// are only logged: nothing is ever formatted here.
func (m *Manager) Watch(ctx context.Context, o WatchOptions) error {
	pooled := map[string]string{} // filesystem UUID → pool folder
	for _, d := range o.Dirs {
		if u, ok := m.mountUUID(d); ok {
			pooled[u] = filepath.Clean(d)
		}
	}
	if len(pooled) == 0 {
		<-ctx.Done() // plain folders: no disks to follow
		return ctx.Err()
	}
	seen := map[string]seenDisk{} // by kernel name
	events := m.o.Hardware.Events(ctx)
	for {
		var ev hw.Event
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-events:
			if !ok {
				return ctx.Err()
			}
			ev = e
		}
		switch ev.Kind {
		case hw.DiskRemoved:
			m.removed(ctx, o, pooled, seen, ev.Disk)
		case hw.DiskChanged:
			m.removed(ctx, o, pooled, seen, seen[ev.Disk.Name].disk)
			m.added(ctx, o, pooled, seen, ev.Disk)
		case hw.DiskAdded:
			m.added(ctx, o, pooled, seen, ev.Disk)
		}
	}
}

// memberAt returns the pool member whose folder is dir, and its state.
func memberAt(st pool.Status, dir string) (string, pool.DiskState) {
	for _, d := range st.Disks {
		if filepath.Clean(d.Path) == dir {
			return d.UUID, d.State
		}
	}
	return "", ""
}

// fsUUIDs lists the filesystem UUIDs on a disk, lowercase.
func fsUUIDs(c *hw.Content) []string {
	var out []string
	if c.Filesystem != nil && c.Filesystem.UUID != "" {
		out = append(out, strings.ToLower(c.Filesystem.UUID))
	}
	for _, p := range c.Partitions {
		if p.Filesystem != nil && p.Filesystem.UUID != "" {
			out = append(out, strings.ToLower(p.Filesystem.UUID))
		}
	}
	return out
}

// added handles a disk that appeared (or was there when Watch started).
func (m *Manager) added(ctx context.Context, o WatchOptions, pooled map[string]string, seen map[string]seenDisk, d hw.Disk) {
	c, err := m.o.Hardware.Probe(ctx, d)
	if err != nil {
		seen[d.Name] = seenDisk{disk: d}
		m.log.Warn("disk attached; cannot read what is on it", "disk", d.Name, "model", d.Model, "serial", d.Serial, "err", err)
		return
	}
	s := seenDisk{disk: d, fs: fsUUIDs(c)}
	seen[d.Name] = s
	isPool := false
	for _, u := range s.fs {
		dir, ok := pooled[u]
		if !ok {
			continue
		}
		isPool = true
		member, state := memberAt(o.Pool.Status(ctx), dir)
		if member == "" || state != pool.DiskMissing {
			continue // present already (Watch has just started)
		}
		m.log.Info("pool disk returned: mounting and resyncing it", "disk", d.Name, "model", d.Model, "serial", d.Serial,
			"fs_uuid", u, "pool_disk", member)
		mp, err := m.mountWhenReady(ctx, u)
		if err != nil {
			m.log.Error("pool disk returned but cannot be mounted", "disk", d.Name, "fs_uuid", u, "pool_disk", member, "err", err)
			continue
		}
		r, err := o.Pool.Reattach(ctx, member, mp)
		if err != nil {
			m.log.Error("pool disk returned but the pool refused it", "disk", d.Name, "fs_uuid", u, "pool_disk", member, "err", err)
			continue
		}
		if o.OnResync != nil {
			o.OnResync(r)
		}
		if o.OnChange != nil {
			o.OnChange()
		}
	}
	if !isPool {
		m.log.Info("disk attached: not a pool disk, left alone", "disk", d.Name, "transport", d.Transport, "model", d.Model,
			"serial", d.Serial, "size_bytes", d.SizeBytes, "content", c.Origin)
	}
}

// mountWhenReady mounts filesystem u, trying again for a while: right
// after a disk appears the kernel may not have read its partitions yet.
func (m *Manager) mountWhenReady(ctx context.Context, u string) (string, error) {
	deadline := time.Now().Add(m.o.Wait)
	for {
		mp, err := m.o.Hardware.Mount(ctx, u, m.o.MountDir)
		if err == nil {
			return mp, nil
		}
		if time.Now().After(deadline) {
			return "", err
		}
		if err := sleep(ctx, m.o.Poll); err != nil {
			return "", err
		}
	}
}

// removed handles a disk that vanished.
func (m *Manager) removed(ctx context.Context, o WatchOptions, pooled map[string]string, seen map[string]seenDisk, d hw.Disk) {
	s, ok := seen[d.Name]
	delete(seen, d.Name)
	if !ok {
		return
	}
	isPool := false
	for _, u := range s.fs {
		dir, ok := pooled[u]
		if !ok {
			continue
		}
		isPool = true
		member, _ := memberAt(o.Pool.Status(ctx), dir)
		m.log.Warn("pool disk removed: the pool is degraded until it returns", "disk", d.Name, "model", d.Model,
			"serial", d.Serial, "fs_uuid", u, "pool_disk", member)
		if member != "" {
			if err := o.Pool.Detach(member, fmt.Errorf("disk %s (%s) was removed", d.Name, d.Identity())); err != nil {
				m.log.Error("detaching a removed pool disk", "pool_disk", member, "err", err)
			}
		}
		if err := m.o.Hardware.UnmountLazy(ctx, dir); err != nil {
			m.log.Warn("unmounting a removed pool disk", "at", dir, "err", err)
		}
		if o.OnChange != nil {
			o.OnChange()
		}
	}
	if !isPool {
		m.log.Info("disk removed", "disk", d.Name, "model", d.Model, "serial", d.Serial)
	}
}
