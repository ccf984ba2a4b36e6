// Package replicate copies a repository's objects to an offsite target
// (any objstore.Store: S3, SFTP, a folder) so that the target is, at every
// moment, a consistent repository that arkbox opens with the passphrase
// alone.
//
// A sync lists the local objects newest kind first (snapshots, config,
// keys, indexes, packs: whatever a listed snapshot or index refers to was
// written before it and so is in the later listings), then uploads what
// the target lacks oldest kind first (packs, indexes, keys, config,
// snapshots), finishing each kind before the next. Objects travel as they
// are stored: ciphertext, never decrypted or re-encrypted. Every upload is
// checked on the target (S3 against the object's SHA-256, its name; SFTP
// by size before the rename); failures are retried with backoff. Objects
// the box no longer has are deleted on the target only after a grace period, newest
// kind first, and never on an append-only target. The target's inventory
// is cached in a state file, so a sync with nothing to send lists only the
// local side.
package replicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arkbox/arkbox/replicate/bwlimit"
	"github.com/arkbox/arkbox/storage/objstore"
)

// Options tune a sync.
type Options struct {
	Name     string // the target's name, for messages
	Parallel int    // concurrent uploads, 1–10 (default 4)
	// Grace delays the deletion of objects the box no longer has
	// (default 7 days; negative = delete at once).
	Grace time.Duration
	// AppendOnly never deletes on the target.
	AppendOnly bool
	// Retries per object after the first attempt (default 5), with
	// exponential backoff from Backoff (default 1 s) up to 1 minute.
	Retries int
	Backoff time.Duration
	// Rescan lists the target again when the cached inventory is older
	// than this (default 24 h; negative = every sync).
	Rescan time.Duration
	// Limiter paces uploads to the target (nil = unlimited). It is used
	// only by Dir targets here; network targets pace their connections.
	Limiter *bwlimit.Limiter
	// Timeout abandons one upload attempt after this long plus the
	// object's size at 32 KB/s (default 2 minutes): a stalled link is cut
	// and the object retried.
	Timeout  time.Duration
	Logger   *slog.Logger
	Progress func(Progress)
	Now      func() time.Time
	// Protect, if set, names target objects the box no longer has that
	// must stay (the target's own retention). It runs after the packs are
	// sent and before anything else, with the box's objects and the
	// target's inventory; it may write objects to the target itself. An
	// error keeps the sync from deleting anything.
	Protect func(ctx context.Context, local, remote map[objstore.Kind]map[objstore.ID]int64) (map[objstore.Kind]map[objstore.ID]bool, error)
}

