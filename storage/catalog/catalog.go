// Package catalog is the repository's local cache in bbolt: the blob index
// (blob → pack location), the packs each index object lists, the decrypted
// snapshot list and scratch mark sets for garbage collection.
//
// Everything in the catalog can be rebuilt from the repository's objects
// ("arkbox repair catalog"); losing it loses nothing.
package catalog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/objstore"
	bolt "go.etcd.io/bbolt"
)

// Version is the catalog schema version; a catalog of another version is
// rebuilt.
const Version = 1

var (
	bMeta      = []byte("meta")
	bBlobs     = []byte("blobs")
	bPacks     = []byte("packs")
	bIndexes   = []byte("indexes")
	bSnapshots = []byte("snapshots")
	bMarks     = []byte("marks")
	bPackBlobs = []byte("packblobs")

	kVersion = []byte("version")
	kRepoID  = []byte("repo-id")
)

// Catalog is an open catalog database. It is safe for concurrent use.
type Catalog struct {
	db   *bolt.DB
	path string
}

// ErrInUse is returned when another process holds the catalog open.
var ErrInUse = errors.New("in use by another arkbox process")

// DefaultWait is how long Open waits for another process to let go of the
// catalog.
const DefaultWait = 5 * time.Second

// Open opens (creating if needed) the catalog at path, waiting up to
// DefaultWait for another process that holds it.
func Open(path string) (*Catalog, error) { return OpenWait(path, DefaultWait) }

// OpenWait is Open waiting up to wait for another process that holds the
// catalog; with wait 0 it tries once. It fails with an error matching
// ErrInUse when the catalog stays held.
func OpenWait(path string, wait time.Duration) (*Catalog, error) {
	// bbolt waits forever for a zero timeout and tries once for a tiny one.
	// The free list is not written at each commit but rebuilt by a scan
	// at open: a commit writes fewer pages, which the share filesystem's
	// small transactions (one or two per file written) feel.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: max(wait, time.Nanosecond),
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("catalog: open %s: %w (if `arkbox serve` runs on this repository: the commands that only read it work beside it, and share, user, snapshot, snapshots and jobs reach it through its data folder, --repo DIR; stop it for the other commands)", path, ErrInUse)
		}
		return nil, fmt.Errorf("catalog: open %s: %w", path, err)
	}
	c := &Catalog{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bBlobs, bPacks, bIndexes, bSnapshots, bPackBlobs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		v := m.Get(kVersion)
		if v == nil {
			return m.Put(kVersion, []byte{Version})
		}
		if len(v) != 1 || v[0] != Version {
			// Unknown schema: start afresh; the owner reloads from objects.
			if err := resetTx(tx); err != nil {
				return err
			}
			return tx.Bucket(bMeta).Put(kVersion, []byte{Version})
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("catalog: init %s: %w", path, err)
	}
	return c, nil
}

// Path returns the database file.
func (c *Catalog) Path() string { return c.path }

// Close closes the database.
func (c *Catalog) Close() error { return c.db.Close() }

// DB exposes the bbolt handle to packages that keep their own buckets in
// the catalog file (for example the live share trees).
func (c *Catalog) DB() *bolt.DB { return c.db }

