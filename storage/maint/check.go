// Package maint holds the repository's maintenance operations: check
// (structure and, optionally, every byte of data), prune (remove and repack
// what no snapshot needs, crash-safely and with bounded memory) and stats.
package maint

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"sort"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/tree"
)

// CheckOptions tunes Check.
type CheckOptions struct {
	// ReadDataPercent > 0 reads that share of the packs (100 = all) and
	// verifies every blob in them.
	ReadDataPercent float64
	// Progress is called now and then with a description of the phase.
	Progress func(phase string, done, total int)
}

// Problem is one finding of Check.
type Problem struct {
	Object string `json:"object"`
	What   string `json:"what"`
}

// CheckReport is what Check found.
type CheckReport struct {
	Indexes      int       `json:"indexes"`
	Packs        int       `json:"packs"`
	Snapshots    int       `json:"snapshots"`
	Trees        int       `json:"trees"`
	DataBlobs    uint64    `json:"data_blobs_referenced"`
	PacksRead    int       `json:"packs_read"`
	BlobsRead    int       `json:"blobs_read"`
	BytesRead    int64     `json:"bytes_read"`
	Errors       []Problem `json:"errors"`
	Warnings     []Problem `json:"warnings"`
	Unreferenced int       `json:"unindexed_packs"`
}

// OK reports whether no error was found.
func (r *CheckReport) OK() bool { return len(r.Errors) == 0 }

func (r *CheckReport) errorf(obj, format string, args ...any) {
	r.Errors = append(r.Errors, Problem{Object: obj, What: fmt.Sprintf(format, args...)})
}

// Check verifies the repository's structure: every index object decrypts
// and parses, every pack it lists exists with the listed size, every blob
// every snapshot references is indexed and every tree decodes. With
// ReadDataPercent it also reads packs and verifies each blob's content
// against its id.
func Check(ctx context.Context, r *repo.Repository, opt CheckOptions) (*CheckReport, error) {
	rep := &CheckReport{Errors: []Problem{}, Warnings: []Problem{}}
	st := r.Store()
	prog := opt.Progress
	if prog == nil {
		prog = func(string, int, int) {}
	}
	// Index objects and the packs they list.
	listed := map[objstore.ID]uint32{}
	var idxIDs []objstore.ID
	if err := st.List(ctx, objstore.KindIndex, func(i objstore.Info) error { idxIDs = append(idxIDs, i.ID); return nil }); err != nil {
		return nil, fmt.Errorf("check: list indexes: %w", err)
	}
	superseded := map[objstore.ID]bool{}
	loaded := map[objstore.ID]*repo.Index{}
	for i, id := range idxIDs {
		prog("index", i, len(idxIDs))
		idx, err := r.LoadIndex(ctx, id)
		if err != nil {
			rep.errorf("index/"+id.String(), "%v", err)
			continue
		}
		loaded[id] = idx
		for _, s := range idx.Supersedes {
			superseded[s] = true
		}
	}
	for id, idx := range loaded {
		if superseded[id] {
			continue
		}
		rep.Indexes++
		for _, p := range idx.Packs {
			listed[p.ID] = p.Size
		}
	}
	// Packs in the store.
	inStore := map[objstore.ID]int64{}
	if err := st.List(ctx, objstore.KindPack, func(i objstore.Info) error { inStore[i.ID] = i.Size; return nil }); err != nil {
		return nil, fmt.Errorf("check: list packs: %w", err)
	}
	for id, size := range listed {
		got, ok := inStore[id]
		switch {
		case !ok:
			rep.errorf("pack/"+id.String(), "listed in an index but missing from the store")
		case got != int64(size):
			rep.errorf("pack/"+id.String(), "size %d, index says %d", got, size)
		}
	}
	for id := range inStore {
		if _, ok := listed[id]; !ok {
			rep.Unreferenced++
			rep.Warnings = append(rep.Warnings, Problem{Object: "pack/" + id.String(), What: "not listed in any index (left by an interrupted backup or prune; `arkbox prune` removes it)"})
		}
	}
	rep.Packs = len(listed)

	// Snapshots and trees.
	snaps, err := r.Snapshots()
	if err != nil {
		return nil, err
	}
	rep.Snapshots = len(snaps)
	marks, err := r.Catalog().NewMarkSet("check")
	if err != nil {
		return nil, err
	}
	defer marks.Drop()
	trees := r.NewPackCache(2)
	for i, sn := range snaps {
		prog("snapshots", i, len(snaps))
		if err := checkTree(ctx, r, trees, marks, rep, sn, sn.Tree, "/"); err != nil {
			return nil, err
		}
	}

	if opt.ReadDataPercent > 0 {
		ids := make([]objstore.ID, 0, len(listed))
		for id := range listed {
			if _, ok := inStore[id]; ok {
				ids = append(ids, id)
			}
		}
		ids = selectShare(ids, opt.ReadDataPercent)
		for i, id := range ids {
			prog("read data", i, len(ids))
			if err := readPack(ctx, r, id, rep); err != nil {
				return nil, err
			}
		}
	}
	return rep, nil
}

