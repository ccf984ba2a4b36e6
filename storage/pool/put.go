package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/arkbox/arkbox/storage/objstore"
)

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
	p.opMu.RLock()
	defer p.opMu.RUnlock()
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
	// Members out of sync miss this write: record it before any of it
	// reaches a disk (Open completes a write whose temp files are
	// there, even after a crash).
	if err := p.journalMissed(st, opPut, kind, id); err != nil {
		return fmt.Errorf("pool: put %s/%s: %w", kind, id, err)
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
			if anyFull(st) {
				// Disks skipped because they are full: say so the
				// way a file system would.
				err = fmt.Errorf("%w: %w", errNoDisk, syscall.ENOSPC)
			}
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
		// A disk that vanished during the write misses it too.
		if err := p.journalMissed(st, opPut, kind, id); err != nil {
			p.log.Warn("pool: recording a missed write", "kind", kind, "object", id.String(), "err", err)
		}
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

// anyFull reports whether a member is full.
func anyFull(st *state) bool {
	for _, d := range st.members {
		if d.getState() == DiskFull {
			return true
		}
	}
	return false
}

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
	done, es := perDisk(byDisk, func(d *disk, i int) error {
		hdr := newHeader(kind, id, k, m, i, objLen, shards[i]).encode()
		tmp, err := d.writeTemp(ctx, kind, id, i, hdr, shards[i])
		tmps[i] = tmp
		return err
	})
	*errs = append(*errs, es...)
	var failed []int
	for _, i := range pending {
		if !slices.ContainsFunc(done, func(r repaired) bool { return r.index == i }) {
			failed = append(failed, i)
		}
	}
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
	done, es := perDisk(byDisk, func(d *disk, i int) error {
		err := d.commitTemp(kind, id, i, tmps[i])
		if err == nil {
			tmps[i] = ""
		}
		return err
	})
	*errs = append(*errs, es...)
	var out []int
	for _, r := range done {
		out = append(out, r.index)
	}
	sort.Ints(out)
	return out
}

// perDisk runs fn for every index of work on its disk, one goroutine per
// disk going through its indexes in order, and returns the pairs that
// succeeded and the errors of the others. fn must only touch what belongs
// to its own index.
func perDisk(work map[*disk][]int, fn func(d *disk, i int) error) (done []repaired, errs []error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for d, idxs := range work {
		wg.Go(func() {
			for _, i := range idxs {
				err := fn(d, i)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					done = append(done, repaired{d, i})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return done, errs
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
