package sharefs

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/arkbox/arkbox/storage/tree"
	bolt "go.etcd.io/bbolt"
)

// Share is one live share. Its methods are safe for concurrent use.
type Share struct {
	store *Store
	name  string

	// mu serialises metadata changes and guards open and idle.
	mu   sync.Mutex
	open map[uint64]*openFile
	// idle: staged files with no open handle, and since when.
	idle map[uint64]time.Time
	// committing: files being committed (opening them waits).
	committing map[uint64]chan struct{}
	// meta is held shared by every metadata change and exclusively by a
	// snapshot while it reads the tree.
	meta sync.RWMutex
	// pend holds files created and not yet written to the catalog.
	pend pendingSet
}

// Name returns the share's name.
func (sh *Share) Name() string { return sh.name }

// DirEntry is one entry of a directory listing.
type DirEntry struct {
	Name  string
	Inode *Inode
}

// SetAttr says which attributes to change; nil fields stay.
type SetAttr struct {
	Mode  *uint32
	UID   *uint32
	GID   *uint32
	Size  *uint64
	MTime *time.Time
	ATime *time.Time
}

// reserved reports whether name in parent is the snapshot folder, which
// the live tree cannot contain.
func reserved(parent uint64, name string) error {
	if parent == RootIno && name == SnapshotsDir {
		return fmt.Errorf("sharefs: %s is the read-only snapshot folder: %w", name, ErrReadOnly)
	}
	return nil
}

func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("sharefs: invalid name %q: %w", name, ErrInvalid)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("sharefs: name of %d bytes: %w", len(name), syscall.ENAMETOOLONG)
	}
	return nil
}

func (sh *Share) bucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	b := tx.Bucket(bRoot).Bucket([]byte(sh.name))
	if b == nil {
		return nil, fmt.Errorf("sharefs: share %s: %w", sh.name, ErrNotExist)
	}
	return b, nil
}

func getInode(b *bolt.Bucket, ino uint64) (*Inode, error) {
	v := b.Bucket(bInodes).Get(inoKey(ino))
	if v == nil {
		return nil, fmt.Errorf("sharefs: inode %d: %w", ino, ErrNotExist)
	}
	return decodeInode(v)
}

