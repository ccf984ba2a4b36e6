// Package pool stores objects erasure-coded across a set of disks: each
// object is cut into k data shards plus m parity shards (small objects are
// replicated instead), each shard file goes to a different disk chosen by
// rendezvous hashing, and every shard carries checksums so corruption is
// found, reconstructed and rewritten, never served.
//
// The on-disk layout and shard format are specified in doc/pool.md.
package pool

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/klauspost/reedsolomon"
)

const (
	// SmallObjectSize is the size below which objects are replicated
	// (m+1 full copies) instead of striped.
	SmallObjectSize = 64 << 10
	// inDiskData is k of a one-disk pool with in-disk parity.
	inDiskData = 4
	// objLocks is the number of object lock stripes.
	objLocks = 64
)

// CreateOptions tunes Create.
type CreateOptions struct {
	// Parity is the number of parity shards m; -1 picks the default for
	// the disk count (see doc/pool.md). With one disk, Parity > 0 stores
	// 4 data + Parity parity shard files on that disk, against bad sectors.
	Parity int
	// Logger receives warnings; nil means slog.Default().
	Logger *slog.Logger
}

// OpenOptions tunes Open.
type OpenOptions struct {
	// ReadOnly opens the pool without writing anything: no read repair,
	// no stale temp file removal, Put and Delete fail with ErrReadOnly.
	ReadOnly bool
	// Logger receives warnings and repair notices; nil means slog.Default().
	Logger *slog.Logger
}

// Pool is an erasure-coded objstore.Store over a set of disk folders.
// It is safe for concurrent use.
type Pool struct {
	id       string
	readOnly bool
	log      *slog.Logger

	st      atomic.Pointer[state]
	adminMu sync.Mutex // serializes layout changes
	locks   [objLocks]sync.Mutex
	closed  atomic.Bool

	encMu sync.Mutex
	encs  map[[2]int]reedsolomon.Encoder

	// opMu: Put, Delete and repairs hold it shared; a resync holds it
	// for the moment it switches its disk back into sync.
	opMu sync.RWMutex
	// journalLimit is the number of records a missed-writes journal
	// holds (defaultJournalLimit; tests lower it).
	journalLimit int
	// ctx ends when the pool is closed; resyncs run under it (wg).
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	rsMu   sync.Mutex
	// resyncs: the latest resync of each disk, by UUID.
	// resyncs in progress, by disk UUID.
	resyncs map[string]*Resync
	// resyncHook, if set (tests), is called before each object a
	// resync handles.
	resyncHook func(disk string, kind objstore.Kind, id objstore.ID)
}

var _ objstore.Store = (*Pool)(nil)

// state is an immutable snapshot of the pool's layout and members; disks
// carry their own mutable health.
type state struct {
	file    *poolFile // history and last known paths
	cur     *layout
	members []*disk // current layout members, in layout order
	total   int     // no shard index reaches this
}

// order returns the members in rendezvous order for id: by descending
// score, where score is the first 8 bytes (big-endian) of
// SHA-256(slot UUID bytes ‖ object id).
func (st *state) order(id objstore.ID) []*disk {
	type scored struct {
		d     *disk
		score uint64
	}
	s := make([]scored, len(st.members))
	var buf [48]byte
	copy(buf[16:], id[:])
	for i, d := range st.members {
		copy(buf[:16], d.slot[:])
		h := sha256.Sum256(buf[:])
		s[i] = scored{d, binary.BigEndian.Uint64(h[:8])}
	}
	sort.Slice(s, func(i, j int) bool {
		if s[i].score != s[j].score {
			return s[i].score > s[j].score
		}
		return string(s[i].d.slot[:]) < string(s[j].d.slot[:])
	})
	out := make([]*disk, len(s))
	for i := range s {
		out[i] = s[i].d
	}
	return out
}

// predicted is the disk shard index goes to when every disk is healthy.
func predicted(order []*disk, index int) *disk {
	if len(order) == 1 {
		return order[0]
	}
	if index < len(order) {
		return order[index]
	}
	return nil
}

// present returns the members that can be read.
func (st *state) present() []*disk {
	var out []*disk
	for _, d := range st.members {
		if d.present() {
			out = append(out, d)
		}
	}
	return out
}