func resetTx(tx *bolt.Tx) error {
	for _, b := range [][]byte{bMeta, bBlobs, bPacks, bIndexes, bSnapshots, bMarks, bPackBlobs} {
		if tx.Bucket(b) != nil {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		if !bytes.Equal(b, bMarks) {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// Reset empties the repository cache (blobs, packs, indexes, snapshots,
// marks) and records repoID, for a rebuild.
func (c *Catalog) Reset(repoID string) error {
	return c.db.Update(func(tx *bolt.Tx) error {
		if err := resetTx(tx); err != nil {
			return err
		}
		m := tx.Bucket(bMeta)
		if err := m.Put(kVersion, []byte{Version}); err != nil {
			return err
		}
		return m.Put(kRepoID, []byte(repoID))
	})
}

// RepoID returns the repository id the catalog caches ("" if none yet).
func (c *Catalog) RepoID() (string, error) {
	var id string
	err := c.db.View(func(tx *bolt.Tx) error {
		id = string(tx.Bucket(bMeta).Get(kRepoID))
		return nil
	})
	return id, err
}

// BlobLoc is where a blob lives: a range of a pack.
type BlobLoc struct {
	Pack      objstore.ID
	Offset    uint32 // of the sealed blob in the pack
	Length    uint32 // of the sealed blob
	RawLength uint32 // plaintext length
}

func blobKey(t blob.Type, id blob.ID) []byte {
	k := make([]byte, 33)
	k[0] = byte(t)
	copy(k[1:], id[:])
	return k
}

func encodeLoc(l BlobLoc) []byte {
	v := make([]byte, 32+12)
	copy(v, l.Pack[:])
	binary.LittleEndian.PutUint32(v[32:], l.Offset)
	binary.LittleEndian.PutUint32(v[36:], l.Length)
	binary.LittleEndian.PutUint32(v[40:], l.RawLength)
	return v
}

func decodeLoc(v []byte) (BlobLoc, error) {
	var l BlobLoc
	if len(v) != 44 {
		return l, fmt.Errorf("catalog: blob location of %d bytes", len(v))
	}
	copy(l.Pack[:], v)
	l.Offset = binary.LittleEndian.Uint32(v[32:])
	l.Length = binary.LittleEndian.Uint32(v[36:])
	l.RawLength = binary.LittleEndian.Uint32(v[40:])
	return l, nil
}

// LookupBlob returns where blob (t, id) is stored.
func (c *Catalog) LookupBlob(t blob.Type, id blob.ID) (BlobLoc, bool, error) {
	var (
		loc BlobLoc
		ok  bool
		err error
	)
	verr := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bBlobs).Get(blobKey(t, id))
		if v == nil {
			return nil
		}
		ok = true
		loc, err = decodeLoc(v)
		return nil
	})
	if verr != nil {
		return loc, false, fmt.Errorf("catalog: lookup blob %s: %w", id.Short(), verr)
	}
	if err != nil {
		return loc, false, fmt.Errorf("catalog: lookup blob %s: %w", id.Short(), err)
	}
	return loc, ok, nil
}

// Batch lets a caller look up many blobs in one read transaction.
type Batch struct{ b *bolt.Bucket }

// Has reports whether (t, id) is indexed.
func (b Batch) Has(t blob.Type, id blob.ID) bool { return b.b.Get(blobKey(t, id)) != nil }

// Lookup returns the location of (t, id).
func (b Batch) Lookup(t blob.Type, id blob.ID) (BlobLoc, bool) {
	v := b.b.Get(blobKey(t, id))
	if v == nil {
		return BlobLoc{}, false
	}
	l, err := decodeLoc(v)
	return l, err == nil
}

// ViewBlobs runs fn with a read-only view of the blob index.
func (c *Catalog) ViewBlobs(fn func(Batch) error) error {
	return c.db.View(func(tx *bolt.Tx) error { return fn(Batch{tx.Bucket(bBlobs)}) })
}

// IndexedBlob is one blob entry of an index object.
type IndexedBlob struct {
	Type      blob.Type
	ID        blob.ID
	Offset    uint32
	Length    uint32
	RawLength uint32
}

// IndexedPack is one pack listed by an index object.
type IndexedPack struct {
	ID    objstore.ID
	Size  uint32
	Blobs []IndexedBlob
}

// PackInfo is what the catalog records about a pack.
type PackInfo struct {
	Index objstore.ID // the index object that lists it
	Size  uint32
	Blobs uint32
	Raw   uint64 // sum of plaintext lengths
}

// AddIndex records an index object and everything it lists, in one
// transaction. An already recorded index is skipped.
func (c *Catalog) AddIndex(indexID objstore.ID, packs []IndexedPack) error {
	if err := c.db.Update(func(tx *bolt.Tx) error { return addIndexTx(tx, indexID, packs) }); err != nil {
		return fmt.Errorf("catalog: add index %s: %w", indexID.Short(), err)
	}
	return nil
}

// ReplaceIndex replaces every index, pack and blob entry (snapshots stay)
// with the packs of the given index objects, in one transaction: readers
// see the old index or the new one.
func (c *Catalog) ReplaceIndex(indexes map[objstore.ID][]IndexedPack) error {
	err := c.db.Update(func(tx *bolt.Tx) error {
		if err := clearIndexTx(tx); err != nil {
			return err
		}
		for id, packs := range indexes {
			if err := addIndexTx(tx, id, packs); err != nil {
				return fmt.Errorf("index %s: %w", id.Short(), err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("catalog: replace the blob index: %w", err)
	}
	return nil
}

func addIndexTx(tx *bolt.Tx, indexID objstore.ID, packs []IndexedPack) error {
	ib := tx.Bucket(bIndexes)
	if ib.Get(indexID[:]) != nil {
		return nil
	}
	list := make([]byte, 0, 32*len(packs))
	pb, bb, pbb := tx.Bucket(bPacks), tx.Bucket(bBlobs), tx.Bucket(bPackBlobs)
	for _, p := range packs {
		list = append(list, p.ID[:]...)
		var raw uint64
		if err := pbb.Put(p.ID[:], encodePackBlobs(p.Blobs)); err != nil {
			return err
		}
		for _, e := range p.Blobs {
			raw += uint64(e.RawLength)
			if err := bb.Put(blobKey(e.Type, e.ID), encodeLoc(BlobLoc{Pack: p.ID, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength})); err != nil {
				return err
			}
		}
		if err := pb.Put(p.ID[:], encodePackInfo(PackInfo{Index: indexID, Size: p.Size, Blobs: uint32(len(p.Blobs)), Raw: raw})); err != nil {
			return err
		}
	}
	return ib.Put(indexID[:], list)
}

func encodePackInfo(p PackInfo) []byte {
	v := make([]byte, 32+4+4+8)
	copy(v, p.Index[:])
	binary.LittleEndian.PutUint32(v[32:], p.Size)
	binary.LittleEndian.PutUint32(v[36:], p.Blobs)
	binary.LittleEndian.PutUint64(v[40:], p.Raw)
	return v
}

func decodePackInfo(v []byte) (PackInfo, error) {
	var p PackInfo
	if len(v) != 48 {
		return p, fmt.Errorf("catalog: pack info of %d bytes", len(v))
	}
	copy(p.Index[:], v)
	p.Size = binary.LittleEndian.Uint32(v[32:])
	p.Blobs = binary.LittleEndian.Uint32(v[36:])
	p.Raw = binary.LittleEndian.Uint64(v[40:])
	return p, nil
}

// HasIndex reports whether the index object is recorded.
func (c *Catalog) HasIndex(id objstore.ID) (bool, error) {
	var ok bool
	err := c.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bIndexes).Get(id[:]) != nil
		return nil
	})
	return ok, err
}

// Indexes returns the recorded index objects.
func (c *Catalog) Indexes() ([]objstore.ID, error) {
	var ids []objstore.ID
	err := c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bIndexes).ForEach(func(k, _ []byte) error {
			var id objstore.ID
			copy(id[:], k)
			ids = append(ids, id)
			return nil
		})
	})
	return ids, err
}

