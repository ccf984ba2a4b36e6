package pool

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/arkbox/arkbox/storage/objstore"
)

// found is one file found for an object by load.
type found struct {
	d       *disk
	index   int          // from the file name
	hdr     *shardHeader // nil when the header is unreadable
	payload []byte       // verified payload (load with payloads only)
	problem string       // empty for a good shard under its own name
	usable  bool         // a verified shard of this object (maybe misnamed)
}

// loaded is everything load found about one object.
type loaded struct {
	kind   objstore.Kind
	id     objstore.ID
	files  []*found
	group  groupKey
	have   []bool   // per shard index: some usable file holds it
	named  []bool   // per shard index: a good file under its own name holds it
	shards [][]byte // all k+m shards, reconstructed (payload loads only)
	data   []byte
}

func (l *loaded) distinct() int {
	n := 0
	for _, h := range l.have {
		if h {
			n++
		}
	}
	return n
}

// complete reports whether every shard is present under its own name
// with a good header.
func (l *loaded) complete() bool {
	if len(l.named) == 0 {
		return false
	}
	for _, f := range l.files {
		if f.problem != "" {
			return false
		}
	}
	for _, n := range l.named {
		if !n {
			return false
		}
	}
	return true
}

// problems lists what is wrong with the object's shards.
func (l *loaded) problems() []Problem {
	var ps []Problem
	for _, f := range l.files {
		if f.problem != "" {
			ps = append(ps, Problem{Kind: l.kind, ID: l.id, Shard: f.index, Disk: f.d.uuid, What: f.problem})
		}
	}
	for i, n := range l.named {
		if n {
			continue
		}
		listed := false
		for _, f := range l.files {
			listed = listed || f.index == i && f.problem != ""
		}
		if !listed {
			ps = append(ps, Problem{Kind: l.kind, ID: l.id, Shard: i, What: "missing"})
		}
	}
	return ps
}

func (l *loaded) summary() string {
	var s []string
	for _, p := range l.problems() {
		if p.Disk != "" {
			s = append(s, fmt.Sprintf("shard %d on disk %s: %s", p.Shard, p.Disk, p.What))
		} else {
			s = append(s, fmt.Sprintf("shard %d: %s", p.Shard, p.What))
		}
	}
	return strings.Join(s, "; ")
}

// load finds every file of (kind, id) on every present disk, verifies
// headers (and payloads when withPayload), picks the consistent shard set
// with the most shards and, with payloads, reconstructs all shards and
// checks the object against its id. It returns ErrNotFound when no file
// exists, and a non-nil *loaded with an error wrapping ErrCorrupt when the
// object cannot be read.
func (p *Pool) load(ctx context.Context, st *state, kind objstore.Kind, id objstore.ID, withPayload bool) (*loaded, error) {
	return p.loadIn(ctx, st, view{}, kind, id, withPayload)
}

// view is the members an operation sees: those present and in sync, plus,
// for a resync, the member being resynced (also).
type view struct{ also *disk }

func (v view) sees(d *disk) bool {
	if d == v.also {
		return d.attached()
	}
	return d.present()
}

func (v view) writable(d *disk, need int64) bool {
	if d == v.also {
		return d.canWrite(need)
	}
	return d.writable(need)
}

func (v view) disks(st *state) []*disk {
	var out []*disk
	for _, d := range st.members {
		if v.sees(d) {
			out = append(out, d)
		}
	}
	return out
}

