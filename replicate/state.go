package replicate

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/arkbox/arkbox/storage/objstore"
)

// State is a target's local record, in its own bbolt file: the remote
// inventory (every object the target is known to hold, with its size),
// objects waiting for their delayed deletion, and the last runs. Holding
// it open also keeps a second sync of the same target from starting.
type State struct {
	db   *bolt.DB
	path string
}

var (
	bMeta = []byte("meta")
	bGone = []byte("gone")
	kList = []byte("listed") // when the inventory was last rebuilt from a listing
	kLast = []byte("last")   // the last run's report (JSON)
	kOK   = []byte("last-ok")
)

func invBucket(k objstore.Kind) []byte { return []byte("inv/" + string(k)) }

// ErrBusy: another process is syncing this target.
var ErrBusy = errors.New("another sync of this target is running")

// OpenState opens (or creates) the state file at path.
func OpenState(path string) (*State, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("replicate: open %s: %w", path, ErrBusy)
	}
	if err != nil {
		return nil, fmt.Errorf("replicate: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bGone} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		for _, k := range objstore.Kinds {
			if _, err := tx.CreateBucketIfNotExists(invBucket(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("replicate: init %s: %w", path, err)
	}
	return &State{db: db, path: path}, nil
}

// Close closes the file.
func (s *State) Close() error { return s.db.Close() }

// Inventory returns the objects the target is known to hold.
func (s *State) Inventory(kind objstore.Kind) (map[objstore.ID]int64, error) {
	m := map[objstore.ID]int64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(invBucket(kind)).ForEach(func(k, v []byte) error {
			if len(k) == 32 && len(v) == 8 {
				m[objstore.ID(k)] = int64(binary.BigEndian.Uint64(v))
			}
			return nil
		})
	})
	return m, err
}

// record adds (size >= 0) or removes (size < 0) inventory entries.
func (s *State) record(entries []objstore.Info, remove bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, e := range entries {
			b := tx.Bucket(invBucket(e.Kind))
			if remove {
				if err := b.Delete(e.ID[:]); err != nil {
					return err
				}
				if err := tx.Bucket(bGone).Delete(goneKey(e.Kind, e.ID)); err != nil {
					return err
				}
				continue
			}
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], uint64(e.Size))
			if err := b.Put(e.ID[:], v[:]); err != nil {
				return err
			}
		}
		return nil
	})
}

// replaceInventory stores a fresh listing of the target.
func (s *State) replaceInventory(inv map[objstore.Kind]map[objstore.ID]int64, at time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, k := range objstore.Kinds {
			if err := tx.DeleteBucket(invBucket(k)); err != nil {
				return err
			}
			b, err := tx.CreateBucket(invBucket(k))
			if err != nil {
				return err
			}
			for id, size := range inv[k] {
				var v [8]byte
				binary.BigEndian.PutUint64(v[:], uint64(size))
				if err := b.Put(id[:], v[:]); err != nil {
					return err
				}
			}
		}
		return tx.Bucket(bMeta).Put(kList, timeBytes(at))
	})
}

// Listed returns when the inventory was last rebuilt from a listing.
func (s *State) Listed() time.Time {
	var t time.Time
	s.db.View(func(tx *bolt.Tx) error {
		t = bytesTime(tx.Bucket(bMeta).Get(kList))
		return nil
	})
	return t
}

// forgetListing makes the next sync list the target again.
func (s *State) forgetListing() error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Delete(kList) })
}

func goneKey(k objstore.Kind, id objstore.ID) []byte { return append([]byte(string(k)+"/"), id[:]...) }

// markGone returns when each object was first seen missing locally,
// recording now for new ones and clearing objects no longer missing.
func (s *State) markGone(missing []objstore.Info, now time.Time) (map[string]time.Time, error) {
	since := map[string]time.Time{}
	want := map[string]bool{}
	for _, m := range missing {
		want[string(goneKey(m.Kind, m.ID))] = true
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bGone)
		var stale [][]byte
		b.ForEach(func(k, _ []byte) error {
			if !want[string(k)] {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		for k := range want {
			if v := b.Get([]byte(k)); v != nil {
				since[k] = bytesTime(v)
				continue
			}
			if err := b.Put([]byte(k), timeBytes(now)); err != nil {
				return err
			}
			since[k] = now
		}
		return nil
	})
	return since, err
}

func (s *State) saveReport(r *Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if r.Error == "" {
			if err := m.Put(kOK, b); err != nil {
				return err
			}
		}
		return m.Put(kLast, b)
	})
}

// LastRuns returns the last run's report and the last successful one (nil
// when there was none).
func (s *State) LastRuns() (last, ok *Report, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		for _, p := range []struct {
			k   []byte
			dst **Report
		}{{kLast, &last}, {kOK, &ok}} {
			if v := m.Get(p.k); v != nil {
				var r Report
				if err := json.Unmarshal(v, &r); err != nil {
					return err
				}
				*p.dst = &r
			}
		}
		return nil
	})
	return last, ok, err
}

func timeBytes(t time.Time) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano()))
	return b[:]
}

func bytesTime(b []byte) time.Time {
	if len(b) != 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)))
}

var (
	kKeepIdx = []byte("keep-indexes")
	kKeepSum = []byte("keep-sum")
)

// Add records objects put on the target outside a sync's uploads.
func (s *State) Add(objs ...objstore.Info) error { return s.record(objs, false) }

// KeepIndexes returns the target-only indexes written for the target's own
// retention, oldest first, and the SHA-256 of the last one's plaintext.
func (s *State) KeepIndexes() ([]objstore.ID, [32]byte, error) {
	var ids []objstore.ID
	var sum [32]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if v := m.Get(kKeepIdx); v != nil {
			if err := json.Unmarshal(v, &ids); err != nil {
				return err
			}
		}
		copy(sum[:], m.Get(kKeepSum))
		return nil
	})
	return ids, sum, err
}

// SetKeepIndexes records them.
func (s *State) SetKeepIndexes(ids []objstore.ID, sum [32]byte) error {
	b, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if err := m.Put(kKeepIdx, b); err != nil {
			return err
		}
		return m.Put(kKeepSum, sum[:])
	})
}
