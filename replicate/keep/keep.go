// Package keep lets a replication target keep more snapshots than the box
// (for example monthly snapshots for seven years offsite while the box
// keeps thirty days).
//
// When the box forgets and prunes a snapshot, its snapshot object, the
// packs only it needed and the indexes listing those packs leave the box;
// the target mirrors that unless its own retention policy keeps the
// snapshot. Plan decides, at each sync, which of the target's snapshots
// the box no longer has are kept (the target's policy applied to the box's
// snapshots and those together, per source), walks their trees to find
// every pack they need, and protects those objects from deletion. Because
// the box's later indexes supersede the ones that listed such packs, Plan
// also writes the target its own index object (encrypted with the
// repository key, like every index) listing the kept packs no current
// index lists; it supersedes the previous one. So the target stays a
// consistent repository in which every kept snapshot restores.
package keep

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/retention"
	"github.com/arkbox/arkbox/storage/tree"
)

// Listing maps kind and id to size.
type Listing map[objstore.Kind]map[objstore.ID]int64

// Options are what Plan works with.
type Options struct {
	Repo          *repo.Repository // the box's repository (its key)
	Local, Remote objstore.Store
	Policy        retention.Policy
	Location      *time.Location
	Now           time.Time
	// Written are the target-only indexes earlier plans wrote (still on
	// the target); LastSum is the SHA-256 of the last one's plaintext.
	Written []objstore.ID
	LastSum [32]byte
	Logger  *slog.Logger
}

// Result says what the target keeps.
type Result struct {
	// Protect lists the target's objects that must not be deleted.
	Protect map[objstore.Kind]map[objstore.ID]bool
	// Kept are the snapshots only the target has that its policy keeps;
	// Dropped those it does not keep.
	Kept, Dropped []objstore.ID
	// Index is the target's own index (zero when none is needed); Wrote
	// tells whether this plan wrote it; Sum is its plaintext's SHA-256.
	Index objstore.ID
	Wrote bool
	Sum   [32]byte
}

type loc struct {
	pack objstore.ID
	e    catalog.IndexedBlob
}