func (o *Options) defaults() {
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	o.Parallel = min(o.Parallel, 10)
	if o.Grace == 0 {
		o.Grace = 7 * 24 * time.Hour
	}
	if o.Retries == 0 {
		o.Retries = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Rescan == 0 {
		o.Rescan = 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Progress is reported while a sync uploads.
type Progress struct {
	Phase       string // "list", "upload", "delete"
	Kind        objstore.Kind
	DoneObjects int64
	DoneBytes   int64
	TotalObjs   int64
	TotalBytes  int64
	Elapsed     time.Duration
}

// KindCount counts objects of one kind.
type KindCount struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// Report is what a sync did; it is kept in the state file.
type Report struct {
	Target        string                       `json:"target"`
	Start         time.Time                    `json:"start"`
	End           time.Time                    `json:"end"`
	Listed        bool                         `json:"listed_target"` // the target was listed (not the cached inventory)
	Local         KindCount                    `json:"local"`
	Uploaded      map[objstore.Kind]*KindCount `json:"uploaded"`
	UploadedTotal KindCount                    `json:"uploaded_total"`
	Retried       int64                        `json:"retried"`
	Deleted       KindCount                    `json:"deleted"`
	PendingDelete KindCount                    `json:"pending_delete"`
	Kept          KindCount                    `json:"kept_by_target_retention"` // the box no longer has them; the target's policy keeps them
	Failed        []string                     `json:"failed,omitempty"`
	Error         string                       `json:"error,omitempty"`
	Vanished      int64                        `json:"vanished,omitempty"`     // pruned locally during the sync
	SeedWaiting   int64                        `json:"seed_waiting,omitempty"` // seed disk objects not on the target yet
}

type listing map[objstore.Kind]map[objstore.ID]int64

func list(ctx context.Context, st objstore.Store) (listing, error) {
	return listRetry(ctx, st, func(ctx context.Context, _ string, fn func(context.Context) error) error { return fn(ctx) })
}

// listRetry lists every kind, newest first, each through try.
func listRetry(ctx context.Context, st objstore.Store, try func(context.Context, string, func(context.Context) error) error) (listing, error) {
	l := listing{}
	for _, k := range slices.Backward(objstore.Kinds) {
		var m map[objstore.ID]int64
		err := try(ctx, "list "+string(k), func(ctx context.Context) error {
			m = map[objstore.ID]int64{}
			return st.List(ctx, k, func(i objstore.Info) error { m[i.ID] = i.Size; return nil })
		})
		if err != nil {
			return nil, err
		}
		l[k] = m
	}
	return l, nil
}

// inventory returns the target's objects: cached, or listed when the cache
// is stale.
func inventory(ctx context.Context, remote objstore.Store, st *State, opt Options) (listing, bool, error) {
	listed := st.Listed()
	if !listed.IsZero() && opt.Rescan > 0 && opt.Now().Sub(listed) < opt.Rescan {
		inv := listing{}
		for _, k := range objstore.Kinds {
			m, err := st.Inventory(k)
			if err != nil {
				return nil, false, err
			}
			inv[k] = m
		}
		return inv, false, nil
	}
	at := opt.Now()
	inv, err := listRetry(ctx, remote, func(ctx context.Context, what string, fn func(context.Context) error) error {
		return retry(ctx, opt, what, fn)
	})
	if err != nil {
		return nil, false, fmt.Errorf("list the target: %w", err)
	}
	if err := st.replaceInventory(inv, at); err != nil {
		return nil, false, err
	}
	return inv, true, nil
}

// Sync brings the target up to date with local.
func Sync(ctx context.Context, local, remote objstore.Store, st *State, opt Options) (*Report, error) {
	opt.defaults()
	rep := &Report{Target: opt.Name, Start: opt.Now(), Uploaded: map[objstore.Kind]*KindCount{}}
	err := sync1(ctx, local, remote, st, opt, rep)
	rep.End = opt.Now()
	if err != nil {
		rep.Error = err.Error()
	}
	if e := st.saveReport(rep); e != nil && err == nil {
		err = fmt.Errorf("replicate %s: save the report: %w", opt.Name, e)
	}
	if err != nil {
		return rep, fmt.Errorf("replicate %s: %w", opt.Name, err)
	}
	return rep, nil
}

func sync1(ctx context.Context, local, remote objstore.Store, st *State, opt Options, rep *Report) error {
	log := opt.Logger
	start := time.Now()
	progress := func(p Progress) {
		if opt.Progress != nil {
			p.Elapsed = time.Since(start)
			opt.Progress(p)
		}
	}
	progress(Progress{Phase: "list"})
	loc, err := list(ctx, local)
	if err != nil {
		return fmt.Errorf("list the local repository: %w", err)
	}
	for _, m := range loc {
		for _, size := range m {
			rep.Local.Objects++
			rep.Local.Bytes += size
		}
	}
	seed, err := st.Seed()
	if err != nil {
		return err
	}
	if len(seed) > 0 {
		opt.Rescan = -1 // watch for the seed disk's objects arriving
	}
	inv, listed, err := inventory(ctx, remote, st, opt)
	if err != nil {
		return err
	}
	rep.Listed = listed
	seedWaiting := 0
	for k := range seed {
		kind, id := objstore.Kind(k[:len(k)-33]), objstore.ID([]byte(k[len(k)-32:]))
		if _, ok := inv[kind][id]; !ok {
			seedWaiting++
		}
	}
	if len(seed) > 0 && seedWaiting == 0 {
		if err := st.clearSeed(); err != nil {
			return err
		}
		log.Info("replicate: the seed disk's objects are on the target", "target", opt.Name, "objects", len(seed))
	}
	rep.SeedWaiting = int64(seedWaiting)

	// What to send, oldest kind first.
	var total KindCount
	todo := map[objstore.Kind][]objstore.Info{}
	for _, k := range objstore.Kinds {
		if seedWaiting > 0 && k != objstore.KindPack {
			// Indexes and snapshots may refer to packs still on the seed
			// disk: they wait, so the target stays consistent.
			continue
		}
		for id, size := range loc[k] {
			if rsize, ok := inv[k][id]; ok && rsize == size {
				continue
			}
			if _, ok := seed[string(goneKey(k, id))]; ok {
				continue // travelling on the seed disk
			}
			todo[k] = append(todo[k], objstore.Info{Kind: k, ID: id, Size: size})
			total.Objects++
			total.Bytes += size
		}
	}
	var done KindCount
	var protected map[objstore.Kind]map[objstore.ID]bool
	var protectErr error
	for _, k := range objstore.Kinds {
		if k == objstore.KindIndex && opt.Protect != nil && seedWaiting == 0 {
			protected, protectErr = opt.Protect(ctx, loc, inv)
			if protectErr != nil {
				log.Error("replicate: the target's own retention failed; nothing is deleted on the target", "target", opt.Name, "err", protectErr)
			}
		}
		if len(todo[k]) == 0 {
			continue
		}
		kc := &KindCount{}
		rep.Uploaded[k] = kc
		failed, err := upload(ctx, local, remote, st, todo[k], opt, rep, kc, func(n int64) {
			done.Objects++
			done.Bytes += n
			progress(Progress{Phase: "upload", Kind: k, DoneObjects: done.Objects, DoneBytes: done.Bytes, TotalObjs: total.Objects, TotalBytes: total.Bytes})
		})
		rep.UploadedTotal.Objects += kc.Objects
		rep.UploadedTotal.Bytes += kc.Bytes
		if err != nil {
			return err
		}
		if len(failed) > 0 {
			rep.Failed = failed
			return fmt.Errorf("%d %s objects could not be uploaded (first: %s); nothing newer was sent, so the target stays a consistent older copy: the next sync retries",
				len(failed), k, failed[0])
		}
		log.Info("replicate: uploaded", "target", opt.Name, "kind", k, "objects", kc.Objects, "bytes", kc.Bytes)
	}

	if seedWaiting > 0 {
		log.Info("replicate: waiting for the seed disk to be imported; only new packs were sent", "target", opt.Name, "seed_objects_missing", seedWaiting)
		return nil
	}
	if protectErr != nil {
		return fmt.Errorf("the target's own retention: %w", protectErr)
	}
	// Objects the target holds that the box no longer has.
	var missing []objstore.Info
	for _, k := range slices.Backward(objstore.Kinds) {
		for id, size := range inv[k] {
			if _, ok := loc[k][id]; ok {
				continue
			}
			if protected[k][id] {
				rep.Kept.Objects++
				rep.Kept.Bytes += size
				continue
			}
			missing = append(missing, objstore.Info{Kind: k, ID: id, Size: size})
		}
	}
	if opt.AppendOnly {
		for _, m := range missing {
			rep.PendingDelete.Objects++
			rep.PendingDelete.Bytes += m.Size
		}
		return nil
	}
	since, err := st.markGone(missing, opt.Now())
	if err != nil {
		return err
	}
	var gone []objstore.Info
	for _, m := range missing { // newest kind first
		if opt.Grace > 0 && opt.Now().Sub(since[string(goneKey(m.Kind, m.ID))]) < opt.Grace {
			rep.PendingDelete.Objects++
			rep.PendingDelete.Bytes += m.Size
			continue
		}
		progress(Progress{Phase: "delete", Kind: m.Kind})
		err := retry(ctx, opt, "delete", func(ctx context.Context) error {
			if err := remote.Delete(ctx, m.Kind, m.ID); err != nil && !errors.Is(err, objstore.ErrNotFound) {
				return err
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("delete %s/%s on the target: %w", m.Kind, m.ID, err)
		}
		log.Info("replicate: deleted on the target (the box no longer has it)", "target", opt.Name, "kind", m.Kind, "id", m.ID.String(), "bytes", m.Size)
		gone = append(gone, m)
		rep.Deleted.Objects++
		rep.Deleted.Bytes += m.Size
		if len(gone) >= 256 {
			if err := st.record(gone, true); err != nil {
				return err
			}
			gone = gone[:0]
		}
	}
	return st.record(gone, true)
}

// upload sends objs with opt.Parallel workers and records each in the
// inventory. It returns the objects that failed after every retry.
func upload(ctx context.Context, local, remote objstore.Store, st *State, objs []objstore.Info, opt Options, rep *Report, kc *KindCount, onDone func(int64)) ([]string, error) {
	// Large objects first keeps the workers busy to the end.
	slices.SortFunc(objs, func(a, b objstore.Info) int { return int(b.Size - a.Size) })
	ch := make(chan objstore.Info)
	var mu sync.Mutex
	var failed []string
	var batch []objstore.Info
	var fatal error
	var retried atomic.Int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := st.record(batch, false)
		batch = batch[:0]
		return err
	}
	var wg sync.WaitGroup
	for range opt.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range ch {
				n, err := uploadOne(ctx, local, remote, o, opt, &retried)
				mu.Lock()
				switch {
				case errors.Is(err, errVanished):
					rep.Vanished++
				case err != nil:
					if ctx.Err() == nil {
						failed = append(failed, fmt.Sprintf("%s/%s: %v", o.Kind, o.ID, err))
						opt.Logger.Error("replicate: upload failed", "target", opt.Name, "kind", o.Kind, "id", o.ID.String(), "err", err)
					}
				default:
					kc.Objects++
					kc.Bytes += n
					batch = append(batch, o)
					if len(batch) >= 64 {
						if err := flush(); err != nil && fatal == nil {
							fatal = err
						}
					}
					onDone(n)
				}
				mu.Unlock()
			}
		}()
	}
	for _, o := range objs {
		select {
		case ch <- o:
			continue
		case <-ctx.Done():
		}
		break
	}
	close(ch)
	wg.Wait()
	rep.Retried += retried.Load()
	if err := flush(); err != nil && fatal == nil {
		fatal = err
	}
	if fatal != nil {
		return failed, fatal
	}
	if err := ctx.Err(); err != nil {
		return failed, err
	}
	return failed, nil
}

var errVanished = errors.New("object vanished locally")

func uploadOne(ctx context.Context, local, remote objstore.Store, o objstore.Info, opt Options, retried *atomic.Int64) (int64, error) {
	data, err := local.Get(ctx, o.Kind, o.ID)
	if errors.Is(err, objstore.ErrNotFound) {
		return 0, errVanished
	}
	if err != nil {
		return 0, fmt.Errorf("read the local copy: %w", err)
	}
	backoff := opt.Backoff
	for attempt := 0; ; attempt++ {
		if err = opt.Limiter.WaitN(ctx, len(data)); err != nil {
			return 0, err
		}
		// A stalled transfer is abandoned.
		actx, cancel := context.WithTimeout(ctx, opt.Timeout+time.Duration(len(data)/32)*time.Millisecond)
		// Put returns only when the target holds the whole object: S3
		// checks its SHA-256, SFTP its size before the rename.
		err = remote.Put(actx, o.Kind, o.ID, data)
		cancel()
		if err == nil {
			return int64(len(data)), nil
		}
		if ctx.Err() != nil || attempt >= opt.Retries || errors.Is(err, objstore.ErrReadOnly) {
			return 0, err
		}
		retried.Add(1)
		opt.Logger.Warn("replicate: upload failed, retrying", "target", opt.Name, "kind", o.Kind, "id", o.ID.Short(), "attempt", attempt+1, "err", err)
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// retry runs fn until it succeeds, with the sync's backoff and retry count.
func retry(ctx context.Context, opt Options, what string, fn func(ctx context.Context) error) error {
	backoff := opt.Backoff
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 4*opt.Timeout)
		err := fn(actx)
		cancel()
		if err == nil || ctx.Err() != nil || attempt >= opt.Retries {
			return err
		}
		opt.Logger.Warn("replicate: failed, retrying", "target", opt.Name, "op", what, "attempt", attempt+1, "err", err)
		select {
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(backoff*2, time.Minute)
	}
}
