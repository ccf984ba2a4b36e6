package sharefs

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/tree"
)

// SnapshotsDir is the read-only folder at the root of every share that
// holds its snapshots, one folder per snapshot named by its local time.
const SnapshotsDir = ".snapshots"

// SnapshotNameLayout formats a snapshot's folder name (local time).
const SnapshotNameLayout = "2006-01-02T150405"

// SnapshotDir is one folder of /.snapshots.
type SnapshotDir struct {
	Name     string
	Snapshot *repo.Snapshot
}

// Snapshots lists the share's snapshots as folders, oldest first. Two
// snapshots in the same second get "-2", "-3"… suffixes.
func (sh *Share) Snapshots() ([]SnapshotDir, error) {
	all, err := sh.store.repo.Snapshots()
	if err != nil {
		return nil, err
	}
	var out []SnapshotDir
	seen := map[string]int{}
	for _, sn := range all {
		if sn.Source != SourcePrefix+sh.name {
			continue
		}
		name := sn.Time.In(time.Local).Format(SnapshotNameLayout)
		seen[name]++
		if n := seen[name]; n > 1 {
			name = fmt.Sprintf("%s-%d", name, n)
		}
		out = append(out, SnapshotDir{Name: name, Snapshot: sn})
	}
	return out, nil
}

func (sh *Share) findSnapshot(name string) (*repo.Snapshot, error) {
	dirs, err := sh.Snapshots()
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if d.Name == name {
			return d.Snapshot, nil
		}
	}
	return nil, fmt.Errorf("sharefs: snapshot %s of share %s: %w", name, sh.name, ErrNotExist)
}

// SnapshotNode is an entry of a snapshot: its tree node, and for
// directories their tree.
type SnapshotNode struct {
	Node tree.Node
	Tree *tree.Tree // directories only
}

// SnapshotLookup resolves p (slash-separated, relative to the snapshot's
// root; ".." never leaves it) inside snapshot name. The root has an empty
// Node of type Dir.
func (sh *Share) SnapshotLookup(ctx context.Context, name, p string) (*SnapshotNode, error) {
	sn, err := sh.findSnapshot(name)
	if err != nil {
		return nil, err
	}
	r := sh.store.repo
	t, err := r.LoadTree(ctx, sn.Tree)
	if err != nil {
		return nil, err
	}
	cur := &SnapshotNode{Node: tree.Node{Type: tree.Dir, Mode: 0o555, MTime: sn.Time.UnixNano()}, Tree: t}
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return cur, nil
	}
	for _, part := range strings.Split(p, "/") {
		if cur.Tree == nil {
			return nil, fmt.Errorf("sharefs: %s: %w", p, ErrNotDir)
		}
		n, ok := cur.Tree.Find(part)
		if !ok {
			return nil, fmt.Errorf("sharefs: snapshot %s: %s: %w", name, p, ErrNotExist)
		}
		next := &SnapshotNode{Node: *n}
		if n.Type == tree.Dir {
			next.Tree, err = r.LoadTree(ctx, n.Subtree)
			if err != nil {
				return nil, err
			}
		}
		cur = next
	}
	return cur, nil
}

// SnapshotFile reads a file of a snapshot. It is safe for concurrent use.
type SnapshotFile struct {
	node tree.Node
	r    *chunkReader
}

// SnapshotOpen opens file p of snapshot name for reading.
func (sh *Share) SnapshotOpen(ctx context.Context, name, p string) (*SnapshotFile, error) {
	n, err := sh.SnapshotLookup(ctx, name, p)
	if err != nil {
		return nil, err
	}
	if n.Node.Type == tree.Dir {
		return nil, fmt.Errorf("sharefs: snapshot %s: %s: %w", name, p, ErrIsDir)
	}
	if n.Node.Type != tree.File {
		return nil, fmt.Errorf("sharefs: snapshot %s: %s: not a regular file: %w", name, p, ErrInvalid)
	}
	return &SnapshotFile{node: n.Node, r: sh.store.newChunkReader("snapshot "+name+" file "+p, n.Node.Content)}, nil
}

// Node returns the file's metadata.
func (f *SnapshotFile) Node() tree.Node { return f.node }

// ReadAt implements io.ReaderAt; every byte is verified against its chunk id.
func (f *SnapshotFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrInvalid
	}
	size := f.node.Size
	if uint64(off) >= size {
		return 0, io.EOF
	}
	want := p[:min(uint64(len(p)), size-uint64(off))]
	if err := f.r.readAt(context.Background(), want, uint64(off), size); err != nil {
		return 0, fmt.Errorf("sharefs: read snapshot file at %d: %w", off, err)
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(want), nil
}

// Close releases the file.
func (f *SnapshotFile) Close() error { return nil }
