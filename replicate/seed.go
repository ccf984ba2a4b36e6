package replicate

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/arkbox/arkbox/storage/objstore"
)

// A seed disk is a folder holding objects in the directory store's layout
// (objects/KIND/ID[0:2]/ID) and manifest.json listing every object with its
// size and SHA-256 (which is also its name). It carries a first full copy
// to a datacenter, or a full copy back.

// ManifestName is the seed disk's manifest file.
const ManifestName = "manifest.json"

// ManifestEntry is one object of a seed disk.
type ManifestEntry struct {
	Kind   objstore.Kind `json:"kind"`
	ID     objstore.ID   `json:"id"`
	Size   int64         `json:"size"`
	SHA256 string        `json:"sha256"`
}

// Manifest describes a seed disk.
type Manifest struct {
	Created time.Time       `json:"created"`
	Source  string          `json:"source"` // what was copied (a target name or URL)
	Objects []ManifestEntry `json:"objects"`
	Bytes   int64           `json:"bytes"`
}

// SeedObjects opens (creating) the object folder of a seed disk.
func SeedObjects(dir string, create bool) (*objstore.Dir, error) {
	return objstore.OpenDir(filepath.Join(dir, "objects"), objstore.DirOptions{Create: create, ReadOnly: !create})
}

// WriteManifest records objs as the seed disk's content.
func WriteManifest(dir, source string, objs []objstore.Info, now time.Time) (*Manifest, error) {
	m := &Manifest{Created: now.UTC(), Source: source, Objects: []ManifestEntry{}}
	for _, o := range objs {
		m.Objects = append(m.Objects, ManifestEntry{Kind: o.Kind, ID: o.ID, Size: o.Size, SHA256: o.ID.String()})
		m.Bytes += o.Size
	}
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, err
	}
	if err := objstore.WriteFileAtomic(filepath.Join(dir, ManifestName), append(b, '\n')); err != nil {
		return nil, fmt.Errorf("seed: write manifest: %w", err)
	}
	return m, nil
}

// ReadManifest reads a seed disk's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("seed: %s has no %s: not a seed disk, or its export did not finish (run it again)", dir, ManifestName)
	}
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("seed: %s: %w", filepath.Join(dir, ManifestName), err)
	}
	for _, e := range m.Objects {
		if !e.Kind.Valid() || e.SHA256 != e.ID.String() || e.Size < 0 {
			return nil, fmt.Errorf("seed: %s: bad entry %s/%s", ManifestName, e.Kind, e.ID)
		}
	}
	return &m, nil
}

// CheckSeed compares a seed disk's objects with its manifest and reads
// every object to check it against its SHA-256. It returns the problems.
func CheckSeed(ctx context.Context, dir string, m *Manifest, progress func(done, total int64)) ([]string, error) {
	st, err := SeedObjects(dir, false)
	if err != nil {
		return nil, err
	}
	var bad []string
	for i, e := range m.Objects {
		data, err := st.Get(ctx, e.Kind, e.ID)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, objstore.ErrNotFound):
			bad = append(bad, fmt.Sprintf("%s/%s: missing", e.Kind, e.ID))
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s/%s: %v", e.Kind, e.ID, err))
		case int64(len(data)) != e.Size:
			bad = append(bad, fmt.Sprintf("%s/%s: %d bytes, the manifest says %d", e.Kind, e.ID, len(data), e.Size))
		}
		if progress != nil {
			progress(int64(i+1), int64(len(m.Objects)))
		}
	}
	return bad, nil
}

var bSeed = []byte("seed")

// SetSeed records objects that travel to the target on a seed disk: until
// they appear there, syncs send only new packs (never indexes or snapshots
// that could refer to data still on the road) and re-list the target.
func (s *State) SetSeed(objs []objstore.Info) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		tx.DeleteBucket(bSeed)
		b, err := tx.CreateBucket(bSeed)
		if err != nil {
			return err
		}
		for _, o := range objs {
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], uint64(o.Size))
			if err := b.Put(goneKey(o.Kind, o.ID), v[:]); err != nil {
				return err
			}
		}
		return s.forgetListingTx(tx)
	})
}

func (s *State) forgetListingTx(tx *bolt.Tx) error { return tx.Bucket(bMeta).Delete(kList) }

// Seed returns the objects still expected from a seed disk.
func (s *State) Seed() (map[string]int64, error) {
	m := map[string]int64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSeed)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				m[string(k)] = int64(binary.BigEndian.Uint64(v))
			}
			return nil
		})
	})
	return m, err
}

// clearSeed forgets the seed once the target holds all of it.
func (s *State) clearSeed() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bSeed) == nil {
			return nil
		}
		return tx.DeleteBucket(bSeed)
	})
}

// Lacking returns the local objects the target lacks according to the
// state's inventory (listing the target first when it never was).
func Lacking(ctx context.Context, local, remote objstore.Store, st *State) ([]objstore.Info, error) {
	opt := Options{Rescan: 1<<63 - 1}
	opt.defaults()
	var inv listing
	if remote != nil {
		var err error
		inv, _, err = inventory(ctx, remote, st, opt)
		if err != nil {
			return nil, err
		}
	} else {
		inv = listing{}
		for _, k := range objstore.Kinds {
			m, err := st.Inventory(k)
			if err != nil {
				return nil, err
			}
			inv[k] = m
		}
	}
	loc, err := list(ctx, local)
	if err != nil {
		return nil, err
	}
	var out []objstore.Info
	for _, k := range objstore.Kinds {
		for id, size := range loc[k] {
			if _, ok := inv[k][id]; !ok {
				out = append(out, objstore.Info{Kind: k, ID: id, Size: size})
			}
		}
	}
	slices.SortFunc(out, func(a, b objstore.Info) int {
		return slices.Index(objstore.Kinds, a.Kind) - slices.Index(objstore.Kinds, b.Kind)
	})
	return out, nil
}
