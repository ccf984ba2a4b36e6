package sharefs

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/tree"
	bolt "go.etcd.io/bbolt"
)

// SourcePrefix prefixes the source name of share snapshots.
const SourcePrefix = "share:"

// Snapshot freezes the share into tree objects and a snapshot object. Files
// closed since their last write are committed first; files open for
// writing are captured as they are at that moment. Directories unchanged
// since the previous snapshot reuse their tree ids and cached totals, so
// the work is proportional to what changed, while the snapshot's figures
// (files, dirs, others, bytes) describe the whole share. Its new_blobs,
// new_raw_bytes and new_stored_bytes count what the snapshot itself
// stored: the files it committed or captured, and its trees.
func (sh *Share) Snapshot(ctx context.Context, at time.Time, tags []string) (*repo.Snapshot, error) {
	start := time.Now()
	added, err := sh.commitAll(ctx, true)
	if err != nil {
		return nil, err
	}
	sh.store.repoMu.Lock()
	defer sh.store.repoMu.Unlock()
	sn, err := sh.snapshotLocked(ctx, at, tags, start, added)
	if err != nil {
		sh.store.settle(ctx)
		return nil, err
	}
	return sn, nil
}

func (sh *Share) snapshotLocked(ctx context.Context, at time.Time, tags []string, start time.Time, added repo.WriteStats) (*repo.Snapshot, error) {
	// Files created and not yet in the catalog go in (the tree is read
	// from the catalog).
	if err := sh.flushPending(); err != nil {
		return nil, fmt.Errorf("sharefs: snapshot %s: %w", sh.name, err)
	}
	r := sh.store.repo
	before := r.Stats()
	// Files open and staged: capture their current content, each held
	// open by a handle of our own meanwhile (so that its last handle
	// closing does not close its staging file under the capture).
	sh.mu.Lock()
	var open []*File
	for _, of := range sh.open {
		of.mu.Lock()
		if of.staging != nil {
			of.refs++
			open = append(open, &File{sh: sh, of: of})
		}
		of.mu.Unlock()
	}
	sh.mu.Unlock()
	defer func() {
		for _, f := range open {
			f.Close()
		}
	}()
	overrides := map[uint64][]tree.Chunk{}
	attrs := map[uint64]pendingAttr{}
	for _, f := range open {
		cs, err := sh.capture(ctx, f.of)
		if err != nil {
			return nil, fmt.Errorf("sharefs: snapshot %s: capture open file %d: %w", sh.name, f.of.ino, err)
		}
		overrides[f.of.ino] = cs
		f.of.mu.Lock()
		attrs[f.of.ino] = f.of.attr
		f.of.mu.Unlock()
	}

	sh.meta.Lock()
	b := &treeBuilder{sh: sh, ctx: ctx, overrides: overrides, attrs: attrs}
	rootID, totals, _, err := b.dir(RootIno)
	if err == nil && len(b.valid) > 0 {
		err = sh.updateNoLock(func(bk *bolt.Bucket) error {
			for ino, c := range b.valid {
				in, err := getInode(bk, ino)
				if err != nil {
					return err
				}
				in.Tree, in.TreeValid, in.TreeTotals = c.id, true, &c.totals
				if err := putInode(bk, in); err != nil {
					return err
				}
			}
			return nil
		})
	}
	sh.meta.Unlock()
	if err != nil {
		return nil, fmt.Errorf("sharefs: snapshot %s: %w", sh.name, err)
	}
	if err := r.Flush(ctx); err != nil {
		return nil, fmt.Errorf("sharefs: snapshot %s: %w", sh.name, err)
	}
	host, _ := os.Hostname()
	sn := &repo.Snapshot{Time: at.UTC(), Source: SourcePrefix + sh.name, Host: host, Paths: []string{"/"}, Tags: tags, Tree: rootID}
	added = addWrites(added, writesSince(r, before))
	sn.Stats = repo.SnapshotStats{Files: totals.Files, Dirs: totals.Dirs, Others: totals.Others, Bytes: totals.Bytes,
		NewBlobs: added.Blobs, NewRawBytes: added.RawBytes, NewStoredBytes: added.SealedBytes, Duration: time.Since(start)}
	// The parent is the previous snapshot of this share.
	if snaps, err := r.Snapshots(); err == nil {
		for i := len(snaps) - 1; i >= 0; i-- {
			if snaps[i].Source == sn.Source {
				id := snaps[i].ID
				sn.Parent = &id
				break
			}
		}
	}
	if _, err := r.SaveSnapshot(ctx, sn); err != nil {
		return nil, fmt.Errorf("sharefs: snapshot %s: %w", sh.name, err)
	}
	return sn, nil
}

