package sharefs

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Pending creations. CreateFile registers a new file in memory and
// writes nothing: the file reaches the catalog with the share's next
// write transaction, at the latest the one its first Sync or Close runs
// to record what was written — so a small file written by a protocol
// (create, write, close) costs one catalog transaction, not two. Until
// then Lookup, Resolve, Stat and ReadDir show it from memory, and every
// other change to the share writes it first, in the same transaction. A
// crash before that loses a file of which nothing was acknowledged as
// durable (POSIX: a creation is durable after an fsync).
//
// Inode numbers for pending files come from a range reserved in the
// catalog ("next-ino" is moved on by inoReserve at a time), so a number
// handed out is never handed out again, across restarts too.
const inoReserve = 1024

type pendingSet struct {
	mu     sync.Mutex // held by every write transaction of the share, throughout
	inodes map[uint64]*Inode
	names  map[string]uint64 // direntKey → inode number
	keys   map[uint64]string // inode number → direntKey
	// Inode numbers: every number ≤ high was handed out; numbers below
	// limit are covered by the catalog's counter. 0/0 until first used.
	high, limit uint64
}

func newPendingSet() pendingSet {
	return pendingSet{inodes: map[uint64]*Inode{}, names: map[string]uint64{}, keys: map[uint64]string{}}
}

// counterLocked reads the catalog's inode counter once.
func (sh *Share) counterLocked(b *bolt.Bucket) error {
	if sh.pend.limit != 0 {
		return nil
	}
	v := b.Bucket(bMeta).Get(kNextIno)
	if len(v) != 8 {
		return fmt.Errorf("sharefs: corrupt inode counter")
	}
	next := binary.BigEndian.Uint64(v)
	sh.pend.high, sh.pend.limit = max(sh.pend.high, next-1), next
	return nil
}

// allocInoLocked hands out an inode number inside write transaction b
// (pend.mu held), moving the catalog's counter when the reserve is used up.
func (sh *Share) allocInoLocked(b *bolt.Bucket) (uint64, error) {
	if err := sh.counterLocked(b); err != nil {
		return 0, err
	}
	ino := sh.pend.high + 1
	if ino >= sh.pend.limit {
		if err := sh.reserveLocked(b, ino+1); err != nil {
			return 0, err
		}
	}
	sh.pend.high = ino
	return ino, nil
}

// reserveLocked moves the catalog's counter to at least need and a
// reserve beyond it; the range counts once the transaction commits.
func (sh *Share) reserveLocked(b *bolt.Bucket, need uint64) error {
	m := b.Bucket(bMeta)
	v := m.Get(kNextIno)
	if len(v) != 8 {
		return fmt.Errorf("sharefs: corrupt inode counter")
	}
	limit := max(binary.BigEndian.Uint64(v), need) + inoReserve
	if err := m.Put(kNextIno, inoKey(limit)); err != nil {
		return err
	}
	b.Tx().OnCommit(func() { sh.pend.limit = max(sh.pend.limit, limit) }) // pend.mu still held
	return nil
}

// flushLocked writes the pending files into write transaction b (pend.mu
// held); they leave the set when it commits.
func (sh *Share) flushLocked(b *bolt.Bucket) error {
	if len(sh.pend.inodes) == 0 {
		return nil
	}
	inos := make([]uint64, 0, len(sh.pend.inodes))
	for ino := range sh.pend.inodes {
		inos = append(inos, ino)
	}
	slices.Sort(inos)
	for _, ino := range inos {
		in := sh.pend.inodes[ino]
		parent, name := in.Parents[0], sh.pend.keys[ino][8:]
		dir, err := getInode(b, parent)
		if err != nil {
			return fmt.Errorf("sharefs: write new file %q: %w", name, err)
		}
		if err := putInode(b, in); err != nil {
			return err
		}
		if err := b.Bucket(bDirents).Put(direntKey(parent, name), inoKey(ino)); err != nil {
			return err
		}
		dir.MTime, dir.CTime = max(dir.MTime, in.CTime), max(dir.CTime, in.CTime)
		if err := putInode(b, dir); err != nil {
			return err
		}
		if err := invalidate(b, parent); err != nil {
			return err
		}
	}
	b.Tx().OnCommit(func() { // pend.mu still held
		for _, ino := range inos {
			delete(sh.pend.names, sh.pend.keys[ino])
			delete(sh.pend.keys, ino)
			delete(sh.pend.inodes, ino)
		}
	})
	return nil
}

