package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
		if !n {
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
	l := &loaded{kind: kind, id: id}
	disks := st.present()
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
			return d != nil && d.present() && (single || !holders[d]) && d.writable(size)
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

// Put implements objstore.Store. Shards are first written to temp files
// on every target disk and fsynced, and only then renamed into place, so
// a crash leaves either no shard in place or a set that Open completes.
func (p *Pool) Put(ctx context.Context, kind objstore.Kind, id objstore.ID, data []byte) error {
	if err := p.check("put", kind); err != nil {
		return err
	}
	if p.readOnly {
		return fmt.Errorf("pool: put %s/%s: %w", kind, id, objstore.ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if int64(len(data)) > MaxObjectSize {
		return fmt.Errorf("pool: put %s/%s: %d bytes exceeds the maximum object size %d", kind, id, len(data), int64(MaxObjectSize))
	}
	if objstore.Sum(data) != id {
		return fmt.Errorf("pool: put %s/%s: %w", kind, id, objstore.ErrIDMismatch)
	}
	unlock := p.lock(id)
	defer unlock()
	st := p.st.Load()
	old, err := p.load(ctx, st, kind, id, false)
	if err != nil && !errors.Is(err, objstore.ErrNotFound) && !errors.Is(err, objstore.ErrCorrupt) {
		return err
	}
	if old != nil && old.complete() {
		return nil
	}
	k, m := st.cur.K, st.cur.M
	if len(data) < SmallObjectSize {
		k = 1
	}
	total := k + m
	shards, err := p.encode(data, k, m)
	if err != nil {
		return fmt.Errorf("pool: put %s/%s: %w", kind, id, err)
	}
	size := ceilDiv(int64(len(data)), int64(k))
	order := st.order(id)
	single := len(order) == 1
	targets := make([]*disk, total)
	used := map[*disk]bool{}
	next := func() *disk {
		for _, d := range order {
			if !used[d] && d.writable(size) {
				used[d] = true
				return d
			}
		}
		return nil
	}
	if single {
		if order[0].writable(size * int64(total)) {
			for i := range targets {
				targets[i] = order[0]
			}
		}
	} else {
		for i := range targets {
			targets[i] = next()
		}
	}
	tmps := make([]string, total)
	var errs []error
	// Phase 1: temp files, fsynced, one goroutine per disk; a shard
	// whose disk fails moves to the next unused disk in the order.
	pending := make([]int, 0, total)
	for i := range targets {
		if targets[i] != nil {
			pending = append(pending, i)
		}
	}
	for len(pending) > 0 {
		failed := p.writeTemps(ctx, kind, id, k, m, int64(len(data)), shards, targets, pending, tmps, &errs)
		if ctx.Err() != nil || single {
			break
		}
		pending = pending[:0]
		for _, i := range failed {
			if d := next(); d != nil {
				targets[i] = d
				pending = append(pending, i)
			}
		}
	}
	removeTemps := func() {
		for _, t := range tmps {
			if t != "" {
				os.Remove(t)
			}
		}
	}
	ok := 0
	for _, t := range tmps {
		if t != "" {
			ok++
		}
	}
	if err := ctx.Err(); err != nil {
		removeTemps()
		return fmt.Errorf("pool: put %s/%s: %w", kind, id, err)
	}
	if ok < k {
		removeTemps()
		err := errors.Join(errs...)
		if err == nil {
			err = errNoDisk
		}
		return fmt.Errorf("pool: put %s/%s: wrote %d of %d shards, need %d%s: %w",
			kind, id, ok, total, k, unavailable(st), err)
	}
	// Phase 2: rename into place.
	committed := p.commitTemps(kind, id, targets, tmps, &errs)
	if len(committed) < k {
		for _, i := range committed {
			targets[i].removeShard(kind, id, i)
		}
		removeTemps()
		return fmt.Errorf("pool: put %s/%s: committed %d of %d shards, need %d: %w", kind, id, len(committed), total, k, errors.Join(errs...))
	}
	if len(committed) < total {
		p.log.Warn("pool: object written without full redundancy; scrub will complete it",
			"kind", kind, "object", id.String(), "shards", len(committed), "of", total, "unavailable", unavailable(st), "errors", errors.Join(errs...))
	}
	if old != nil {
		p.dropSuperseded(kind, id, old, groupKey{k, m, int64(len(data))}, targets, committed)
	}
	return nil
}

// errNoDisk: too few disks could take a write.
var errNoDisk = errors.New("not enough writable disks")

// unavailable describes the disks that cannot take writes.
func unavailable(st *state) string {
	var s []string
	for _, d := range st.members {
		if st := d.getState(); st != DiskOK {
			s = append(s, fmt.Sprintf("%s is %s", d, st))
		}
	}
	if len(s) == 0 {
		return ""
	}
	return " (" + strings.Join(s, ", ") + ")"
}

// encode cuts data into k data shards (the last one zero-padded) and m
// parity shards. Data shards alias data where they can.
func (p *Pool) encode(data []byte, k, m int) ([][]byte, error) {
	L := int64(len(data))
	size := ceilDiv(L, int64(k))
	shards := make([][]byte, k+m)
	for i := 0; i < k; i++ {
		lo := min(int64(i)*size, L)
		hi := min(lo+size, L)
		if hi-lo == size {
			shards[i] = data[lo:hi:hi]
		} else {
			b := make([]byte, size)
			copy(b, data[lo:hi])
			shards[i] = b
		}
	}
	if k == 1 || size == 0 {
		for i := k; i < k+m; i++ {
			shards[i] = shards[0]
		}
		return shards, nil
	}
	for i := k; i < k+m; i++ {
		shards[i] = make([]byte, size)
	}
	enc, err := p.encoder(k, m)
	if err != nil {
		return nil, err
	}
	if err := enc.Encode(shards); err != nil {
		return nil, err
	}
	return shards, nil
}

// writeTemps writes the pending shards to temp files on their targets,
// one goroutine per disk, and returns the indexes that failed.
func (p *Pool) writeTemps(ctx context.Context, kind objstore.Kind, id objstore.ID, k, m int, objLen int64,
	shards [][]byte, targets []*disk, pending []int, tmps []string, errs *[]error) []int {
	byDisk := map[*disk][]int{}
	for _, i := range pending {
		byDisk[targets[i]] = append(byDisk[targets[i]], i)
	}
	var mu sync.Mutex
	var failed []int
	var wg sync.WaitGroup
	for d, idxs := range byDisk {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range idxs {
				hdr := newHeader(kind, id, k, m, i, objLen, shards[i]).encode()
				tmp, err := d.writeTemp(ctx, kind, id, i, hdr, shards[i])
				mu.Lock()
				if err != nil {
					failed = append(failed, i)
					*errs = append(*errs, err)
				} else {
					tmps[i] = tmp
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Ints(failed)
	return failed
}

// commitTemps renames the written temp files into place, one goroutine
// per disk, and returns the committed indexes.
func (p *Pool) commitTemps(kind objstore.Kind, id objstore.ID, targets []*disk, tmps []string, errs *[]error) []int {
	byDisk := map[*disk][]int{}
	for i, t := range tmps {
		if t != "" {
			byDisk[targets[i]] = append(byDisk[targets[i]], i)
		}
	}
	var mu sync.Mutex
	var done []int
	var wg sync.WaitGroup
	for d, idxs := range byDisk {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range idxs {
				err := d.commitTemp(kind, id, i, tmps[i])
				mu.Lock()
				if err != nil {
					*errs = append(*errs, err)
				} else {
					done = append(done, i)
					tmps[i] = ""
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Ints(done)
	return done
}

// dropSuperseded removes files of an earlier, incomplete write of the
// object that the new shard set replaces.
func (p *Pool) dropSuperseded(kind objstore.Kind, id objstore.ID, old *loaded, g groupKey, targets []*disk, committed []int) {
	at := map[repaired]bool{}
	wrote := map[int]bool{}
	for _, i := range committed {
		at[repaired{targets[i], i}] = true
		wrote[i] = true
	}
	for _, f := range old.files {
		if at[repaired{f.d, f.index}] {
			continue
		}
		good := f.problem == "" && f.usable && f.hdr.group() == g
		if good && !wrote[f.index] {
			continue
		}
		if err := f.d.removeShard(kind, id, f.index); err != nil {
			p.log.Warn("pool: removing superseded shard", "kind", kind, "object", id.String(), "shard", f.index, "err", err)
		}
	}
}

// locate finds a good file of shard index under its own name, trying the
// predicted disk first and then every other present disk. bad reports
// whether a bad file was seen on the way.
func (p *Pool) locate(st *state, order []*disk, kind objstore.Kind, id objstore.ID, index int) (s *shardFile, bad bool) {
	first := predicted(order, index)
	try := func(d *disk) *shardFile {
		if d == nil || !d.present() {
			return nil
		}
		s, err := d.openShard(kind, id, index)
		if err != nil {
			bad = true
		}
		return s
	}
	if s := try(first); s != nil {
		return s, bad
	}
	for _, d := range order {
		if d != first {
			if s := try(d); s != nil {
				return s, bad
			}
		}
	}
	return nil, bad
}

// Get implements objstore.Store. When all data shards are good it reads
// only them; otherwise it reads every shard, reconstructs, and (unless the
// pool is read-only) rewrites what was bad.
func (p *Pool) Get(ctx context.Context, kind objstore.Kind, id objstore.ID) ([]byte, error) {
	if err := p.check("get", kind); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st := p.st.Load()
	if data, ok := p.getFast(ctx, st, kind, id); ok {
		return data, nil
	}
	return p.getSlow(ctx, st, kind, id)
}

// getFast reads the k data shards where they are expected and returns
// false on any anomaly.
func (p *Pool) getFast(ctx context.Context, st *state, kind objstore.Kind, id objstore.ID) ([]byte, bool) {
	order := st.order(id)
	s0, bad := p.locate(st, order, kind, id, 0)
	if s0 == nil || bad {
		if s0 != nil {
			s0.close()
		}
		return nil, false
	}
	h := s0.hdr
	k, size := h.k, h.payloadLen
	out := make([]byte, int64(k)*size)
	files := make([]*shardFile, k)
	files[0] = s0
	okAll := true
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < k; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := files[i]
			if s == nil {
				var bad bool
				s, bad = p.locate(st, order, kind, id, i)
				if s == nil || bad || s.hdr.group() != h.group() {
					if s != nil {
						s.close()
					}
					mu.Lock()
					okAll = false
					mu.Unlock()
					return
				}
			}
			defer s.close()
			if ctx.Err() != nil || s.readPayload(out[int64(i)*size:int64(i+1)*size], 0) != nil {
				mu.Lock()
				okAll = false
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if !okAll {
		return nil, false
	}
	out = out[:h.objLen]
	if objstore.Sum(out) != id {
		return nil, false
	}
	return out, true
}

// getSlow reads every shard, reconstructs and repairs.
func (p *Pool) getSlow(ctx context.Context, st *state, kind objstore.Kind, id objstore.ID) ([]byte, error) {
	if p.readOnly {
		l, err := p.load(ctx, st, kind, id, true)
		if err != nil {
			return nil, err
		}
		return l.data, nil
	}
	l, _, _, err := p.repairObject(ctx, kind, id)
	if l != nil && l.data != nil {
		if err != nil {
			p.log.Warn("pool: read repair failed", "kind", kind, "object", id.String(), "err", err)
		}
		return l.data, nil
	}
	return nil, err
}

// anyHeader returns the header of some good shard of (kind, id),
// preferring one under its own name. sawBad reports whether a bad or
// misnamed file was seen on the way.
func (p *Pool) anyHeader(st *state, order []*disk, kind objstore.Kind, id objstore.ID) (h *shardHeader, sawBad bool, err error) {
	var fallback *shardHeader
	for idx := 0; idx < st.total; idx++ {
		s, bad := p.locate(st, order, kind, id, idx)
		sawBad = sawBad || bad
		if s != nil {
			s.close()
			return s.hdr, sawBad, nil
		}
		if bad && fallback == nil {
			// A misnamed file of this object still tells its size.
			for _, d := range order {
				if !d.present() {
					continue
				}
				if f, _ := d.openFile(kind, id, idx); f != nil {
					f.close()
					if f.hdr.kind == kind && f.hdr.id == id {
						fallback = f.hdr
						break
					}
				}
			}
		}
	}
	if fallback != nil {
		return fallback, true, nil
	}
	if sawBad {
		return nil, true, fmt.Errorf("pool: %s/%s: no shard with a good header: %w", kind, id, objstore.ErrCorrupt)
	}
	return nil, false, fmt.Errorf("pool: %s/%s: %w", kind, id, objstore.ErrNotFound)
}

// GetRange implements objstore.Store. It reads only the checksum blocks
// of the data shards that cover the range; a bad or missing shard is
// reconstructed for those blocks only from k other shards, and the object
// is then repaired unless the pool is read-only.
func (p *Pool) GetRange(ctx context.Context, kind objstore.Kind, id objstore.ID, off, n int64) ([]byte, error) {
	if err := p.check("get range", kind); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("pool: get range %s/%s [%d,+%d): %w", kind, id, off, n, objstore.ErrRange)
	}
	st := p.st.Load()
	order := st.order(id)
	h, sawBad, err := p.anyHeader(st, order, kind, id)
	if err != nil {
		if errors.Is(err, objstore.ErrCorrupt) {
			// Every header we tried is bad: let a full load decide.
			data, err := p.getSlow(ctx, st, kind, id)
			if err != nil {
				return nil, err
			}
			return sliceRange(kind, id, data, off, n)
		}
		return nil, err
	}
	if off > h.objLen || n > h.objLen-off {
		return nil, fmt.Errorf("pool: get range %s/%s [%d,+%d) of %d bytes: %w", kind, id, off, n, h.objLen, objstore.ErrRange)
	}
	out := make([]byte, n)
	if n == 0 {
		return out, nil
	}
	size, bs := h.payloadLen, h.blockSize()
	reconstructed := false
	for i := off / size; i < int64(h.k) && i*size < off+n; i++ {
		// Payload range [a, b) of shard i, widened to blocks [ba, bb).
		a := max(off, i*size) - i*size
		b := min(off+n, (i+1)*size) - i*size
		ba := a / bs * bs
		bb := min(ceilDiv(b, bs)*bs, size)
		buf := make([]byte, bb-ba)
		s, bad := p.locate(st, order, kind, id, int(i))
		sawBad = sawBad || bad
		okShard := s != nil && s.hdr.group() == h.group()
		if okShard {
			if err := s.readPayload(buf, ba); err != nil {
				sawBad, okShard = true, false
			}
		}
		if s != nil {
			s.close()
		}
		if !okShard {
			if err := p.rangeReconstruct(ctx, st, order, kind, id, h, int(i), ba, buf); err != nil {
				data, err := p.getSlow(ctx, st, kind, id)
				if err != nil {
					return nil, err
				}
				return sliceRange(kind, id, data, off, n)
			}
			reconstructed = true
		}
		copy(out[i*size+a-off:], buf[a-ba:b-ba])
	}
	if (sawBad || reconstructed && !anyMissing(st)) && !p.readOnly {
		if _, _, _, err := p.repairObject(ctx, kind, id); err != nil {
			p.log.Warn("pool: read repair failed", "kind", kind, "object", id.String(), "err", err)
		}
	}
	return out, nil
}

func anyMissing(st *state) bool {
	for _, d := range st.members {
		if !d.present() {
			return true
		}
	}
	return false
}

func sliceRange(kind objstore.Kind, id objstore.ID, data []byte, off, n int64) ([]byte, error) {
	L := int64(len(data))
	if off > L || n > L-off {
		return nil, fmt.Errorf("pool: get range %s/%s [%d,+%d) of %d bytes: %w", kind, id, off, n, L, objstore.ErrRange)
	}
	return data[off : off+n : off+n], nil
}

// rangeReconstruct rebuilds payload bytes [ba, ba+len(buf)) of data
// shard i from the same bytes of k other shards.
func (p *Pool) rangeReconstruct(ctx context.Context, st *state, order []*disk, kind objstore.Kind, id objstore.ID,
	h *shardHeader, i int, ba int64, buf []byte) error {
	k, m := h.k, h.m
	shards := make([][]byte, k+m)
	got := 0
	for j := 0; j < k+m && got < k; j++ {
		if j == i {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		s, _ := p.locate(st, order, kind, id, j)
		if s == nil {
			continue
		}
		if s.hdr.group() == h.group() {
			b := make([]byte, len(buf))
			if s.readPayload(b, ba) == nil {
				shards[j] = b
				got++
			}
		}
		s.close()
	}
	if got < k {
		return fmt.Errorf("pool: get range %s/%s: %d good shards, need %d: %w", kind, id, got, k, objstore.ErrCorrupt)
	}
	if k == 1 {
		for _, s := range shards {
			if s != nil {
				copy(buf, s)
				return nil
			}
		}
	}
	enc, err := p.encoder(k, m)
	if err != nil {
		return err
	}
	shards[i] = buf[:0]
	required := make([]bool, k)
	required[i] = true
	if err := enc.ReconstructSome(shards, required); err != nil {
		return fmt.Errorf("pool: get range %s/%s: %v: %w", kind, id, err, objstore.ErrCorrupt)
	}
	if &shards[i][0] != &buf[0] {
		copy(buf, shards[i])
	}
	return nil
}

// Stat implements objstore.Store. It reads one shard header.
func (p *Pool) Stat(ctx context.Context, kind objstore.Kind, id objstore.ID) (objstore.Info, error) {
	if err := p.check("stat", kind); err != nil {
		return objstore.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return objstore.Info{}, err
	}
	st := p.st.Load()
	h, _, err := p.anyHeader(st, st.order(id), kind, id)
	if err != nil {
		return objstore.Info{}, fmt.Errorf("pool: stat: %w", err)
	}
	return objstore.Info{Kind: kind, ID: id, Size: h.objLen}, nil
}

// List implements objstore.Store. It reads the shard directories of all
// present disks one prefix at a time, and one shard header per object.
func (p *Pool) List(ctx context.Context, kind objstore.Kind, fn func(objstore.Info) error) error {
	if err := p.check("list", kind); err != nil {
		return err
	}
	st := p.st.Load()
	disks := st.present()
	for prefix := 0; prefix < 256; prefix++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		pre := fmt.Sprintf("%02x", prefix)
		type cand struct {
			d   *disk
			idx int
		}
		cands := map[objstore.ID][]cand{}
		var ids []objstore.ID
		readable := 0
		var lastErr error
		for _, d := range disks {
			ents, err := os.ReadDir(filepath.Join(d.base, string(kind), pre))
			if err != nil && !os.IsNotExist(err) {
				lastErr = d.fault("list "+string(kind)+"/"+pre, err)
				continue
			}
			readable++
			for _, e := range ents {
				id, idx, ok := parseShardName(e.Name())
				if !ok || !e.Type().IsRegular() || id.String()[:2] != pre {
					continue
				}
				if cands[id] == nil {
					ids = append(ids, id)
				}
				cands[id] = append(cands[id], cand{d, idx})
			}
		}
		if readable == 0 && lastErr != nil {
			return fmt.Errorf("pool: list %s: %w", kind, lastErr)
		}
		for _, id := range ids {
			var size int64 = -1
			for _, c := range cands[id] {
				s, _ := c.d.openShard(kind, id, c.idx)
				if s != nil {
					size = s.hdr.objLen
					s.close()
					break
				}
			}
			if size < 0 {
				p.log.Warn("pool: list: object has no shard with a good header", "kind", kind, "object", id.String())
				continue
			}
			if err := fn(objstore.Info{Kind: kind, ID: id, Size: size}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements objstore.Store. It removes every shard file of the
// object on every present disk; shards on missing disks stay (scrub
// reports them when the disk returns).
func (p *Pool) Delete(ctx context.Context, kind objstore.Kind, id objstore.ID) error {
	if err := p.check("delete", kind); err != nil {
		return err
	}
	if p.readOnly {
		return fmt.Errorf("pool: delete %s/%s: %w", kind, id, objstore.ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock := p.lock(id)
	defer unlock()
	st := p.st.Load()
	removed := 0
	var errs []error
	for _, d := range st.present() {
		dirty := false
		for idx := 0; idx < st.total; idx++ {
			err := os.Remove(d.shardPath(kind, id, idx))
			if err == nil {
				removed++
				dirty = true
			} else if !os.IsNotExist(err) {
				errs = append(errs, d.fault(fmt.Sprintf("delete shard %d of %s/%s", idx, kind, id), err))
			}
		}
		if dirty {
			if err := objstore.SyncDir(d.objDir(kind, id)); err != nil {
				errs = append(errs, d.fault("sync dir", err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("pool: delete %s/%s: %w", kind, id, errors.Join(errs...))
	}
	if removed == 0 {
		return fmt.Errorf("pool: delete %s/%s: %w", kind, id, objstore.ErrNotFound)
	}
	if anyMissing(st) {
		p.log.Warn("pool: deleted object while disks are missing; their shards of it remain", "kind", kind, "object", id.String())
	}
	return nil
}
