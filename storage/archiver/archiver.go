// Package archiver backs up local directory trees into a repository: it
// walks the paths, reuses the content of files unchanged since the parent
// snapshot (same size, mtime, ctime and inode), chunks and stores the rest,
// writes one tree per directory and finally a snapshot.
package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/chunker"
	"github.com/arkbox/arkbox/storage/fsnode"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/tree"
)

// Options describes one backup run.
type Options struct {
	Paths    []string // files or directories to back up
	Source   string   // the snapshot's source name ("" = host:paths)
	Host     string
	Tags     []string
	Time     time.Time // snapshot time (zero = now)
	Excludes []string  // glob patterns, matched against the base name and the full path
	// Parent is the snapshot to compare against (nil = the latest of Source).
	Parent *repo.Snapshot
	// NoParent forces every file to be read.
	NoParent bool
	// Fixed chunks every file in fixed 4 MiB blocks (disk images).
	Fixed bool
	// Workers reading files in parallel (0 = 4 × CPUs; large files are
	// chunked at most one per CPU at a time).
	Workers int
	Logger  *slog.Logger
	// Progress, if set, is updated while the backup runs.
	Progress *Progress
	Program  string
}

// Progress is updated atomically during a backup; read it from another
// goroutine to report progress.
type Progress struct {
	Files     atomic.Uint64 // entries processed
	Bytes     atomic.Uint64 // file bytes processed (read or found unchanged)
	ReadBytes atomic.Uint64 // file bytes actually read
	Errors    atomic.Uint64
	Current   atomic.Pointer[string]
}

// Result is a finished backup.
type Result struct {
	Snapshot *repo.Snapshot
	// Errors lists files that could not be read (the backup went on).
	Errors []error
}

type archiver struct {
	repo   *repo.Repository
	opt    Options
	log    *slog.Logger
	names  fsnode.Names
	jobs   chan *fileJob
	chunkQ chan chunkJob
	prog   *Progress

	mu    sync.Mutex
	errs  []error
	stats repo.SnapshotStats

	hardlinks  sync.Map // [2]uint64{dev, ino} → *fileJob of the first link
	cancel     context.CancelFunc
	trees      *repo.PackCache
	bigFiles   chan struct{} // a slot per large file being chunked
	fatalError error
	bufs       sync.Pool
}

func (a *archiver) getBuf(n int) *[]byte {
	if b, ok := a.bufs.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, max(n, 1<<20))
	return &b
}

func (a *archiver) putBuf(b *[]byte) { a.bufs.Put(b) }

type fileJob struct {
	path string
	node *tree.Node
	dir  *dirJob
	done chan struct{}
	err  error
}

type chunkJob struct {
	id   blob.ID
	data []byte
	buf  *[]byte
	wg   *sync.WaitGroup
	errp *error
	mu   *sync.Mutex
}

