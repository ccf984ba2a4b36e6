package sharefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/tree"
	bolt "go.etcd.io/bbolt"
)

// openFile is the shared state of every handle of one inode.
type openFile struct {
	ino     uint64
	refs    int
	writers int // handles open for writing (under the share's mu)

	// syncMu serialises what changes the catalog's record of the staged
	// file (Sync, Truncate, staging, a snapshot's capture). io is held
	// shared by reads and writes of the staging file, and exclusively
	// while blocks are filled or the staging file is cut. Lock order:
	// syncMu, io, mu.
	syncMu sync.Mutex
	io     sync.RWMutex

	mu          sync.Mutex
	staging     stagingFile // nil while the file is clean and nobody wrote
	dirUnsynced bool        // the staging file's name is not yet durable
	size        uint64
	mtime       int64
	attr        pendingAttr  // attribute changes made while open for writing
	metaDirty   bool         // size, mtime or attr not yet persisted
	gen         uint64       // counts changes of size, mtime and attr
	invalidated bool         // directories above invalidated since the last snapshot
	blocks      *blockMap    // block mode; nil when clean or staged whole
	base        *chunkReader // the clean content (Content)
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
// trunc empties it first (without reading the old content). A file
// opened for writing without trunc is staged in block mode: its content
// is not read until a read or a partial write of a block needs it.
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
		var (
			in        *Inode
			full      bitset
			inline    []byte
			hasInline bool
		)
		if p, ok := sh.pendingInode(ino); ok {
			in = p // created, not written to the catalog yet: empty
		} else if err := sh.view(func(b *bolt.Bucket) error {
			var err error
			in, err = getInode(b, ino)
			if err == nil && in.Staged && in.BlockSize > 0 {
				full = loadBlocks(b, ino)
			}
			if err == nil && in.Staged {
				inline, hasInline = inlineData(b, ino)
			}
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
		of = &openFile{ino: ino, size: in.Size, mtime: in.MTime, base: sh.store.newChunkReader(inodeName(ino), in.Content)}
		if in.Staged {
			st, err := sh.openStaging(in, full, inline, hasInline)
			if err != nil {
				return nil, err
			}
			// Bytes past the recorded size were never acknowledged;
			// block mode relies on the staging file ending there.
			if n, err := stagingSize(st); err == nil && uint64(n) > in.Size {
				if err := st.Truncate(int64(in.Size)); err != nil {
					st.Close()
					return nil, fmt.Errorf("sharefs: open staging file of inode %d: %w", ino, err)
				}
			}
			of.staging = st
			if in.BlockSize > 0 {
				of.blocks = newBlockMap(uint64(in.BlockSize), min(in.CleanSize, in.Size), full)
			}
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
				if of.staging != nil {
					of.staging.Close()
				}
			}
			return nil, err
		}
		of.writers++
	}
	return f, nil
}

// CreateFile makes an empty regular file and opens it for writing. The
// file reaches the catalog with its first Sync or Close (see pending.go):
// a file created, written and closed costs one catalog transaction.
func (sh *Share) CreateFile(parent uint64, name string, mode, uid, gid uint32) (*Inode, *File, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// Staged from the start, in memory until its first Sync or Close
	// (or the share's next change) writes it to the catalog.
	in := &Inode{Type: tree.File, Mode: mode & tree.ModeMask, UID: uid, GID: gid, Nlink: 1, Staged: true}
	if err := sh.createPending(parent, name, in); err != nil {
		return nil, nil, err
	}
	in = &Inode{Ino: in.Ino, Type: in.Type, Mode: in.Mode, UID: uid, GID: gid, Nlink: 1, Staged: true,
		MTime: in.MTime, CTime: in.CTime, Parents: []uint64{parent}}
	st, err := sh.newStaging(in.Ino)
	if err != nil {
		return nil, nil, err
	}
	_, onDisk := st.(*os.File)
	of := &openFile{ino: in.Ino, refs: 1, writers: 1, staging: st, dirUnsynced: onDisk, mtime: in.MTime,
		invalidated: true, base: sh.store.newChunkReader(inodeName(in.Ino), nil)}
	sh.open[in.Ino] = of
	return in, &File{sh: sh, of: of, write: true}, nil
}