// Create makes a new pool on the given disk folders and opens it. It
// refuses a folder that already holds a pool.
func Create(ctx context.Context, disks []string, opt CreateOptions) (*Pool, error) {
	if len(disks) == 0 {
		return nil, errors.New("pool: create: no disks")
	}
	k, m, err := layoutFor(len(disks), opt.Parity)
	if err != nil {
		return nil, fmt.Errorf("pool: create: %w", err)
	}
	roots, err := absDirs(disks)
	if err != nil {
		return nil, fmt.Errorf("pool: create: %w", err)
	}
	for _, r := range roots {
		if err := checkEmpty(r); err != nil {
			return nil, fmt.Errorf("pool: create: %w", err)
		}
	}
	now := time.Now().UTC()
	f := &poolFile{
		Format:  poolFileFormat,
		Pool:    newUUID(),
		Created: now,
		Paths:   map[string]string{},
	}
	l := layout{Generation: 1, Created: now, K: k, M: m, Parity: opt.Parity}
	for _, r := range roots {
		u := newUUID()
		l.Members = append(l.Members, member{Slot: u, Disk: u})
		f.Paths[u] = r
	}
	f.Layouts = []layout{l}
	for i, r := range roots {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		base := filepath.Join(r, poolDirName)
		if err := objstore.MkdirAllSync(filepath.Join(base, tmpDirName)); err != nil {
			return nil, fmt.Errorf("pool: create on %s: %w", r, err)
		}
		if err := writePoolFile(base, f, l.Members[i].Disk); err != nil {
			return nil, fmt.Errorf("pool: create on %s: %w", r, err)
		}
	}
	return Open(ctx, disks, OpenOptions{Logger: opt.Logger})
}

// absDirs makes the folders absolute and checks they are distinct
// directories.
func absDirs(dirs []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, d := range dirs {
		a, err := filepath.Abs(d)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("%s is not a directory", a)
		}
		if seen[a] {
			return nil, fmt.Errorf("%s given twice", a)
		}
		seen[a] = true
		out = append(out, a)
	}
	return out, nil
}

// checkEmpty refuses a folder whose arkbox/ folder holds anything.
func checkEmpty(root string) error {
	base := filepath.Join(root, poolDirName)
	if _, err := os.Stat(filepath.Join(base, poolFileName)); err == nil {
		return fmt.Errorf("%s already holds a pool", root)
	}
	ents, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s is not empty", base)
	}
	return nil
}

func writePoolFile(base string, f *poolFile, diskUUID string) error {
	c := *f
	c.Disk = diskUUID
	b, err := encodePoolFile(&c)
	if err != nil {
		return err
	}
	return objstore.WriteFileAtomic(filepath.Join(base, poolFileName), b)
}

func readPoolFile(root string) (*poolFile, error) {
	p := filepath.Join(root, poolDirName, poolFileName)
	fh, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxPoolFileSize+1))
	if err != nil {
		return nil, err
	}
	f, err := decodePoolFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return f, nil
}

