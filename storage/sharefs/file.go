package sharefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/chunker"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/tree"
	bolt "go.etcd.io/bbolt"
)

// openFile is the shared state of every handle of one inode.
type openFile struct {
	ino  uint64
	refs int

	mu          sync.Mutex
	staging     *os.File // nil while the file is clean and nobody wrote
	size        uint64
	mtime       int64
	metaDirty   bool // size or mtime not yet persisted
	invalidated bool // directories above invalidated since the last snapshot
	content     []tree.Chunk
	offsets     []uint64 // offsets[i] = start of content[i]
	cacheIdx    int
	cacheData   []byte
}

// File is an open handle. ReadAt and WriteAt are safe for concurrent use.
type File struct {
	sh     *Share
	of     *openFile
	write  bool
	closed bool
	mu     sync.Mutex
}

// Ino returns the handle's inode number.
func (f *File) Ino() uint64 { return f.of.ino }

// OpenFile opens file ino for reading, and for writing if write is set;
// trunc empties it first (without reading the old content).
func (sh *Share) OpenFile(ino uint64, write, trunc bool) (*File, error) {
	for {
		sh.mu.Lock()
		if ch, busy := sh.committing[ino]; busy {
			sh.mu.Unlock()
			<-ch
			continue
		}
		break
	}
	defer sh.mu.Unlock()
	of := sh.open[ino]
	if of == nil {
		var in *Inode
		if err := sh.view(func(b *bolt.Bucket) error {
			var err error
			in, err = getInode(b, ino)
			return err
		}); err != nil {
			return nil, err
		}
		switch in.Type {
		case tree.File:
		case tree.Dir:
			return nil, fmt.Errorf("sharefs: open inode %d: %w", ino, ErrIsDir)
		default:
			return nil, fmt.Errorf("sharefs: open inode %d: not a regular file: %w", ino, ErrInvalid)
		}
		of = &openFile{ino: ino, size: in.Size, mtime: in.MTime, cacheIdx: -1}
		if in.Staged {
			st, err := os.OpenFile(sh.stagingPath(ino), os.O_RDWR, 0)
			if err != nil {
				return nil, fmt.Errorf("sharefs: open staging file of inode %d: %w", ino, err)
			}
			of.staging = st
		} else {
			of.setContent(in.Content)
		}
		sh.open[ino] = of
	}
	of.refs++
	delete(sh.idle, ino)
	f := &File{sh: sh, of: of, write: write}
	if write {
		if err := sh.stage(of, trunc); err != nil {
			of.refs--
			if of.refs == 0 {
				delete(sh.open, ino)
			}
			return nil, err
		}
	}
	return f, nil
}

func (of *openFile) setContent(cs []tree.Chunk) {
	of.content = cs
	of.offsets = make([]uint64, len(cs))
	var off uint64
	for i, c := range cs {
		of.offsets[i] = off
		off += uint64(c.Size)
	}
	of.cacheIdx, of.cacheData = -1, nil
}

// stage makes sure the file has a staging file holding its current content
// (called with sh.mu held).
func (sh *Share) stage(of *openFile, trunc bool) error {
	of.mu.Lock()
	defer of.mu.Unlock()
	if of.staging != nil {
		if trunc && of.size != 0 {
			if err := of.staging.Truncate(0); err != nil {
				return fmt.Errorf("sharefs: truncate inode %d: %w", of.ino, err)
			}
			of.size = 0
			of.metaDirty = true
		}
		return nil
	}
	if err := os.MkdirAll(sh.stagingDir(), 0o700); err != nil {
		return fmt.Errorf("sharefs: staging folder: %w", err)
	}
	p := sh.stagingPath(of.ino)
	st, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("sharefs: create staging file of inode %d: %w", of.ino, err)
	}
	size := of.size
	if trunc {
		size = 0
	} else {
		// Copy the clean content into the staging file.
		var off int64
		for _, c := range of.content {
			data, err := sh.store.repo.LoadBlob(context.Background(), blob.Data, c.ID)
			if err == nil {
				_, err = st.WriteAt(data, off)
			}
			if err != nil {
				st.Close()
				os.Remove(p)
				return fmt.Errorf("sharefs: stage inode %d: %w", of.ino, err)
			}
			off += int64(len(data))
		}
	}
	if err := st.Sync(); err != nil {
		st.Close()
		os.Remove(p)
		return fmt.Errorf("sharefs: stage inode %d: %w", of.ino, err)
	}
	objstore.SyncDir(sh.stagingDir())
	err = sh.update(func(b *bolt.Bucket) error {
		in, err := getInode(b, of.ino)
		if err != nil {
			return err
		}
		in.Staged = true
		in.Size = size
		if trunc {
			in.MTime = sh.store.opt.Now().UnixNano()
		}
		if err := putInode(b, in); err != nil {
			return err
		}
		return invalidate(b, of.ino)
	})
	if err != nil {
		st.Close()
		os.Remove(p)
		return err
	}
	of.staging = st
	of.size = size
	of.invalidated = true
	if trunc {
		of.mtime = sh.store.opt.Now().UnixNano()
	}
	return nil
}

