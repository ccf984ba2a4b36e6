package repo

import (
	"encoding/json"
	"fmt"

	"github.com/arkbox/arkbox/storage/objstore"
)

// The functions below read and write the repository's sealed objects as
// bytes, for objects that live in another store holding the same
// repository (a replica): replication keeps a replica's own index and
// reads snapshots and indexes the box no longer has.

// OpenIndexObject decrypts and decodes the bytes of index object id.
func (r *Repository) OpenIndexObject(id objstore.ID, sealed []byte) (*Index, error) {
	if objstore.Sum(sealed) != id {
		return nil, fmt.Errorf("repo: index %s: %w", id.Short(), objstore.ErrCorrupt)
	}
	plain, err := r.cipher.Open(nil, sealed, []byte(adIndex))
	if err != nil {
		return nil, fmt.Errorf("repo: decrypt index %s: %w", id.Short(), err)
	}
	raw, err := r.dec.DecodeAll(plain, nil)
	if err != nil {
		return nil, fmt.Errorf("repo: decompress index %s: %w", id.Short(), err)
	}
	idx, err := DecodeIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("repo: index %s: %w", id.Short(), err)
	}
	return idx, nil
}

// SealIndex encodes and encrypts idx as an index object, without storing
// it: the caller puts it where it belongs.
func (r *Repository) SealIndex(idx *Index) (objstore.ID, []byte) {
	sealed := r.cipher.Seal(nil, r.enc.EncodeAll(EncodeIndex(idx), nil), []byte(adIndex))
	return objstore.Sum(sealed), sealed
}

// OpenSnapshotObject decrypts and decodes the bytes of snapshot object id.
func (r *Repository) OpenSnapshotObject(id objstore.ID, sealed []byte) (*Snapshot, error) {
	if objstore.Sum(sealed) != id {
		return nil, fmt.Errorf("repo: snapshot %s: %w", id.Short(), objstore.ErrCorrupt)
	}
	plain, err := r.cipher.Open(nil, sealed, []byte(adSnapshot))
	if err != nil {
		return nil, fmt.Errorf("repo: decrypt snapshot %s: %w", id.Short(), err)
	}
	sn := &Snapshot{}
	if err := json.Unmarshal(plain, sn); err != nil {
		return nil, fmt.Errorf("repo: snapshot %s: %w", id.Short(), err)
	}
	sn.ID = id
	return sn, nil
}