// Open opens the pool whose disks are mounted at the given folders, in
// any order and under any paths. Members of the layout that are not given
// make the pool degraded; more missing members than the layout tolerates
// is an error naming them.
func Open(ctx context.Context, disks []string, opt OpenOptions) (*Pool, error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	if len(disks) == 0 {
		return nil, errors.New("pool: open: no disks")
	}
	roots, err := absDirs(disks)
	if err != nil {
		return nil, fmt.Errorf("pool: open: %w", err)
	}
	files := make([]*poolFile, len(roots))
	for i, r := range roots {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := readPoolFile(r)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pool: open: %s holds no pool (no %s/%s)", r, poolDirName, poolFileName)
		}
		if err != nil {
			return nil, fmt.Errorf("pool: open: %w", err)
		}
		files[i] = f
	}
	newest := 0
	byDisk := map[string]string{}
	for i, f := range files {
		if f.Pool != files[0].Pool {
			return nil, fmt.Errorf("pool: open: %s belongs to pool %s, %s to pool %s", roots[i], f.Pool, roots[0], files[0].Pool)
		}
		if prev, dup := byDisk[f.Disk]; dup {
			return nil, fmt.Errorf("pool: open: %s and %s are the same disk %s", prev, roots[i], f.Disk)
		}
		byDisk[f.Disk] = roots[i]
		if len(f.Layouts) > len(files[newest].Layouts) {
			newest = i
		}
	}
	hist := files[newest].Layouts
	for i, f := range files {
		for g := range f.Layouts {
			if !f.Layouts[g].equal(&hist[g]) {
				return nil, fmt.Errorf("pool: open: %s and %s disagree about layout generation %d", roots[i], roots[newest], g+1)
			}
		}
	}
	paths := map[string]string{}
	for _, f := range files {
		for d, p := range f.Paths {
			if _, ok := paths[d]; !ok || f == files[newest] {
				paths[d] = p
			}
		}
	}
	for d, r := range byDisk {
		paths[d] = r
	}
	cur := &hist[len(hist)-1]
	for d := range paths {
		if !cur.hasDisk(d) {
			delete(paths, d)
		}
	}
	for d, r := range byDisk {
		if !cur.hasDisk(d) {
			log.Warn("pool: disk is no longer a member of the pool; ignoring it", "disk", d, "path", r, "generation", cur.Generation)
		}
	}
	st := &state{
		file: &poolFile{Format: poolFileFormat, Pool: files[0].Pool, Created: files[newest].Created, Layouts: hist, Paths: paths},
		cur:  cur,
	}
	st.total = maxTotal(hist)
	var missing []string
	for _, mb := range cur.Members {
		root, given := byDisk[mb.Disk]
		state := DiskOK
		if !given {
			root = paths[mb.Disk]
			state = DiskMissing
			missing = append(missing, fmt.Sprintf("%s (last seen at %s)", mb.Disk, orUnknown(root)))
		}
		d, err := newDisk(mb, root, state)
		if err != nil {
			return nil, fmt.Errorf("pool: open: %w", err)
		}
		st.members = append(st.members, d)
	}
	if len(missing) > tolerated(cur) {
		return nil, fmt.Errorf("pool: open: %d of %d disks missing, layout %d+%d tolerates %d: missing %s",
			len(missing), len(cur.Members), cur.K, cur.M, tolerated(cur), strings.Join(missing, ", "))
	}
	if len(missing) > 0 {
		log.Warn("pool: opened degraded", "missing", strings.Join(missing, ", "))
	}
	p := &Pool{id: st.file.Pool, readOnly: opt.ReadOnly, log: log, encs: map[[2]int]reedsolomon.Encoder{},
		journalLimit: defaultJournalLimit, resyncs: map[string]*Resync{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for _, d := range st.members {
		if !d.present() {
			continue
		}
		if _, _, ro, err := statDisk(d.root); err == nil && ro {
			d.setState(DiskReadOnly, errors.New("mounted read-only"))
			log.Warn("pool: disk is mounted read-only", "disk", d.uuid, "path", d.root)
		}
		if opt.ReadOnly || d.getState() != DiskOK {
			continue
		}
		f := files[slices.Index(roots, d.root)]
		if len(f.Layouts) != len(hist) || !maps2Equal(f.Paths, paths) {
			if err := writePoolFile(d.base, st.file, d.uuid); err != nil {
				log.Warn("pool: updating pool.json", "disk", d.uuid, "path", d.root, "err", d.fault("update pool.json", err))
			}
		}
	}
	p.findOutOfSync(st)
	if !opt.ReadOnly {
		if err := p.recoverTemps(ctx, st); err != nil {
			log.Warn("pool: recovering interrupted writes", "err", err)
		}
		p.ensureJournals(st)
	}
	p.st.Store(st)
	if !opt.ReadOnly {
		for _, d := range st.members {
			if d.attached() && d.isSyncing() {
				log.Warn("pool: disk missed writes while it was away; resyncing it", "disk", d.uuid, "path", d.root)
				p.startResync(d)
			}
		}
	}
	return p, nil
}

// findOutOfSync marks the present members that missed writes while they
// were away: those another present disk holds a missed-writes journal
// for. A copy held by a disk that is out of sync itself is stale and does
// not count; stale copies and journals of disks that are no longer
// members are removed (unless the pool is read-only).
func (p *Pool) findOutOfSync(st *state) {
	held := map[*disk][]string{}
	named := map[string]bool{}
	for _, d := range st.members {
		if !d.present() {
			continue
		}
		js, err := d.journals()
		if err != nil {
			p.log.Warn("pool: list missed-writes journals", "disk", d.uuid, "err", err)
			continue
		}
		held[d] = js
		for _, u := range js {
			named[u] = true
		}
	}
	for h, js := range held {
		if named[h.uuid] {
			continue
		}
		for _, u := range js {
			if m := st.member(u); m != nil && m != h && m.present() {
				m.setSyncing(true)
			}
		}
	}
	if p.readOnly {
		return
	}
	for h, js := range held {
		for _, u := range js {
			if err := h.trimJournal(u); err != nil {
				p.log.Warn("pool: missed-writes journal", "disk", u, "on", h.uuid, "err", err)
			}
			m := st.member(u)
			if m == nil || m == h || m.present() {
				if err := h.removeJournal(u); err != nil {
					p.log.Warn("pool: remove stale missed-writes journal", "disk", u, "on", h.uuid, "err", err)
				}
			}
		}
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown path"
	}
	return s
}

// tolerated is the number of missing members a layout survives.
func tolerated(l *layout) int {
	if len(l.Members) == 1 {
		return 0
	}
	return min(l.M, len(l.Members)-l.K)
}

func maps2Equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// ID returns the pool's UUID.
func (p *Pool) ID() string { return p.id }

// Close releases the pool: resyncs in progress stop (they go on at the
// next Open or Reattach). Operations after Close fail.
func (p *Pool) Close() error {
	p.closed.Store(true)
	p.cancel()
	p.wg.Wait()
	return nil
}

// Status describes the pool's layout and disks.
type Status struct {
	// Pool is the pool's UUID.
	Pool string
	// Generation is the current layout's number; K and M its shape.
	Generation int
	K, M       int
	// ReadOnly: the pool was opened read-only.
	ReadOnly bool
	// Degraded: some member is not ok (missing, resyncing, read-only,
	// failing or full), so new writes may lack redundancy.
	Degraded bool
	// Resyncing counts the members being resynced.
	Resyncing int
	// Disks are the members of the current layout, in layout order.
	Disks []DiskStatus
}

// DiskStatus describes one member disk.
type DiskStatus struct {
	UUID  string
	Path  string // current folder, or last known one when missing
	State DiskState
	// Error is the last error seen on the disk, if any.
	Error string
	// BytesTotal and BytesFree come from statfs (0 when missing).
	BytesTotal, BytesFree uint64
}

// Status reports the layout and the state and capacity of every member.
//
// Status also notices a disk whose file system has become read-only
// under the pool — Linux remounts ext4 read-only after file system errors
// (errors=remount-ro) — and marks it read-only at once, logging it, rather
// than at the next write that fails.
func (p *Pool) Status(ctx context.Context) Status {
	st := p.st.Load()
	s := Status{Pool: p.id, Generation: st.cur.Generation, K: st.cur.K, M: st.cur.M, ReadOnly: p.readOnly}
	for _, d := range st.members {
		if ctx.Err() != nil {
			break
		}
		d.mu.Lock()
		ds := DiskStatus{UUID: d.uuid, Path: d.root, State: d.state, Error: d.lastErr}
		if d.syncing && d.state == DiskOK {
			ds.State = DiskResyncing
		}
		if d.syncing && d.state != DiskMissing {
			s.Resyncing++
		}
		d.mu.Unlock()
		if ds.State != DiskMissing {
			if total, free, ro, err := statDisk(d.root); err == nil {
				ds.BytesTotal, ds.BytesFree = total, free
				if ro && (ds.State == DiskOK || ds.State == DiskFull || ds.State == DiskResyncing) {
					ds.State, ds.Error, _ = p.markReadOnly(d, errRemountedRO)
				}
			}
		}
		if ds.State != DiskOK {
			s.Degraded = true
		}
		s.Disks = append(s.Disks, ds)
	}
	return s
}

// errRemountedRO is the state error of a disk whose file system turned
// read-only while the pool had it open.
var errRemountedRO = errors.New("its file system is mounted read-only: the kernel remounts a file system read-only after errors on the disk; check the disk's health (arkbox disks), then replace it")

// MarkReadOnly marks the member disk uuid read-only because its file
// system is (the caller saw it in the mount table: recent Linux kernels
// remount ext4 "emergency_ro" after errors, which statfs does not show).
// The pool then writes around it, as for a disk whose writes fail with
// EROFS, and reports it degraded; reads still use it. reason becomes the
// disk's error in Status (nil: a generic one). It reports whether the
// disk's state changed; a missing disk, a failing one (I/O errors say
// more than read-only) or one read-only already is left as it is, as is a
// UUID that is no member.
func (p *Pool) MarkReadOnly(uuid string, reason error) bool {
	d := p.st.Load().member(uuid)
	if d == nil {
		return false
	}
	if reason == nil {
		reason = errRemountedRO
	}
	_, _, changed := p.markReadOnly(d, reason)
	return changed
}

// markReadOnly marks d read-only because its file system is, and returns
// its new state and error, and whether it changed.
func (p *Pool) markReadOnly(d *disk, reason error) (DiskState, string, bool) {
	d.mu.Lock()
	changed := d.state != DiskReadOnly && d.state != DiskMissing && d.state != DiskFailing
	if changed {
		d.state, d.lastErr = DiskReadOnly, reason.Error()
	}
	state, lastErr := d.state, d.lastErr
	d.mu.Unlock()
	if changed {
		p.log.Error("pool: disk became read-only", "disk", d.uuid, "path", d.root, "err", reason)
	}
	return state, lastErr, changed
}

func (p *Pool) check(op string, kind objstore.Kind) error {
	if p.closed.Load() {
		return fmt.Errorf("pool: %s: pool is closed", op)
	}
	if !kind.Valid() {
		return fmt.Errorf("pool: %s: unknown kind %q", op, kind)
	}
	return nil
}

func (p *Pool) lock(id objstore.ID) func() {
	mu := &p.locks[int(id[31])%objLocks]
	mu.Lock()
	return mu.Unlock
}

func (p *Pool) encoder(k, m int) (reedsolomon.Encoder, error) {
	p.encMu.Lock()
	defer p.encMu.Unlock()
	key := [2]int{k, m}
	if e, ok := p.encs[key]; ok {
		return e, nil
	}
	e, err := reedsolomon.New(k, m)
	if err != nil {
		return nil, err
	}
	p.encs[key] = e
	return e, nil
}
