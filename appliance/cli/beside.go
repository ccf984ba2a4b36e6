package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	"github.com/arkbox/arkbox/replicate/target"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
)

// Reading beside a running server: `arkbox serve` (or a backup or prune
// in progress) holds the catalog of the repository. The commands that
// only read it then open its store read-only with a catalog of their own
// in the user's cache folder, built from the repository's index and
// snapshot objects as for a replica: nothing is written into the data
// folder and nothing waits for the server. Objects are immutable and
// verified when read, so what such a command reads is right or fails; a
// pack the server's prune deletes while it is read fails the command
// with errChanged, which tells the user to run it again.

// errChanged marks a read that failed because the repository changed
// under it.
var errChanged = errors.New("the repository changed while this command read it: the process that holds it (the running server) removed data the command was reading (a prune); nothing wrong was read — run the command again")

// openBesideTries is how often opening beside a server is tried when an
// object listed a moment before is gone when loaded.
const openBesideTries = 3

// openRead opens the repository for a command that only reads it: as
// open does, or — when another process holds the catalog — beside it.
func (c *common) openRead(ctx context.Context, e *env) (*openRepo, error) {
	if c.repo == "" {
		return nil, usagef("no repository: give --repo DIR or set ARKBOX_REPO")
	}
	if target.IsURL(c.repo) {
		return c.openRemote(ctx, e)
	}
	dir := resolveRepo(c.repo)
	h, err := home.Open(ctx, dir, home.Options{Logger: e.log, NoWait: true})
	if errors.Is(err, catalog.ErrInUse) {
		return c.openBeside(ctx, e, dir)
	}
	if err != nil {
		return nil, err
	}
	return c.openIn(ctx, e, h, nil)
}

// openBeside opens the repository in home folder dir read-only, with a
// cached catalog of its own, beside the process that holds its catalog.
func (c *common) openBeside(ctx context.Context, e *env, dir string) (*openRepo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for try := 1; ; try++ {
		cat, cleanup, err := cacheCatalog("local", abs)
		if err != nil {
			return nil, err
		}
		h, err := home.OpenBeside(ctx, dir, cat, home.Options{Logger: e.log, ReadOnly: true})
		if err != nil {
			cat.Close()
			cleanup()
			return nil, err
		}
		// The index objects before the catalog is brought up to date
		// from them: if they differ when a read fails, the server
		// changed the repository meanwhile.
		idx, err := indexSet(ctx, h.Store)
		if err != nil {
			h.Close()
			cleanup()
			return nil, err
		}
		o, err := c.openIn(ctx, e, h, cleanup)
		if err == nil {
			o.indexes = idx
			return o, nil
		}
		// An index or snapshot object listed and then deleted (a prune,
		// a retention) before it was loaded: list them again.
		if !errors.Is(err, objstore.ErrNotFound) || try == openBesideTries {
			return nil, err
		}
	}
}

// cacheCatalog opens the catalog cached for the repository at where in
// the user's cache folder (kind: "local", "remote"). When another command
// holds it, a private catalog in a temporary folder is opened instead,
// which cleanup removes after the catalog is closed.
func cacheCatalog(kind, where string) (*catalog.Catalog, func(), error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	sum := sha256.Sum256([]byte(where))
	dir := filepath.Join(cache, "arkbox", kind, hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("catalog cache: %w", err)
	}
	cat, err := catalog.OpenWait(filepath.Join(dir, "catalog.db"), 0)
	if err == nil {
		return cat, func() {}, nil
	}
	if !errors.Is(err, catalog.ErrInUse) {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "arkbox-catalog-")
	if err != nil {
		return nil, nil, fmt.Errorf("catalog cache: %w", err)
	}
	cleanup := func() { os.RemoveAll(tmp) }
	cat, err = catalog.Open(filepath.Join(tmp, "catalog.db"))
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return cat, cleanup, nil
}

// indexSet lists the index objects of st.
func indexSet(ctx context.Context, st objstore.Store) (map[objstore.ID]bool, error) {
	set := map[objstore.ID]bool{}
	if err := st.List(ctx, objstore.KindIndex, func(i objstore.Info) error { set[i.ID] = true; return nil }); err != nil {
		return nil, fmt.Errorf("list index objects: %w", err)
	}
	return set, nil
}

// changed reports whether the repository, opened beside another
// process, has other index objects now than when it was opened.
func (o *openRepo) changed(ctx context.Context) bool {
	if o.indexes == nil {
		return false
	}
	now, err := indexSet(ctx, o.Store())
	return err == nil && !maps.Equal(now, o.indexes)
}

// readErr is err, or — when a read failed for an object that is gone and
// the repository changed since it was opened — errChanged.
func (o *openRepo) readErr(ctx context.Context, err error) error {
	if err == nil || !errors.Is(err, objstore.ErrNotFound) && !errors.Is(err, objstore.ErrCorrupt) && !errors.Is(err, repo.ErrBlobNotFound) {
		return err
	}
	if o.changed(ctx) {
		return fmt.Errorf("%w (%v)", errChanged, err)
	}
	return err
}
