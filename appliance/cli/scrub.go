package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"text/tabwriter"

	"github.com/arkbox/arkbox/appliance/pooldisks"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/pool"
)

// openHome opens the home folder without the passphrase (shard-level work
// needs no key).
func (c *common) openHome(ctx context.Context, e *env) (*home.Home, error) {
	if c.repo == "" {
		return nil, usagef("no repository: give --repo DIR or set ARKBOX_REPO")
	}
	h, err := home.Open(ctx, resolveRepo(c.repo), home.Options{Logger: e.log, ReadOnly: c.readOnly})
	if err != nil {
		return nil, err
	}
	if h.Pool == nil {
		h.Close()
		return nil, errors.New("the repository is not on a pool of disks")
	}
	return h, nil
}

func cmdScrub(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags("scrub", e, &c, true)
	noRepair := fs.Bool("no-repair", false, "only report, do not rewrite bad shards")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c.readOnly = *noRepair
	h, err := c.openHome(ctx, e)
	if err != nil {
		return err
	}
	defer h.Close()
	var (
		mu   sync.Mutex // the scrub writes last, the status line reads it
		last pool.ScrubProgress
	)
	stop := progress(e, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%d/%d folders, %d objects, %s, %d problems", last.Done, last.Total, last.Objects, humanBytes(uint64(last.Bytes)), last.Problems)
	})
	rep, err := h.Pool.Scrub(ctx, pool.ScrubOptions{Repair: !*noRepair, Progress: func(p pool.ScrubProgress) {
		mu.Lock()
		last = p
		mu.Unlock()
	}})
	stop()
	if err != nil {
		return err
	}
	if c.json {
		if err := printJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "scrubbed %d objects, %d shards, %s\n", rep.Objects, rep.Shards, humanBytes(uint64(rep.Bytes)))
		for _, d := range rep.MissingDisks {
			fmt.Fprintf(e.stdout, "missing disk: %s — reconnect it, or replace it with `arkbox pool replace-disk %s NEWDIR`\n", d, d)
		}
		for _, p := range rep.Problems {
			state := "found"
			if p.Repaired {
				state = "repaired"
			}
			fmt.Fprintf(e.stdout, "%s: %s/%s shard %d on disk %s: %s\n", state, p.Kind, p.ID, p.Shard, p.Disk, p.What)
		}
		fmt.Fprintf(e.stdout, "%d problems, %d shards rewritten, %d objects unrepairable\n", rep.ProblemCount, rep.Repaired, len(rep.Unrepairable))
		for _, u := range rep.Unrepairable {
			fmt.Fprintf(e.stdout, "UNREPAIRABLE: %+v\n", u)
		}
	}
	if len(rep.Unrepairable) > 0 {
		return fmt.Errorf("%d objects cannot be rebuilt from the disks present; reconnect missing disks, or restore them from a replica", len(rep.Unrepairable))
	}
	if *noRepair && rep.ProblemCount > 0 {
		return fmt.Errorf("%d problems found; run `arkbox scrub` without --no-repair to fix them", rep.ProblemCount)
	}
	return nil
}

func cmdPool(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("usage: arkbox pool status|add-disk DIR|replace-disk UUID DIR --repo DIR")
	}
	sub := args[0]
	var c common
	fs := newFlags("pool "+sub, e, &c, true)
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if sub == "status" {
		return poolStatus(ctx, e, &c)
	}
	h, err := c.openHome(ctx, e)
	if err != nil {
		return err
	}
	defer h.Close()
	switch sub {
	case "add-disk":
		if len(pos) != 1 {
			return usagef("give the folder of the new disk")
		}
		if err := h.AddDisk(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "added %s to the pool; new objects use it\n", pos[0])
		return nil
	case "replace-disk":
		if len(pos) != 2 {
			return usagef("give the UUID of the disk to replace (see `arkbox pool status`) and the folder of the new one")
		}
		if err := h.ReplaceDisk(ctx, pos[0], pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s takes the place of %s; rebuilding its shards now\n", pos[1], pos[0])
		rep, err := h.Pool.Scrub(ctx, pool.ScrubOptions{Repair: true})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "rebuild: %d shards rewritten, %d objects unrepairable\n", rep.Repaired, len(rep.Unrepairable))
		return nil
	}
	return usagef("unknown pool command %q", sub)
}

// poolStatus prints the state of the pool's disks. When another process
// (the server) holds the catalog, it opens the pool read-only beside it.
func poolStatus(ctx context.Context, e *env, c *common) error {
	if c.repo == "" {
		return usagef("no repository: give --repo DIR or set ARKBOX_REPO")
	}
	dir := resolveRepo(c.repo)
	var st objstore.Store
	h, err := home.Open(ctx, dir, home.Options{Logger: e.log, NoWait: true})
	switch {
	case errors.Is(err, catalog.ErrInUse):
		if st, err = home.OpenStore(ctx, dir, home.Options{Logger: e.log, ReadOnly: true}); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		st = h.Store
		defer h.Close()
	}
	if h == nil {
		defer st.Close()
	}
	p, ok := st.(*pool.Pool)
	if !ok {
		return errors.New("the repository is not on a pool of disks")
	}
	// A disk the kernel remounted read-only after errors shows as such
	// only in the mount table on Linux 6.18 (statfs still says writable):
	// look there too, as serve does (no mount table: not Linux).
	if _, err := pooldisks.MarkReadOnlyMounts(ctx, p, pooldisks.Machine{}); err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.log.Warn("a disk the kernel made read-only may show as ok", "err", err)
	}
	status := p.Status(ctx)
	if c.json {
		return printJSON(e.stdout, status)
	}
	fmt.Fprintf(e.stdout, "pool %s\n", status.Pool)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DISK\tSTATE\tPATH\tSIZE\tFREE\tERROR")
	for _, d := range status.Disks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.UUID, d.State, d.Path, humanBytes(d.BytesTotal), humanBytes(d.BytesFree), d.Error)
	}
	return tw.Flush()
}