// ReadAt reads from the file's current content.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	of := f.of
	if off < 0 {
		return 0, ErrInvalid
	}
	of.mu.Lock()
	size := of.size
	st := of.staging
	of.mu.Unlock()
	if uint64(off) >= size {
		return 0, io.EOF
	}
	want := p
	if rem := size - uint64(off); uint64(len(want)) > rem {
		want = want[:rem]
	}
	if st != nil {
		n, err := st.ReadAt(want, off)
		if err == io.EOF && n < len(want) {
			// A sparse tail past the staged bytes reads as zeros.
			clear(want[n:])
			n, err = len(want), nil
		}
		if err == nil && n < len(p) {
			err = io.EOF
		}
		return n, err
	}
	n := 0
	for n < len(want) {
		m, err := f.readClean(want[n:], uint64(off)+uint64(n))
		if err != nil {
			return n, err
		}
		n += m
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readClean reads from the chunk holding offset off, keeping the last
// decoded chunk for the next sequential read.
func (f *File) readClean(p []byte, off uint64) (int, error) {
	of := f.of
	of.mu.Lock()
	i := sort.Search(len(of.offsets), func(i int) bool { return of.offsets[i] > off }) - 1
	if i < 0 || i >= len(of.content) {
		of.mu.Unlock()
		return 0, fmt.Errorf("sharefs: inode %d: offset %d outside its chunks", of.ino, off)
	}
	c, start := of.content[i], of.offsets[i]
	data := of.cacheData
	if of.cacheIdx != i {
		data = nil
	}
	of.mu.Unlock()
	if data == nil {
		var err error
		data, err = f.sh.store.cache.LoadBlob(context.Background(), blob.Data, c.ID)
		if err != nil {
			return 0, fmt.Errorf("sharefs: read inode %d at %d: %w", of.ino, off, err)
		}
		of.mu.Lock()
		of.cacheIdx, of.cacheData = i, data
		of.mu.Unlock()
	}
	return copy(p, data[off-start:]), nil
}

// WriteAt writes to the file (handles opened for writing only).
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if !f.write {
		return 0, fmt.Errorf("sharefs: write to inode %d: %w", f.of.ino, fs.ErrPermission)
	}
	if off < 0 {
		return 0, ErrInvalid
	}
	of := f.of
	if err := f.sh.invalidateOnce(of); err != nil {
		return 0, err
	}
	n, err := of.staging.WriteAt(p, off)
	of.mu.Lock()
	if end := uint64(off) + uint64(n); end > of.size {
		of.size = end
	}
	of.mtime = f.sh.store.opt.Now().UnixNano()
	of.metaDirty = true
	of.mu.Unlock()
	if err != nil {
		return n, fmt.Errorf("sharefs: write inode %d: %w", of.ino, err)
	}
	return n, nil
}

// invalidateOnce marks the directories above a written file as changed,
// once per snapshot period.
func (sh *Share) invalidateOnce(of *openFile) error {
	of.mu.Lock()
	done := of.invalidated
	of.mu.Unlock()
	if done {
		return nil
	}
	err := sh.update(func(b *bolt.Bucket) error { return invalidate(b, of.ino) })
	if err != nil {
		return err
	}
	of.mu.Lock()
	of.invalidated = true
	of.mu.Unlock()
	return nil
}

// Truncate sets the file's size.
func (f *File) Truncate(size int64) error {
	if !f.write {
		return fmt.Errorf("sharefs: truncate inode %d: %w", f.of.ino, fs.ErrPermission)
	}
	if size < 0 {
		return ErrInvalid
	}
	of := f.of
	if err := f.sh.invalidateOnce(of); err != nil {
		return err
	}
	if err := of.staging.Truncate(size); err != nil {
		return fmt.Errorf("sharefs: truncate inode %d: %w", of.ino, err)
	}
	of.mu.Lock()
	of.size = uint64(size)
	of.mtime = f.sh.store.opt.Now().UnixNano()
	of.metaDirty = true
	of.mu.Unlock()
	return nil
}

