package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/arkbox/arkbox/replicate/target"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/repo"
)

// cmdRecover rebuilds a box from its offsite copy: it checks the
// passphrase against the copy and lists its snapshots (building the
// catalog from the copy's indexes), creates the pool, pulls every object
// into it, and keeps the copy as a replication target so syncs go on.
func cmdRecover(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags("recover", e, &c, true)
	from := fs.String("from", "", "the offsite copy's URL")
	name := fs.String("name", "offsite", "the name the copy keeps as a replication target")
	var disks multiFlag
	fs.Var(&disks, "disk", "a disk folder of the new pool (repeat; default: one folder inside --repo)")
	parity := fs.Int("parity", -1, "parity shards per object (default: by disk count)")
	parallel := fs.Int("parallel", 4, "parallel downloads")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *from == "" || c.repo == "" {
		return usagef("usage: arkbox recover --from URL --repo DIR [--disk DIR …]")
	}
	if target.IsURL(c.repo) {
		return usagef("--repo is the new box's folder; the copy goes in --from")
	}
	dir := resolveRepo(c.repo)
	if _, err := os.Stat(filepath.Join(dir, home.FileName)); err == nil {
		return fmt.Errorf("%s already holds a repository: recover into an empty folder", dir)
	}
	spec := c.tf.spec(*from)
	t := target.Target{Name: *name, Spec: spec}
	pw, err := c.passphrase(e, false)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Keep the target's secrets in the new home folder, pinning the host key
	// there.
	if err := addTarget(ctx, e, dir, &t, false); err != nil {
		return err
	}
	remote, _, err := openTarget(ctx, e, dir, t, target.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	defer remote.Close()
	h, err := home.Create(ctx, dir, disks, home.Options{Logger: e.log, Parity: *parity})
	if err != nil {
		return err
	}
	defer h.Close()
	// The passphrase and the snapshot list, read from the copy.
	rr, err := repo.Open(ctx, remote, h.Catalog, pw, repo.Options{Logger: e.log, KDF: kdfFromEnv()})
	if err != nil {
		return fmt.Errorf("recover: open the copy at %s: %w", *from, err)
	}
	sns, err := rr.Snapshots()
	rr.Close(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "the copy at %s opens with this passphrase: %d snapshots\n", *from, len(sns))

	// Pull every object into the pool.
	pulled, err := copyAll(ctx, e, remote, h.Store, nil, "pull", *parallel)
	if err != nil {
		return fmt.Errorf("recover: pull the objects: %w (run recover again into an empty folder, or restore straight from the copy with --repo %s)", err, *from)
	}
	r, err := repo.Open(ctx, h.Store, h.Catalog, pw, repo.Options{Logger: e.log, KDF: kdfFromEnv()})
	if err != nil {
		return err
	}
	sns, err = r.Snapshots()
	if cerr := r.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	targets, err := target.Load(dir)
	if err != nil {
		return err
	}
	if _, ok := target.Find(targets, t.Name); !ok {
		if err := target.Save(dir, append(targets, t)); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "recovered %d objects (%s) into %s: %d snapshots; %s stays its replication target %q\n",
		pulled.Objects, humanBytes(uint64(pulled.Bytes)), dir, len(sns), *from, t.Name)
	return nil
}
