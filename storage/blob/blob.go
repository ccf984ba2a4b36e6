// Package blob names the units the repository stores inside packs: content
// chunks and tree chunks, each identified by a keyed hash of its plaintext.
package blob

import (
	"encoding/hex"
	"fmt"
)

// ID is a blob's identity: the keyed BLAKE3-256 hash of its plaintext
// (the key is the repository's id key, so ids reveal nothing to a holder
// of the ciphertext alone).
type ID [32]byte

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
		return ID{}, fmt.Errorf("blob: parse id %q: want 64 hex digits", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, fmt.Errorf("blob: parse id %q: %w", s, err)
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

// Type says what a blob holds.
type Type uint8

// Blob types.
const (
	Data Type = 1 // a chunk of file content
	Tree Type = 2 // an encoded directory (storage/tree)
)

func (t Type) String() string {
	switch t {
	case Data:
		return "data"
	case Tree:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

// Valid reports whether t is a known type.
func (t Type) Valid() bool { return t == Data || t == Tree }
