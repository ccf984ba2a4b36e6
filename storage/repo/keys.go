package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/arkbox/arkbox/storage/crypto"
	"github.com/arkbox/arkbox/storage/objstore"
)

// KeyInfo describes one key file (one passphrase slot).
type KeyInfo struct {
	ID      objstore.ID    `json:"id"`
	Meta    crypto.KeyMeta `json:"-"`
	Created time.Time      `json:"created"`
	Host    string         `json:"host"`
	User    string         `json:"user"`
	Label   string         `json:"label"`
	KDF     KDFInfo        `json:"kdf"`
	Current bool           `json:"current"`
}

// KDFInfo describes a key file's argon2id parameters.
type KDFInfo struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// AddKey wraps the master key with a new passphrase and stores it.
func (r *Repository) AddKey(ctx context.Context, passphrase []byte, kdf crypto.KDFParams, label string) (objstore.ID, error) {
	if len(passphrase) == 0 {
		return objstore.ID{}, errors.New("repo: add key: empty passphrase")
	}
	id, err := addKey(ctx, r.store, r.key, passphrase, kdf, label)
	if err != nil {
		return id, fmt.Errorf("repo: add key: %w", err)
	}
	return id, nil
}

// Keys lists the key files.
func (r *Repository) Keys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := r.store.List(ctx, objstore.KindKey, func(i objstore.Info) error {
		b, err := r.store.Get(ctx, objstore.KindKey, i.ID)
		if err != nil {
			return err
		}
		meta, kdf, err := crypto.ReadKeyMeta(b)
		if err != nil {
			return fmt.Errorf("key %s: %w", i.ID.Short(), err)
		}
		out = append(out, KeyInfo{ID: i.ID, Meta: meta, Created: meta.Created, Host: meta.Host, User: meta.User, Label: meta.Label,
			KDF: KDFInfo{Time: kdf.Time, MemoryKiB: kdf.MemoryKiB, Threads: kdf.Threads}, Current: i.ID == r.keyID})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repo: list keys: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Meta.Created.Before(out[j].Meta.Created) })
	return out, nil
}

// RemoveKey deletes a key file. The last key and the key in use cannot be
// removed (that would lock everyone out).
func (r *Repository) RemoveKey(ctx context.Context, id objstore.ID) error {
	keys, err := r.Keys(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, k := range keys {
		if k.ID == id {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("repo: remove key %s: %w", id.Short(), objstore.ErrNotFound)
	}
	if len(keys) == 1 {
		return errors.New("repo: remove key: it is the only key; add another first")
	}
	if id == r.keyID {
		return fmt.Errorf("repo: remove key %s: it is the key this passphrase opened; open with another passphrase to remove it, or use `key passwd`", id.Short())
	}
	return r.store.Delete(ctx, objstore.KindKey, id)
}

// ChangePassphrase adds a key for the new passphrase and removes the key
// the current one opened.
func (r *Repository) ChangePassphrase(ctx context.Context, newPass []byte, kdf crypto.KDFParams) (objstore.ID, error) {
	meta := ""
	if keys, err := r.Keys(ctx); err == nil {
		for _, k := range keys {
			if k.Current {
				meta = k.Meta.Label
			}
		}
	}
	id, err := r.AddKey(ctx, newPass, kdf, meta)
	if err != nil {
		return id, err
	}
	old := r.keyID
	r.keyID = id
	if err := r.store.Delete(ctx, objstore.KindKey, old); err != nil {
		return id, fmt.Errorf("repo: change passphrase: new key %s added but old key %s not removed: %w", id.Short(), old.Short(), err)
	}
	return id, nil
}
