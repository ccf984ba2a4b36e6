package pool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/arkbox/arkbox/storage/objstore"
)

// ErrVanished is wrapped by a resync that stopped because its disk went
// away again.
var ErrVanished = errors.New("disk vanished")

// Detach takes member uuid offline because its disk went away (or is about
// to): the pool stops reading and writing it, is degraded, and from now on
// records durably what the member misses, so that Reattach can bring it up
// to date. A resync of the member in progress stops. Detaching a member
// that is missing already does nothing.
func (p *Pool) Detach(uuid string, reason error) error {
	if err := p.adminCheck("detach disk " + uuid); err != nil && !errors.Is(err, objstore.ErrReadOnly) {
		return err
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	st := p.st.Load()
	d := st.member(uuid)
	if d == nil {
		return fmt.Errorf("pool: detach disk %s: not a member of the pool", uuid)
	}
	if !d.attached() {
		p.stopResync(uuid)
		return nil
	}
	if reason == nil {
		reason = errors.New("detached")
	}
	d.setMissing(reason)
	p.stopResync(uuid)
	if !p.readOnly {
		p.ensureJournals(st)
	}
	p.log.Warn("pool: disk detached; the pool is degraded until it returns", "disk", uuid, "path", d.root, "reason", reason,
		"missing", len(st.outOfSync()), "tolerated", tolerated(st.cur))
	return nil
}

// member returns the current member with that UUID, or nil.
func (st *state) member(uuid string) *disk {
	for _, d := range st.members {
		if d.uuid == uuid {
			return d
		}
	}
	return nil
}

// ensureJournals makes sure every in-sync disk holds a journal for every
// member that is out of sync (missing or resyncing), so that a resync
// finding none knows the journal was lost.
func (p *Pool) ensureJournals(st *state) {
	for _, m := range st.outOfSync() {
		for _, h := range st.inSync() {
			if err := h.createJournal(m.uuid, m.slot, 0, false); err != nil {
				p.log.Warn("pool: missed-writes journal", "disk", m.uuid, "on", h.uuid, "err", err)
			}
		}
	}
}

// Reattach brings member uuid back from the folder dir, after it went
// missing: dir must hold that member of this pool (its pool.json names
// this pool and that disk, and its layout history agrees). The member is
// then brought up to date in the background — the objects it missed are
// repaired onto it, those deleted meanwhile removed from it — while reads
// and writes keep leaving it alone until the resync ends. The returned
// Resync reports progress and the result.
func (p *Pool) Reattach(ctx context.Context, uuid, dir string) (*Resync, error) {
	if err := p.adminCheck("reattach disk " + uuid); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	roots, err := absDirs([]string{dir})
	if err != nil {
		return nil, fmt.Errorf("pool: reattach disk %s: %w", uuid, err)
	}
	root := roots[0]
	f, err := readPoolFile(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pool: reattach disk %s: %s holds no pool (no %s/%s)", uuid, root, poolDirName, poolFileName)
	}
	if err != nil {
		return nil, fmt.Errorf("pool: reattach disk %s: %w", uuid, err)
	}
	if f.Pool != p.id {
		return nil, fmt.Errorf("pool: reattach disk %s: %s belongs to pool %s, not to this pool %s", uuid, root, f.Pool, p.id)
	}
	if f.Disk != uuid {
		return nil, fmt.Errorf("pool: reattach disk %s: %s holds disk %s of the pool, not %s", uuid, root, f.Disk, uuid)
	}
	p.adminMu.Lock()
	defer p.adminMu.Unlock()
	st := p.st.Load()
	i := slices.IndexFunc(st.members, func(d *disk) bool { return d.uuid == uuid })
	if i < 0 {
		return nil, fmt.Errorf("pool: reattach disk %s: not a member of the current layout (generation %d)", uuid, st.cur.Generation)
	}
	if old := st.members[i]; old.attached() {
		return nil, fmt.Errorf("pool: reattach disk %s: attached already at %s", uuid, old.root)
	}
	hist := st.file.Layouts
	if len(f.Layouts) > len(hist) {
		return nil, fmt.Errorf("pool: reattach disk %s: %s knows layout generation %d, the pool only %d", uuid, root, len(f.Layouts), len(hist))
	}
	for g := range f.Layouts {
		if !f.Layouts[g].equal(&hist[g]) {
			return nil, fmt.Errorf("pool: reattach disk %s: %s disagrees about layout generation %d", uuid, root, g+1)
		}
	}
	for _, d := range st.members {
		if d.root == root && d.attached() {
			return nil, fmt.Errorf("pool: reattach disk %s: %s is disk %s already", uuid, root, d.uuid)
		}
	}
	nd, err := newDisk(st.cur.Members[i], root, DiskOK)
	if err != nil {
		return nil, fmt.Errorf("pool: reattach disk %s: %w", uuid, err)
	}
	nd.syncing = true
	if _, _, ro, err := statDisk(root); err == nil && ro {
		return nil, fmt.Errorf("pool: reattach disk %s: %s is mounted read-only", uuid, root)
	}
	file := *st.file
	file.Paths = map[string]string{}
	for k, v := range st.file.Paths {
		file.Paths[k] = v
	}
	file.Paths[uuid] = root
	if err := writePoolFile(nd.base, &file, uuid); err != nil {
		return nil, fmt.Errorf("pool: reattach disk %s: %w", uuid, nd.fault("update pool.json", err))
	}
	ns := &state{file: &file, cur: &file.Layouts[len(file.Layouts)-1], total: st.total,
		members: slices.Clone(st.members)}
	ns.members[i] = nd
	p.st.Store(ns)
	p.log.Info("pool: disk returned; resyncing it", "disk", uuid, "path", root)
	return p.startResync(nd), nil
}

// Resync is a resync of one member in progress or ended.
type Resync struct {
	disk   string
	done   chan struct{}
	cancel context.CancelFunc

	mu   sync.Mutex
	prog ResyncProgress
	rep  ResyncReport
	err  error
}

// ResyncProgress is how far a resync has come.
type ResyncProgress struct {
	// Full: the journal was lost or overflowed, so every object is
	// checked (Done and Total count shard folders); otherwise Done and
	// Total count the journal's records.
	Full        bool
	Done, Total int64
	// Objects checked so far, Repaired of them changed; BytesWritten to
	// disks.
	Objects, Repaired int64
	BytesWritten      int64
}

// ResyncReport is the result of a resync.
type ResyncReport struct {
	Disk string
	// Full: every object was checked (the journal was lost or overflowed).
	Full bool
	// Objects checked; Repaired of them changed.
	Objects, Repaired int64
	// Shard files written (missing ones, or moved to where placement
	// wants them), removed (of objects deleted while the disk was away,
	// or left behind by a move) and moved.
	ShardsWritten, ShardsRemoved, ShardsMoved int64
	BytesWritten                              int64
	// Unrepairable lists objects that cannot be read back.
	Unrepairable []Unrepairable
	// Errors counts objects whose repair failed (the first is logged).
	Errors int64
}

// Disk returns the UUID of the member being resynced.
func (r *Resync) Disk() string { return r.disk }

// Done is closed when the resync ends.
func (r *Resync) Done() <-chan struct{} { return r.done }

// Progress reports how far the resync has come.
func (r *Resync) Progress() ResyncProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prog
}

