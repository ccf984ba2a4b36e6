package maint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/tree"
)

// PruneOptions tunes Prune.
type PruneOptions struct {
	DryRun bool
	// RepackPercent: a pack whose unused share exceeds this is repacked
	// (default 20).
	RepackPercent float64
	Logger        *slog.Logger
	Progress      func(phase string, done, total int)
	// Roots, if set, reports more roots than the snapshots (the live
	// shares): every tree it passes to markTree is kept with all it
	// reaches, every data blob it passes to markData is kept.
	Roots func(ctx context.Context, markTree, markData func(blob.ID) error) error
	// crashAfter is a test hook: stop (as if killed) after the named step.
	crashAfter string
}

// PruneReport says what Prune did (or would do).
type PruneReport struct {
	Packs          int    `json:"packs"`
	PacksDeleted   int    `json:"packs_deleted"`
	PacksRepacked  int    `json:"packs_repacked"`
	PacksWritten   int    `json:"packs_written"`
	BlobsUsed      uint64 `json:"blobs_used"`
	BlobsRemoved   uint64 `json:"blobs_removed"`
	BytesFreed     int64  `json:"bytes_freed"`
	IndexesWritten int    `json:"indexes_written"`
	IndexesDeleted int    `json:"indexes_deleted"`
	UnindexedPacks int    `json:"unindexed_packs_deleted"`
}

// maxPacksPerIndex bounds the size of one consolidated index object.
const maxPacksPerIndex = 4096

var errCrashHook = errors.New("prune: stopped by test hook")