func lookup(b *bolt.Bucket, parent uint64, name string) (uint64, bool) {
	v := b.Bucket(bDirents).Get(direntKey(parent, name))
	if v == nil {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// invalidate marks the directories above ino (through every parent) as
// changed since the last snapshot.
func invalidate(b *bolt.Bucket, ino uint64) error {
	seen := map[uint64]bool{}
	queue := []uint64{ino}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if seen[cur] {
			continue
		}
		seen[cur] = true
		in, err := getInode(b, cur)
		if err != nil {
			return err
		}
		if in.Type == tree.Dir {
			if !in.TreeValid && cur != ino {
				continue // already invalid, and so is everything above it
			}
			if in.TreeValid {
				in.TreeValid, in.TreeTotals = false, nil
				if err := putInode(b, in); err != nil {
					return err
				}
			}
		}
		queue = append(queue, in.Parents...)
	}
	return nil
}

// update runs fn in a write transaction on the share's buckets.
func (sh *Share) update(fn func(b *bolt.Bucket) error) error {
	sh.meta.RLock()
	defer sh.meta.RUnlock()
	return sh.updateNoLock(fn)
}

// updateNoLock runs fn in a write transaction that first writes the
// pending files.
func (sh *Share) updateNoLock(fn func(b *bolt.Bucket) error) error {
	sh.pend.mu.Lock()
	defer sh.pend.mu.Unlock()
	return sh.store.db.Update(func(tx *bolt.Tx) error {
		b, err := sh.bucket(tx)
		if err != nil {
			return err
		}
		if err := sh.flushLocked(b); err != nil {
			return err
		}
		return fn(b)
	})
}

func (sh *Share) view(fn func(b *bolt.Bucket) error) error {
	return sh.store.db.View(func(tx *bolt.Tx) error {
		b, err := sh.bucket(tx)
		if err != nil {
			return err
		}
		return fn(b)
	})
}

// Stat returns inode ino, with the live size of a file open for writing.
func (sh *Share) Stat(ino uint64) (*Inode, error) {
	if in, ok := sh.pendingInode(ino); ok {
		sh.overlay(in)
		return in, nil
	}
	var in *Inode
	err := sh.view(func(b *bolt.Bucket) error {
		var err error
		in, err = getInode(b, ino)
		return err
	})
	if err != nil {
		return nil, err
	}
	sh.overlay(in)
	return in, nil
}

// overlay applies the state of an open file (size, mtime) to in.
func (sh *Share) overlay(in *Inode) {
	sh.mu.Lock()
	of := sh.open[in.Ino]
	sh.mu.Unlock()
	if of != nil {
		of.mu.Lock()
		in.Size = of.size
		if of.mtime != 0 {
			in.MTime = of.mtime
		}
		of.attr.apply(in)
		of.mu.Unlock()
	}
}

// Lookup returns the entry name of directory parent.
func (sh *Share) Lookup(parent uint64, name string) (*Inode, error) {
	if in, ok := sh.pendingLookup(parent, name); ok {
		sh.overlay(in)
		return in, nil
	}
	var in *Inode
	err := sh.view(func(b *bolt.Bucket) error {
		ino, ok := lookup(b, parent, name)
		if !ok {
			if _, err := getInode(b, parent); err != nil {
				return err
			}
			return fmt.Errorf("sharefs: %s: %w", name, ErrNotExist)
		}
		var err error
		in, err = getInode(b, ino)
		return err
	})
	if err != nil {
		return nil, err
	}
	sh.overlay(in)
	return in, nil
}

// Resolve walks a slash-separated path from the root without following
// symlinks ("" and "/" are the root). ".." never leaves the share.
func (sh *Share) Resolve(p string) (*Inode, error) {
	ino := uint64(RootIno)
	var stack []uint64
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "", ".":
			continue
		case "..":
			if len(stack) > 0 {
				ino = stack[len(stack)-1]
				stack = stack[:len(stack)-1]
			}
			continue
		}
		in, err := sh.Lookup(ino, part)
		if err != nil {
			return nil, fmt.Errorf("sharefs: %s: %w", p, err)
		}
		stack = append(stack, ino)
		ino = in.Ino
	}
	return sh.Stat(ino)
}

