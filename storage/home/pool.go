package home

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/pool"
)

func createPool(ctx context.Context, disks []string, opt Options) (*pool.Pool, error) {
	p, err := pool.Create(ctx, disks, pool.CreateOptions{Parity: opt.Parity, Logger: opt.Logger})
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	return p, nil
}

// openPool opens the pool on the disk folders that are present; the pool
// itself reports members that are missing and opens degraded when the
// layout allows.
func openPool(ctx context.Context, disks []string, opt Options) (*pool.Pool, error) {
	var present []string
	for _, d := range disks {
		if _, err := os.Stat(filepath.Join(d, "arkbox")); err == nil {
			present = append(present, d)
		} else if !errors.Is(err, fs.ErrNotExist) {
			opt.logger().Warn("disk folder unreadable", "disk", d, "err", err)
		} else {
			opt.logger().Warn("disk folder missing", "disk", d)
		}
	}
	p, err := pool.Open(ctx, present, pool.OpenOptions{ReadOnly: opt.ReadOnly, Logger: opt.Logger})
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	return p, nil
}

// AddDisk adds an empty folder to the pool and records it in home.json.
func (h *Home) AddDisk(ctx context.Context, dir string) error {
	if h.Pool == nil {
		return errors.New("home: the repository is not on a pool")
	}
	a, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(a, 0o700); err != nil {
		return fmt.Errorf("home: create disk folder %s: %w", a, err)
	}
	if err := h.Pool.AddDisk(ctx, a); err != nil {
		return err
	}
	h.Config.Disks = append(h.Config.Disks, relIfInside(h.Dir, a))
	return h.saveConfig()
}

// ReplaceDisk puts an empty folder in the place of a (missing) member and
// records it in home.json; run a scrub with repair afterwards.
func (h *Home) ReplaceDisk(ctx context.Context, oldUUID, dir string) error {
	if h.Pool == nil {
		return errors.New("home: the repository is not on a pool")
	}
	a, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(a, 0o700); err != nil {
		return fmt.Errorf("home: create disk folder %s: %w", a, err)
	}
	var oldPath string
	for _, d := range h.Pool.Status(ctx).Disks {
		if d.UUID == oldUUID {
			oldPath = d.Path
		}
	}
	if err := h.Pool.ReplaceDisk(ctx, oldUUID, a); err != nil {
		return err
	}
	var disks []string
	for _, d := range h.Config.Disks {
		p := d
		if !filepath.IsAbs(p) {
			p = filepath.Join(h.Dir, p)
		}
		if filepath.Clean(p) != filepath.Clean(oldPath) {
			disks = append(disks, d)
		}
	}
	h.Config.Disks = append(disks, relIfInside(h.Dir, a))
	return h.saveConfig()
}

func (h *Home) saveConfig() error {
	b, _ := json.MarshalIndent(h.Config, "", "  ")
	if err := objstore.WriteFileAtomic(filepath.Join(h.Dir, FileName), append(b, '\n')); err != nil {
		return fmt.Errorf("home: write %s: %w", FileName, err)
	}
	return nil
}
