// Package home opens the box's local repository from its home folder: the
// folder holds home.json (which store holds the objects: a pool over disk
// folders, or a plain directory) and the catalog database.
package home

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/pool"
)

// FileName is the home configuration file.
const FileName = "home.json"

// Config is the content of home.json.
type Config struct {
	Version int      `json:"version"`
	Store   string   `json:"store"` // "pool" or "dir"
	Disks   []string `json:"disks,omitempty"`
	Dir     string   `json:"dir,omitempty"`
}

// Home is an opened home folder.
type Home struct {
	Dir     string
	Config  Config
	Store   objstore.Store
	Catalog *catalog.Catalog
	Pool    *pool.Pool // nil unless Store is a pool
}

// Options tunes Create and Open.
type Options struct {
	Logger *slog.Logger
	// ReadOnly opens the store without writing to it.
	ReadOnly bool
	// NoWait makes Open fail at once, with an error matching
	// catalog.ErrInUse, when another process holds the catalog, instead
	// of waiting catalog.DefaultWait for it.
	NoWait bool
	// Parity is the pool's parity shard count at Create (-1 = default).
	Parity int
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// ErrNoHome is returned when the folder holds no arkbox repository.
var ErrNoHome = errors.New("no arkbox repository in this folder (create one with `arkbox init`)")

// Create makes a new home folder at dir whose objects go to disks (a pool),
// or to dir/objects when disks is empty.
func Create(ctx context.Context, dir string, disks []string, opt Options) (*Home, error) {
	if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		return nil, fmt.Errorf("home: %s already holds an arkbox repository", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("home: create %s: %w", dir, err)
	}
	cfg := Config{Version: 1}
	if len(disks) == 0 {
		disks = []string{filepath.Join(dir, "disk0")}
	}
	cfg.Store = "pool"
	for _, d := range disks {
		a, err := filepath.Abs(d)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(a, 0o700); err != nil {
			return nil, fmt.Errorf("home: create disk folder %s: %w", a, err)
		}
		cfg.Disks = append(cfg.Disks, relIfInside(dir, a))
	}
	st, err := createPool(ctx, absDisks(dir, cfg.Disks), opt)
	if err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := objstore.WriteFileAtomic(filepath.Join(dir, FileName), append(b, '\n')); err != nil {
		st.Close()
		return nil, fmt.Errorf("home: write %s: %w", FileName, err)
	}
	return finish(dir, cfg, st)
}

func relIfInside(dir, p string) string {
	ad, err := filepath.Abs(dir)
	if err != nil {
		return p
	}
	if r, err := filepath.Rel(ad, p); err == nil && filepath.IsLocal(r) {
		return r
	}
	return p
}

func absDisks(dir string, disks []string) []string {
	out := make([]string, len(disks))
	for i, d := range disks {
		if filepath.IsAbs(d) {
			out[i] = d
		} else {
			out[i] = filepath.Join(dir, d)
		}
	}
	return out
}

// Open opens the home folder at dir: first its catalog, which one process
// at a time holds, then its store, so that a process which finds the
// catalog held never opens the store for writing beside its holder (a
// writable pool finishes or removes interrupted writes when it opens).
func Open(ctx context.Context, dir string, opt Options) (*Home, error) {
	// No catalog file is made in a folder that is not a home.
	if _, err := readConfig(dir); err != nil {
		return nil, err
	}
	wait := catalog.DefaultWait
	if opt.NoWait {
		wait = 0
	}
	cat, err := catalog.OpenWait(filepath.Join(dir, "catalog.db"), wait)
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	h, err := OpenBeside(ctx, dir, cat, opt)
	if err != nil {
		cat.Close()
		return nil, err
	}
	return h, nil
}

// OpenBeside opens the store of the home folder at dir with cat as its
// catalog instead of the folder's own: with opt.ReadOnly, a reader
// works beside the process that holds the folder's catalog, writing
// nothing into the folder. Close closes cat too.
func OpenBeside(ctx context.Context, dir string, cat *catalog.Catalog, opt Options) (*Home, error) {
	cfg, st, err := openStore(ctx, dir, opt)
	if err != nil {
		return nil, err
	}
	h := &Home{Dir: dir, Config: cfg, Store: st, Catalog: cat}
	if p, ok := st.(*pool.Pool); ok {
		h.Pool = p
	}
	return h, nil
}

// OpenStore opens only the object store of the home folder at dir, not
// its catalog: object-level work (replication, seed disks) runs beside a
// process that holds the catalog.
func OpenStore(ctx context.Context, dir string, opt Options) (objstore.Store, error) {
	_, st, err := openStore(ctx, dir, opt)
	return st, err
}

func readConfig(dir string) (Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, fmt.Errorf("home: %s: %w", dir, ErrNoHome)
	}
	if err != nil {
		return Config{}, fmt.Errorf("home: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return Config{}, fmt.Errorf("home: %s: %w", filepath.Join(dir, FileName), err)
	}
	return cfg, nil
}

func openStore(ctx context.Context, dir string, opt Options) (Config, objstore.Store, error) {
	cfg, err := readConfig(dir)
	if err != nil {
		return Config{}, nil, err
	}
	var st objstore.Store
	switch cfg.Store {
	case "dir":
		p := cfg.Dir
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		st, err = objstore.OpenDir(p, objstore.DirOptions{ReadOnly: opt.ReadOnly})
	case "pool":
		var p *pool.Pool
		p, err = openPool(ctx, absDisks(dir, cfg.Disks), opt)
		if err == nil {
			st = p
		}
	default:
		err = fmt.Errorf("home: %s: unknown store %q", FileName, cfg.Store)
	}
	if err != nil {
		return Config{}, nil, err
	}
	return cfg, st, nil
}

func finish(dir string, cfg Config, st objstore.Store) (*Home, error) {
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("home: %w", err)
	}
	h := &Home{Dir: dir, Config: cfg, Store: st, Catalog: cat}
	if p, ok := st.(*pool.Pool); ok {
		h.Pool = p
	}
	return h, nil
}

// Close closes the catalog and the store.
func (h *Home) Close() error {
	err := h.Catalog.Close()
	if e := h.Store.Close(); err == nil {
		err = e
	}
	return err
}

// ReadDiskDirs returns the disk folders of the pool of the home folder at
// dir, from its home.json, without opening anything: the appliance mounts
// them before Open. It returns nil for a home whose objects are in a plain
// directory, and an error matching ErrNoHome when there is no home.json.
func ReadDiskDirs(dir string) ([]string, error) {
	cfg, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	if cfg.Store != "pool" {
		return nil, nil
	}
	return absDisks(dir, cfg.Disks), nil
}

// DiskDirs returns the folders that hold the objects.
func (h *Home) DiskDirs() []string {
	if h.Config.Store == "dir" {
		p := h.Config.Dir
		if !filepath.IsAbs(p) {
			p = filepath.Join(h.Dir, p)
		}
		return []string{p}
	}
	return absDisks(h.Dir, h.Config.Disks)
}
