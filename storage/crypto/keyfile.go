package crypto

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// ErrWrongPassphrase is returned (wrapped) by UnwrapKey when the passphrase
// does not open the key file. A key file whose authenticated fields were
// altered fails the same way: the two cannot be told apart.
var ErrWrongPassphrase = errors.New("crypto: wrong passphrase")

// Key file constants (see doc/crypto.md).
const (
	keyFileVersion = 1
	kdfArgon2id    = "argon2id"
	saltSize       = 32
	sealedKeySize  = chacha20poly1305.NonceSizeX + keySize + chacha20poly1305.Overhead
	keyFileADLabel = "arkbox key file\x00"

	// Bounds a key file must respect, so that a malicious or corrupt one
	// cannot make the reader exhaust memory or spin for hours.
	maxKeyFileSize = 64 << 10
	maxKDFTime     = 64
	maxKDFMemKiB   = 4 << 20 // 4 GiB
	maxKDFThreads  = 64
	maxMetaLen     = 1024
)

// KDFParams are the argon2id cost parameters of a key file.
type KDFParams struct {
	Time      uint32 // passes over memory
	MemoryKiB uint32 // memory in KiB
	Threads   uint8  // lanes (and goroutines)
}

// DefaultKDFParams returns the argon2id parameters for new key files:
// 64 MiB, 3 passes, 4 lanes — the second recommended option of RFC 9106
// §4. It fits comfortably in a Raspberry Pi with 1 GiB of RAM and, with one
// lane per core of its four, takes well under a second to derive there; on
// an x86-64 PC it takes about a tenth of a second. See doc/crypto.md.
func DefaultKDFParams() KDFParams {
	return KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 4}
}

// Validate reports whether p is within the bounds a key file may use:
// time 1..64, threads 1..64, memory 8×threads KiB..4 GiB.
func (p KDFParams) Validate() error {
	if err := p.check(); err != nil {
		return fmt.Errorf("crypto: kdf params: %w", err)
	}
	return nil
}

func (p KDFParams) check() error {
	switch {
	case p.Time < 1 || p.Time > maxKDFTime:
		return fmt.Errorf("kdf time %d: want 1..%d", p.Time, maxKDFTime)
	case p.Threads < 1 || p.Threads > maxKDFThreads:
		return fmt.Errorf("kdf threads %d: want 1..%d", p.Threads, maxKDFThreads)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemKiB:
		return fmt.Errorf("kdf memory %d KiB: want %d..%d", p.MemoryKiB, 8*uint32(p.Threads), maxKDFMemKiB)
	}
	return nil
}

// KeyMeta describes a key file. It is stored in clear (so that key files
// can be listed without a passphrase) but authenticated.
type KeyMeta struct {
	Created time.Time
	Host    string
	User    string
	Label   string
}

func (m KeyMeta) validate() error {
	for _, f := range []struct{ name, v string }{{"host", m.Host}, {"user", m.User}, {"label", m.Label}} {
		if len(f.v) > maxMetaLen {
			return fmt.Errorf("key file %s: %d bytes, want at most %d", f.name, len(f.v), maxMetaLen)
		}
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("key file %s: not valid UTF-8", f.name)
		}
	}
	return nil
}

// keyFile is the JSON form of a key file.
type keyFile struct {
	Version int        `json:"version"`
	Created string     `json:"created"`
	Host    string     `json:"host"`
	User    string     `json:"user"`
	Label   string     `json:"label"`
	KDF     keyFileKDF `json:"kdf"`
	Cipher  string     `json:"cipher"`
	Data    string     `json:"data"`
}

