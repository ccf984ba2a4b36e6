// Package objstore defines the interface every arkbox object store
// implements: a flat namespace of immutable objects, grouped by kind and
// named by the SHA-256 of their bytes.
//
// Implementations are the local erasure-coded pool (storage/pool), a plain
// directory (Dir, for seed disks and tests) and, in replicate/, remote
// targets. The conformance suite in storage/objstore/storetest runs against
// every implementation.
package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// Kind groups objects. A store lists objects by kind.
type Kind string

// The object kinds a repository writes.
const (
	KindConfig   Kind = "config"
	KindKey      Kind = "keys"
	KindPack     Kind = "packs"
	KindIndex    Kind = "index"
	KindSnapshot Kind = "snapshots"
)

// Kinds lists every kind, in the order a replica should receive them
// (data first, snapshots last).
var Kinds = []Kind{KindPack, KindIndex, KindKey, KindConfig, KindSnapshot}

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindConfig, KindKey, KindPack, KindIndex, KindSnapshot:
		return true
	}
	return false
}

// ID names an object: the SHA-256 of its bytes.
type ID [32]byte

// Sum returns the ID of data.
func Sum(data []byte) ID { return sha256.Sum256(data) }

// String returns the lowercase hex form of id.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex digits of id, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is all zeros.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses the 64-digit hex form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("objstore: parse id %q: want 64 hex digits", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, fmt.Errorf("objstore: parse id %q: %w", s, err)
	}
	return id, nil
}

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Info describes a stored object.
type Info struct {
	Kind Kind
	ID   ID
	Size int64
}

// Errors returned (wrapped) by every implementation. Test with errors.Is.
var (
	// ErrNotFound: no object of that kind and id.
	ErrNotFound = errors.New("object not found")
	// ErrIDMismatch: Put was given data whose SHA-256 is not the id.
	ErrIDMismatch = errors.New("object data does not match its id")
	// ErrCorrupt: the stored bytes fail verification and cannot be repaired.
	ErrCorrupt = errors.New("object is corrupt")
	// ErrRange: a range read outside the object.
	ErrRange = errors.New("range outside object")
	// ErrReadOnly: the store cannot be written.
	ErrReadOnly = errors.New("store is read-only")
)

// Store is a content-addressed object store.
//
// Objects are immutable: putting an object that already exists is a no-op
// that succeeds. Put is atomic and durable when it returns: a crash never
// leaves a partial object visible. Implementations are safe for concurrent
// use.
type Store interface {
	// Put stores data as object (kind, id). id must be Sum(data), else the
	// error wraps ErrIDMismatch and nothing is stored.
	Put(ctx context.Context, kind Kind, id ID, data []byte) error
	// Get returns the whole object, verified against its id.
	Get(ctx context.Context, kind Kind, id ID) ([]byte, error)
	// GetRange returns n bytes at offset off. A range that does not lie
	// inside the object wraps ErrRange.
	GetRange(ctx context.Context, kind Kind, id ID, off, n int64) ([]byte, error)
	// Stat returns the object's size.
	Stat(ctx context.Context, kind Kind, id ID) (Info, error)
	// List calls fn for every object of kind, in no particular order.
	// An error from fn stops the listing and is returned.
	List(ctx context.Context, kind Kind, fn func(Info) error) error
	// Delete removes the object. Deleting a missing object wraps ErrNotFound.
	Delete(ctx context.Context, kind Kind, id ID) error
	// Close releases resources.
	Close() error
}