// stage makes sure the file has a staging file (called with sh.mu held):
// empty with trunc, else in block mode over the clean content. Nothing of
// the clean content is read.
func (sh *Share) stage(of *openFile, trunc bool) error {
	of.syncMu.Lock()
	defer of.syncMu.Unlock()
	of.io.Lock()
	defer of.io.Unlock()
	of.mu.Lock()
	st, size, bm := of.staging, of.size, of.blocks
	of.mu.Unlock()
	now := sh.store.opt.Now().UnixNano()
	if st != nil {
		if !trunc || (size == 0 && bm == nil) {
			return nil
		}
		// Emptied: staged whole from now on. The catalog first, so that
		// a crash never pairs the old size with a cut staging file.
		err := sh.update(func(b *bolt.Bucket) error {
			in, err := getInode(b, of.ino)
			if err != nil {
				return err
			}
			in.Size, in.BlockSize, in.CleanSize = 0, 0, 0
			in.MTime, in.CTime = now, now
			if err := putInode(b, in); err != nil {
				return err
			}
			return putBlocks(b, of.ino, nil)
		})
		if err != nil {
			return fmt.Errorf("sharefs: truncate inode %d: %w", of.ino, err)
		}
		if err := st.Truncate(0); err != nil {
			return fmt.Errorf("sharefs: truncate inode %d: %w", of.ino, err)
		}
		of.mu.Lock()
		of.size, of.mtime, of.blocks = 0, now, nil
		of.mu.Unlock()
		return nil
	}
	// The staging file is not synced here: until a Sync records content
	// in it, a crash that loses it loses nothing (see openStaging).
	block := !trunc && size > 0
	var err error
	if block {
		st, err = sh.createStaging(of.ino)
	} else {
		st, err = sh.newStaging(of.ino)
	}
	if err != nil {
		return err
	}
	_, onDisk := st.(*os.File)
	if trunc {
		size = 0
	}
	bs := uint64(sh.store.opt.BlockSize)
	err = sh.update(func(b *bolt.Bucket) error {
		in, err := getInode(b, of.ino)
		if err != nil {
			return err
		}
		in.Staged = true
		in.Size = size
		in.BlockSize, in.CleanSize = 0, 0
		if block {
			in.BlockSize, in.CleanSize = uint32(bs), size
		}
		if trunc {
			in.MTime = now
		}
		if err := putInode(b, in); err != nil {
			return err
		}
		if err := putBlocks(b, of.ino, nil); err != nil {
			return err
		}
		if err := putInline(b, of.ino, nil); err != nil {
			return err
		}
		return invalidate(b, of.ino)
	})
	if err != nil {
		st.Close()
		if onDisk {
			os.Remove(sh.stagingPath(of.ino))
		}
		return err
	}
	of.mu.Lock()
	of.staging = st
	of.dirUnsynced = onDisk
	of.size = size
	of.invalidated = true
	if trunc {
		of.mtime = now
	}
	if block {
		of.blocks = newBlockMap(bs, size, nil)
	}
	of.mu.Unlock()
	return nil
}

// createStaging creates the (new, empty) staging file of inode ino.
func (sh *Share) createStaging(ino uint64) (*os.File, error) {
	if err := os.MkdirAll(sh.stagingDir(), 0o700); err != nil {
		return nil, fmt.Errorf("sharefs: staging folder: %w", err)
	}
	st, err := os.OpenFile(sh.stagingPath(ino), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sharefs: create staging file of inode %d: %w", ino, err)
	}
	return st, nil
}

// newStaging returns the staging of a file staged whole from empty: in
// memory up to the inline limit, else a new staging file.
func (sh *Share) newStaging(ino uint64) (stagingFile, error) {
	if sh.store.opt.InlineMax > 0 {
		return &memStaging{}, nil
	}
	return sh.createStaging(ino)
}