type keyFileKDF struct {
	Alg       string `json:"alg"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      string `json:"salt"`
}

var b64 = base64.StdEncoding.Strict()

// WrapKey returns the bytes of a new key file holding k, sealed under a key
// derived from passphrase with argon2id and p. A zero meta.Created is
// replaced by the current time.
func WrapKey(k *Key, passphrase []byte, p KDFParams, meta KeyMeta) ([]byte, error) {
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("crypto: wrap key: %w", err)
	}
	if err := meta.validate(); err != nil {
		return nil, fmt.Errorf("crypto: wrap key: %w", err)
	}
	if meta.Created.IsZero() {
		meta.Created = time.Now()
	}
	var salt [saltSize]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return nil, fmt.Errorf("crypto: wrap key: salt: %w", err)
	}
	f := keyFile{
		Version: keyFileVersion,
		Created: meta.Created.UTC().Format(time.RFC3339Nano),
		Host:    meta.Host,
		User:    meta.User,
		Label:   meta.Label,
		KDF: keyFileKDF{
			Alg:       kdfArgon2id,
			Time:      p.Time,
			MemoryKiB: p.MemoryKiB,
			Threads:   p.Threads,
			Salt:      b64.EncodeToString(salt[:]),
		},
		Cipher: AlgXChaCha,
	}

	kek := argon2.IDKey(passphrase, salt[:], p.Time, p.MemoryKiB, p.Threads, 32)
	aead, err := chacha20poly1305.NewX(kek)
	clear(kek)
	if err != nil {
		return nil, fmt.Errorf("crypto: wrap key: %w", err)
	}
	var plain [keySize]byte
	k.marshal(&plain)
	sealed := make([]byte, chacha20poly1305.NonceSizeX, sealedKeySize)
	_, _ = rand.Read(sealed) // never fails; see Cipher.Seal
	sealed = aead.Seal(sealed, sealed, plain[:], f.ad(salt[:]))
	clear(plain[:])
	f.Data = b64.EncodeToString(sealed)

	out, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("crypto: wrap key: %w", err)
	}
	return append(out, '\n'), nil
}

// ad returns the associated data of f's sealed key: every header field,
// in a fixed binary encoding (doc/crypto.md).
func (f *keyFile) ad(salt []byte) []byte {
	b := make([]byte, 0, 256)
	lp := func(s []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = append(b, keyFileADLabel...)
	b = binary.BigEndian.AppendUint32(b, uint32(f.Version))
	lp([]byte(f.KDF.Alg))
	b = binary.BigEndian.AppendUint32(b, f.KDF.Time)
	b = binary.BigEndian.AppendUint32(b, f.KDF.MemoryKiB)
	b = append(b, f.KDF.Threads)
	lp(salt)
	lp([]byte(f.Cipher))
	lp([]byte(f.Created))
	lp([]byte(f.Host))
	lp([]byte(f.User))
	lp([]byte(f.Label))
	return b
}

// parsedKeyFile is a key file that passed every check but the passphrase.
type parsedKeyFile struct {
	f      keyFile
	meta   KeyMeta
	params KDFParams
	salt   []byte
	sealed []byte
}

// parseKeyFile decodes and checks a key file strictly.
func parseKeyFile(file []byte) (*parsedKeyFile, error) {
	if len(file) > maxKeyFileSize {
		return nil, fmt.Errorf("key file of %d bytes: larger than %d", len(file), maxKeyFileSize)
	}
	var pf parsedKeyFile
	dec := json.NewDecoder(bytes.NewReader(file))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pf.f); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("key file: data after the JSON object")
	}
	f := &pf.f
	if f.Version != keyFileVersion {
		return nil, fmt.Errorf("key file: version %d, want %d", f.Version, keyFileVersion)
	}
	if f.KDF.Alg != kdfArgon2id {
		return nil, fmt.Errorf("key file: kdf %q, want %q", f.KDF.Alg, kdfArgon2id)
	}
	if f.Cipher != AlgXChaCha {
		return nil, fmt.Errorf("key file: cipher %q, want %q", f.Cipher, AlgXChaCha)
	}
	pf.params = KDFParams{Time: f.KDF.Time, MemoryKiB: f.KDF.MemoryKiB, Threads: f.KDF.Threads}
	if err := pf.params.check(); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	var err error
	if pf.salt, err = b64.DecodeString(f.KDF.Salt); err != nil || len(pf.salt) != saltSize {
		return nil, fmt.Errorf("key file: salt: want %d bytes in base64", saltSize)
	}
	if pf.sealed, err = b64.DecodeString(f.Data); err != nil || len(pf.sealed) != sealedKeySize {
		return nil, fmt.Errorf("key file: data: want %d bytes in base64", sealedKeySize)
	}
	created, err := time.Parse(time.RFC3339Nano, f.Created)
	if err != nil {
		return nil, fmt.Errorf("key file: created: %w", err)
	}
	pf.meta = KeyMeta{Created: created, Host: f.Host, User: f.User, Label: f.Label}
	if err := pf.meta.validate(); err != nil {
		return nil, err
	}
	return &pf, nil
}

// UnwrapKey opens a key file with passphrase and returns the master key and
// the file's metadata. It returns an error wrapping ErrWrongPassphrase when
// the passphrase does not open the file (or the file was altered), and
// another error when the file is malformed or its parameters are out of
// bounds (doc/crypto.md), without running the KDF.
func UnwrapKey(file, passphrase []byte) (*Key, KeyMeta, error) {
	pf, err := parseKeyFile(file)
	if err != nil {
		return nil, KeyMeta{}, fmt.Errorf("crypto: unwrap key: %w", err)
	}
	p := pf.params
	kek := argon2.IDKey(passphrase, pf.salt, p.Time, p.MemoryKiB, p.Threads, 32)
	aead, err := chacha20poly1305.NewX(kek)
	clear(kek)
	if err != nil {
		return nil, KeyMeta{}, fmt.Errorf("crypto: unwrap key: %w", err)
	}
	ns := chacha20poly1305.NonceSizeX
	plain, err := aead.Open(nil, pf.sealed[:ns], pf.sealed[ns:], pf.f.ad(pf.salt))
	if err != nil || len(plain) != keySize {
		return nil, KeyMeta{}, fmt.Errorf("crypto: unwrap key %q: %w", pf.meta.Label, ErrWrongPassphrase)
	}
	k := keyFromBytes((*[keySize]byte)(plain))
	clear(plain)
	return k, pf.meta, nil
}

// ReadKeyMeta returns a key file's metadata and KDF parameters without
// opening it. The values are not authenticated until UnwrapKey succeeds.
func ReadKeyMeta(file []byte) (KeyMeta, KDFParams, error) {
	pf, err := parseKeyFile(file)
	if err != nil {
		return KeyMeta{}, KDFParams{}, fmt.Errorf("crypto: read key meta: %w", err)
	}
	return pf.meta, pf.params, nil
}