type treeBuilder struct {
	sh        *Share
	ctx       context.Context
	overrides map[uint64][]tree.Chunk
	attrs     map[uint64]pendingAttr // of the files in overrides
	valid     map[uint64]cachedTree  // directories whose new tree can be cached
}

// cachedTree is what a directory's inode caches of its last snapshot.
type cachedTree struct {
	id     blob.ID
	totals TreeTotals
}

// dir returns the tree id of directory ino, the totals of its subtree
// and whether they may be cached (false when it holds a file captured
// while open).
func (b *treeBuilder) dir(ino uint64) (blob.ID, TreeTotals, bool, error) {
	var (
		dirIn *Inode
		ents  []DirEntry
		full  = map[uint64]bitset{} // block records of staged files
	)
	// A cache without totals (kept by an older version) is built again:
	// the same tree, once.
	reuse := func(in *Inode) bool { return in.TreeValid && in.TreeTotals != nil }
	err := b.sh.view(func(bk *bolt.Bucket) error {
		var err error
		dirIn, err = getInode(bk, ino)
		if err != nil || reuse(dirIn) {
			return err
		}
		prefix := inoKey(ino)
		c := bk.Bucket(bDirents).Cursor()
		for k, v := c.Seek(prefix); k != nil && string(k[:8]) == string(prefix); k, v = c.Next() {
			in, err := getInode(bk, binary.BigEndian.Uint64(v))
			if err != nil {
				return err
			}
			if in.Staged && in.BlockSize > 0 {
				full[in.Ino] = loadBlocks(bk, in.Ino)
			}
			ents = append(ents, DirEntry{Name: string(k[8:]), Inode: in})
		}
		return nil
	})
	if err != nil {
		return blob.ID{}, TreeTotals{}, false, err
	}
	if reuse(dirIn) {
		return dirIn.Tree, *dirIn.TreeTotals, true, nil
	}
	totals := TreeTotals{Dirs: 1}
	cacheable := true
	t := &tree.Tree{Nodes: make([]tree.Node, 0, len(ents))}
	for _, e := range ents {
		b.attrs[e.Inode.Ino].apply(e.Inode)
		n := e.Inode.Node(e.Name)
		switch e.Inode.Type {
		case tree.Dir:
			id, sub, ok, err := b.dir(e.Inode.Ino)
			if err != nil {
				return blob.ID{}, TreeTotals{}, false, err
			}
			n.Subtree = id
			totals.add(sub)
			cacheable = cacheable && ok
		case tree.File:
			totals.Files++
			if cs, ok := b.overrides[e.Inode.Ino]; ok {
				n.Content, n.Size = cs, sumChunks(cs)
				cacheable = false
			} else if e.Inode.Staged {
				// Staged after the commit pass (opened, written and
				// closed meanwhile): capture it now.
				cs, err := b.sh.captureStaged(b.ctx, e.Inode, full[e.Inode.Ino])
				if err != nil {
					return blob.ID{}, TreeTotals{}, false, err
				}
				n.Content, n.Size = cs, sumChunks(cs)
				cacheable = false
			}
			totals.Bytes += n.Size
		default:
			totals.Others++
		}
		t.Nodes = append(t.Nodes, n)
	}
	t.Sort()
	id, err := b.sh.store.repo.SaveTree(b.ctx, t)
	if err != nil {
		return blob.ID{}, TreeTotals{}, false, err
	}
	if cacheable {
		if b.valid == nil {
			b.valid = map[uint64]cachedTree{}
		}
		b.valid[ino] = cachedTree{id: id, totals: totals}
	}
	return id, totals, cacheable, nil
}

// writesSince is what r stored since it had stored before; the caller
// holds repoMu, so that no other writer of the store adds to it.
func writesSince(r *repo.Repository, before repo.WriteStats) repo.WriteStats {
	now := r.Stats()
	return repo.WriteStats{Blobs: now.Blobs - before.Blobs, RawBytes: now.RawBytes - before.RawBytes,
		SealedBytes: now.SealedBytes - before.SealedBytes, Packs: now.Packs - before.Packs, Dupes: now.Dupes - before.Dupes}
}

func addWrites(a, b repo.WriteStats) repo.WriteStats {
	return repo.WriteStats{Blobs: a.Blobs + b.Blobs, RawBytes: a.RawBytes + b.RawBytes,
		SealedBytes: a.SealedBytes + b.SealedBytes, Packs: a.Packs + b.Packs, Dupes: a.Dupes + b.Dupes}
}

func sumChunks(cs []tree.Chunk) uint64 {
	var n uint64
	for _, c := range cs {
		n += uint64(c.Size)
	}
	return n
}
