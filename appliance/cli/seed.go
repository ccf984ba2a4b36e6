package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/arkbox/arkbox/replicate"
	"github.com/arkbox/arkbox/replicate/target"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/objstore"
)

// cmdSeed carries repository objects on a disk:
//
//	seed export --target NAME --to DIR   (box)  what the target lacks, to a disk
//	seed import --from DIR --to URL      (datacenter) verify, then upload
//	seed pull   --from URL --to DIR      (datacenter) everything, to a disk
//	seed load   --from DIR               (box) verify, then into the pool
//
// import and pull need no passphrase: objects travel as ciphertext.
func cmdSeed(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("usage: arkbox seed export|import|pull|load …")
	}
	sub := args[0]
	var c common
	fs := newFlags("seed "+sub, e, &c, true)
	from := fs.String("from", "", "where the objects come from (a seed disk folder, or a URL for pull)")
	to := fs.String("to", "", "where they go (a seed disk folder, or a URL for import)")
	tname := fs.String("target", "", "export: the replication target the disk is for")
	parallel := fs.Int("parallel", 4, "parallel uploads (import)")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	switch sub {
	case "export":
		if *tname == "" || *to == "" {
			return usagef("usage: arkbox seed export --target NAME --to DIR --repo DIR")
		}
		return seedExport(ctx, e, &c, *tname, *to)
	case "import":
		if *from == "" || *to == "" {
			return usagef("usage: arkbox seed import --from DIR --to URL")
		}
		return seedImport(ctx, e, &c, *from, *to, *parallel)
	case "pull":
		if *from == "" || *to == "" {
			return usagef("usage: arkbox seed pull --from URL --to DIR")
		}
		return seedPull(ctx, e, &c, *from, *to, *parallel)
	case "load":
		if *from == "" {
			return usagef("usage: arkbox seed load --from DIR --repo DIR")
		}
		return seedLoad(ctx, e, &c, *from)
	}
	return usagef("unknown seed command %q", sub)
}

// copyAll copies objs (nil: every object) from src to dst with the sync
// engine — packs first, snapshots last, in parallel, retried, each put
// checked by dst, objects dst already holds skipped (so an interrupted
// copy resumes) — showing progress labelled what. An object of objs that
// src lacks is an error.
func copyAll(ctx context.Context, e *env, src, dst objstore.Store, objs []objstore.Info, what string, parallel int) (replicate.KindCount, error) {
	stateDir, err := os.MkdirTemp("", "arkbox-copy-")
	if err != nil {
		return replicate.KindCount{}, err
	}
	defer os.RemoveAll(stateDir)
	st, err := replicate.OpenState(filepath.Join(stateDir, "state.db"))
	if err != nil {
		return replicate.KindCount{}, err
	}
	defer st.Close()
	if objs != nil {
		src = listOnly{src, objs}
	}
	var mu sync.Mutex
	var last replicate.Progress
	stop := progress(e, func() string { mu.Lock(); defer mu.Unlock(); return what + ": " + syncLine(last) })
	rep, err := replicate.Sync(ctx, src, dst, st, replicate.Options{Name: what, Parallel: parallel, AppendOnly: true,
		Logger: e.log, Progress: func(p replicate.Progress) { mu.Lock(); last = p; mu.Unlock() }})
	stop()
	if err != nil {
		return replicate.KindCount{}, err
	}
	if rep.Vanished > 0 {
		return rep.UploadedTotal, fmt.Errorf("%s: %d objects are missing from the source", what, rep.Vanished)
	}
	return rep.UploadedTotal, nil
}

// listOnly is a store that lists only the given objects.
type listOnly struct {
	objstore.Store
	objs []objstore.Info
}

func (s listOnly) List(ctx context.Context, k objstore.Kind, fn func(objstore.Info) error) error {
	for _, o := range s.objs {
		if o.Kind == k {
			if err := fn(o); err != nil {
				return err
			}
		}
	}
	return nil
}

// manifestObjects returns the objects a seed disk's manifest lists.
func manifestObjects(m *replicate.Manifest) []objstore.Info {
	objs := make([]objstore.Info, 0, len(m.Objects))
	for _, o := range m.Objects {
		objs = append(objs, objstore.Info{Kind: o.Kind, ID: o.ID, Size: o.Size})
	}
	return objs
}