// Wait waits for the resync to end and returns its report and error: nil
// when the member is in sync again, an error wrapping ErrVanished when its
// disk went away again, the context's error when the pool was closed.
func (r *Resync) Wait(ctx context.Context) (ResyncReport, error) {
	select {
	case <-r.done:
	case <-ctx.Done():
		return ResyncReport{}, ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rep, r.err
}

// Resyncs returns the latest resync of each member that had one since the
// pool was opened, running or ended — among them those Open started for
// members that returned while the pool was closed.
func (p *Pool) Resyncs() []*Resync {
	p.rsMu.Lock()
	defer p.rsMu.Unlock()
	var out []*Resync
	for _, r := range p.resyncs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Resync) int {
		if a.disk < b.disk {
			return -1
		}
		return 1
	})
	return out
}

func (p *Pool) startResync(d *disk) *Resync {
	ctx, cancel := context.WithCancel(p.ctx)
	r := &Resync{disk: d.uuid, done: make(chan struct{}), cancel: cancel}
	r.rep.Disk = d.uuid
	p.rsMu.Lock()
	if old := p.resyncs[d.uuid]; old != nil {
		old.cancel()
	}
	p.resyncs[d.uuid] = r
	p.rsMu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cancel()
		err := p.resync(ctx, d, r)
		if err != nil {
			p.log.Warn("pool: resync stopped", "disk", d.uuid, "err", err)
		}
		r.mu.Lock()
		r.err = err
		rep := r.rep
		r.mu.Unlock()
		if err == nil {
			p.log.Info("pool: disk resynced", "disk", d.uuid, "full", rep.Full, "objects", rep.Objects, "repaired", rep.Repaired,
				"shards_written", rep.ShardsWritten, "shards_removed", rep.ShardsRemoved, "shards_moved", rep.ShardsMoved,
				"unrepairable", len(rep.Unrepairable))
		}
		close(r.done)
	}()
	return r
}

