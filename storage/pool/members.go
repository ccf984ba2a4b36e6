package pool

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/arkbox/arkbox/storage/objstore"
)

// AddDisk adds an empty folder as a new member and records a new layout:
// the default layout for the new disk count, or the parity the pool was
// created with where the disk count allows it. Existing objects stay
// where they are and remain readable; new objects use every disk.
func (p *Pool) AddDisk(ctx context.Context, dir string) error {
	if err := p.adminCheck("add disk"); err != nil {
		return err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	st := p.st.Load()
	root, err := p.newMemberDir(st, dir)
	if err != nil {
		return fmt.Errorf("pool: add disk %s: %w", dir, err)
	}
	n := len(st.cur.Members) + 1
	k, m, err := layoutFor(n, grownParity(st.cur.Parity, n))
	if err != nil {
		return fmt.Errorf("pool: add disk %s: %w", dir, err)
	}
	u := newUUID()
	nl := layout{
		Generation: st.cur.Generation + 1,
		Created:    time.Now().UTC(),
		K:          k,
		M:          m,
		Parity:     st.cur.Parity,
		Members:    append(slices.Clone(st.cur.Members), member{Slot: u, Disk: u}),
	}
	if err := p.commitLayout(ctx, st, nl, root, u, ""); err != nil {
		return fmt.Errorf("pool: add disk %s: %w", dir, err)
	}
	p.log.Info("pool: added disk", "disk", u, "path", root, "layout", fmt.Sprintf("%d+%d", k, m), "generation", nl.Generation)
	return nil
}

// ReplaceDisk puts the empty folder dir in the place of member oldUUID
// (normally a missing disk): the new disk takes over its slot, so the
// shards that belonged on the old disk belong on the new one. Run Scrub
// with Repair afterwards to rebuild them.
func (p *Pool) ReplaceDisk(ctx context.Context, oldUUID string, dir string) error {
	if err := p.adminCheck("replace disk"); err != nil {
		return err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	st := p.st.Load()
	i := slices.IndexFunc(st.cur.Members, func(mb member) bool { return mb.Disk == oldUUID })
	if i < 0 {
		return fmt.Errorf("pool: replace disk %s: not a member of the pool", oldUUID)
	}
	root, err := p.newMemberDir(st, dir)
	if err != nil {
		return fmt.Errorf("pool: replace disk %s with %s: %w", oldUUID, dir, err)
	}
	if st.members[i].present() {
		p.log.Warn("pool: replacing a disk that is still present; its shards are no longer used", "disk", oldUUID, "path", st.members[i].root)
	}
	p.stopResync(oldUUID) // the new disk is rebuilt by scrub, not resynced
	u := newUUID()
	nl := *st.cur
	nl.Generation++
	nl.Created = time.Now().UTC()
	nl.Members = slices.Clone(st.cur.Members)
	nl.Members[i].Disk = u
	if err := p.commitLayout(ctx, st, nl, root, u, oldUUID); err != nil {
		return fmt.Errorf("pool: replace disk %s with %s: %w", oldUUID, dir, err)
	}
	p.log.Info("pool: replaced disk; scrub with repair to rebuild it", "old", oldUUID, "disk", u, "path", root, "generation", nl.Generation)
	return nil
}

func (p *Pool) adminCheck(op string) error {
	if p.closed.Load() {
		return fmt.Errorf("pool: %s: pool is closed", op)
	}
	if p.readOnly {
		return fmt.Errorf("pool: %s: %w", op, objstore.ErrReadOnly)
	}
	return nil
}

// newMemberDir checks that dir can become a new member.
func (p *Pool) newMemberDir(st *state, dir string) (string, error) {
	roots, err := absDirs([]string{dir})
	if err != nil {
		return "", err
	}
	root := roots[0]
	for _, d := range st.members {
		if d.root == root && d.attached() {
			return "", fmt.Errorf("%s is already a member", root)
		}
	}
	if err := checkEmpty(root); err != nil {
		return "", err
	}
	return root, nil
}

// commitLayout records layout nl, whose new member newUUID lives at
// root, on the new disk and every present member, and switches to it.
func (p *Pool) commitLayout(ctx context.Context, st *state, nl layout, root, newUUID, replaced string) error {
	if err := nl.validate(); err != nil {
		return err
	}
	file := *st.file
	file.Layouts = append(slices.Clone(st.file.Layouts), nl)
	file.Paths = map[string]string{}
	for d, path := range st.file.Paths {
		if d != replaced {
			file.Paths[d] = path
		}
	}
	file.Paths[newUUID] = root
	base := filepath.Join(root, poolDirName)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := objstore.MkdirAllSync(filepath.Join(base, tmpDirName)); err != nil {
		return err
	}
	if err := writePoolFile(base, &file, newUUID); err != nil {
		return err
	}
	byUUID := map[string]*disk{}
	for _, d := range st.members {
		byUUID[d.uuid] = d
	}
	ns := &state{file: &file, cur: &file.Layouts[len(file.Layouts)-1], total: maxTotal(file.Layouts)}
	for _, mb := range nl.Members {
		d := byUUID[mb.Disk]
		if d == nil {
			var err error
			if d, err = newDisk(mb, root, DiskOK); err != nil {
				return err
			}
		}
		ns.members = append(ns.members, d)
	}
	var errs []error
	for _, d := range ns.members {
		if d.uuid == newUUID || d.getState() == DiskMissing || d.getState() == DiskReadOnly {
			continue
		}
		if err := writePoolFile(d.base, &file, d.uuid); err != nil {
			errs = append(errs, d.fault("record layout", err))
		}
	}
	if len(errs) > 0 {
		p.log.Warn("pool: could not record the new layout on every disk; the next Open repairs it", "err", errors.Join(errs...))
	}
	p.st.Store(ns)
	return nil
}