// loadIn is load on the disks v sees.
func (p *Pool) loadIn(ctx context.Context, st *state, v view, kind objstore.Kind, id objstore.ID, withPayload bool) (*loaded, error) {
	l := &loaded{kind: kind, id: id}
	disks := v.disks(st)
	perDisk := make([][]*found, len(disks))
	var wg sync.WaitGroup
	for i, d := range disks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idx := 0; idx < st.total; idx++ {
				if ctx.Err() != nil {
					return
				}
				if f := loadFile(d, kind, id, idx, withPayload); f != nil {
					perDisk[i] = append(perDisk[i], f)
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, fs := range perDisk {
		l.files = append(l.files, fs...)
	}
	if len(l.files) == 0 {
		return nil, fmt.Errorf("pool: get %s/%s: %w", kind, id, objstore.ErrNotFound)
	}
	// Pick the group with the most distinct usable shards.
	counts := map[groupKey]map[int]bool{}
	for _, f := range l.files {
		if f.usable {
			g := f.hdr.group()
			if counts[g] == nil {
				counts[g] = map[int]bool{}
			}
			counts[g][f.hdr.index] = true
		}
	}
	if len(counts) == 0 {
		return l, fmt.Errorf("pool: get %s/%s: no readable shard (%s): %w", kind, id, l.summary(), objstore.ErrCorrupt)
	}
	best, bestN := groupKey{}, -1
	for g, c := range counts {
		if len(c) > bestN || len(c) == bestN && (g.k > best.k || g.k == best.k && g.m > best.m) {
			best, bestN = g, len(c)
		}
	}
	l.group = best
	total := best.k + best.m
	l.have, l.named = make([]bool, total), make([]bool, total)
	for _, f := range l.files {
		if !f.usable {
			continue
		}
		if f.hdr.group() != best {
			f.usable = false
			f.problem = fmt.Sprintf("stale shard of another write (k=%d m=%d length %d)", f.hdr.k, f.hdr.m, f.hdr.objLen)
			continue
		}
		l.have[f.hdr.index] = true
		if f.problem == "" {
			l.named[f.index] = true
		}
	}
	if n := l.distinct(); n < best.k {
		return l, fmt.Errorf("pool: get %s/%s: %d of %d shards readable, need %d (%s): %w",
			kind, id, n, total, best.k, l.summary(), objstore.ErrCorrupt)
	}
	if !withPayload {
		return l, nil
	}
	if err := p.reconstruct(l); err != nil {
		return l, err
	}
	return l, nil
}

// loadFile examines one possible shard file.
func loadFile(d *disk, kind objstore.Kind, id objstore.ID, idx int, withPayload bool) *found {
	s, err := d.openFile(kind, id, idx)
	if s == nil && err == nil {
		return nil
	}
	f := &found{d: d, index: idx}
	if err != nil {
		f.problem = "bad header: " + err.Error()
		return f
	}
	defer s.close()
	f.hdr = s.hdr
	if err := s.checkName(kind, id); err != nil {
		if s.hdr.kind != kind || s.hdr.id != id {
			f.problem = err.Error()
			return f
		}
		f.problem = fmt.Sprintf("misplaced: file holds shard %d", s.hdr.index)
	}
	if withPayload {
		buf := make([]byte, s.hdr.payloadLen)
		if err := s.readPayload(buf, 0); err != nil {
			f.problem = err.Error()
			return f
		}
		f.payload = buf
	}
	f.usable = true
	return f
}

// reconstruct fills l.shards with all k+m shards and l.data with the
// object, verified against its id.
func (p *Pool) reconstruct(l *loaded) error {
	k, m := l.group.k, l.group.m
	l.shards = make([][]byte, k+m)
	for _, f := range l.files {
		if f.usable && l.shards[f.hdr.index] == nil {
			l.shards[f.hdr.index] = f.payload
		}
	}
	missing := false
	for _, s := range l.shards {
		if s == nil {
			missing = true
		}
	}
	size := ceilDiv(l.group.objLen, int64(k))
	switch {
	case !missing:
	case k == 1 || size == 0:
		var src []byte
		for _, s := range l.shards {
			if s != nil {
				src = s
				break
			}
		}
		for i := range l.shards {
			if l.shards[i] == nil {
				l.shards[i] = src
			}
		}
	default:
		enc, err := p.encoder(k, m)
		if err != nil {
			return fmt.Errorf("pool: reconstruct %s/%s: %w", l.kind, l.id, err)
		}
		if err := enc.Reconstruct(l.shards); err != nil {
			return fmt.Errorf("pool: reconstruct %s/%s: %v: %w", l.kind, l.id, err, objstore.ErrCorrupt)
		}
	}
	if k == 1 {
		l.data = l.shards[0][:l.group.objLen]
	} else {
		l.data = make([]byte, l.group.objLen)
		for i := 0; i < k; i++ {
			lo := int64(i) * size
			if lo >= l.group.objLen {
				break
			}
			copy(l.data[lo:], l.shards[i])
		}
	}
	if objstore.Sum(l.data) != l.id {
		l.data = nil
		return fmt.Errorf("pool: get %s/%s: shards decode to data that does not match the id: %w", l.kind, l.id, objstore.ErrCorrupt)
	}
	return nil
}

// repaired is one shard file written by repair.
type repaired struct {
	d     *disk
	index int
}

// repair rewrites every shard of a loaded (with payloads) object that is
// not good under its own name, and removes bad, stale and misnamed files.
// A missing shard goes to the disk holding a bad file of that name, else
// to the first disk in rendezvous order (its predicted disk first) that is
// present, writable and holds no good shard of the object yet.
func (p *Pool) repair(ctx context.Context, st *state, l *loaded) (written, removed []repaired, err error) {
	return p.repairIn(ctx, st, view{}, l)
}

// repairIn is repair on the disks v sees.
func (p *Pool) repairIn(ctx context.Context, st *state, v view, l *loaded) (written, removed []repaired, err error) {
	k, m := l.group.k, l.group.m
	total := k + m
	single := len(st.members) == 1
	holders := map[*disk]bool{}
	for _, f := range l.files {
		if f.problem == "" && f.usable {
			holders[f.d] = true
		}
	}
	size := ceilDiv(l.group.objLen, int64(k))
	order := st.order(l.id)
	targets := map[int]*disk{}
	for idx := 0; idx < total; idx++ {
		if l.named[idx] {
			continue
		}
		var t *disk
		ok := func(d *disk) bool {
			return d != nil && v.sees(d) && (single || !holders[d]) && v.writable(d, size)
		}
		for _, f := range l.files {
			if f.index == idx && f.problem != "" && ok(f.d) {
				t = f.d
				break
			}
		}
		if t == nil && ok(predicted(order, idx)) {
			t = predicted(order, idx)
		}
		if t == nil {
			for _, d := range order {
				if ok(d) {
					t = d
					break
				}
			}
		}
		if t != nil {
			targets[idx] = t
			holders[t] = true
		}
	}
	if len(targets) > 0 && v.also == nil {
		// A repair while a member is out of sync may place shards
		// where that member's return makes them superfluous: record
		// it, so that the resync puts them right.
		if err := p.journalMissed(st, opPut, l.kind, l.id); err != nil {
			return nil, nil, fmt.Errorf("pool: repair %s/%s: %w", l.kind, l.id, err)
		}
	}
	var done []repaired
	var errs []error
	for idx, d := range targets {
		hdr := newHeader(l.kind, l.id, k, m, idx, l.group.objLen, l.shards[idx]).encode()
		if err := d.writeShard(ctx, l.kind, l.id, idx, hdr, l.shards[idx]); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, repaired{d, idx})
	}
	wrote := map[repaired]bool{}
	for _, r := range done {
		wrote[r] = true
	}
	for _, f := range l.files {
		if f.problem == "" || wrote[repaired{f.d, f.index}] {
			continue
		}
		// Keep a misnamed but good shard while its own name is not
		// restored anywhere.
		if f.usable && !l.named[f.hdr.index] && !writtenIndex(done, f.hdr.index) {
			continue
		}
		if err := f.d.removeShard(l.kind, l.id, f.index); err != nil {
			errs = append(errs, err)
		} else if err := objstore.SyncDir(f.d.objDir(l.kind, l.id)); err != nil {
			errs = append(errs, f.d.fault("sync dir", err))
		} else {
			removed = append(removed, repaired{f.d, f.index})
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i].index < done[j].index })
	return done, removed, errors.Join(errs...)
}

func writtenIndex(done []repaired, idx int) bool {
	for _, r := range done {
		if r.index == idx {
			return true
		}
	}
	return false
}

// repairObject loads (kind, id) under its lock and repairs it.
func (p *Pool) repairObject(ctx context.Context, kind objstore.Kind, id objstore.ID) (l *loaded, done, removed []repaired, err error) {
	p.opMu.RLock()
	defer p.opMu.RUnlock()
	unlock := p.lock(id)
	defer unlock()
	st := p.st.Load()
	l, err = p.load(ctx, st, kind, id, true)
	if err != nil {
		return l, nil, nil, err
	}
	if l.complete() {
		return l, nil, nil, nil
	}

	done, removed, err = p.repair(ctx, st, l)
	if len(done) > 0 {
		var shards []string
		for _, r := range done {
			shards = append(shards, fmt.Sprintf("%d→%s", r.index, r.d.uuid))
		}
		p.log.Info("pool: repaired object", "kind", kind, "object", id.String(), "shards", strings.Join(shards, " "), "problems", l.summary())
	}
	return l, done, removed, err
}