// Sync makes everything written through any handle durable: the staging
// file is fsynced and the size and times committed to the catalog.
func (f *File) Sync() error {
	of := f.of
	of.mu.Lock()
	st := of.staging
	dirty := of.metaDirty
	size, mtime := of.size, of.mtime
	of.mu.Unlock()
	if st == nil {
		return nil
	}
	if err := st.Sync(); err != nil {
		return fmt.Errorf("sharefs: sync inode %d: %w", of.ino, err)
	}
	if !dirty {
		return nil
	}
	err := f.sh.update(func(b *bolt.Bucket) error {
		in, err := getInode(b, of.ino)
		if err != nil {
			return err
		}
		in.Size, in.MTime = size, mtime
		in.CTime = f.sh.store.opt.Now().UnixNano()
		return putInode(b, in)
	})
	if err != nil {
		return fmt.Errorf("sharefs: sync inode %d: %w", of.ino, err)
	}
	of.mu.Lock()
	if of.size == size && of.mtime == mtime {
		of.metaDirty = false
	}
	of.mu.Unlock()
	return nil
}

// Close closes the handle. Closing a handle opened for writing syncs it:
// when Close returns, what was written survives a crash.
func (f *File) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.mu.Unlock()
	var err error
	if f.write {
		err = f.Sync()
	}
	sh := f.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	of := f.of
	of.refs--
	if of.refs > 0 {
		return err
	}
	delete(sh.open, of.ino)
	of.mu.Lock()
	st := of.staging
	of.staging = nil
	of.mu.Unlock()
	if st != nil {
		st.Close()
		sh.idle[of.ino] = sh.store.opt.Now()
	}
	// Unlinked while open: now it goes.
	var gone bool
	if e := sh.update(func(b *bolt.Bucket) error {
		in, err := getInode(b, of.ino)
		if errors.Is(err, ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if in.Nlink == 0 {
			gone = true
			return b.Bucket(bInodes).Delete(inoKey(of.ino))
		}
		return nil
	}); e != nil && err == nil {
		err = e
	}
	if gone {
		delete(sh.idle, of.ino)
		os.Remove(sh.stagingPath(of.ino))
	}
	return err
}

func (sh *Share) dropStaging(ino uint64) {
	delete(sh.idle, ino)
	os.Remove(sh.stagingPath(ino))
}

// CommitAll commits staged files that are not open: those idle for the
// commit delay, or all of them with force.
func (sh *Share) CommitAll(ctx context.Context, force bool) error {
	sh.mu.Lock()
	var due []uint64
	now := sh.store.opt.Now()
	for ino, since := range sh.idle {
		if force || now.Sub(since) >= sh.store.opt.CommitDelay {
			due = append(due, ino)
		}
	}
	sh.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i] < due[j] })
	// Commit in batches: one flush (pack and index writes) per batch, not
	// per file, so many small files share packs.
	for len(due) > 0 {
		n := min(len(due), 256)
		if err := sh.commit(ctx, due[:n]); err != nil {
			return err
		}
		due = due[n:]
	}
	return nil
}

// commit chunks staged, closed files into the repository and makes them
// clean: chunks stored, then one flush (durable and indexed), then one
// transaction replacing their content, then the staging files removed. A
// crash at any point leaves them staged (and they are committed again).
func (sh *Share) commit(ctx context.Context, inos []uint64) error {
	sh.store.repoMu.RLock()
	defer sh.store.repoMu.RUnlock()
	sh.mu.Lock()
	var claimed []uint64
	done := make(chan struct{})
	for _, ino := range inos {
		if _, open := sh.open[ino]; open {
			continue
		}
		if _, busy := sh.committing[ino]; busy {
			continue
		}
		sh.committing[ino] = done
		delete(sh.idle, ino)
		claimed = append(claimed, ino)
	}
	sh.mu.Unlock()
	defer func() {
		sh.mu.Lock()
		for _, ino := range claimed {
			delete(sh.committing, ino)
		}
		sh.mu.Unlock()
		close(done)
	}()
	results := map[uint64][]tree.Chunk{}
	if err := sh.commitClaimed(ctx, claimed, results); err != nil {
		// Still staged: try again after the commit delay.
		sh.mu.Lock()
		for _, ino := range claimed {
			sh.idle[ino] = sh.store.opt.Now()
		}
		sh.mu.Unlock()
		return err
	}
	for ino := range results {
		os.Remove(sh.stagingPath(ino))
	}
	return nil
}

