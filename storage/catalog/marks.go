package catalog

import (
	"fmt"

	"github.com/arkbox/arkbox/storage/blob"
	bolt "go.etcd.io/bbolt"
)

// MarkSet is a set of blobs kept on disk in the catalog, so that marking
// every blob of a large repository does not grow the heap. Marks are
// buffered and written in batches.
type MarkSet struct {
	c       *Catalog
	name    []byte
	pending map[[33]byte]struct{}
}

const markBatch = 16384

// NewMarkSet creates (or empties) the mark set name.
func (c *Catalog) NewMarkSet(name string) (*MarkSet, error) {
	n := []byte(name)
	err := c.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bMarks)
		if err != nil {
			return err
		}
		if root.Bucket(n) != nil {
			if err := root.DeleteBucket(n); err != nil {
				return err
			}
		}
		_, err = root.CreateBucket(n)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: new mark set %s: %w", name, err)
	}
	return &MarkSet{c: c, name: n, pending: map[[33]byte]struct{}{}}, nil
}

func markKey(t blob.Type, id blob.ID) [33]byte {
	var k [33]byte
	k[0] = byte(t)
	copy(k[1:], id[:])
	return k
}

// Has reports whether (t, id) is marked.
func (m *MarkSet) Has(t blob.Type, id blob.ID) (bool, error) {
	k := markKey(t, id)
	if _, ok := m.pending[k]; ok {
		return true, nil
	}
	var ok bool
	err := m.c.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bMarks).Bucket(m.name).Get(k[:]) != nil
		return nil
	})
	return ok, err
}

// Mark adds (t, id); it reports whether it was already marked.
func (m *MarkSet) Mark(t blob.Type, id blob.ID) (bool, error) {
	had, err := m.Has(t, id)
	if err != nil || had {
		return had, err
	}
	m.pending[markKey(t, id)] = struct{}{}
	if len(m.pending) >= markBatch {
		return false, m.Flush()
	}
	return false, nil
}

// Flush writes buffered marks.
func (m *MarkSet) Flush() error {
	if len(m.pending) == 0 {
		return nil
	}
	err := m.c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bMarks).Bucket(m.name)
		for k := range m.pending {
			if err := b.Put(append([]byte(nil), k[:]...), []byte{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("catalog: flush marks %s: %w", m.name, err)
	}
	clear(m.pending)
	return nil
}

// Len returns the number of marks (flushing first).
func (m *MarkSet) Len() (int, error) {
	if err := m.Flush(); err != nil {
		return 0, err
	}
	var n int
	err := m.c.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bMarks).Bucket(m.name).Stats().KeyN
		return nil
	})
	return n, err
}

// Drop deletes the mark set.
func (m *MarkSet) Drop() error {
	clear(m.pending)
	return m.c.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bMarks)
		if root == nil || root.Bucket(m.name) == nil {
			return nil
		}
		return root.DeleteBucket(m.name)
	})
}

// ForEach calls fn for every mark (flushing first). fn must not change the
// mark set.
func (m *MarkSet) ForEach(fn func(blob.Type, blob.ID) error) error {
	if err := m.Flush(); err != nil {
		return err
	}
	// Collect in batches outside the read transaction so fn may use the
	// catalog.
	var after []byte
	for {
		var batch [][33]byte
		err := m.c.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bMarks).Bucket(m.name).Cursor()
			var k []byte
			if after == nil {
				k, _ = c.First()
			} else {
				k, _ = c.Seek(after)
				if k != nil && string(k) == string(after) {
					k, _ = c.Next()
				}
			}
			for ; k != nil && len(batch) < 4096; k, _ = c.Next() {
				var key [33]byte
				copy(key[:], k)
				batch = append(batch, key)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		for _, k := range batch {
			var id blob.ID
			copy(id[:], k[1:])
			if err := fn(blob.Type(k[0]), id); err != nil {
				return err
			}
		}
		last := batch[len(batch)-1]
		after = append([]byte(nil), last[:]...)
	}
}
