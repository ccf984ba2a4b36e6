// Package restorer writes a snapshot (or a part of it) back to a local
// directory: files with their content verified blob by blob, directories,
// symlinks, hard links, special files, modes, times, extended attributes
// and, when running as root, owners.
package restorer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/fsnode"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/tree"
)

// Options describes a restore.
type Options struct {
	// Target is the directory to restore into (created if missing).
	Target string
	// Path selects a subtree of the snapshot ("" or "/" = everything).
	Path string
	// Owners restores uid/gid (default: when running as root).
	Owners *bool
	// Workers writing files in parallel (0 = 4×CPUs: creating files is
	// mostly waiting on the file system).
	Workers  int
	Logger   *slog.Logger
	Progress *Progress
}

// Progress is updated atomically while a restore runs.
type Progress struct {
	Files atomic.Uint64
	Bytes atomic.Uint64
}

// Result summarises a restore.
type Result struct {
	Files  uint64 `json:"files"`
	Dirs   uint64 `json:"dirs"`
	Others uint64 `json:"others"`
	Bytes  uint64 `json:"bytes"`
}

type restorer struct {
	repo  *repo.Repository
	opt   Options
	apply fsnode.ApplyOptions
	prog  *Progress
	log   *slog.Logger

	mu    sync.Mutex
	res   Result
	links map[[2]uint64]string
	dirs  []dirMeta
	files chan fileJob
	err   error
	cache *repo.PackCache
	trees *repo.PackCache
}

type dirMeta struct {
	path string
	node tree.Node
}

type fileJob struct {
	path string
	node *tree.Node
}

// Resolve walks from root to the node at p ("" = root), returning the node
// (nil for the root) and, for directories, their tree.
func Resolve(ctx context.Context, r *repo.Repository, root blob.ID, p string) (*tree.Node, *tree.Tree, error) {
	t, err := r.LoadTree(ctx, root)
	if err != nil {
		return nil, nil, err
	}
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return nil, t, nil
	}
	parts := strings.Split(p, "/")
	var n *tree.Node
	for i, part := range parts {
		var ok bool
		n, ok = t.Find(part)
		if !ok {
			return nil, nil, fmt.Errorf("snapshot path %s: no such file or directory in the snapshot", strings.Join(parts[:i+1], "/"))
		}
		if n.Type == tree.Dir {
			t, err = r.LoadTree(ctx, n.Subtree)
			if err != nil {
				return nil, nil, err
			}
		} else if i < len(parts)-1 {
			return nil, nil, fmt.Errorf("snapshot path %s: not a directory", strings.Join(parts[:i+1], "/"))
		} else {
			t = nil
		}
	}
	return n, t, nil
}

