package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"
)

// Names of the AEAD algorithms a repository can use. Both take the 32-byte
// Key.Enc and a random nonce per message.
const (
	AlgAESGCM  = "aes-256-gcm"        // AES-256 in GCM mode, 12-byte nonce, 16-byte tag
	AlgXChaCha = "xchacha20-poly1305" // XChaCha20-Poly1305, 24-byte nonce, 16-byte tag
)

// ErrAuth is returned (wrapped) by Open when a message does not
// authenticate: wrong key, altered bytes, wrong associated data or a
// message too short to hold a nonce and a tag.
var ErrAuth = errors.New("crypto: message authentication failed")

// DefaultAlgorithm returns the algorithm a new repository should use on
// this machine: AlgAESGCM when the CPU has AES and carry-less multiply
// instructions (x86-64 AES-NI and PCLMULQDQ, arm64 AES and PMULL),
// AlgXChaCha otherwise (for example on a Raspberry Pi 4, whose Cortex-A72
// lacks the ARMv8 crypto extensions), where it is several times faster
// than software AES and free of cache-timing side channels.
func DefaultAlgorithm() string {
	if (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) || (cpu.ARM64.HasAES && cpu.ARM64.HasPMULL) {
		return AlgAESGCM
	}
	return AlgXChaCha
}

// Cipher seals and opens messages with one key and algorithm. A sealed
// message is nonce ‖ ciphertext ‖ tag, with a fresh random nonce per
// message. It is safe for concurrent use.
type Cipher struct {
	alg  string
	aead cipher.AEAD
}

// NewCipher returns a Cipher for k.Enc and the named algorithm.
func NewCipher(k *Key, alg string) (*Cipher, error) {
	aead, err := newAEAD(alg, k.Enc[:])
	if err != nil {
		return nil, err
	}
	return &Cipher{alg: alg, aead: aead}, nil
}

func newAEAD(alg string, key []byte) (cipher.AEAD, error) {
	switch alg {
	case AlgAESGCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("crypto: new cipher %s: %w", alg, err)
		}
		aead, err := cipher.NewGCM(b)
		if err != nil {
			return nil, fmt.Errorf("crypto: new cipher %s: %w", alg, err)
		}
		return aead, nil
	case AlgXChaCha:
		aead, err := chacha20poly1305.NewX(key)
		if err != nil {
			return nil, fmt.Errorf("crypto: new cipher %s: %w", alg, err)
		}
		return aead, nil
	}
	return nil, fmt.Errorf("crypto: new cipher %q: unknown algorithm", alg)
}

// Algorithm returns the name of c's algorithm (AlgAESGCM or AlgXChaCha).
func (c *Cipher) Algorithm() string { return c.alg }

// Overhead returns the number of bytes Seal adds to a plaintext: the nonce
// plus the tag.
func (c *Cipher) Overhead() int { return c.aead.NonceSize() + c.aead.Overhead() }

// Seal encrypts and authenticates plaintext and authenticates ad, and
// appends nonce ‖ ciphertext ‖ tag to dst, returning the extended slice.
// The nonce is random. plaintext must not overlap dst's spare capacity.
func (c *Cipher) Seal(dst, plaintext, ad []byte) []byte {
	ns := c.aead.NonceSize()
	n := len(dst)
	need := ns + len(plaintext) + c.aead.Overhead()
	if cap(dst)-n < need {
		grown := make([]byte, n, n+need)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:n+ns]
	nonce := dst[n : n+ns]
	// crypto/rand.Read never fails (it crashes the program if the
	// system's generator is unavailable).
	_, _ = rand.Read(nonce)
	return c.aead.Seal(dst, nonce, plaintext, ad)
}

// Open authenticates sealed (as produced by Seal) and ad, and appends the
// plaintext to dst, returning the extended slice. Any failure, including
// input too short to be a sealed message, returns an error wrapping
// ErrAuth. dst must not overlap sealed.
func (c *Cipher) Open(dst, sealed, ad []byte) ([]byte, error) {
	ns := c.aead.NonceSize()
	if len(sealed) < ns+c.aead.Overhead() {
		return dst, fmt.Errorf("crypto: open %s message of %d bytes: too short: %w", c.alg, len(sealed), ErrAuth)
	}
	out, err := c.aead.Open(dst, sealed[:ns], sealed[ns:], ad)
	if err != nil {
		return dst, fmt.Errorf("crypto: open %s message of %d bytes: %w", c.alg, len(sealed), ErrAuth)
	}
	return out, nil
}