func (p *Pool) stopResync(uuid string) {
	p.rsMu.Lock()
	defer p.rsMu.Unlock()
	if r := p.resyncs[uuid]; r != nil {
		r.cancel()
	}
}

// journalCopies reads, from every in-sync disk (present, writable or not),
// the journal records of x
// after the offsets in from (nil: from the start). It returns the union
// of the records (each object once), the new offsets, whether a full
// resync is needed, and whether any copy was found.
func (p *Pool) journalCopies(st *state, x *disk, from map[string]int64) ([]missedKey, map[string]int64, bool, bool) {
	seen := map[missedKey]bool{}
	var keys []missedKey
	offs := map[string]int64{}
	full, found := false, false
	for _, h := range st.present() {
		start := int64(0)
		if from != nil {
			o, ok := from[h.uuid]
			if !ok {
				continue // a disk that came into sync meanwhile
			}
			start = o
		}
		r, err := h.readJournal(x.uuid, x.slot, start, p.journalLimit)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				p.log.Warn("pool: missed-writes journal unusable", "disk", x.uuid, "on", h.uuid, "err", err)
			}
			continue
		}
		found = true
		full = full || r.full
		offs[h.uuid] = r.end
		for _, k := range r.keys {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	return keys, offs, full, found
}

// A resync catches up with the journal in rounds while writes go on; once
// a round leaves at most finalRecords new records, or after maxRounds, it
// holds writes back to handle the last ones.
const (
	finalRecords = 32
	maxRounds    = 20
)