// openStaging opens the staging of the staged inode in (full: its
// recorded full blocks; inline: its content recorded in the catalog, if
// hasInline). A staging file is created without a sync; its name becomes
// durable at the first Sync, before the catalog records anything that
// lives only in it. So a staging file that a crash lost held nothing
// acknowledged when the catalog records no content in it — staged whole
// with size 0, or in block mode with no full block — and the file is
// empty again; otherwise its loss is an error.
func (sh *Share) openStaging(in *Inode, full bitset, inline []byte, hasInline bool) (stagingFile, error) {
	if hasInline {
		return &memStaging{data: inline}, nil
	}
	st, err := os.OpenFile(sh.stagingPath(in.Ino), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) && stagingOptional(in, full) {
		if in.BlockSize == 0 {
			return sh.newStaging(in.Ino)
		}
		return sh.createStaging(in.Ino)
	}
	if err != nil {
		return nil, fmt.Errorf("sharefs: open staging file of inode %d: %w", in.Ino, err)
	}
	return st, nil
}

// stagingOptional reports whether the catalog records no content that
// lives only in the staging file of in.
func stagingOptional(in *Inode, full bitset) bool {
	if in.BlockSize > 0 {
		return len(full.trim()) == 0
	}
	return in.Size == 0
}

// syncStaging makes the staging file's content and name durable (called
// with syncMu held, before the catalog records what it holds). Memory
// staging becomes durable with the record itself.
func (sh *Share) syncStaging(of *openFile, st stagingFile) error {
	f, ok := st.(*os.File)
	if !ok {
		return nil
	}
	if err := f.Sync(); err != nil {
		return err
	}
	of.mu.Lock()
	unsynced := of.dirUnsynced
	of.mu.Unlock()
	if !unsynced {
		return nil
	}
	if err := objstore.SyncDir(sh.stagingDir()); err != nil {
		return err
	}
	of.mu.Lock()
	if of.staging == st {
		of.dirUnsynced = false
	}
	of.mu.Unlock()
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
	of.mu.Unlock()
	if uint64(off) >= size {
		return 0, io.EOF
	}
	want := p[:min(uint64(len(p)), size-uint64(off))]
	for done := 0; done < len(want); {
		n, err := f.readSome(want[done:], uint64(off)+uint64(done))
		done += n
		if err != nil {
			return done, err
		}
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(want), nil
}

// readSome reads a prefix of p at off (up to a block boundary in block
// mode) and returns its length.
func (f *File) readSome(p []byte, off uint64) (int, error) {
	of := f.of
	ctx := context.Background()
	for {
		of.io.RLock()
		of.mu.Lock()
		st, bm, size := of.staging, of.blocks, of.size
		var full, fill, inSpans bool
		var clean uint64
		if bm != nil {
			b := off / bm.bs
			p = p[:min(uint64(len(p)), (b+1)*bm.bs-off)]
			full = bm.full.has(b)
			ss, partial := bm.partial[b]
			inSpans = partial && covered(ss, off-b*bm.bs, off-b*bm.bs+uint64(len(p)))
			fill = partial && !inSpans
			clean = bm.clean
		}
		of.mu.Unlock()
		var err error
		switch {
		case fill:
			of.io.RUnlock()
			if err := f.sh.fillBlock(ctx, of, off/bm.bs); err != nil {
				return 0, err
			}
			continue // the block's state changed: look again
		case st == nil:
			// Clean: the whole content is the base.
			err = of.base.readAt(ctx, p, off, size)
		case bm == nil, full, inSpans:
			err = readStaging(st, p, off)
		default:
			err = of.base.readAt(ctx, p, off, clean)
		}
		of.io.RUnlock()
		if err != nil {
			return 0, fmt.Errorf("sharefs: read inode %d at %d: %w", of.ino, off, err)
		}
		return len(p), nil
	}
}

// fillBlock fills partial block b from the base.
func (sh *Share) fillBlock(ctx context.Context, of *openFile, b uint64) error {
	of.io.Lock()
	defer of.io.Unlock()
	return sh.fillLocked(ctx, of, b)
}

// fillLocked writes the parts of partial block b that were not written
// into staging, from the base (or zeros), making it full. It needs io
// held exclusively.
func (sh *Share) fillLocked(ctx context.Context, of *openFile, b uint64) error {
	of.mu.Lock()
	bm := of.blocks
	var ss []span
	var partial bool
	if bm != nil {
		ss, partial = bm.partial[b]
	}
	size := of.size
	st := of.staging
	of.mu.Unlock()
	if !partial {
		return nil
	}
	start := b * bm.bs
	end := min(start+bm.bs, size)
	var buf []byte
	for _, g := range gaps(ss, end-min(start, end)) {
		if buf == nil {
			buf = make([]byte, bm.bs)
		}
		data := buf[:g.hi-g.lo]
		if err := of.base.readAt(ctx, data, start+g.lo, bm.clean); err != nil {
			return err
		}
		if _, err := st.WriteAt(data, int64(start+g.lo)); err != nil {
			return fmt.Errorf("sharefs: fill block %d of inode %d: %w", b, of.ino, err)
		}
	}
	of.mu.Lock()
	delete(bm.partial, b)
	bm.full.set(b)
	of.mu.Unlock()
	return nil
}

// fillAllLocked fills every partial block (io held exclusively).
func (sh *Share) fillAllLocked(ctx context.Context, of *openFile) error {
	of.mu.Lock()
	var todo []uint64
	if of.blocks != nil {
		for b := range of.blocks.partial {
			todo = append(todo, b)
		}
	}
	of.mu.Unlock()
	sort.Slice(todo, func(i, j int) bool { return todo[i] < todo[j] })
	for _, b := range todo {
		if err := sh.fillLocked(ctx, of, b); err != nil {
			return err
		}
	}
	return nil
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
	if err := f.sh.fitInline(of, uint64(off)+uint64(len(p))); err != nil {
		return 0, err
	}
	of.io.RLock()
	n, err := of.staging.WriteAt(p, off)
	var fill []uint64
	of.mu.Lock()
	if end := uint64(off) + uint64(n); end > of.size {
		of.size = end
	}
	if of.blocks != nil && n > 0 {
		fill = of.blocks.wrote(uint64(off), uint64(off)+uint64(n), of.size)
	}
	of.mtime = f.sh.store.opt.Now().UnixNano()
	of.metaDirty = true
	of.gen++
	of.mu.Unlock()
	of.io.RUnlock()
	if err != nil {
		return n, fmt.Errorf("sharefs: write inode %d: %w", of.ino, err)
	}
	for _, b := range fill {
		if err := f.sh.fillBlock(context.Background(), of, b); err != nil {
			return n, err
		}
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

// pendingAttr holds attribute changes to a file open for writing: like
// its size and mtime, they are recorded with the next Sync (at the
// latest when the last handle closes), in the same transaction.
type pendingAttr struct {
	mode, uid, gid *uint32
	atime          *int64
}

// apply sets the pending attributes on in.
func (a pendingAttr) apply(in *Inode) {
	if a.mode != nil {
		in.Mode = *a.mode
	}
	if a.uid != nil {
		in.UID = *a.uid
	}
	if a.gid != nil {
		in.GID = *a.gid
	}
	if a.atime != nil {
		in.ATime = *a.atime
	}
}

// fileRecord is what the catalog records of a staged file.
type fileRecord struct {
	size   uint64
	mtime  int64
	attr   pendingAttr
	gen    uint64
	inline []byte    // the content, when staged in memory; else nil
	blocks *blockMap // block mode: clean and the full blocks
	clean  uint64
	full   bitset
}

func (of *openFile) recordLocked() fileRecord {
	r := fileRecord{size: of.size, mtime: of.mtime, attr: of.attr, gen: of.gen, blocks: of.blocks}
	r.inline = inlineOf(of.staging, of.size)
	if of.blocks != nil {
		r.clean, r.full = of.blocks.clean, of.blocks.full.clone()
	}
	return r
}

// record writes rec to the catalog.
func (sh *Share) record(ino uint64, rec fileRecord) error {
	return sh.update(func(b *bolt.Bucket) error {
		in, err := getInode(b, ino)
		if err != nil {
			return err
		}
		in.Size, in.MTime = rec.size, rec.mtime
		rec.attr.apply(in)
		in.CTime = sh.store.opt.Now().UnixNano()
		// Inline content, or none once the staging file holds it.
		if err := putInline(b, ino, rec.inline); err != nil {
			return err
		}
		if rec.blocks != nil {
			in.CleanSize = rec.clean
			if err := putBlocks(b, ino, rec.full); err != nil {
				return err
			}
		}
		return putInode(b, in)
	})
}

// Truncate sets the file's size. A file made shorter is recorded in the
// catalog before its staging file is cut.
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
	if err := f.sh.fitInline(of, uint64(size)); err != nil {
		return err
	}
	of.syncMu.Lock()
	defer of.syncMu.Unlock()
	of.io.Lock()
	defer of.io.Unlock()
	now := f.sh.store.opt.Now().UnixNano()
	of.mu.Lock()
	shrink := uint64(size) < of.size
	of.size = uint64(size)
	of.mtime = now
	of.metaDirty = true
	of.gen++
	var rec fileRecord
	if shrink {
		rec = fileRecord{size: of.size, mtime: now, blocks: of.blocks, inline: inlineOf(of.staging, of.size)}
		if bm := of.blocks; bm != nil {
			bm.truncate(uint64(size))
			// Only blocks already recorded may be recorded now: the
			// others are not synced.
			rec.clean, rec.full = bm.clean, bm.durable.clone()
		}
	}
	st := of.staging
	of.mu.Unlock()
	if !shrink {
		return nil
	}
	if err := f.sh.syncStaging(of, st); err != nil {
		return fmt.Errorf("sharefs: truncate inode %d: %w", of.ino, err)
	}
	if err := f.sh.record(of.ino, rec); err != nil {
		return fmt.Errorf("sharefs: truncate inode %d: %w", of.ino, err)
	}
	if err := st.Truncate(size); err != nil {
		return fmt.Errorf("sharefs: truncate inode %d: %w", of.ino, err)
	}
	return nil
}

// Sync makes everything written through any handle durable: partly
// written blocks are filled, the staging file is fsynced, and then the
// size, times and full blocks are recorded in the catalog.
func (f *File) Sync() error {
	of := f.of
	of.syncMu.Lock()
	defer of.syncMu.Unlock()
	of.io.Lock()
	err := f.sh.fillAllLocked(context.Background(), of)
	of.mu.Lock()
	st := of.staging
	dirty := of.metaDirty || (of.blocks != nil && !of.blocks.full.equal(of.blocks.durable))
	rec := of.recordLocked()
	of.mu.Unlock()
	of.io.Unlock()
	if err != nil {
		return fmt.Errorf("sharefs: sync inode %d: %w", of.ino, err)
	}
	if st == nil {
		return nil
	}
	if err := f.sh.syncStaging(of, st); err != nil {
		return fmt.Errorf("sharefs: sync inode %d: %w", of.ino, err)
	}
	if !dirty && !f.sh.isPending(of.ino) {
		return nil
	}
	if err := f.sh.record(of.ino, rec); err != nil { // writes a pending creation too
		return fmt.Errorf("sharefs: sync inode %d: %w", of.ino, err)
	}
	of.mu.Lock()
	if of.gen == rec.gen {
		of.metaDirty = false
		of.attr = pendingAttr{} // in the catalog now
	}
	if of.blocks != nil && of.blocks == rec.blocks {
		of.blocks.durable = rec.full
	}
	of.mu.Unlock()
	return nil
}

// capture stores the current content of a file open for writing, for a
// snapshot. The file stays staged.
func (sh *Share) capture(ctx context.Context, of *openFile) ([]tree.Chunk, error) {
	of.syncMu.Lock() // no truncation while captured
	defer of.syncMu.Unlock()
	of.io.Lock()
	err := sh.fillAllLocked(ctx, of)
	of.mu.Lock()
	v := &stagedView{ctx: ctx, ino: of.ino, st: of.staging, size: of.size}
	if bm := of.blocks; bm != nil {
		v.bs, v.full, v.clean, v.base = bm.bs, bm.full.clone(), bm.clean, of.base
	}
	of.mu.Unlock()
	of.io.Unlock()
	if err != nil {
		return nil, err
	}
	if v.st == nil {
		return of.base.content, nil
	}
	of.io.RLock()
	defer of.io.RUnlock()
	return sh.storeView(ctx, v)
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
	sh := f.sh
	of := f.of
	var err error
	if f.write {
		// Attribute changes made from now on go to the catalog at once
		// (when this was the last writer); those before are synced here.
		sh.mu.Lock()
		of.writers--
		sh.mu.Unlock()
		err = f.Sync()
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
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
	var unlinked bool
	if e := sh.view(func(b *bolt.Bucket) error {
		in, err := getInode(b, of.ino)
		unlinked = err == nil && in.Nlink == 0
		return nil
	}); e != nil && err == nil {
		err = e
	}
	var gone bool
	if unlinked {
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
				return deleteInode(b, of.ino)
			}
			return nil
		}); e != nil && err == nil {
			err = e
		}
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
	_, err := sh.commitAll(ctx, force)
	return err
}

// commitAll is CommitAll, reporting what its commits stored.
func (sh *Share) commitAll(ctx context.Context, force bool) (repo.WriteStats, error) {
	var added repo.WriteStats
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
		st, err := sh.commit(ctx, due[:n])
		added = addWrites(added, st)
		if err != nil {
			return added, err
		}
		due = due[n:]
	}
	return added, nil
}

