package pooldisks

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
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
	MarkReadOnly(uuid string, reason error) bool
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
	// OnChange, if set, is called after a pool disk left, returned or
	// turned read-only.
	OnChange func()
}

// seenDisk is a disk Watch has seen, with the filesystems on it.
type seenDisk struct {
	disk hw.Disk
	fs   []string // filesystem UUIDs, lowercase
}

// watch is the state of one Watch.
type watch struct {
	m      *Manager
	o      WatchOptions
	pooled map[string]string   // filesystem UUID → pool folder
	seen   map[string]seenDisk // by kernel name
	// readOnly holds the pool filesystems reported read-only, until
	// their mount is no longer read-only (unmounted, or mounted again
	// after the disk returned); mountErr whether reading the mount table
	// failed last time.
	readOnly map[string]bool
	mountErr bool
}

// Watch follows disks coming and going while the pool is open, until ctx
// ends: a pool disk that vanishes is logged, detached from the pool (which
// is then degraded and records what the disk misses) and lazily
// unmounted; when it returns — the same filesystem, on any port — it is
// mounted by UUID and reattached, and the pool resyncs it. Other disks
// are only logged: nothing is ever formatted here. Every Poll it also
// looks for pool disks the kernel has remounted read-only after errors:
// each is logged, naming the disk, and marked read-only in the pool.
func (m *Manager) Watch(ctx context.Context, o WatchOptions) error {
	w := &watch{m: m, o: o, pooled: map[string]string{}, seen: map[string]seenDisk{}, readOnly: map[string]bool{}}
	for _, d := range o.Dirs {
		if u, ok := m.mountUUID(d); ok {
			w.pooled[u] = filepath.Clean(d)
		}
	}
	if len(w.pooled) == 0 {
		<-ctx.Done() // plain folders: no disks to follow
		return ctx.Err()
	}
	events := m.o.Hardware.Events(ctx)
	tick := time.NewTicker(m.o.Poll)
	defer tick.Stop()
	for {
		var ev hw.Event
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			w.checkReadOnly(ctx)
			continue
		case e, ok := <-events:
			if !ok {
				return ctx.Err()
			}
			ev = e
		}
		switch ev.Kind {
		case hw.DiskRemoved:
			w.removed(ctx, ev.Disk)
		case hw.DiskChanged:
			w.removed(ctx, w.seen[ev.Disk.Name].disk)
			w.added(ctx, ev.Disk)
		case hw.DiskAdded:
			w.added(ctx, ev.Disk)
		}
	}
}

// ErrRemountedRO is the reason a pool disk the mount table shows read-only
// is marked so (pool.MarkReadOnly): the pool's Status shows it as the
// disk's error, and Watch logs it.
var ErrRemountedRO = errors.New("the kernel remounted its file system read-only after errors on the disk: " +
	"check the disk's health with `arkbox disks`, then replace it (`arkbox pool replace-disk`) " +
	"or check its file system (e2fsck -f) on another computer and plug it in again")

// MarkReadOnlyMounts marks read-only in p (with ErrRemountedRO) each
// attached disk whose folder h's mount table shows read-only, and returns
// those folders. It is for a pool opened outside `serve` (`arkbox pool
// status`): on Linux 6.18 only the mount table shows that the kernel
// remounted a file system read-only after errors — statfs, which the pool
// looks at, still says writable — so the pool would report such a disk ok.
func MarkReadOnlyMounts(ctx context.Context, p Pool, h Hardware) ([]string, error) {
	byDir := map[string]string{} // folder → pool disk UUID
	var dirs []string
	for _, d := range p.Status(ctx).Disks {
		if d.State != pool.DiskMissing {
			dir := filepath.Clean(d.Path)
			byDir[dir] = d.UUID
			dirs = append(dirs, dir)
		}
	}
	ro, err := h.ReadOnlyMounts(dirs...)
	if err != nil {
		return nil, fmt.Errorf("pooldisks: look for read-only pool disks: %w", err)
	}
	for _, dir := range ro {
		p.MarkReadOnly(byDir[dir], ErrRemountedRO)
	}
	return ro, nil
}