// createPending registers a new empty file, staged, in parent (sh.mu
// held). The caller opens it.
func (sh *Share) createPending(parent uint64, name string, in *Inode) error {
	if err := validName(name); err != nil {
		return err
	}
	if err := reserved(parent, name); err != nil {
		return err
	}
	for {
		sh.pend.mu.Lock()
		if sh.pend.limit != 0 && sh.pend.high+1 < sh.pend.limit {
			break // pend.mu held
		}
		sh.pend.mu.Unlock()
		// Reserve numbers (and read the counter) in a transaction.
		if err := sh.update(func(b *bolt.Bucket) error {
			if err := sh.counterLocked(b); err != nil {
				return err
			}
			if sh.pend.high+1 < sh.pend.limit {
				return nil
			}
			return sh.reserveLocked(b, sh.pend.high+1)
		}); err != nil {
			return err
		}
	}
	defer sh.pend.mu.Unlock()
	key := string(direntKey(parent, name))
	if _, ok := sh.pend.names[key]; ok {
		return fmt.Errorf("sharefs: create %s: %w", name, ErrExist)
	}
	// No write transaction runs while pend.mu is held: what the catalog
	// shows now stays true until the file is registered.
	err := sh.view(func(b *bolt.Bucket) error {
		_, err := canCreate(b, parent, name)
		return err
	})
	if err != nil {
		return err
	}
	now := sh.store.opt.Now().UnixNano()
	sh.pend.high++
	in.Ino = sh.pend.high
	in.MTime, in.CTime = now, now
	in.Parents = []uint64{parent}
	sh.pend.inodes[in.Ino] = in
	sh.pend.names[key] = in.Ino
	sh.pend.keys[in.Ino] = key
	return nil
}

// pendingInode returns a copy of pending inode ino, if it is one.
func (sh *Share) pendingInode(ino uint64) (*Inode, bool) {
	sh.pend.mu.Lock()
	defer sh.pend.mu.Unlock()
	in, ok := sh.pend.inodes[ino]
	if !ok {
		return nil, false
	}
	c := *in
	return &c, true
}

// isPending reports whether inode ino is a pending file.
func (sh *Share) isPending(ino uint64) bool {
	sh.pend.mu.Lock()
	defer sh.pend.mu.Unlock()
	_, ok := sh.pend.inodes[ino]
	return ok
}

// pendingLookup returns a copy of the pending file name in parent.
func (sh *Share) pendingLookup(parent uint64, name string) (*Inode, bool) {
	sh.pend.mu.Lock()
	ino, ok := sh.pend.names[string(direntKey(parent, name))]
	sh.pend.mu.Unlock()
	if !ok {
		return nil, false
	}
	return sh.pendingInode(ino)
}

// pendingEntries returns the pending files of directory parent.
func (sh *Share) pendingEntries(parent uint64) []DirEntry {
	sh.pend.mu.Lock()
	defer sh.pend.mu.Unlock()
	var out []DirEntry
	for k, ino := range sh.pend.names {
		if binary.BigEndian.Uint64([]byte(k[:8])) == parent {
			c := *sh.pend.inodes[ino]
			out = append(out, DirEntry{Name: k[8:], Inode: &c})
		}
	}
	return out
}

// flushPending writes the pending files to the catalog, if any.
func (sh *Share) flushPending() error {
	sh.pend.mu.Lock()
	n := len(sh.pend.inodes)
	sh.pend.mu.Unlock()
	if n == 0 {
		return nil
	}
	return sh.update(func(*bolt.Bucket) error { return nil })
}