// commitClaimed does commit's work for files it has claimed, filling
// results with the files made clean.
func (sh *Share) commitClaimed(ctx context.Context, claimed []uint64, results map[uint64][]tree.Chunk) error {
	for _, ino := range claimed {
		var in *Inode
		err := sh.view(func(b *bolt.Bucket) error {
			var err error
			in, err = getInode(b, ino)
			return err
		})
		if errors.Is(err, ErrNotExist) {
			os.Remove(sh.stagingPath(ino))
			continue
		}
		if err != nil {
			return err
		}
		if !in.Staged {
			continue
		}
		chunks, err := sh.chunkStaging(ctx, ino, in.Size)
		if err != nil {
			return err
		}
		results[ino] = chunks
	}
	if len(results) == 0 {
		return nil
	}
	if err := sh.store.repo.Flush(ctx); err != nil {
		return fmt.Errorf("sharefs: commit %d files: %w", len(results), err)
	}
	err := sh.update(func(b *bolt.Bucket) error {
		for ino, chunks := range results {
			cur, err := getInode(b, ino)
			if errors.Is(err, ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			cur.Content = chunks
			cur.Staged = false
			if err := putInode(b, cur); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sharefs: commit %d files: %w", len(results), err)
	}
	return nil
}

// chunkStaging stores the first size bytes of ino's staging file as
// content chunks and returns them.
func (sh *Share) chunkStaging(ctx context.Context, ino uint64, size uint64) ([]tree.Chunk, error) {
	st, err := os.Open(sh.stagingPath(ino))
	if err != nil {
		return nil, fmt.Errorf("sharefs: commit inode %d: %w", ino, err)
	}
	defer st.Close()
	r := sh.store.repo
	ch := chunker.New(io.LimitReader(st, int64(size)), r.Key().Chunker, r.ChunkerParams())
	var chunks []tree.Chunk
	var got uint64
	for {
		data, err := ch.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("sharefs: commit inode %d: %w", ino, err)
		}
		id, _, err := r.SaveBlob(ctx, blob.Data, data)
		if err != nil {
			return nil, fmt.Errorf("sharefs: commit inode %d: %w", ino, err)
		}
		chunks = append(chunks, tree.Chunk{ID: id, Size: uint32(len(data))})
		got += uint64(len(data))
	}
	if got < size {
		// The staging file is shorter than the recorded size (a sparse
		// tail, or extended by truncate): the rest reads as zeros.
		zero := make([]byte, min(size-got, 4<<20))
		for got < size {
			n := min(uint64(len(zero)), size-got)
			id, _, err := r.SaveBlob(ctx, blob.Data, zero[:n])
			if err != nil {
				return nil, fmt.Errorf("sharefs: commit inode %d: %w", ino, err)
			}
			chunks = append(chunks, tree.Chunk{ID: id, Size: uint32(n)})
			got += n
		}
	}
	return chunks, nil
}

// recover finds files left staged (by a crash or an unfinished commit) and
// queues them for commit; staging files no inode claims are removed.
func (sh *Share) recover(ctx context.Context) error {
	staged := map[uint64]bool{}
	err := sh.view(func(b *bolt.Bucket) error {
		return b.Bucket(bInodes).ForEach(func(k, v []byte) error {
			in, err := decodeInode(v)
			if err != nil {
				return err
			}
			if in.Staged {
				staged[in.Ino] = true
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("sharefs: recover share %s: %w", sh.name, err)
	}
	ents, _ := os.ReadDir(sh.stagingDir())
	for _, e := range ents {
		var ino uint64
		if _, err := fmt.Sscanf(e.Name(), "%016x", &ino); err != nil || !staged[ino] {
			os.Remove(sh.stagingPath(ino))
		}
	}
	for ino := range staged {
		if _, err := os.Stat(sh.stagingPath(ino)); err != nil {
			return fmt.Errorf("sharefs: share %s: inode %d is staged but its staging file is gone: %w", sh.name, ino, err)
		}
		sh.idle[ino] = time.Time{}
	}
	return nil
}