// checkReadOnly looks for pool disks the kernel has remounted read-only.
// Each one found is marked read-only in the pool at once (the pool's
// Status may have marked it already, where statfs shows it) and logged
// once, naming the disk and what to do; OnChange is called then.
func (w *watch) checkReadOnly(ctx context.Context) {
	dirs := make([]string, 0, len(w.pooled))
	byDir := map[string]string{} // pool folder → filesystem UUID
	for u, d := range w.pooled {
		dirs = append(dirs, d)
		byDir[d] = u
	}
	ro, err := w.m.o.Hardware.ReadOnlyMounts(dirs...)
	if err != nil {
		if !w.mountErr {
			w.m.log.Warn("cannot read the mount table: pool disks the kernel makes read-only go unnoticed until a write fails", "err", err)
		}
		w.mountErr = true
		return
	}
	w.mountErr = false
	now := map[string]bool{}
	for _, dir := range ro {
		u := byDir[dir]
		now[u] = true
		if w.readOnly[u] {
			continue
		}
		for _, f := range w.poolFilesystems(ctx, []string{u}) {
			if f.member == "" {
				continue // not the pool's folder: nothing to mark
			}
			w.o.Pool.MarkReadOnly(f.member, ErrRemountedRO)
			w.readOnly[u] = true
			args := []any{}
			for _, s := range w.seen {
				if slices.Contains(s.fs, u) {
					args = append(args, "disk", s.disk.Name, "model", s.disk.Model, "serial", s.disk.Serial)
				}
			}
			args = append(args, "fs_uuid", u, "pool_disk", f.member, "at", dir)
			w.m.log.Error("pool disk is read-only: "+ErrRemountedRO.Error(), args...)
			if w.o.OnChange != nil {
				w.o.OnChange()
			}
		}
	}
	for u := range w.readOnly {
		if !now[u] {
			delete(w.readOnly, u)
		}
	}
}

// poolFS is a filesystem that is one of the pool's disks.
type poolFS struct {
	uuid, dir string
	member    string // the pool disk's UUID ("" if the pool does not know the folder)
	state     pool.DiskState
}

// poolFilesystems returns which of the filesystems fs are the pool's.
func (w *watch) poolFilesystems(ctx context.Context, fs []string) []poolFS {
	var out []poolFS
	var st pool.Status
	for _, u := range fs {
		dir, ok := w.pooled[u]
		if !ok {
			continue
		}
		if st.Pool == "" {
			st = w.o.Pool.Status(ctx)
		}
		f := poolFS{uuid: u, dir: dir}
		for _, d := range st.Disks {
			if filepath.Clean(d.Path) == dir {
				f.member, f.state = d.UUID, d.State
			}
		}
		out = append(out, f)
	}
	return out
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
func (w *watch) added(ctx context.Context, d hw.Disk) {
	log := w.m.log
	c, err := w.m.o.Hardware.Probe(ctx, d)
	if err != nil {
		w.seen[d.Name] = seenDisk{disk: d}
		log.Warn("disk attached; cannot read what is on it", "disk", d.Name, "model", d.Model, "serial", d.Serial, "err", err)
		return
	}
	s := seenDisk{disk: d, fs: fsUUIDs(c)}
	w.seen[d.Name] = s
	pfs := w.poolFilesystems(ctx, s.fs)
	if len(pfs) == 0 {
		log.Info("disk attached: not a pool disk, left alone", "disk", d.Name, "transport", d.Transport, "model", d.Model,
			"serial", d.Serial, "size_bytes", d.SizeBytes, "content", c.Origin)
	}
	for _, f := range pfs {
		if f.member == "" || f.state != pool.DiskMissing {
			continue // present already (Watch has just started)
		}
		args := []any{"disk", d.Name, "fs_uuid", f.uuid, "pool_disk", f.member}
		log.Info("pool disk returned: mounting and resyncing it", append(args, "model", d.Model, "serial", d.Serial)...)
		mp, err := w.m.mountWhenReady(ctx, f.uuid)
		if err != nil {
			log.Error("pool disk returned but cannot be mounted", append(args, "err", err)...)
			continue
		}
		r, err := w.o.Pool.Reattach(ctx, f.member, mp)
		if err != nil {
			log.Error("pool disk returned but the pool refused it", append(args, "err", err)...)
			continue
		}
		if w.o.OnResync != nil {
			w.o.OnResync(r)
		}
		if w.o.OnChange != nil {
			w.o.OnChange()
		}
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
func (w *watch) removed(ctx context.Context, d hw.Disk) {
	s, ok := w.seen[d.Name]
	delete(w.seen, d.Name)
	if !ok {
		return
	}
	log := w.m.log
	pfs := w.poolFilesystems(ctx, s.fs)
	if len(pfs) == 0 {
		log.Info("disk removed", "disk", d.Name, "model", d.Model, "serial", d.Serial)
	}
	for _, f := range pfs {
		log.Warn("pool disk removed: the pool is degraded until it returns", "disk", d.Name, "model", d.Model,
			"serial", d.Serial, "fs_uuid", f.uuid, "pool_disk", f.member)
		if f.member != "" {
			if err := w.o.Pool.Detach(f.member, fmt.Errorf("disk %s (%s) was removed", d.Name, d.Identity())); err != nil {
				log.Error("detaching a removed pool disk", "pool_disk", f.member, "err", err)
			}
		}
		if err := w.m.o.Hardware.UnmountLazy(ctx, f.dir); err != nil {
			log.Warn("unmounting a removed pool disk", "at", f.dir, "err", err)
		}
		if w.o.OnChange != nil {
			w.o.OnChange()
		}
	}
}