// ForEachPack calls fn for every recorded pack.
func (c *Catalog) ForEachPack(fn func(objstore.ID, PackInfo) error) error {
	return c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bPacks).ForEach(func(k, v []byte) error {
			var id objstore.ID
			copy(id[:], k)
			p, err := decodePackInfo(v)
			if err != nil {
				return err
			}
			return fn(id, p)
		})
	})
}

// LookupPack returns what the catalog knows of a pack.
func (c *Catalog) LookupPack(id objstore.ID) (PackInfo, bool, error) {
	var (
		p  PackInfo
		ok bool
	)
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bPacks).Get(id[:])
		if v == nil {
			return nil
		}
		ok = true
		var err error
		p, err = decodePackInfo(v)
		return err
	})
	return p, ok, err
}

// ForEachBlob calls fn for every indexed blob.
func (c *Catalog) ForEachBlob(fn func(blob.Type, blob.ID, BlobLoc) error) error {
	return c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bBlobs).ForEach(func(k, v []byte) error {
			if len(k) != 33 {
				return fmt.Errorf("catalog: blob key of %d bytes", len(k))
			}
			var id blob.ID
			copy(id[:], k[1:])
			l, err := decodeLoc(v)
			if err != nil {
				return err
			}
			return fn(blob.Type(k[0]), id, l)
		})
	})
}