// Prune removes data that no snapshot references.
//
// Steps, each safe to interrupt: (1) mark every blob reachable from a
// snapshot (marks live in the catalog file, not in memory); (2) copy the
// used blobs of mostly-unused packs into new packs and index them;
// (3) write new index objects that list every pack still needed and
// supersede all older ones; (4) delete the old index objects; (5) delete
// packs that no index lists any more. A crash before (3) leaves extra
// packs; a crash after it leaves superseded indexes or unlisted packs that
// the next prune removes. Referenced data is never deleted before the new
// index that lists its new home is durable.
func Prune(ctx context.Context, r *repo.Repository, opt PruneOptions) (*PruneReport, error) {
	if opt.RepackPercent == 0 {
		opt.RepackPercent = 20
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prog := opt.Progress
	if prog == nil {
		prog = func(string, int, int) {}
	}
	cat := r.Catalog()
	rep := &PruneReport{}
	if err := r.Reindex(ctx); err != nil {
		return nil, err
	}

	// 1. Mark.
	marks, err := cat.NewMarkSet("prune")
	if err != nil {
		return nil, err
	}
	defer marks.Drop()
	snaps, err := r.Snapshots()
	if err != nil {
		return nil, err
	}
	trees := r.NewPackCache(2)
	for i, sn := range snaps {
		prog("mark", i, len(snaps))
		if err := markTree(ctx, trees, marks, sn.Tree); err != nil {
			return nil, fmt.Errorf("prune: snapshot %s: %w (nothing was deleted; run `arkbox check`)", sn.ID.Short(), err)
		}
	}
	if opt.Roots != nil {
		prog("mark live data", 0, 0)
		err := opt.Roots(ctx,
			func(id blob.ID) error { return markTree(ctx, trees, marks, id) },
			func(id blob.ID) error { _, err := marks.Mark(blob.Data, id); return err })
		if err != nil {
			return nil, fmt.Errorf("prune: %w (nothing was deleted)", err)
		}
	}
	if err := marks.Flush(); err != nil {
		return nil, err
	}

	// 2. Classify packs by used bytes. A blob counts as used in a pack only
	// where the catalog locates it, so duplicate copies are garbage.
	type packUse struct {
		size, used int64
		usedBlobs  int
	}
	use := map[objstore.ID]*packUse{}
	err = cat.ForEachPack(func(id objstore.ID, p catalog.PackInfo) error {
		use[id] = &packUse{size: int64(p.Size)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.Packs = len(use)
	err = cat.ForEachBlob(func(t blob.Type, id blob.ID, loc catalog.BlobLoc) error {
		ok, err := marks.Has(t, id)
		if err != nil {
			return err
		}
		if !ok {
			rep.BlobsRemoved++
			return nil
		}
		rep.BlobsUsed++
		if u := use[loc.Pack]; u != nil {
			u.used += int64(loc.Length)
			u.usedBlobs++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var deletePacks, repackPacks []objstore.ID
	for id, u := range use {
		switch {
		case u.usedBlobs == 0:
			deletePacks = append(deletePacks, id)
			rep.BytesFreed += u.size
		case float64(u.size-u.used-headerBytes(u.usedBlobs))*100 > opt.RepackPercent*float64(u.size):
			repackPacks = append(repackPacks, id)
			rep.BytesFreed += u.size - u.used
		}
	}
	// Packs in the store that no index lists (interrupted backups).
	var unindexed []objstore.ID
	err = r.Store().List(ctx, objstore.KindPack, func(i objstore.Info) error {
		if _, ok := use[i.ID]; !ok {
			unindexed = append(unindexed, i.ID)
			rep.BytesFreed += i.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prune: list packs: %w", err)
	}
	// Every blob a snapshot needs must be indexed in a pack that stays.
	// Blobs found only in unindexed packs (an interrupted backup or prune)
	// get those packs indexed again; blobs found nowhere stop the prune
	// before anything is deleted.
	rescued, err := rescueUnindexed(ctx, r, marks, unindexed, opt.DryRun)
	if err != nil {
		return nil, err
	}
	if len(rescued) > 0 {
		keepUnindexed := unindexed[:0]
		for _, id := range unindexed {
			if size, ok := rescued[id]; ok {
				rep.BytesFreed -= size
			} else {
				keepUnindexed = append(keepUnindexed, id)
			}
		}
		unindexed = keepUnindexed
		log.Warn("prune: indexed packs that snapshots need but no index listed", "packs", len(rescued))
	}
	rep.PacksDeleted = len(deletePacks) + len(unindexed)
	rep.PacksRepacked = len(repackPacks)
	rep.UnindexedPacks = len(unindexed)
	if opt.DryRun {
		return rep, nil
	}
	if len(deletePacks) == 0 && len(repackPacks) == 0 && len(unindexed) == 0 {
		return rep, nil
	}

	// 2b. Repack: copy used blobs (still sealed, after verifying them) into
	// new packs.
	before := r.Stats().Packs
	for i, id := range repackPacks {
		prog("repack", i, len(repackPacks))
		data, err := r.Store().Get(ctx, objstore.KindPack, id)
		if err != nil {
			return nil, fmt.Errorf("prune: read pack %s to repack: %w (nothing was deleted)", id.Short(), err)
		}
		ents, err := r.SplitPack(id, data)
		if err != nil {
			return nil, fmt.Errorf("prune: %w (nothing was deleted)", err)
		}
		for _, e := range ents {
			used, err := marks.Has(e.Type, e.ID)
			if err != nil {
				return nil, err
			}
			if !used {
				continue
			}
			loc, ok, err := cat.LookupBlob(e.Type, e.ID)
			if err != nil {
				return nil, err
			}
			if !ok || loc.Pack != id || loc.Offset != e.Offset {
				continue // the catalog's copy lives elsewhere
			}
			sealed := data[e.Offset : e.Offset+e.Length]
			if _, err := r.OpenBlob(e.Type, e.ID, sealed, e.RawLength); err != nil {
				return nil, fmt.Errorf("prune: pack %s: %w (nothing was deleted; run `arkbox check --read-data`)", id.Short(), err)
			}
			if err := r.CopySealedBlob(ctx, e.Type, e.ID, sealed, e.RawLength); err != nil {
				return nil, err
			}
		}
	}
	if err := r.Flush(ctx); err != nil {
		return nil, err
	}
	rep.PacksWritten = int(r.Stats().Packs - before)
	if opt.crashAfter == "repack" {
		return rep, errCrashHook
	}

	// 3. New consolidated indexes superseding every index object in the
	// store — also those already superseded, so that none of them comes
	// back to life when the index that superseded it is deleted.
	var oldIdx []objstore.ID
	if err := r.Store().List(ctx, objstore.KindIndex, func(i objstore.Info) error { oldIdx = append(oldIdx, i.ID); return nil }); err != nil {
		return nil, fmt.Errorf("prune: list indexes: %w", err)
	}
	drop := map[objstore.ID]bool{}
	for _, id := range deletePacks {
		drop[id] = true
	}
	for _, id := range repackPacks {
		drop[id] = true
	}
	var keep []objstore.ID
	err = cat.ForEachPack(func(id objstore.ID, _ catalog.PackInfo) error {
		if !drop[id] {
			keep = append(keep, id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var batch []catalog.IndexedPack
	var newIdx []objstore.ID
	flushIdx := func() error {
		if len(batch) == 0 && len(newIdx) > 0 {
			return nil
		}
		id, err := r.SaveIndex(ctx, &repo.Index{Supersedes: oldIdx, Packs: batch})
		if err != nil {
			return err
		}
		newIdx = append(newIdx, id)
		batch = nil
		return nil
	}
	for _, id := range keep {
		blobs, err := cat.PackBlobs(id)
		if err != nil {
			return nil, err
		}
		info, _, err := cat.LookupPack(id)
		if err != nil {
			return nil, err
		}
		// Keep only entries of used blobs located here.
		kept := blobs[:0]
		for _, b := range blobs {
			ok, err := marks.Has(b.Type, b.ID)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			loc, found, err := cat.LookupBlob(b.Type, b.ID)
			if err != nil {
				return nil, err
			}
			if found && loc.Pack == id {
				kept = append(kept, b)
			}
		}
		if len(kept) == 0 {
			drop[id] = true
			continue
		}
		batch = append(batch, catalog.IndexedPack{ID: id, Size: info.Size, Blobs: kept})
		if len(batch) >= maxPacksPerIndex {
			if err := flushIdx(); err != nil {
				return nil, err
			}
		}
	}
	if err := flushIdx(); err != nil {
		return nil, err
	}
	rep.IndexesWritten = len(newIdx)
	if opt.crashAfter == "index" {
		return rep, errCrashHook
	}

	// 4. Delete the superseded index objects.
	for _, id := range oldIdx {
		if err := r.Store().Delete(ctx, objstore.KindIndex, id); err != nil && !errors.Is(err, objstore.ErrNotFound) {
			return nil, fmt.Errorf("prune: delete index %s: %w", id.Short(), err)
		}
		rep.IndexesDeleted++
	}
	if err := r.Reindex(ctx); err != nil {
		return nil, err
	}
	if opt.crashAfter == "delete-index" {
		return rep, errCrashHook
	}

	// 5. Delete packs no index lists.
	var gone []objstore.ID
	for id := range drop {
		gone = append(gone, id)
	}
	gone = append(gone, unindexed...)
	for i, id := range gone {
		prog("delete", i, len(gone))
		if _, listed, err := cat.LookupPack(id); err != nil {
			return nil, err
		} else if listed {
			continue
		}
		if err := r.Store().Delete(ctx, objstore.KindPack, id); err != nil && !errors.Is(err, objstore.ErrNotFound) {
			return nil, fmt.Errorf("prune: delete pack %s: %w", id.Short(), err)
		}
	}
	log.Info("prune done", "deleted", rep.PacksDeleted, "repacked", rep.PacksRepacked, "freed", rep.BytesFreed)
	return rep, nil
}

// rescueUnindexed checks that every marked blob is indexed. For those that
// are not, it reads the headers of the unindexed packs and writes an index
// for the packs that hold them. It returns the packs it indexed (with their
// sizes), and fails
// when a needed blob is in no pack at all.
func rescueUnindexed(ctx context.Context, r *repo.Repository, marks *catalog.MarkSet, unindexed []objstore.ID, dryRun bool) (map[objstore.ID]int64, error) {
	cat := r.Catalog()
	missing := map[[33]byte]bool{}
	err := marks.ForEach(func(t blob.Type, id blob.ID) error {
		if _, ok, err := cat.LookupBlob(t, id); err != nil {
			return err
		} else if !ok {
			var k [33]byte
			k[0] = byte(t)
			copy(k[1:], id[:])
			missing[k] = true
		}
		return nil
	})
	if err != nil || len(missing) == 0 {
		return nil, err
	}
	rescued := map[objstore.ID]int64{}
	var packs []catalog.IndexedPack
	for _, pid := range unindexed {
		info, err := r.Store().Stat(ctx, objstore.KindPack, pid)
		if err != nil {
			return nil, err
		}
		ents, err := r.ReadPackHeader(ctx, pid, info.Size)
		if err != nil {
			continue // unreadable: it cannot rescue anything
		}
		useful := false
		for _, e := range ents {
			var k [33]byte
			k[0] = byte(e.Type)
			copy(k[1:], e.ID[:])
			if missing[k] {
				useful = true
				delete(missing, k)
			}
		}
		if !useful {
			continue
		}
		ip := catalog.IndexedPack{ID: pid, Size: uint32(info.Size)}
		for _, e := range ents {
			ip.Blobs = append(ip.Blobs, catalog.IndexedBlob{Type: e.Type, ID: e.ID, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength})
		}
		packs = append(packs, ip)
		rescued[pid] = info.Size
	}
	if len(missing) > 0 {
		for k := range missing {
			var id blob.ID
			copy(id[:], k[1:])
			return nil, fmt.Errorf("prune: %d blobs that snapshots need are in no pack (for example %s blob %s); nothing was deleted: run `arkbox check` to find the damaged snapshots", len(missing), blob.Type(k[0]), id.Short())
		}
	}
	if len(packs) > 0 && !dryRun {
		if _, err := r.SaveIndex(ctx, &repo.Index{Packs: packs}); err != nil {
			return nil, err
		}
	}
	return rescued, nil
}

// headerBytes estimates the pack header and trailer for n blobs (sealing
// overhead, version, count, and per entry type, id and two varints), so
// that the header is not mistaken for garbage.
func headerBytes(n int) int64 { return 64 + int64(n)*40 }

func markTree(ctx context.Context, trees *repo.PackCache, marks *catalog.MarkSet, id blob.ID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	had, err := marks.Mark(blob.Tree, id)
	if err != nil || had {
		return err
	}
	t, err := trees.LoadTree(ctx, id)
	if err != nil {
		return err
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		switch n.Type {
		case tree.Dir:
			if err := markTree(ctx, trees, marks, n.Subtree); err != nil {
				return err
			}
		case tree.File:
			for _, c := range n.Content {
				if _, err := marks.Mark(blob.Data, c.ID); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