func seedExport(ctx context.Context, e *env, c *common, name, to string) error {
	dir, err := c.homeDir()
	if err != nil {
		return err
	}
	targets, err := target.Load(dir)
	if err != nil {
		return err
	}
	t, ok := target.Find(targets, name)
	if !ok {
		return fmt.Errorf("no target %s (add it first: `arkbox replicate add %s URL --no-check`)", name, name)
	}
	st, local, closeAll, err := openTargetState(ctx, e, dir, name)
	if err != nil {
		return err
	}
	defer closeAll()
	// What the target lacks: list it when it can be reached, else trust the
	// last known inventory (empty for a new target).
	var remote objstore.Store
	if st.Listed().IsZero() {
		if r, _, err := openTarget(ctx, e, dir, t, target.Options{ReadOnly: true}); err == nil {
			remote = r
			defer r.Close()
		} else {
			fmt.Fprintf(e.stderr, "target %s cannot be reached now (%v): exporting everything it is not known to hold\n", name, err)
		}
	}
	objs, err := replicate.Lacking(ctx, local, remote, st)
	if err != nil {
		return err
	}
	seed, err := replicate.SeedObjects(to, true)
	if err != nil {
		return err
	}
	if _, err := copyAll(ctx, e, local, seed, objs, "export", 4); err != nil {
		return fmt.Errorf("%w (run the same command again to resume)", err)
	}
	m, err := replicate.WriteManifest(to, "target "+name, objs, time.Now())
	if err != nil {
		return err
	}
	if err := st.SetSeed(objs); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "seed disk %s: %d objects, %s for target %s\n", to, len(m.Objects), humanBytes(uint64(m.Bytes)), name)
	fmt.Fprintf(e.stdout, "at the datacenter: arkbox seed import --from DIR --to %s\n", t.URL)
	fmt.Fprintln(e.stdout, "until then, syncs of this target send only new data packs.")
	return nil
}

func seedImport(ctx context.Context, e *env, c *common, from, to string, parallel int) error {
	m, err := replicate.ReadManifest(from)
	if err != nil {
		return err
	}
	stop := progress(e, func() string { return "checking the seed disk" })
	bad, err := replicate.CheckSeed(ctx, from, m, nil)
	stop()
	if err != nil {
		return err
	}
	for _, b := range bad {
		fmt.Fprintln(e.stdout, "bad:", b)
	}
	if len(bad) > 0 {
		return fmt.Errorf("the seed disk has %d bad objects (listed above); nothing was uploaded: export it again", len(bad))
	}
	src, err := replicate.SeedObjects(from, false)
	if err != nil {
		return err
	}
	remote, err := target.Open(ctx, c.tf.spec(to), target.Options{Create: true, Logger: e.log})
	if err != nil {
		return err
	}
	defer remote.Close()
	copied, err := copyAll(ctx, e, src, remote, manifestObjects(m), "import", parallel)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "imported %d objects (%s) checked against their SHA-256; %d were already there; %s holds all %d objects of the seed disk\n",
		copied.Objects, humanBytes(uint64(copied.Bytes)), int64(len(m.Objects))-copied.Objects, to, len(m.Objects))
	return nil
}

func seedPull(ctx context.Context, e *env, c *common, from, to string, parallel int) error {
	remote, err := target.Open(ctx, c.tf.spec(from), target.Options{ReadOnly: true, Logger: e.log})
	if err != nil {
		return err
	}
	defer remote.Close()
	var objs []objstore.Info
	for _, k := range objstore.Kinds {
		if err := remote.List(ctx, k, func(i objstore.Info) error { objs = append(objs, i); return nil }); err != nil {
			return err
		}
	}
	dst, err := replicate.SeedObjects(to, true)
	if err != nil {
		return err
	}
	copied, err := copyAll(ctx, e, remote, dst, objs, "pull", parallel)
	if err != nil {
		return fmt.Errorf("%w (run the same command again to resume)", err)
	}
	m, err := replicate.WriteManifest(to, from, objs, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "seed disk %s: %d objects, %s from %s (%s copied now); on the box: arkbox seed load --from DIR\n",
		to, len(m.Objects), humanBytes(uint64(m.Bytes)), from, humanBytes(uint64(copied.Bytes)))
	return nil
}

func seedLoad(ctx context.Context, e *env, c *common, from string) error {
	dir, err := c.homeDir()
	if err != nil {
		return err
	}
	m, err := replicate.ReadManifest(from)
	if err != nil {
		return err
	}
	src, err := replicate.SeedObjects(from, false)
	if err != nil {
		return err
	}
	local, err := home.OpenStore(ctx, dir, home.Options{Logger: e.log})
	if err != nil {
		return err
	}
	defer local.Close()
	// Get checks each object against its SHA-256 on the way.
	copied, err := copyAll(ctx, e, src, local, manifestObjects(m), "load", 4)
	if err != nil {
		return fmt.Errorf("%w (nothing that failed its check was loaded; run the same command again to resume)", err)
	}
	fmt.Fprintf(e.stdout, "loaded %s from the seed disk (%d objects in its manifest, each checked); the catalog picks them up at the next command\n",
		humanBytes(uint64(copied.Bytes)), len(m.Objects))
	return nil
}
