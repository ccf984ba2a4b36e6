package hw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
)

// PoolMarkerPath is where a pool member keeps its pool description,
// relative to the root of its filesystem (see doc/pool.md).
const PoolMarkerPath = "arkbox/pool.json"

// maxPoolJSON bounds what is read of a pool.json (doc/pool.md: 1 MiB).
const maxPoolJSON = 1 << 20

// PoolMarker identifies the pool a disk belongs to. Only the identifying
// fields of pool.json are decoded here; storage/pool owns the format.
type PoolMarker struct {
	Format int    `json:"format"`
	Pool   string `json:"pool"` // the pool's UUID
	Disk   string `json:"disk"` // this disk's UUID in the pool
	Error  string `json:"error,omitempty"`
}

// ParsePoolMarker decodes the identifying fields of a pool.json.
func ParsePoolMarker(b []byte) (*PoolMarker, error) {
	if len(b) > maxPoolJSON {
		return nil, fmt.Errorf("pool marker: %d bytes, larger than %d", len(b), maxPoolJSON)
	}
	var m PoolMarker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("pool marker: %w", err)
	}
	if m.Pool == "" || m.Disk == "" {
		return nil, errors.New("pool marker: no pool or disk uuid")
	}
	m.Error = ""
	return &m, nil
}

// ReadPoolMarker reads the pool marker of a mounted filesystem. It returns
// (nil, nil) when the filesystem holds none.
func ReadPoolMarker(mountPoint string) (*PoolMarker, error) {
	p := filepath.Join(mountPoint, filepath.FromSlash(PoolMarkerPath))
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hw: read pool marker %s: %w", p, err)
	}
	defer f.Close()
	b := make([]byte, maxPoolJSON+1)
	n, _ := f.Read(b)
	m, err := ParsePoolMarker(b[:n])
	if err != nil {
		return nil, fmt.Errorf("hw: read pool marker %s: %w", p, err)
	}
	return m, nil
}

// readPoolMarkers looks into every ext4 filesystem of c, without mounting
// it, for a pool marker. A marker that cannot be read is reported in its
// Error field; a filesystem without one has a nil Pool.
func readPoolMarkers(ctx context.Context, f *os.File, c *Content) {
	look := func(fsys *Filesystem, start, size int64) {
		if fsys == nil || fsys.Type != "ext4" || ctx.Err() != nil {
			return
		}
		m, err := readPoolMarkerExt4(f, start, size)
		switch {
		case err != nil:
			fsys.Pool = &PoolMarker{Error: err.Error()}
		case m != nil:
			fsys.Pool = m
		}
	}
	for i := range c.Partitions {
		p := &c.Partitions[i]
		look(p.Filesystem, p.StartBytes, p.SizeBytes)
	}
	if c.Table == "" && c.Filesystem != nil {
		st, err := f.Seek(0, 2)
		if err == nil {
			look(c.Filesystem, 0, st)
		}
	}
}

// readPoolMarkerExt4 reads /arkbox/pool.json from an unmounted ext4
// filesystem at [start, start+size) of f.
func readPoolMarkerExt4(f *os.File, start, size int64) (m *PoolMarker, err error) {
	defer func() {
		// The ext4 reader is not hardened against every corruption.
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("read ext4: %v", r)
		}
	}()
	fsys, err := ext4.Read(file.New(f, true), size, start, 512)
	if err != nil {
		return nil, fmt.Errorf("read ext4: %w", err)
	}
	if _, err := fsys.Stat(PoolMarkerPath); err != nil {
		return nil, nil // no marker (or no arkbox folder)
	}
	b, err := fsys.ReadFile(PoolMarkerPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", PoolMarkerPath, err)
	}
	return ParsePoolMarker(b)
}