// commit chunks staged, closed files into the repository and makes them
// clean: chunks stored, then one flush (durable and indexed), then one
// transaction replacing their content, then the staging files removed. A
// crash at any point leaves them staged (and they are committed again).
// It reports what it stored.
func (sh *Share) commit(ctx context.Context, inos []uint64) (repo.WriteStats, error) {
	sh.store.repoMu.Lock()
	defer sh.store.repoMu.Unlock()
	before := sh.store.repo.Stats()
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
		sh.store.settle(ctx)
		// Still staged: try again after the commit delay.
		sh.mu.Lock()
		for _, ino := range claimed {
			sh.idle[ino] = sh.store.opt.Now()
		}
		sh.mu.Unlock()
		return repo.WriteStats{}, err
	}
	for ino := range results {
		os.Remove(sh.stagingPath(ino))
	}
	return writesSince(sh.store.repo, before), nil
}

// commitClaimed does commit's work for files it has claimed, filling
// results with the files made clean.
func (sh *Share) commitClaimed(ctx context.Context, claimed []uint64, results map[uint64][]tree.Chunk) error {
	for _, ino := range claimed {
		var (
			in   *Inode
			full bitset
		)
		err := sh.view(func(b *bolt.Bucket) error {
			var err error
			in, err = getInode(b, ino)
			if err == nil {
				full = loadBlocks(b, ino)
			}
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
		chunks, err := sh.captureStaged(ctx, in, full)
		if err != nil {
			return err // it names the inode
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
			cur.BlockSize, cur.CleanSize = 0, 0
			if err := putInode(b, cur); err != nil {
				return err
			}
			if err := putBlocks(b, ino, nil); err != nil {
				return err
			}
			if err := putInline(b, ino, nil); err != nil {
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

// recover finds files left staged (by a crash or an unfinished commit) and
// queues them for commit; staging files no inode claims are removed.
func (sh *Share) recover(ctx context.Context) error {
	// For each staged inode: where its content is. A staging file that
	// was never synced may be missing (see openStaging); one beside
	// inline content is a spill that was never recorded.
	type where int
	const (
		inFile where = iota
		inFileOrEmpty
		inline
	)
	staged := map[uint64]where{}
	err := sh.view(func(b *bolt.Bucket) error {
		return b.Bucket(bInodes).ForEach(func(k, v []byte) error {
			in, err := decodeInode(v)
			if err != nil {
				return err
			}
			if !in.Staged {
				return nil
			}
			switch _, ok := inlineData(b, in.Ino); {
			case ok:
				staged[in.Ino] = inline
			case stagingOptional(in, loadBlocks(b, in.Ino)):
				staged[in.Ino] = inFileOrEmpty
			default:
				staged[in.Ino] = inFile
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
		if _, err := fmt.Sscanf(e.Name(), "%016x", &ino); err != nil {
			os.Remove(filepath.Join(sh.stagingDir(), e.Name()))
		} else if w, ok := staged[ino]; !ok || w == inline {
			os.Remove(sh.stagingPath(ino))
		}
	}
	for ino, w := range staged {
		if w == inFile {
			if _, err := os.Stat(sh.stagingPath(ino)); err != nil {
				return fmt.Errorf("sharefs: share %s: inode %d is staged but its staging file is gone: %w", sh.name, ino, err)
			}
		}
		sh.idle[ino] = time.Time{}
	}
	return nil
}