// selectShare picks a random pct percent of ids (at least one), so that a
// scheduled partial verification covers every pack over its runs.
func selectShare(ids []objstore.ID, pct float64) []objstore.ID {
	if pct >= 100 {
		return ids
	}
	n := int(float64(len(ids))*pct/100 + 0.999)
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	out := ids[:min(n, len(ids))]
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func checkTree(ctx context.Context, r *repo.Repository, trees *repo.PackCache, marks *catalog.MarkSet, rep *CheckReport, sn *repo.Snapshot, id blob.ID, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	had, err := marks.Mark(blob.Tree, id)
	if err != nil {
		return err
	}
	if had {
		return nil
	}
	rep.Trees++
	t, err := trees.LoadTree(ctx, id)
	if err != nil {
		rep.errorf("snapshot/"+sn.ID.String()[:8]+":"+p, "tree %s: %v", id.Short(), err)
		return nil
	}
	cat := r.Catalog()
	for i := range t.Nodes {
		n := &t.Nodes[i]
		np := path.Join(p, n.Name)
		switch n.Type {
		case tree.Dir:
			if err := checkTree(ctx, r, trees, marks, rep, sn, n.Subtree, np); err != nil {
				return err
			}
		case tree.File:
			var sum uint64
			for _, c := range n.Content {
				sum += uint64(c.Size)
				had, err := marks.Mark(blob.Data, c.ID)
				if err != nil {
					return err
				}
				if had {
					continue
				}
				rep.DataBlobs++
				if _, ok, err := cat.LookupBlob(blob.Data, c.ID); err != nil {
					return err
				} else if !ok {
					rep.errorf("snapshot/"+sn.ID.String()[:8]+":"+np, "data blob %s is not in any index", c.ID.Short())
				}
			}
			if sum != n.Size {
				rep.errorf("snapshot/"+sn.ID.String()[:8]+":"+np, "chunks add up to %d bytes, size is %d", sum, n.Size)
			}
		}
	}
	return nil
}

func readPack(ctx context.Context, r *repo.Repository, id objstore.ID, rep *CheckReport) error {
	data, err := r.Store().Get(ctx, objstore.KindPack, id)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		rep.errorf("pack/"+id.String(), "read: %v", err)
		return nil
	}
	rep.PacksRead++
	rep.BytesRead += int64(len(data))
	ents, err := r.SplitPack(id, data)
	if err != nil {
		rep.errorf("pack/"+id.String(), "%v", err)
		return nil
	}
	// Every blob the index lists must be in the header at the same place
	// (after prune the header may list more: blobs no longer used).
	listed, err := r.Catalog().PackBlobs(id)
	if err == nil {
		type key struct {
			t   blob.Type
			id  blob.ID
			off uint32
			n   uint32
		}
		inHeader := make(map[key]bool, len(ents))
		for _, e := range ents {
			inHeader[key{e.Type, e.ID, e.Offset, e.Length}] = true
		}
		for _, l := range listed {
			if !inHeader[key{l.Type, l.ID, l.Offset, l.Length}] {
				rep.errorf("pack/"+id.String(), "index lists %s blob %s at %d+%d, the pack header does not", l.Type, l.ID.Short(), l.Offset, l.Length)
			}
		}
	}
	for _, e := range ents {
		sealed := data[e.Offset : e.Offset+e.Length]
		if _, err := r.OpenBlob(e.Type, e.ID, sealed, e.RawLength); err != nil {
			rep.errorf("pack/"+id.String(), "blob %s: %v", e.ID.Short(), err)
			continue
		}
		rep.BlobsRead++
	}
	return nil
}