// Run restores sn into opt.Target.
func Run(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, opt Options) (*Result, error) {
	if opt.Target == "" {
		return nil, errors.New("restore: no target directory given")
	}
	owners := os.Geteuid() == 0
	if opt.Owners != nil {
		owners = *opt.Owners
	}
	if opt.Workers <= 0 {
		opt.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prog := opt.Progress
	if prog == nil {
		prog = &Progress{}
	}
	rs := &restorer{repo: r, opt: opt, apply: fsnode.ApplyOptions{Owners: owners, Xattrs: true}, prog: prog, log: log,
		links: map[[2]uint64]string{}, files: make(chan fileJob, 256), cache: r.NewPackCache(4), trees: r.NewPackCache(2)}
	node, t, err := Resolve(ctx, r, sn.Tree, opt.Path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opt.Target, 0o700); err != nil {
		return nil, fmt.Errorf("restore: create target %s: %w", opt.Target, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < opt.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range rs.files {
				if rs.failed() {
					continue
				}
				if err := rs.writeFile(ctx, j.path, j.node); err != nil {
					rs.fail(err)
					cancel()
				}
			}
		}()
	}
	var walkErr error
	if node == nil || node.Type == tree.Dir {
		walkErr = rs.tree(ctx, opt.Target, t)
	} else {
		walkErr = rs.entry(ctx, opt.Target, node)
	}
	close(rs.files)
	wg.Wait()
	// A worker's error explains a canceled walk: report it first.
	if rs.err != nil {
		return nil, rs.err
	}
	if walkErr != nil {
		return nil, walkErr
	}
	// Directory metadata last, deepest first, so that writing entries does
	// not disturb the times of their directory.
	for i := len(rs.dirs) - 1; i >= 0; i-- {
		d := rs.dirs[i]
		if err := fsnode.Apply(d.path, &d.node, rs.apply); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	if node != nil && node.Type == tree.Dir {
		if err := fsnode.Apply(opt.Target, node, rs.apply); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	return &rs.res, nil
}

func (rs *restorer) fail(err error) {
	rs.mu.Lock()
	if rs.err == nil {
		rs.err = err
	}
	rs.mu.Unlock()
}

func (rs *restorer) failed() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.err != nil
}

func (rs *restorer) tree(ctx context.Context, dir string, t *tree.Tree) error {
	for i := range t.Nodes {
		if err := rs.entry(ctx, dir, &t.Nodes[i]); err != nil {
			return err
		}
	}
	return nil
}

func (rs *restorer) entry(ctx context.Context, dir string, n *tree.Node) error {
	if err := ctx.Err(); err != nil {
		if rs.err != nil {
			return rs.err
		}
		return err
	}
	if strings.ContainsAny(n.Name, "/\x00") || n.Name == "" || n.Name == "." || n.Name == ".." {
		return fmt.Errorf("restore: refusing entry name %q in %s", n.Name, dir)
	}
	p := filepath.Join(dir, n.Name)
	if err := removeExisting(p, n.Type); err != nil {
		return err
	}
	rs.prog.Files.Add(1)
	switch n.Type {
	case tree.Dir:
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("restore: mkdir %s: %w", p, err)
		}
		t, err := rs.trees.LoadTree(ctx, n.Subtree)
		if err != nil {
			return fmt.Errorf("restore: %s: %w", p, err)
		}
		rs.mu.Lock()
		rs.res.Dirs++
		rs.dirs = append(rs.dirs, dirMeta{path: p, node: *n})
		rs.mu.Unlock()
		return rs.tree(ctx, p, t)
	case tree.File:
		if n.Links > 1 {
			key := [2]uint64{n.Device, n.Inode}
			rs.mu.Lock()
			first, ok := rs.links[key]
			if !ok {
				rs.links[key] = p
			}
			rs.mu.Unlock()
			if ok {
				// The first link's content may still be being written:
				// a hard link shares it, so linking now is correct.
				if err := os.Link(first, p); err != nil {
					return fmt.Errorf("restore: link %s to %s: %w", p, first, err)
				}
				return nil
			}
			// Create the first link now, so later links find it even
			// before a worker writes its content.
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return fmt.Errorf("restore: create %s: %w", p, err)
			}
			f.Close()
		}
		rs.mu.Lock()
		rs.res.Files++
		rs.res.Bytes += n.Size
		rs.mu.Unlock()
		select {
		case rs.files <- fileJob{path: p, node: n}:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	case tree.Symlink:
		if err := os.Symlink(n.LinkTarget, p); err != nil {
			return fmt.Errorf("restore: symlink %s: %w", p, err)
		}
	default:
		if err := fsnode.MakeSpecial(p, n); err != nil {
			if os.Geteuid() != 0 && (n.Type == tree.BlockDev || n.Type == tree.CharDev) {
				rs.log.Warn("restore: skipped device node (needs root)", "path", p)
				return nil
			}
			return fmt.Errorf("restore: %w", err)
		}
	}
	rs.mu.Lock()
	rs.res.Others++
	rs.mu.Unlock()
	if err := fsnode.Apply(p, n, rs.apply); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

func removeExisting(p string, t tree.Type) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore: %s: %w", p, err)
	}
	if fi.IsDir() && t == tree.Dir {
		return nil
	}
	if fi.IsDir() {
		return fmt.Errorf("restore: %s: a directory is in the way of a %s", p, typeName(t))
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("restore: replace %s: %w", p, err)
	}
	return nil
}

func typeName(t tree.Type) string {
	switch t {
	case tree.File:
		return "file"
	case tree.Symlink:
		return "symlink"
	}
	return "special file"
}

func (rs *restorer) writeFile(ctx context.Context, p string, n *tree.Node) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("restore: create %s: %w", p, err)
	}
	var off int64
	for _, c := range n.Content {
		data, err := rs.cache.LoadBlob(ctx, blob.Data, c.ID)
		if err != nil {
			f.Close()
			return fmt.Errorf("restore: %s at offset %d: %w", p, off, err)
		}
		if len(data) != int(c.Size) {
			f.Close()
			return fmt.Errorf("restore: %s at offset %d: chunk %s has %d bytes, tree says %d", p, off, c.ID.Short(), len(data), c.Size)
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return fmt.Errorf("restore: write %s: %w", p, err)
		}
		off += int64(len(data))
		rs.prog.Bytes.Add(uint64(len(data)))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("restore: close %s: %w", p, err)
	}
	if err := fsnode.Apply(p, n, rs.apply); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}