// Run performs a backup and saves its snapshot.
func Run(ctx context.Context, r *repo.Repository, opt Options) (*Result, error) {
	if len(opt.Paths) == 0 {
		return nil, errors.New("archiver: nothing to back up: give at least one path")
	}
	start := time.Now()
	if opt.Time.IsZero() {
		opt.Time = start
	}
	if opt.Host == "" {
		opt.Host, _ = os.Hostname()
	}
	abs := make([]string, len(opt.Paths))
	for i, p := range opt.Paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("archiver: %s: %w", p, err)
		}
		abs[i] = a
	}
	if opt.Source == "" {
		opt.Source = opt.Host + ":" + strings.Join(abs, ",")
	}
	for _, pat := range opt.Excludes {
		if _, err := filepath.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("archiver: exclude pattern %q: %w", pat, err)
		}
	}
	if opt.Workers <= 0 {
		// Reading many small files is mostly waiting on the file system.
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
	cpus := runtime.GOMAXPROCS(0)
	a := &archiver{repo: r, opt: opt, log: log, prog: prog, trees: r.NewPackCache(2), bigFiles: make(chan struct{}, cpus)}

	var parent *repo.Snapshot
	if !opt.NoParent {
		parent = opt.Parent
		if parent == nil {
			snaps, err := r.Snapshots()
			if err != nil {
				return nil, err
			}
			for i := len(snaps) - 1; i >= 0; i-- {
				if snaps[i].Source == opt.Source {
					parent = snaps[i]
					break
				}
			}
		}
	}
	var parentRoot *tree.Tree
	if parent != nil {
		t, err := r.LoadTree(ctx, parent.Tree)
		if err != nil {
			return nil, fmt.Errorf("archiver: load parent snapshot %s: %w", parent.ID.Short(), err)
		}
		parentRoot = t
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.jobs = make(chan *fileJob, 64)
	a.chunkQ = make(chan chunkJob, cpus)
	var fileWorkers, chunkWorkers sync.WaitGroup
	for i := 0; i < opt.Workers; i++ {
		fileWorkers.Add(1)
		go func() { defer fileWorkers.Done(); a.fileWorker(ctx) }()
	}
	for i := 0; i < cpus; i++ {
		chunkWorkers.Add(1)
		go func() { defer chunkWorkers.Done(); a.chunkWorker(ctx) }()
	}
	stopWorkers := func() {
		close(a.jobs)
		fileWorkers.Wait()
		close(a.chunkQ)
		chunkWorkers.Wait()
	}

	var (
		ents    []dirent
		seen    = map[string]string{}
		walkErr error
	)
	for _, p := range abs {
		name := filepath.Base(p)
		if name == "/" || name == "." {
			name = "root"
		}
		if prev, dup := seen[name]; dup {
			walkErr = fmt.Errorf("archiver: %s and %s would both be stored as %q: back them up separately or from a common parent", prev, p, name)
			break
		}
		seen[name] = p
		if _, err := os.Lstat(p); err != nil {
			walkErr = fmt.Errorf("archiver: %w", err)
			break
		}
		ents = append(ents, dirent{path: p, name: name})
	}
	a.cancel = cancel
	root := &dirJob{idx: -1, done: make(chan struct{})}
	if walkErr == nil {
		sort.Slice(ents, func(i, j int) bool { return ents[i].name < ents[j].name })
		walkErr = a.walk(ctx, root, ents, parentRoot)
	}
	if walkErr == nil {
		select {
		case <-root.done:
		case <-ctx.Done():
		}
	}
	stopWorkers()
	if walkErr == nil {
		walkErr = a.fatalErr()
	}
	if walkErr != nil {
		return nil, walkErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rootID := root.id
	if err := r.Flush(ctx); err != nil {
		return nil, err
	}
	after := r.Stats()
	a.stats.NewBlobs = after.Blobs
	a.stats.NewRawBytes = after.RawBytes
	a.stats.NewStoredBytes = after.SealedBytes
	a.stats.Errors = uint64(len(a.errs))
	a.stats.Duration = time.Since(start)
	sn := &repo.Snapshot{Time: opt.Time.UTC(), Source: opt.Source, Host: opt.Host, Paths: abs, Tags: opt.Tags,
		Tree: rootID, Stats: a.stats, Program: opt.Program}
	if parent != nil {
		pid := parent.ID
		sn.Parent = &pid
	}
	if _, err := r.SaveSnapshot(ctx, sn); err != nil {
		return nil, err
	}
	return &Result{Snapshot: sn, Errors: a.errs}, nil
}

func (a *archiver) excluded(path, name string) bool {
	for _, pat := range a.opt.Excludes {
		if ok, _ := filepath.Match(pat, name); ok {
			return true
		}
		if ok, _ := filepath.Match(pat, path); ok {
			return true
		}
	}
	return false
}

func (a *archiver) softError(err error) {
	a.log.Warn("backup: skipped", "err", err)
	a.prog.Errors.Add(1)
	a.mu.Lock()
	a.errs = append(a.errs, err)
	a.mu.Unlock()
}

// entry builds the node for one path. Directories are processed
// recursively (their tree is saved before entry returns); files are handed
// to the workers and their content filled in before the enclosing tree is
// saved.
func (a *archiver) entry(ctx context.Context, path, name string, fi fs.FileInfo, parent *tree.Node) (*tree.Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a.prog.Files.Add(1)
	n, err := fsnode.FromStat(path, name, fi, fsnode.Options{Xattrs: true, Names: &a.names})
	if err != nil {
		// Gone since the directory was read: skip it, as fill does.
		if !errors.Is(err, fs.ErrNotExist) {
			a.softError(err)
		}
		return nil, nil
	}
	switch n.Type {
	case tree.Dir:
		a.mu.Lock()
		a.stats.Dirs++
		a.mu.Unlock()
	case tree.File:
		a.mu.Lock()
		a.stats.Files++
		a.stats.Bytes += n.Size
		a.mu.Unlock()
		if parent != nil && unchanged(parent, &n) {
			ok, err := a.allStored(parent.Content)
			if err != nil {
				return nil, err
			}
			if ok {
				n.Content = parent.Content
				a.prog.Bytes.Add(n.Size)
				a.mu.Lock()
				a.stats.UnchangedFiles++
				a.mu.Unlock()
				return &n, nil
			}
		}
		a.mu.Lock()
		if parent != nil {
			a.stats.ChangedFiles++
		} else {
			a.stats.NewFiles++
		}
		a.mu.Unlock()
	default:
		a.mu.Lock()
		a.stats.Others++
		a.mu.Unlock()
	}
	return &n, nil
}

func unchanged(p, n *tree.Node) bool {
	return p.Type == tree.File && p.Size == n.Size && p.MTime == n.MTime && p.CTime == n.CTime && p.Inode == n.Inode
}

func (a *archiver) allStored(cs []tree.Chunk) (bool, error) {
	for _, c := range cs {
		ok, err := a.repo.HasBlob(blob.Data, c.ID)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

type dirent struct{ path, name string }

// dirJob is a directory whose tree is being assembled. Its pending count
// is the walker's hold plus every file being read and every subdirectory
// not yet finished; whoever brings it to zero saves the tree and releases
// the parent. So the walk never waits for file contents.
type dirJob struct {
	t       *tree.Tree
	parent  *dirJob
	idx     int // this directory's node in parent.t.Nodes
	pending atomic.Int64
	dropped atomic.Bool
	// root only
	done chan struct{}
	id   blob.ID
}

type subdir struct {
	d     *dirJob
	path  string
	pnode *tree.Node // the parent snapshot's node, if any
}

func (a *archiver) fatal(err error) {
	a.mu.Lock()
	if a.fatalError == nil {
		a.fatalError = err
	}
	a.mu.Unlock()
	a.cancel()
}

func (a *archiver) fatalErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fatalError
}

// release drops one pending reference of d; the last one saves its tree.
func (a *archiver) release(ctx context.Context, d *dirJob) {
	for d != nil {
		if d.pending.Add(-1) != 0 {
			return
		}
		if d.dropped.Load() {
			keep := d.t.Nodes[:0]
			for _, n := range d.t.Nodes {
				if n.Name != "" {
					keep = append(keep, n)
				}
			}
			d.t.Nodes = keep
		}
		id, err := a.repo.SaveTree(ctx, d.t)
		if err != nil {
			a.fatal(err)
			return
		}
		d.t = nil
		if d.parent == nil {
			d.id = id
			close(d.done)
			return
		}
		d.parent.t.Nodes[d.idx].Subtree = id
		d = d.parent
	}
}

// loadTree loads a parent tree through the pack cache (tree packs hold only
// trees, so rescanning an unchanged source reads little).
func (a *archiver) loadTree(ctx context.Context, id blob.ID) (*tree.Tree, error) {
	return a.trees.LoadTree(ctx, id)
}

// walk visits the tree depth first, handing files to the workers.
func (a *archiver) walk(ctx context.Context, root *dirJob, ents []dirent, parentRoot *tree.Tree) error {
	stack, err := a.fill(ctx, root, ents, parentRoot)
	if err != nil {
		return err
	}
	for len(stack) > 0 {
		sd := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		var ptree *tree.Tree
		if sd.pnode != nil && sd.pnode.Type == tree.Dir {
			ptree, err = a.loadTree(ctx, sd.pnode.Subtree)
			if err != nil {
				a.log.Warn("backup: parent tree unreadable; reading everything below", "path", sd.path, "err", err)
				ptree = nil
			}
		}
		subs, err := a.fill(ctx, sd.d, a.readDir(sd.path), ptree)
		if err != nil {
			return err
		}
		for i := len(subs) - 1; i >= 0; i-- {
			stack = append(stack, subs[i])
		}
	}
	return nil
}

func (a *archiver) readDir(path string) []dirent {
	f, err := os.Open(path)
	if err != nil {
		a.softError(fmt.Errorf("archiver: open directory %s: %w", path, err))
		return nil
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		a.softError(fmt.Errorf("archiver: read directory %s: %w", path, err))
	}
	sort.Strings(names)
	ents := make([]dirent, 0, len(names))
	for _, name := range names {
		p := filepath.Join(path, name)
		if a.excluded(p, name) {
			continue
		}
		ents = append(ents, dirent{path: p, name: name})
	}
	return ents
}

// fill makes the nodes of d from ents (sorted by name), hands the files
// that changed since parent to the workers and returns the subdirectories
// still to visit. It releases the walker's hold on d.
func (a *archiver) fill(ctx context.Context, d *dirJob, ents []dirent, parent *tree.Tree) ([]subdir, error) {
	d.t = &tree.Tree{Nodes: make([]tree.Node, 0, len(ents))}
	paths := make([]string, 0, len(ents))
	var pnodes []*tree.Node
	for _, e := range ents {
		fi, err := os.Lstat(e.path)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				a.softError(fmt.Errorf("archiver: %s: %w", e.path, err))
			}
			continue
		}
		var pn *tree.Node
		if parent != nil {
			pn, _ = parent.Find(e.name)
		}
		n, err := a.entry(ctx, e.path, e.name, fi, pn)
		if err != nil {
			return nil, err
		}
		if n == nil {
			continue
		}
		d.t.Nodes = append(d.t.Nodes, *n)
		paths = append(paths, e.path)
		pnodes = append(pnodes, pn)
	}
	// The node slice is final now: workers may hold pointers into it.
	var subs []subdir
	var jobs []*fileJob
	for i := range d.t.Nodes {
		n := &d.t.Nodes[i]
		switch {
		case n.Type == tree.Dir:
			subs = append(subs, subdir{d: &dirJob{parent: d, idx: i}, path: paths[i], pnode: pnodes[i]})
		case n.Type == tree.File && n.Content == nil && n.Size > 0:
			jobs = append(jobs, &fileJob{path: paths[i], node: n, dir: d, done: make(chan struct{})})
		}
	}
	d.pending.Add(int64(1 + len(subs) + len(jobs)))
	for _, j := range jobs {
		select {
		case a.jobs <- j:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	a.release(ctx, d)
	return subs, nil
}

// fatalError marks repository-side failures that must stop the backup.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

func isFatal(err error) bool {
	var f fatalError
	return errors.As(err, &f)
}

func (a *archiver) fileWorker(ctx context.Context) {
	var ch *chunker.Chunker
	hasher := a.repo.Key().NewBlobHasher()
	for j := range a.jobs {
		a.doFile(ctx, j, &ch, hasher)
		switch {
		case j.err == nil:
		case ctx.Err() != nil:
			// Canceled: Run reports why.
		case errors.Is(j.err, context.Canceled) || isFatal(j.err):
			a.fatal(j.err)
		default:
			a.softError(j.err)
			j.node.Name = "" // leave it out of the tree
			j.dir.dropped.Store(true)
		}
		close(j.done)
		if ctx.Err() == nil {
			a.release(ctx, j.dir)
		}
	}
}

func (a *archiver) doFile(ctx context.Context, j *fileJob, ch **chunker.Chunker, hasher interface{ Sum([]byte) blob.ID }) {
	if err := ctx.Err(); err != nil {
		j.err = err
		return
	}
	if j.node.Links > 1 {
		key := [2]uint64{j.node.Device, j.node.Inode}
		if first, loaded := a.hardlinks.LoadOrStore(key, j); loaded {
			fj := first.(*fileJob)
			<-fj.done
			if fj.err == nil && fj.node.Size == j.node.Size {
				j.node.Content = fj.node.Content
				a.prog.Bytes.Add(j.node.Size)
				return
			}
		}
	}
	p := j.path
	a.prog.Current.Store(&p)
	j.err = a.readFile(ctx, j, ch, hasher)
}

func (a *archiver) readFile(ctx context.Context, j *fileJob, ch **chunker.Chunker, hasher interface{ Sum([]byte) blob.ID }) error {
	f, err := os.Open(j.path)
	if err != nil {
		return fmt.Errorf("archiver: open %s: %w", j.path, err)
	}
	defer f.Close()
	var (
		content []tree.Chunk
		wg      sync.WaitGroup
		mu      sync.Mutex
		saveErr error
		size    uint64
	)
	// emit records a chunk and hands it to the chunk workers unless it is
	// stored already. owned, if set, is a pooled buffer holding data that
	// emit takes over.
	emit := func(data []byte, owned *[]byte) error {
		id := hasher.Sum(data)
		content = append(content, tree.Chunk{ID: id, Size: uint32(len(data))})
		size += uint64(len(data))
		a.prog.Bytes.Add(uint64(len(data)))
		a.prog.ReadBytes.Add(uint64(len(data)))
		has, err := a.repo.HasBlob(blob.Data, id)
		if err != nil || has {
			if owned != nil {
				a.putBuf(owned)
			}
			if err != nil {
				return fatalError{err}
			}
			return nil
		}
		buf := owned
		if buf == nil {
			buf = a.getBuf(len(data))
			copy(*buf, data)
		}
		wg.Add(1)
		select {
		case a.chunkQ <- chunkJob{id: id, data: (*buf)[:len(data)], buf: buf, wg: &wg, errp: &saveErr, mu: &mu}:
			return nil
		case <-ctx.Done():
			wg.Done()
			a.putBuf(buf)
			return ctx.Err()
		}
	}
	finish := func(err error) error {
		wg.Wait()
		if err != nil {
			return err
		}
		if saveErr != nil {
			return fatalError{saveErr}
		}
		// The file may have changed while it was read: record what was read.
		j.node.Size = size
		j.node.Content = content
		return nil
	}

	// Small files (below the minimum chunk size: one chunk) are read in one
	// call into a pooled buffer; many run at once, since their cost is
	// mostly waiting for the file system.
	if min := a.repo.ChunkerParams().Min; !a.opt.Fixed && j.node.Size < uint64(min) {
		buf := a.getBuf(int(j.node.Size) + 1)
		n, err := io.ReadFull(f, *buf)
		switch {
		case err == nil:
			// It grew past its size while we read: chunk it from the start.
			a.putBuf(buf)
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("archiver: read %s: %w", j.path, err)
			}
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			if n == 0 {
				a.putBuf(buf)
				return finish(nil)
			}
			return finish(emit((*buf)[:n], buf))
		default:
			a.putBuf(buf)
			return fmt.Errorf("archiver: read %s: %w", j.path, err)
		}
	}

	// Large files: content-defined chunks, at most one large file per CPU.
	select {
	case a.bigFiles <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-a.bigFiles }()
	if *ch == nil {
		if a.opt.Fixed {
			*ch = chunker.NewFixed(f, chunker.ImageBlockSize)
		} else {
			*ch = chunker.New(f, a.repo.Key().Chunker, a.repo.ChunkerParams())
		}
	} else {
		(*ch).Reset(f)
	}
	for {
		data, err := (*ch).Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return finish(fmt.Errorf("archiver: read %s: %w", j.path, err))
		}
		if err := emit(data, nil); err != nil {
			return finish(err)
		}
	}
	return finish(nil)
}

func (a *archiver) chunkWorker(ctx context.Context) {
	for cj := range a.chunkQ {
		var err error
		if err = ctx.Err(); err == nil {
			_, err = a.repo.SaveBlobID(ctx, blob.Data, cj.id, cj.data)
		}
		a.putBuf(cj.buf)
		if err != nil {
			cj.mu.Lock()
			if *cj.errp == nil {
				*cj.errp = err
			}
			cj.mu.Unlock()
		}
		cj.wg.Done()
	}
}
