// Package crypto holds the repository's secrets and the primitives built on
// them: the master key, authenticated encryption of everything the
// repository stores, keyed blob ids, and passphrase-wrapped key files.
//
// The formats are specified in doc/crypto.md.
package crypto

import (
	"crypto/rand"
	"fmt"

	"github.com/zeebo/blake3"

	"github.com/arkbox/arkbox/storage/blob"
)

// Key is the repository's master key material, generated once at init and
// never changed (passphrases only wrap it). Its three parts are independent
// random keys.
type Key struct {
	Enc     [32]byte // AEAD key for blobs, pack headers, indexes, snapshots, config
	ID      [32]byte // BLAKE3 key for blob ids
	Chunker [32]byte // secret for content-defined chunking
}

// keySize is the length of a serialized Key: Enc ‖ ID ‖ Chunker.
const keySize = 3 * 32

// NewKey returns a fresh master key read from crypto/rand.
func NewKey() (*Key, error) {
	var b [keySize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("crypto: new key: %w", err)
	}
	k := keyFromBytes(&b)
	clear(b[:])
	return k, nil
}

// marshal writes k as Enc ‖ ID ‖ Chunker into b.
func (k *Key) marshal(b *[keySize]byte) {
	copy(b[0:32], k.Enc[:])
	copy(b[32:64], k.ID[:])
	copy(b[64:96], k.Chunker[:])
}

func keyFromBytes(b *[keySize]byte) *Key {
	k := new(Key)
	copy(k.Enc[:], b[0:32])
	copy(k.ID[:], b[32:64])
	copy(k.Chunker[:], b[64:96])
	return k
}

// BlobID returns the id of a blob with plaintext data: keyed BLAKE3-256 of
// data under k.ID. It allocates a hasher; use NewBlobHasher in loops.
func (k *Key) BlobID(data []byte) blob.ID {
	return k.NewBlobHasher().Sum(data)
}

// BlobHasher computes blob ids under one key without allocating per call.
// It is not safe for concurrent use; give each goroutine its own.
type BlobHasher struct {
	h *blake3.Hasher
}

// NewBlobHasher returns a reusable hasher for blob ids under k.ID.
func (k *Key) NewBlobHasher() *BlobHasher {
	h, err := blake3.NewKeyed(k.ID[:])
	if err != nil {
		// NewKeyed fails only for a key that is not 32 bytes long.
		panic("crypto: blake3.NewKeyed with a 32-byte key: " + err.Error())
	}
	return &BlobHasher{h: h}
}

// Sum returns the blob id of data.
func (b *BlobHasher) Sum(data []byte) blob.ID {
	b.h.Reset()
	_, _ = b.h.Write(data)
	var id blob.ID
	b.h.Sum(id[:0])
	return id
}