// Plan computes what the target keeps. remote is the target's inventory,
// local the box's objects (all of which the sync sends). It writes the
// target's index when it changed.
func Plan(ctx context.Context, opt Options, local, remote Listing) (*Result, error) {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := &Result{Protect: map[objstore.Kind]map[objstore.ID]bool{}}
	protect := func(k objstore.Kind, id objstore.ID) {
		if res.Protect[k] == nil {
			res.Protect[k] = map[objstore.ID]bool{}
		}
		res.Protect[k][id] = true
	}
	var only []objstore.ID
	for id := range remote[objstore.KindSnapshot] {
		if _, ok := local[objstore.KindSnapshot][id]; !ok {
			only = append(only, id)
		}
	}
	if len(only) == 0 {
		return res, nil
	}

	// The target's policy over the box's snapshots and its own, per source.
	boxSnaps, err := opt.Repo.Snapshots()
	if err != nil {
		return nil, err
	}
	bySource := map[string][]retention.Snapshot{}
	isOnly := map[string]*repo.Snapshot{}
	for _, s := range boxSnaps {
		bySource[s.Source] = append(bySource[s.Source], retention.Snapshot{ID: s.ID.String(), Time: s.Time, Archived: s.Archived})
	}
	for _, id := range only {
		b, err := opt.Remote.Get(ctx, objstore.KindSnapshot, id)
		if err != nil {
			return nil, fmt.Errorf("read the target's snapshot %s: %w", id.Short(), err)
		}
		s, err := opt.Repo.OpenSnapshotObject(id, b)
		if err != nil {
			return nil, err
		}
		isOnly[id.String()] = s
		bySource[s.Source] = append(bySource[s.Source], retention.Snapshot{ID: id.String(), Time: s.Time, Archived: s.Archived})
	}
	var keepRoots []blob.ID
	for _, snaps := range bySource {
		ds, err := retention.Apply(snaps, opt.Policy, opt.Now, opt.Location)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			s, ok := isOnly[d.Snapshot.ID]
			if !ok {
				continue
			}
			if d.Keep {
				res.Kept = append(res.Kept, s.ID)
				protect(objstore.KindSnapshot, s.ID)
				keepRoots = append(keepRoots, s.Tree)
			} else {
				res.Dropped = append(res.Dropped, s.ID)
			}
		}
	}
	if len(res.Kept) == 0 {
		return res, nil
	}

	// Every index the target will hold, the box's included; the packs each
	// lists, and which indexes are superseded.
	after := func(k objstore.Kind) map[objstore.ID]bool {
		m := map[objstore.ID]bool{}
		for id := range remote[k] {
			m[id] = true
		}
		for id := range local[k] {
			m[id] = true
		}
		return m
	}
	packsAfter := after(objstore.KindPack)
	written := map[objstore.ID]bool{}
	for _, id := range opt.Written {
		written[id] = true
	}
	blobs := map[blob.Type]map[blob.ID]loc{blob.Tree: {}, blob.Data: {}}
	packBlobs := map[objstore.ID]catalog.IndexedPack{}
	superseded := map[objstore.ID]bool{}
	listedBy := map[objstore.ID][]objstore.ID{} // pack -> indexes
	for id := range after(objstore.KindIndex) {
		src := opt.Remote
		if _, ok := local[objstore.KindIndex][id]; ok {
			src = opt.Local
		}
		b, err := src.Get(ctx, objstore.KindIndex, id)
		if err != nil {
			return nil, fmt.Errorf("read index %s: %w", id.Short(), err)
		}
		idx, err := opt.Repo.OpenIndexObject(id, b)
		if err != nil {
			return nil, err
		}
		for _, s := range idx.Supersedes {
			superseded[s] = true
		}
		for _, p := range idx.Packs {
			if !packsAfter[p.ID] {
				continue
			}
			packBlobs[p.ID] = p
			listedBy[p.ID] = append(listedBy[p.ID], id)
			for _, e := range p.Blobs {
				if blobs[e.Type] == nil {
					blobs[e.Type] = map[blob.ID]loc{}
				}
				blobs[e.Type][e.ID] = loc{pack: p.ID, e: e}
			}
		}
	}

	// The packs the kept snapshots need.
	need := map[objstore.ID]bool{}
	seen := map[blob.ID]bool{}
	queue := slices.Clone(keepRoots)
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if seen[id] {
			continue
		}
		seen[id] = true
		l, ok := blobs[blob.Tree][id]
		if !ok {
			return nil, fmt.Errorf("a kept snapshot needs tree %s, which no index on the target lists", id.Short())
		}
		need[l.pack] = true
		src := opt.Remote
		if _, ok := local[objstore.KindPack][l.pack]; ok {
			src = opt.Local
		}
		sealed, err := src.GetRange(ctx, objstore.KindPack, l.pack, int64(l.e.Offset), int64(l.e.Length))
		if err != nil {
			return nil, fmt.Errorf("read tree %s: %w", id.Short(), err)
		}
		plain, err := opt.Repo.OpenBlob(blob.Tree, id, sealed, l.e.RawLength)
		if err != nil {
			return nil, err
		}
		t, err := tree.Decode(plain)
		if err != nil {
			return nil, fmt.Errorf("tree %s: %w", id.Short(), err)
		}
		for _, n := range t.Nodes {
			for _, c := range n.Content {
				dl, ok := blobs[blob.Data][c.ID]
				if !ok {
					return nil, fmt.Errorf("a kept snapshot needs data %s, which no index on the target lists", c.ID.Short())
				}
				need[dl.pack] = true
			}
			if n.Type == tree.Dir {
				queue = append(queue, n.Subtree)
			}
		}
	}
	for p := range need {
		protect(objstore.KindPack, p)
	}

	// Kept packs no current index of the box lists go in the target's own
	// index, which supersedes the earlier ones.
	var idx repo.Index
	for p := range need {
		covered := false
		for _, by := range listedBy[p] {
			if !superseded[by] && !written[by] {
				covered = true
				break
			}
		}
		if !covered {
			idx.Packs = append(idx.Packs, packBlobs[p])
		}
	}
	if len(idx.Packs) == 0 {
		return res, nil
	}
	slices.SortFunc(idx.Packs, func(a, b catalog.IndexedPack) int { return slices.Compare(a.ID[:], b.ID[:]) })
	sum := sha256.Sum256(repo.EncodeIndex(&idx))
	res.Sum = sum
	if sum == opt.LastSum && len(opt.Written) > 0 {
		last := opt.Written[len(opt.Written)-1]
		if _, ok := remote[objstore.KindIndex][last]; ok {
			res.Index = last
			protect(objstore.KindIndex, last)
			return res, nil
		}
	}
	for _, w := range opt.Written {
		if _, ok := remote[objstore.KindIndex][w]; ok {
			idx.Supersedes = append(idx.Supersedes, w)
		}
	}
	id, sealed := opt.Repo.SealIndex(&idx)
	if err := opt.Remote.Put(ctx, objstore.KindIndex, id, sealed); err != nil {
		return nil, fmt.Errorf("write the target's index: %w", err)
	}
	res.Index, res.Wrote = id, true
	protect(objstore.KindIndex, id)
	log.Info("replicate: wrote the target's own index for snapshots only it keeps", "index", id.Short(), "packs", len(idx.Packs), "kept_snapshots", len(res.Kept))
	return res, nil
}

// ErrNeedsKey: a target that keeps more than the box syncs only with the
// repository open (its key).
var ErrNeedsKey = errors.New("this target keeps snapshots the box does not: its sync needs the repository's passphrase")