// resync brings member x up to date: first the objects its journal names
// (or, when the journal is lost or overflowed, every object), then what
// was recorded meanwhile, until nothing is left; then, with writes held
// back for a moment, x is in sync again and its journals are removed.
func (p *Pool) resync(ctx context.Context, x *disk, r *Resync) error {
	st := p.st.Load()
	if err := clearTemps(x); err != nil {
		return fmt.Errorf("pool: resync disk %s: %w", x.uuid, err)
	}
	keys, offs, full, found := p.journalCopies(st, x, nil)
	if !found || full {
		why := "its journal overflowed or a full resync was pending"
		if !found {
			why = "no journal of what it missed was found"
		}
		p.log.Warn("pool: resyncing every object of the disk", "disk", x.uuid, "why", why)
		p.opMu.Lock()
		offs = map[string]int64{}
		for _, h := range st.inSync() {
			if err := h.createJournal(x.uuid, x.slot, journalFull, true); err != nil {
				p.log.Warn("pool: missed-writes journal", "disk", x.uuid, "on", h.uuid, "err", err)
				continue
			}
			offs[h.uuid] = journalHeaderLen
		}
		p.opMu.Unlock()
		r.mu.Lock()
		r.prog.Full, r.rep.Full = true, true
		r.prog.Total = int64(len(objstore.Kinds) * 256)
		r.mu.Unlock()
		if err := p.resyncAll(ctx, x, r); err != nil {
			return err
		}
		keys = nil
	} else {
		r.mu.Lock()
		r.prog.Total = int64(len(keys))
		r.mu.Unlock()
	}
	for round := 0; ; round++ {
		if err := p.resyncKeys(ctx, x, r, keys, !r.rep.Full); err != nil {
			return err
		}
		keys, offs, _, _ = p.journalCopies(p.st.Load(), x, offs)
		if len(keys) > finalRecords && round < maxRounds {
			continue
		}
		// Little is new (or writes keep coming as fast as the resync
		// handles them): hold writes back, handle what came last, and
		// switch x into sync.
		if err := p.resyncKeys(ctx, x, r, keys, !r.rep.Full); err != nil {
			return err
		}
		p.opMu.Lock()
		keys, _, _, _ = p.journalCopies(p.st.Load(), x, offs)
		err := p.resyncKeys(ctx, x, r, keys, !r.rep.Full)
		if err == nil {
			err = p.finishResync(x, r)
		}
		p.opMu.Unlock()
		return err
	}
}

// finishResync puts x back into sync and removes its journals — unless
// some object failed (an I/O error), then x is set missing, its journal
// kept. The caller holds opMu.
func (p *Pool) finishResync(x *disk, r *Resync) error {
	if !x.attached() {
		return fmt.Errorf("pool: resync disk %s: %w", x.uuid, ErrVanished)
	}
	st := p.st.Load()
	if st.member(x.uuid) != x {
		return fmt.Errorf("pool: resync disk %s: the disk was replaced or reattached meanwhile", x.uuid)
	}
	if n := r.rep.Errors; n > 0 {
		// Leave the journal for another try, and let Reattach make it.
		err := fmt.Errorf("pool: resync disk %s: %d objects failed; the disk stays out of the pool until it is reattached", x.uuid, n)
		x.setMissing(err)
		return err
	}
	x.setSyncing(false)
	for _, d := range st.members {
		if d.attached() {
			if err := d.removeJournal(x.uuid); err != nil {
				p.log.Warn("pool: remove missed-writes journal", "disk", x.uuid, "on", d.uuid, "err", err)
			}
		}
	}
	return nil
}

// resyncKeys resyncs the objects keys names.
func (p *Pool) resyncKeys(ctx context.Context, x *disk, r *Resync, keys []missedKey, deleteOrphans bool) error {
	for _, k := range keys {
		if err := p.resyncOne(ctx, x, r, k, deleteOrphans); err != nil {
			return err
		}
		r.mu.Lock()
		if !r.rep.Full {
			r.prog.Done++
			r.prog.Total = max(r.prog.Total, r.prog.Done)
		}
		r.mu.Unlock()
	}
	return nil
}

// resyncAll resyncs every object on x or on any in-sync disk, one shard
// folder at a time; objects found only on x are kept (repaired), since
// without a journal nothing says they were deleted.
func (p *Pool) resyncAll(ctx context.Context, x *disk, r *Resync) error {
	v := view{also: x}
	for _, kind := range objstore.Kinds {
		for prefix := 0; prefix < 256; prefix++ {
			pre := fmt.Sprintf("%02x", prefix)
			seen := map[objstore.ID]bool{}
			var keys []missedKey
			for _, d := range v.disks(p.st.Load()) {
				ents, err := os.ReadDir(filepath.Join(d.base, string(kind), pre))
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					err = d.fault("list "+string(kind)+"/"+pre, err)
					if d == x {
						return fmt.Errorf("pool: resync disk %s: %w", x.uuid, err)
					}
					continue
				}
				for _, e := range ents {
					id, _, ok := parseShardName(e.Name())
					if ok && !seen[id] {
						seen[id] = true
						keys = append(keys, missedKey{kind, id})
					}
				}
			}
			if err := p.resyncKeys(ctx, x, r, keys, false); err != nil {
				return err
			}
			r.mu.Lock()
			r.prog.Done++
			r.mu.Unlock()
		}
	}
	return nil
}