// ReadDir lists directory ino, sorted by name.
func (sh *Share) ReadDir(ino uint64) ([]DirEntry, error) {
	pending := sh.pendingEntries(ino)
	var out []DirEntry
	err := sh.view(func(b *bolt.Bucket) error {
		dir, err := getInode(b, ino)
		if err != nil {
			return err
		}
		if dir.Type != tree.Dir {
			return fmt.Errorf("sharefs: readdir inode %d: %w", ino, ErrNotDir)
		}
		prefix := inoKey(ino)
		c := b.Bucket(bDirents).Cursor()
		for k, v := c.Seek(prefix); k != nil && string(k[:8]) == string(prefix); k, v = c.Next() {
			in, err := getInode(b, binary.BigEndian.Uint64(v))
			if err != nil {
				return err
			}
			out = append(out, DirEntry{Name: string(k[8:]), Inode: in})
		}
		return nil
	})
	if err == nil && len(pending) > 0 {
		// Read before the catalog: one written meanwhile is in both.
		have := map[string]bool{}
		for _, e := range out {
			have[e.Name] = true
		}
		for _, e := range pending {
			if !have[e.Name] {
				out = append(out, e)
			}
		}
		slices.SortFunc(out, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
	}
	for _, e := range out {
		sh.overlay(e.Inode)
	}
	return out, err
}

// canCreate checks that name can be created in directory parent and
// returns the directory.
func canCreate(b *bolt.Bucket, parent uint64, name string) (*Inode, error) {
	dir, err := getInode(b, parent)
	if err != nil {
		return nil, err
	}
	if dir.Type != tree.Dir {
		return nil, fmt.Errorf("sharefs: create %s in inode %d: %w", name, parent, ErrNotDir)
	}
	if _, ok := lookup(b, parent, name); ok {
		return nil, fmt.Errorf("sharefs: create %s: %w", name, ErrExist)
	}
	return dir, nil
}

// create adds a new inode named name in parent.
func (sh *Share) create(parent uint64, name string, in *Inode) (*Inode, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if err := reserved(parent, name); err != nil {
		return nil, err
	}
	now := sh.store.opt.Now().UnixNano()
	in.MTime, in.CTime = now, now
	in.Parents = []uint64{parent}
	err := sh.update(func(b *bolt.Bucket) error {
		dir, err := canCreate(b, parent, name)
		if err != nil {
			return err
		}
		ino, err := sh.allocInoLocked(b)
		if err != nil {
			return err
		}
		in.Ino = ino
		if err := putInode(b, in); err != nil {
			return err
		}
		if err := b.Bucket(bDirents).Put(direntKey(parent, name), inoKey(ino)); err != nil {
			return err
		}
		dir.MTime, dir.CTime = now, now
		if in.Type == tree.Dir {
			dir.Nlink++
		}
		if err := putInode(b, dir); err != nil {
			return err
		}
		return invalidate(b, parent)
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// Create makes an empty regular file.
func (sh *Share) Create(parent uint64, name string, mode, uid, gid uint32) (*Inode, error) {
	return sh.create(parent, name, &Inode{Type: tree.File, Mode: mode & tree.ModeMask, UID: uid, GID: gid, Nlink: 1})
}

// Mkdir makes a directory.
func (sh *Share) Mkdir(parent uint64, name string, mode, uid, gid uint32) (*Inode, error) {
	return sh.create(parent, name, &Inode{Type: tree.Dir, Mode: mode & tree.ModeMask, UID: uid, GID: gid, Nlink: 2})
}

// Symlink makes a symbolic link. The target is stored as data: it is never
// followed by the share filesystem.
func (sh *Share) Symlink(parent uint64, name, target string, uid, gid uint32) (*Inode, error) {
	if target == "" || strings.ContainsRune(target, 0) || len(target) > 4096 {
		return nil, fmt.Errorf("sharefs: symlink %s: bad target: %w", name, ErrInvalid)
	}
	return sh.create(parent, name, &Inode{Type: tree.Symlink, Mode: 0o777, UID: uid, GID: gid, Nlink: 1, Target: target, Size: uint64(len(target))})
}

// Link adds a hard link to file ino as newName in newParent.
func (sh *Share) Link(ino, newParent uint64, newName string) (*Inode, error) {
	if err := validName(newName); err != nil {
		return nil, err
	}
	if err := reserved(newParent, newName); err != nil {
		return nil, err
	}
	var in *Inode
	now := sh.store.opt.Now().UnixNano()
	err := sh.update(func(b *bolt.Bucket) error {
		var err error
		in, err = getInode(b, ino)
		if err != nil {
			return err
		}
		if in.Type == tree.Dir {
			return fmt.Errorf("sharefs: link to a directory: %w", syscall.EPERM)
		}
		dir, err := getInode(b, newParent)
		if err != nil {
			return err
		}
		if dir.Type != tree.Dir {
			return ErrNotDir
		}
		if _, ok := lookup(b, newParent, newName); ok {
			return fmt.Errorf("sharefs: link %s: %w", newName, ErrExist)
		}
		if err := b.Bucket(bDirents).Put(direntKey(newParent, newName), inoKey(ino)); err != nil {
			return err
		}
		in.Nlink++
		in.CTime = now
		in.Parents = addParent(in.Parents, newParent)
		if err := putInode(b, in); err != nil {
			return err
		}
		dir.MTime, dir.CTime = now, now
		if err := putInode(b, dir); err != nil {
			return err
		}
		return invalidate(b, ino)
	})
	return in, err
}

func addParent(ps []uint64, p uint64) []uint64 {
	for _, x := range ps {
		if x == p {
			return ps
		}
	}
	return append(ps, p)
}

// stillLinkedFrom reports whether any entry of dir points at ino.
func stillLinkedFrom(b *bolt.Bucket, dir, ino uint64) bool {
	prefix := inoKey(dir)
	c := b.Bucket(bDirents).Cursor()
	for k, v := c.Seek(prefix); k != nil && string(k[:8]) == string(prefix); k, v = c.Next() {
		if binary.BigEndian.Uint64(v) == ino {
			return true
		}
	}
	return false
}

func removeParent(ps []uint64, p uint64) []uint64 {
	out := ps[:0]
	for _, x := range ps {
		if x != p {
			out = append(out, x)
		}
	}
	return out
}

// unlinkLocked removes entry name (inode in) from dir in a transaction;
// the inode itself is deleted when its last link goes and it is not open.
func (sh *Share) unlinkLocked(b *bolt.Bucket, parent uint64, name string, in *Inode, now int64) (freed bool, err error) {
	if err := b.Bucket(bDirents).Delete(direntKey(parent, name)); err != nil {
		return false, err
	}
	if in.Type == tree.Dir {
		return true, deleteInode(b, in.Ino)
	}
	in.Nlink--
	in.CTime = now
	if !stillLinkedFrom(b, parent, in.Ino) {
		in.Parents = removeParent(in.Parents, parent)
	}
	if in.Nlink == 0 {
		if _, open := sh.open[in.Ino]; open {
			// Open handles keep it until closed (POSIX unlink semantics).
			return false, putInode(b, in)
		}
		return true, deleteInode(b, in.Ino)
	}
	return false, putInode(b, in)
}

// Remove deletes entry name of parent: a file, symlink or empty directory.
func (sh *Share) Remove(parent uint64, name string) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := sh.store.opt.Now().UnixNano()
	var freed *Inode
	err := sh.update(func(b *bolt.Bucket) error {
		ino, ok := lookup(b, parent, name)
		if !ok {
			return fmt.Errorf("sharefs: remove %s: %w", name, ErrNotExist)
		}
		in, err := getInode(b, ino)
		if err != nil {
			return err
		}
		if in.Type == tree.Dir && !dirEmpty(b, ino) {
			return fmt.Errorf("sharefs: remove %s: %w", name, ErrNotEmpty)
		}
		dir, err := getInode(b, parent)
		if err != nil {
			return err
		}
		f, err := sh.unlinkLocked(b, parent, name, in, now)
		if err != nil {
			return err
		}
		if f {
			freed = in
		}
		dir.MTime, dir.CTime = now, now
		if in.Type == tree.Dir {
			dir.Nlink--
		}
		if err := putInode(b, dir); err != nil {
			return err
		}
		return invalidate(b, parent)
	})
	if err == nil && freed != nil && freed.Staged {
		sh.dropStaging(freed.Ino)
	}
	return err
}

func dirEmpty(b *bolt.Bucket, ino uint64) bool {
	prefix := inoKey(ino)
	k, _ := b.Bucket(bDirents).Cursor().Seek(prefix)
	return k == nil || string(k[:8]) != string(prefix)
}

// isAncestor reports whether a is dir or one of its ancestors.
func isAncestor(b *bolt.Bucket, a, dir uint64) (bool, error) {
	for cur := dir; ; {
		if cur == a {
			return true, nil
		}
		if cur == RootIno {
			return false, nil
		}
		in, err := getInode(b, cur)
		if err != nil {
			return false, err
		}
		if len(in.Parents) == 0 {
			return false, nil
		}
		cur = in.Parents[0]
	}
}

// Rename moves oldName of oldParent to newName of newParent atomically,
// replacing an existing file, or an empty directory by a directory.
func (sh *Share) Rename(oldParent uint64, oldName string, newParent uint64, newName string) error {
	if err := validName(newName); err != nil {
		return err
	}
	if err := reserved(newParent, newName); err != nil {
		return err
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := sh.store.opt.Now().UnixNano()
	var freed *Inode
	err := sh.update(func(b *bolt.Bucket) error {
		ino, ok := lookup(b, oldParent, oldName)
		if !ok {
			return fmt.Errorf("sharefs: rename %s: %w", oldName, ErrNotExist)
		}
		in, err := getInode(b, ino)
		if err != nil {
			return err
		}
		ndir, err := getInode(b, newParent)
		if err != nil {
			return err
		}
		if ndir.Type != tree.Dir {
			return ErrNotDir
		}
		if oldParent == newParent && oldName == newName {
			return nil
		}
		if in.Type == tree.Dir {
			if anc, err := isAncestor(b, ino, newParent); err != nil {
				return err
			} else if anc {
				return fmt.Errorf("sharefs: rename %s into itself: %w", oldName, ErrInvalid)
			}
		}
		if dst, ok := lookup(b, newParent, newName); ok {
			if dst == ino {
				// Both names link the same file: POSIX says do nothing.
				return nil
			}
			din, err := getInode(b, dst)
			if err != nil {
				return err
			}
			switch {
			case din.Type == tree.Dir && in.Type != tree.Dir:
				return fmt.Errorf("sharefs: rename over directory %s: %w", newName, ErrIsDir)
			case din.Type != tree.Dir && in.Type == tree.Dir:
				return fmt.Errorf("sharefs: rename directory over %s: %w", newName, ErrNotDir)
			case din.Type == tree.Dir && !dirEmpty(b, dst):
				return fmt.Errorf("sharefs: rename over %s: %w", newName, ErrNotEmpty)
			}
			f, err := sh.unlinkLocked(b, newParent, newName, din, now)
			if err != nil {
				return err
			}
			if din.Type == tree.Dir {
				ndir.Nlink--
			}
			if f {
				freed = din
			}
		}
		if err := b.Bucket(bDirents).Delete(direntKey(oldParent, oldName)); err != nil {
			return err
		}
		if err := b.Bucket(bDirents).Put(direntKey(newParent, newName), inoKey(ino)); err != nil {
			return err
		}
		if !stillLinkedFrom(b, oldParent, ino) {
			in.Parents = removeParent(in.Parents, oldParent)
		}
		in.Parents = addParent(in.Parents, newParent)
		in.CTime = now
		if err := putInode(b, in); err != nil {
			return err
		}
		odir, err := getInode(b, oldParent)
		if err != nil {
			return err
		}
		if oldParent == newParent {
			odir = ndir
		}
		if in.Type == tree.Dir && oldParent != newParent {
			odir.Nlink--
			ndir.Nlink++
		}
		odir.MTime, odir.CTime = now, now
		ndir.MTime, ndir.CTime = now, now
		if err := putInode(b, odir); err != nil {
			return err
		}
		if oldParent != newParent {
			if err := putInode(b, ndir); err != nil {
				return err
			}
		}
		if err := invalidate(b, oldParent); err != nil {
			return err
		}
		return invalidate(b, newParent)
	})
	if err == nil && freed != nil && freed.Staged {
		sh.dropStaging(freed.Ino)
	}
	return err
}

// SetAttr changes mode, owner, size (truncate/extend) and times of ino.
func (sh *Share) SetAttr(ino uint64, a SetAttr) (*Inode, error) {
	if a.Size != nil {
		f, err := sh.OpenFile(ino, true, *a.Size == 0)
		if err != nil {
			return nil, err
		}
		if err := f.Truncate(int64(*a.Size)); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	}
	if in, ok, err := sh.setAttrOpen(ino, a); ok || err != nil {
		return in, err
	}
	now := sh.store.opt.Now().UnixNano()
	var in *Inode
	err := sh.update(func(b *bolt.Bucket) error {
		var err error
		in, err = getInode(b, ino)
		if err != nil {
			return err
		}
		if a.Mode != nil {
			in.Mode = *a.Mode & tree.ModeMask
		}
		if a.UID != nil {
			in.UID = *a.UID
		}
		if a.GID != nil {
			in.GID = *a.GID
		}
		if a.MTime != nil {
			in.MTime = a.MTime.UnixNano()
		}
		if a.ATime != nil {
			in.ATime = a.ATime.UnixNano()
		}
		in.CTime = now
		if err := putInode(b, in); err != nil {
			return err
		}
		return invalidate(b, ino)
	})
	if err != nil {
		return nil, err
	}
	sh.mu.Lock()
	if of := sh.open[ino]; of != nil {
		of.mu.Lock()
		if a.MTime != nil {
			of.mtime = a.MTime.UnixNano()
		}
		// What the catalog now holds wins over what a writer left pending.
		of.attr = pendingAttr{}
		of.mu.Unlock()
	}
	sh.mu.Unlock()
	sh.overlay(in)
	return in, nil
}

// setAttrOpen applies a (without a size) to a file open for writing, in
// memory: it is recorded with the file's next Sync, at the latest when
// its last writing handle closes — one transaction for the content and
// the attributes, as a client that sets times and mode before closing
// (sftp put -p, cp -p) expects to cost. ok is false when no handle writes
// the file, and SetAttr goes to the catalog at once.
func (sh *Share) setAttrOpen(ino uint64, a SetAttr) (in *Inode, ok bool, err error) {
	if a.Size != nil {
		return nil, false, nil
	}
	sh.mu.Lock()
	of := sh.open[ino]
	if of == nil || of.writers == 0 {
		sh.mu.Unlock()
		return nil, false, nil
	}
	of.mu.Lock()
	if a.Mode != nil {
		m := *a.Mode & tree.ModeMask
		of.attr.mode = &m
	}
	if a.UID != nil {
		of.attr.uid = a.UID
	}
	if a.GID != nil {
		of.attr.gid = a.GID
	}
	if a.ATime != nil {
		t := a.ATime.UnixNano()
		of.attr.atime = &t
	}
	if a.MTime != nil {
		of.mtime = a.MTime.UnixNano()
	}
	of.metaDirty = true
	of.gen++
	of.mu.Unlock()
	sh.mu.Unlock()
	in, err = sh.Stat(ino)
	return in, true, err
}

// SetXattr sets an extended attribute.
func (sh *Share) SetXattr(ino uint64, name string, value []byte) error {
	if name == "" || len(name) > 255 || len(value) > 64<<10 {
		return ErrInvalid
	}
	return sh.update(func(b *bolt.Bucket) error {
		in, err := getInode(b, ino)
		if err != nil {
			return err
		}
		if in.Xattrs == nil {
			in.Xattrs = map[string][]byte{}
		}
		in.Xattrs[name] = append([]byte(nil), value...)
		in.CTime = sh.store.opt.Now().UnixNano()
		if err := putInode(b, in); err != nil {
			return err
		}
		return invalidate(b, ino)
	})
}

// RemoveXattr removes an extended attribute.
func (sh *Share) RemoveXattr(ino uint64, name string) error {
	return sh.update(func(b *bolt.Bucket) error {
		in, err := getInode(b, ino)
		if err != nil {
			return err
		}
		if _, ok := in.Xattrs[name]; !ok {
			return fmt.Errorf("sharefs: xattr %s: %w", name, syscall.ENODATA)
		}
		delete(in.Xattrs, name)
		if err := putInode(b, in); err != nil {
			return err
		}
		return invalidate(b, ino)
	})
}
