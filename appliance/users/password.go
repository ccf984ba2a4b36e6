// Package users answers who may log in to the appliance and what they may
// do: argon2id password hashes (PHC strings), OpenSSH authorized keys,
// share grants (Authorizer), a per-address login rate limiter (Limiter),
// and an Authenticator that every protocol calls to check a password or a
// key. Passwords are never stored or logged, only their hashes.
package users

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id cost parameters and sizes.
type Params struct {
	MemoryKiB uint32 // memory in KiB (m)
	Time      uint32 // passes (t)
	Threads   uint8  // lanes (p)
	SaltLen   int    // bytes of random salt
	KeyLen    int    // bytes of hash
}

// DefaultParams returns the parameters of new password hashes: 64 MiB,
// 3 passes, 2 lanes, 16-byte salt, 32-byte hash — about a third of a
// second on a Raspberry Pi 4, and 64 MiB of memory per login being
// checked (the Authenticator checks at most a few at once).
func DefaultParams() Params {
	return Params{MemoryKiB: 64 << 10, Time: 3, Threads: 2, SaltLen: 16, KeyLen: 32}
}

// Bounds of the parameters accepted in a hash.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB: more would exhaust a small box
	maxTime      = 64
	minSalt      = 8
	maxSalt      = 64
	minKey       = 16
	maxKey       = 64
	argonVersion = 19 // argon2.Version (0x13)
)

func (p Params) check() error {
	switch {
	case p.Threads < 1:
		return fmt.Errorf("p=%d: want at least 1", p.Threads)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("t=%d: want 1..%d", p.Time, maxTime)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxMemoryKiB:
		return fmt.Errorf("m=%d: want %d..%d KiB", p.MemoryKiB, 8*uint32(p.Threads), maxMemoryKiB)
	case p.SaltLen < minSalt || p.SaltLen > maxSalt:
		return fmt.Errorf("salt of %d bytes: want %d..%d", p.SaltLen, minSalt, maxSalt)
	case p.KeyLen < minKey || p.KeyLen > maxKey:
		return fmt.Errorf("hash of %d bytes: want %d..%d", p.KeyLen, minKey, maxKey)
	}
	return nil
}

// Hash is a parsed argon2id password hash.
type Hash struct {
	Params Params
	Salt   []byte
	Key    []byte
}

// String returns the PHC string form:
// $argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash> with unpadded standard
// base64.
func (h Hash) String() string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argonVersion,
		h.Params.MemoryKiB, h.Params.Time, h.Params.Threads, b64.EncodeToString(h.Salt), b64.EncodeToString(h.Key))
}

// HashPassword hashes pw with DefaultParams and a random salt and returns
// the PHC string.
func HashPassword(pw []byte) (string, error) { return HashPasswordParams(pw, DefaultParams()) }

// HashPasswordParams is HashPassword with chosen parameters (cheap ones in
// tests).
func HashPasswordParams(pw []byte, p Params) (string, error) {
	if err := p.check(); err != nil {
		return "", fmt.Errorf("users: hash password: %w", err)
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("users: hash password: %w", err)
	}
	key := argon2.IDKey(pw, salt, p.Time, p.MemoryKiB, p.Threads, uint32(p.KeyLen))
	return Hash{Params: p, Salt: salt, Key: key}.String(), nil
}

// ParseHash parses a PHC string strictly: algorithm argon2id, version 19,
// parameters m, t, p in that order as plain decimals within bounds
// (m ≤ 1 GiB, t ≤ 64), salt of 8..64 and hash of 16..64 bytes in canonical
// unpadded base64.
func ParseHash(s string) (Hash, error) {
	h, err := parseHash(s)
	if err != nil {
		return Hash{}, fmt.Errorf("users: password hash: %w", err)
	}
	return h, nil
}

func parseHash(s string) (Hash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return Hash{}, errors.New("want $argon2id$v=19$m=…,t=…,p=…$salt$hash")
	}
	if parts[1] != "argon2id" {
		return Hash{}, fmt.Errorf("algorithm %q: want argon2id", parts[1])
	}
	if parts[2] != "v=19" {
		return Hash{}, fmt.Errorf("version %q: want v=19", parts[2])
	}
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return Hash{}, fmt.Errorf("parameters %q: want m=…,t=…,p=…", parts[3])
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(fields[i], name+"=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil || v != strconv.FormatUint(n, 10) {
			return Hash{}, fmt.Errorf("parameters %q: want m=…,t=…,p=… in decimal", parts[3])
		}
		vals[i] = n
	}
	if vals[2] > 255 {
		return Hash{}, fmt.Errorf("p=%d: want at most 255", vals[2])
	}
	b64 := base64.RawStdEncoding.Strict()
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return Hash{}, fmt.Errorf("salt: %w", err)
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil {
		return Hash{}, fmt.Errorf("hash: %w", err)
	}
	h := Hash{
		Params: Params{MemoryKiB: uint32(vals[0]), Time: uint32(vals[1]), Threads: uint8(vals[2]),
			SaltLen: len(salt), KeyLen: len(key)},
		Salt: salt, Key: key,
	}
	if err := h.Params.check(); err != nil {
		return Hash{}, err
	}
	return h, nil
}

// VerifyPassword reports whether pw matches the PHC string hash, comparing
// in constant time. It fails if hash does not parse.
func VerifyPassword(hash string, pw []byte) (bool, error) {
	h, err := ParseHash(hash)
	if err != nil {
		return false, err
	}
	return h.Verify(pw), nil
}

// Verify reports whether pw matches h, comparing in constant time.
func (h Hash) Verify(pw []byte) bool {
	p := h.Params
	key := argon2.IDKey(pw, h.Salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(h.Key)))
	return subtle.ConstantTimeCompare(key, h.Key) == 1
}

// NeedsRehash reports whether hash was made with parameters other than p
// (or does not parse), so that a login that just succeeded may store a
// fresh hash.
func NeedsRehash(hash string, p Params) bool {
	h, err := ParseHash(hash)
	if err != nil {
		return true
	}
	q := h.Params
	return q.MemoryKiB != p.MemoryKiB || q.Time != p.Time || q.Threads != p.Threads ||
		q.SaltLen < p.SaltLen || q.KeyLen != p.KeyLen
}

// passwordAlphabet has no characters that are easily confused (0 o, 1 l i)
// and no capitals, so a password can be read aloud and typed on a phone.
const passwordAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// GeneratePassword returns a new random password of 20 characters from an
// unambiguous alphabet of 31 (about 99 bits), in groups of five joined by
// dashes: "k7mq2-xw9ta-…". It is meant for the administrator account made
// at first start.
func GeneratePassword() string {
	const groups, groupLen = 4, 5
	n := len(passwordAlphabet)
	limit := 256 - 256%n // reject bytes above a multiple of n: no bias
	var b strings.Builder
	buf := make([]byte, 64)
	for count := 0; count < groups*groupLen; {
		rand.Read(buf) // never fails (crypto/rand)
		for _, c := range buf {
			if int(c) >= limit || count == groups*groupLen {
				continue
			}
			if count > 0 && count%groupLen == 0 {
				b.WriteByte('-')
			}
			b.WriteByte(passwordAlphabet[int(c)%n])
			count++
		}
	}
	return b.String()
}