// Counts returns the number of indexed blobs, packs and index objects.
func (c *Catalog) Counts() (blobs, packs, indexes int, err error) {
	err = c.db.View(func(tx *bolt.Tx) error {
		blobs = tx.Bucket(bBlobs).Stats().KeyN
		packs = tx.Bucket(bPacks).Stats().KeyN
		indexes = tx.Bucket(bIndexes).Stats().KeyN
		return nil
	})
	return
}

func clearIndexTx(tx *bolt.Tx) error {
	for _, b := range [][]byte{bBlobs, bPacks, bIndexes, bPackBlobs} {
		if err := tx.DeleteBucket(b); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(b); err != nil {
			return err
		}
	}
	return nil
}

// PutSnapshot caches a decrypted snapshot object.
func (c *Catalog) PutSnapshot(id objstore.ID, data []byte) error {
	return c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bSnapshots).Put(id[:], data) })
}

// DeleteSnapshot drops a cached snapshot.
func (c *Catalog) DeleteSnapshot(id objstore.ID) error {
	return c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bSnapshots).Delete(id[:]) })
}

// ForEachSnapshot calls fn for every cached snapshot.
func (c *Catalog) ForEachSnapshot(fn func(objstore.ID, []byte) error) error {
	return c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bSnapshots).ForEach(func(k, v []byte) error {
			var id objstore.ID
			copy(id[:], k)
			return fn(id, v)
		})
	})
}

func encodePackBlobs(bs []IndexedBlob) []byte {
	v := make([]byte, 0, len(bs)*45)
	for _, e := range bs {
		v = append(v, byte(e.Type))
		v = append(v, e.ID[:]...)
		v = binary.LittleEndian.AppendUint32(v, e.Offset)
		v = binary.LittleEndian.AppendUint32(v, e.Length)
		v = binary.LittleEndian.AppendUint32(v, e.RawLength)
	}
	return v
}

func decodePackBlobs(v []byte) ([]IndexedBlob, error) {
	if len(v)%45 != 0 {
		return nil, fmt.Errorf("catalog: pack blob list of %d bytes", len(v))
	}
	out := make([]IndexedBlob, 0, len(v)/45)
	for ; len(v) > 0; v = v[45:] {
		var e IndexedBlob
		e.Type = blob.Type(v[0])
		copy(e.ID[:], v[1:33])
		e.Offset = binary.LittleEndian.Uint32(v[33:])
		e.Length = binary.LittleEndian.Uint32(v[37:])
		e.RawLength = binary.LittleEndian.Uint32(v[41:])
		out = append(out, e)
	}
	return out, nil
}

// PackBlobs returns the blobs an index lists for a pack.
func (c *Catalog) PackBlobs(id objstore.ID) ([]IndexedBlob, error) {
	var out []IndexedBlob
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bPackBlobs).Get(id[:])
		if v == nil {
			return fmt.Errorf("catalog: pack %s not indexed", id.Short())
		}
		var err error
		out, err = decodePackBlobs(v)
		return err
	})
	return out, err
}