// resyncOne brings one object up to date on x: an object with no file on
// an in-sync disk was deleted while x was away (with deleteOrphans), so
// x's files of it go; otherwise missing shards are rebuilt and shards
// are moved to the disks placement wants them on.
func (p *Pool) resyncOne(ctx context.Context, x *disk, r *Resync, k missedKey, deleteOrphans bool) error {
	if p.resyncHook != nil {
		p.resyncHook(x.uuid, k.kind, k.id)
	}
	if err := p.stillThere(ctx, x); err != nil {
		return err
	}
	res, err := p.resyncObject(ctx, x, k, deleteOrphans)
	if err := p.stillThere(ctx, x); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.Objects++
	r.prog.Objects++
	r.rep.ShardsWritten += res.written
	r.rep.ShardsRemoved += res.removed
	r.rep.ShardsMoved += res.moved
	r.rep.BytesWritten += res.bytes
	r.prog.BytesWritten += res.bytes
	if res.written+res.removed > 0 {
		r.rep.Repaired++
		r.prog.Repaired++
	}
	switch {
	case err == nil:
	case errors.Is(err, objstore.ErrCorrupt):
		r.rep.Unrepairable = append(r.rep.Unrepairable, Unrepairable{Kind: k.kind, ID: k.id, Reason: err.Error()})
	default:
		if r.rep.Errors == 0 {
			p.log.Warn("pool: resync of an object failed", "disk", x.uuid, "kind", k.kind, "object", k.id.String(), "err", err)
		}
		r.rep.Errors++
	}
	return nil
}

// stillThere checks, before and after each object, that the resync may
// go on: x has not been detached or found gone (its pool.json must still
// be there: a folder left behind by a vanished disk must not be written
// to), and the pool is not closing.
func (p *Pool) stillThere(ctx context.Context, x *disk) error {
	if x.attached() {
		if _, err := os.Stat(filepath.Join(x.base, poolFileName)); err != nil {
			x.setMissing(err)
		}
	}
	if !x.attached() {
		return fmt.Errorf("pool: resync disk %s: %w", x.uuid, ErrVanished)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pool: resync disk %s: %w", x.uuid, err)
	}
	return nil
}

// resynced is what resyncObject did.
type resynced struct {
	written, removed, moved, bytes int64
}

func (p *Pool) resyncObject(ctx context.Context, x *disk, k missedKey, deleteOrphans bool) (resynced, error) {
	var res resynced
	unlock := p.lock(k.id)
	defer unlock()
	st := p.st.Load()
	v := view{also: x}
	l, err := p.loadIn(ctx, st, v, k.kind, k.id, false)
	if errors.Is(err, objstore.ErrNotFound) {
		return res, nil
	}
	if l == nil {
		return res, err
	}
	inSync := false
	for _, f := range l.files {
		inSync = inSync || f.d != x
	}
	// Without a journal, an object only x holds and cannot be read from
	// it alone, while every other member is there, is what a delete left
	// behind: x's files of it go too.
	remnant := !inSync && errors.Is(err, objstore.ErrCorrupt) && len(st.outOfSync()) == 1
	if !inSync && (deleteOrphans || remnant) {
		// Deleted while x was away.
		for _, f := range l.files {
			if err := x.removeShard(k.kind, k.id, f.index); err != nil {
				return res, err
			}
			res.removed++
		}
		if err := objstore.SyncDir(x.objDir(k.kind, k.id)); err != nil {
			return res, x.fault("sync dir", err)
		}
		return res, nil
	}
	if err == nil && l.complete() && !misplaced(st, v, l) {
		return res, nil
	}
	full, err := p.loadIn(ctx, st, v, k.kind, k.id, true)
	if err != nil {
		return res, err
	}
	// First every shard goes where placement wants it, then what is
	// still wrong is repaired, and only then are the copies elsewhere
	// removed: a crash or a failing disk at any point leaves at least
	// as much redundancy as before.
	if err := p.placeShards(ctx, st, v, full, &res); err != nil {
		return res, err
	}
	if l, err = p.loadIn(ctx, st, v, k.kind, k.id, true); err != nil {
		return res, err
	}
	if !l.complete() {
		written, removed, err := p.repairIn(ctx, st, v, l)
		res.written += int64(len(written))
		res.removed += int64(len(removed))
		for _, w := range written {
			res.bytes += int64(len(l.shards[w.index]))
		}
		if err != nil {
			return res, err
		}
		if l, err = p.loadIn(ctx, st, v, k.kind, k.id, false); err != nil {
			return res, err
		}
	}
	err = p.removeMisplaced(st, v, l, &res)
	return res, err
}

