package pool

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// poolFileName is the name of the per-disk pool description inside the
// disk's arkbox folder.
const (
	poolDirName     = "arkbox"
	poolFileName    = "pool.json"
	tmpDirName      = "tmp"
	poolFileFormat  = 1
	maxPoolFileSize = 1 << 20
	maxPathLen      = 4096
)

// poolFile is the content of <disk>/arkbox/pool.json.
type poolFile struct {
	// Format is the version of this file's format (1).
	Format int `json:"format"`
	// Pool is the pool's UUID, the same on every member disk.
	Pool string `json:"pool"`
	// Disk is this disk's UUID.
	Disk string `json:"disk"`
	// Created is when the pool was created.
	Created time.Time `json:"created"`
	// Layouts is the layout history, oldest first; the last one is current.
	Layouts []layout `json:"layouts"`
	// Paths maps disk UUIDs to the folder each was last seen at.
	Paths map[string]string `json:"paths,omitempty"`
}

// layout is one generation of the pool's layout.
type layout struct {
	// Generation numbers layouts from 1; each change adds one.
	Generation int `json:"generation"`
	// Created is when this layout was recorded.
	Created time.Time `json:"created"`
	// K and M are the data and parity shard counts of striped objects.
	K int `json:"k"`
	M int `json:"m"`
	// Parity is the parity the pool was asked for (-1: the default for the
	// disk count); layout changes keep it where the disk count allows.
	Parity int `json:"parity"`
	// Members are the disks of this layout.
	Members []member `json:"members"`
}

// member is one disk of a layout. Slot is the key that places shards
// (rendezvous hashing); it is the UUID of the disk that first held the
// slot, and stays when ReplaceDisk puts another disk in its place.
type member struct {
	Slot string `json:"slot"`
	Disk string `json:"disk"`
}

// newUUID returns a random (version 4) UUID in its canonical form.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("pool: crypto/rand failed: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

// parseUUID parses the canonical lowercase form of a UUID.
func parseUUID(s string) ([16]byte, error) {
	var b [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return b, fmt.Errorf("bad uuid %q", s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	for _, c := range []byte(h) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return b, fmt.Errorf("bad uuid %q", s)
		}
	}
	if _, err := hex.Decode(b[:], []byte(h)); err != nil {
		return b, fmt.Errorf("bad uuid %q", s)
	}
	return b, nil
}

// layoutFor returns k and m for n disks and the requested parity
// (-1: default). See doc/pool.md.
func layoutFor(n, parity int) (k, m int, err error) {
	if n < 1 {
		return 0, 0, errors.New("no disks")
	}
	if n > maxShards {
		return 0, 0, fmt.Errorf("%d disks: at most %d", n, maxShards)
	}
	if parity < -1 {
		return 0, 0, fmt.Errorf("bad parity %d", parity)
	}
	if n == 1 {
		switch {
		case parity <= 0:
			return 1, 0, nil
		case parity > inDiskData:
			return 0, 0, fmt.Errorf("in-disk parity %d: at most %d", parity, inDiskData)
		}
		return inDiskData, parity, nil
	}
	if parity == -1 {
		switch {
		case n <= 5:
			return n - 1, 1, nil
		default:
			return n - 2, 2, nil
		}
	}
	if parity >= n {
		return 0, 0, fmt.Errorf("parity %d needs more than %d disks", parity, n)
	}
	return n - parity, parity, nil
}

// grownParity is the parity kept when a pool with requested parity p
// grows (or shrinks) to n disks.
func grownParity(p, n int) int {
	if p == -1 {
		return -1
	}
	return min(p, n-1)
}

// encodePoolFile returns the JSON form of f.
func encodePoolFile(f *poolFile) ([]byte, error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// decodePoolFile parses and validates pool.json.
func decodePoolFile(b []byte) (*poolFile, error) {
	if len(b) > maxPoolFileSize {
		return nil, fmt.Errorf("%d bytes: too large", len(b))
	}
	var f poolFile
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&f); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

func (f *poolFile) validate() error {
	if f.Format != poolFileFormat {
		return fmt.Errorf("unsupported format %d", f.Format)
	}
	if _, err := parseUUID(f.Pool); err != nil {
		return fmt.Errorf("pool: %w", err)
	}
	if _, err := parseUUID(f.Disk); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	if len(f.Layouts) == 0 {
		return errors.New("no layout")
	}
	known := false
	for i := range f.Layouts {
		l := &f.Layouts[i]
		if l.Generation != i+1 {
			return fmt.Errorf("layout %d has generation %d", i+1, l.Generation)
		}
		if err := l.validate(); err != nil {
			return fmt.Errorf("layout %d: %w", l.Generation, err)
		}
		if l.hasDisk(f.Disk) {
			known = true
		}
	}
	if !known {
		return fmt.Errorf("disk %s is in no layout", f.Disk)
	}
	for d, p := range f.Paths {
		if _, err := parseUUID(d); err != nil {
			return fmt.Errorf("paths: %w", err)
		}
		if len(p) > maxPathLen {
			return fmt.Errorf("path of %s too long", d)
		}
	}
	return nil
}

func (l *layout) validate() error {
	n := len(l.Members)
	if n < 1 || n > maxShards {
		return fmt.Errorf("%d members", n)
	}
	if l.K < 1 || l.M < 0 || l.K+l.M > maxShards {
		return fmt.Errorf("bad k=%d m=%d", l.K, l.M)
	}
	if n > 1 && l.K+l.M > n {
		return fmt.Errorf("k+m=%d exceeds %d disks", l.K+l.M, n)
	}
	if l.Parity < -1 || l.Parity > maxShards {
		return fmt.Errorf("bad parity %d", l.Parity)
	}
	slots := make(map[string]bool, n)
	disks := make(map[string]bool, n)
	for _, mb := range l.Members {
		if _, err := parseUUID(mb.Slot); err != nil {
			return fmt.Errorf("slot: %w", err)
		}
		if _, err := parseUUID(mb.Disk); err != nil {
			return fmt.Errorf("member: %w", err)
		}
		if slots[mb.Slot] || disks[mb.Disk] {
			return fmt.Errorf("member %s listed twice", mb.Disk)
		}
		slots[mb.Slot], disks[mb.Disk] = true, true
	}
	return nil
}

func (l *layout) hasDisk(uuid string) bool {
	for _, mb := range l.Members {
		if mb.Disk == uuid {
			return true
		}
	}
	return false
}

// equal reports whether two layouts are the same generation record.
func (l *layout) equal(o *layout) bool {
	if l.Generation != o.Generation || l.K != o.K || l.M != o.M || l.Parity != o.Parity ||
		!l.Created.Equal(o.Created) || len(l.Members) != len(o.Members) {
		return false
	}
	for i := range l.Members {
		if l.Members[i] != o.Members[i] {
			return false
		}
	}
	return true
}

// maxTotal is the largest k+m of any layout in the history: no shard
// index of any object reaches it.
func maxTotal(ls []layout) int {
	t := 1
	for _, l := range ls {
		t = max(t, l.K+l.M)
	}
	return t
}