// goodFiles returns the files of l that are good shards under their own
// name.
func goodFiles(l *loaded) []*found {
	var out []*found
	for _, f := range l.files {
		if f.problem == "" && f.usable {
			out = append(out, f)
		}
	}
	return out
}

// misplaced reports whether a good shard of l is not on the disk
// placement predicts for it although that disk is there.
func misplaced(st *state, v view, l *loaded) bool {
	order := st.order(l.id)
	if len(order) == 1 {
		return false
	}
	for _, f := range goodFiles(l) {
		if want := predicted(order, f.index); want != nil && want != f.d && v.sees(want) {
			return true
		}
	}
	return false
}

// placeShards writes every shard of l (loaded with payloads) to the disk
// placement predicts for it, where that disk is there, can take it and
// holds no good copy of it yet. A write placed elsewhere while a disk was
// missing, or a shard missing everywhere, goes back this way.
func (p *Pool) placeShards(ctx context.Context, st *state, v view, l *loaded, res *resynced) error {
	order := st.order(l.id)
	if len(order) == 1 {
		return nil
	}
	at := map[repaired]bool{}
	for _, f := range goodFiles(l) {
		at[repaired{f.d, f.index}] = true
	}
	g := l.group
	size := ceilDiv(g.objLen, int64(g.k))
	for idx := range g.k + g.m {
		want := predicted(order, idx)
		if want == nil || at[repaired{want, idx}] || !v.sees(want) || !v.writable(want, size) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr := newHeader(l.kind, l.id, g.k, g.m, idx, g.objLen, l.shards[idx]).encode()
		if err := want.writeShard(ctx, l.kind, l.id, idx, hdr, l.shards[idx]); err != nil {
			return err
		}
		res.written++
		res.bytes += int64(len(l.shards[idx]))
		if l.have[idx] {
			res.moved++
		}
	}
	return nil
}

// removeMisplaced removes the good shard files of l that are not on the
// disk placement predicts for them while that disk holds a good copy.
func (p *Pool) removeMisplaced(st *state, v view, l *loaded, res *resynced) error {
	order := st.order(l.id)
	if len(order) == 1 {
		return nil
	}
	good := goodFiles(l)
	at := map[repaired]bool{}
	for _, f := range good {
		at[repaired{f.d, f.index}] = true
	}
	for _, f := range good {
		want := predicted(order, f.index)
		if want == nil || want == f.d || !at[repaired{want, f.index}] {
			continue
		}
		if err := p.removeMoved(f, l); err != nil {
			return err
		}
		res.removed++
	}
	return nil
}

func (p *Pool) removeMoved(f *found, l *loaded) error {
	if err := f.d.removeShard(l.kind, l.id, f.index); err != nil {
		return err
	}
	if err := objstore.SyncDir(f.d.objDir(l.kind, l.id)); err != nil {
		return f.d.fault("sync dir", err)
	}
	return nil
}

// clearTemps removes the temp files a disk that vanished was left with:
// no write has used it since, so none of them is wanted.
func clearTemps(d *disk) error {
	dir := filepath.Join(d.base, tmpDirName)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return d.fault("clear temp files", err)
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return d.fault("clear temp files", err)
		}
	}
	return nil
}
