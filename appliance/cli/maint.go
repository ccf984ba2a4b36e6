package cli

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/maint"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/sharefs"
	"github.com/arkbox/arkbox/storage/tree"
)

// pctFlag parses --read-data and --read-data=N%.
type pctFlag struct{ v float64 }

func (p *pctFlag) String() string   { return strconv.FormatFloat(p.v, 'f', -1, 64) }
func (p *pctFlag) IsBoolFlag() bool { return true }
func (p *pctFlag) Set(s string) error {
	if s == "true" {
		p.v = 100
		return nil
	}
	if s == "false" {
		p.v = 0
		return nil
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || f <= 0 || f > 100 {
		return fmt.Errorf("want a percentage in (0,100], like 10%%")
	}
	p.v = f
	return nil
}

// phaseProgress returns a progress callback for check and prune (called by
// the work) and the function that stops the status line (the progress
// goroutine reads what the callback wrote, so both hold mu).
func phaseProgress(e *env) (func(string, int, int), func()) {
	var (
		mu          sync.Mutex
		phase       string
		done, total int
	)
	stop := progress(e, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%s %d/%d", phase, done, total)
	})
	return func(p string, d, t int) {
		mu.Lock()
		phase, done, total = p, d, t
		mu.Unlock()
	}, stop
}

func cmdCheck(ctx context.Context, e *env, args []string) (err error) {
	var c common
	fs := newFlags("check", e, &c, true)
	var rd pctFlag
	fs.Var(&rd, "read-data", "also read and verify the data: all, or --read-data=N% of the packs")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	r, err := c.openRead(ctx, e)
	if err != nil {
		return err
	}
	defer r.Close()
	defer func() { err = r.readErr(ctx, err) }()
	prog, stop := phaseProgress(e)
	rep, err := maint.Check(ctx, r.Repository, maint.CheckOptions{ReadDataPercent: rd.v, Progress: prog})
	stop()
	if err != nil {
		return err
	}
	if c.json {
		if err := printJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "checked %d snapshots, %d trees, %d data blobs, %d packs, %d index objects\n", rep.Snapshots, rep.Trees, rep.DataBlobs, rep.Packs, rep.Indexes)
		if rd.v > 0 {
			fmt.Fprintf(e.stdout, "read %d packs (%s), verified %d blobs\n", rep.PacksRead, humanBytes(uint64(rep.BytesRead)), rep.BlobsRead)
		}
		for _, w := range rep.Warnings {
			fmt.Fprintf(e.stdout, "warning: %s: %s\n", w.Object, w.What)
		}
		for _, p := range rep.Errors {
			fmt.Fprintf(e.stdout, "error: %s: %s\n", p.Object, p.What)
		}
		if rep.OK() {
			fmt.Fprintln(e.stdout, "no errors found")
		}
	}
	if !rep.OK() && r.changed(ctx) {
		// Objects the server deleted while they were checked.
		return fmt.Errorf("%w (%d errors found, perhaps because of that)", errChanged, len(rep.Errors))
	}
	if !rep.OK() {
		return fmt.Errorf("%d errors found (listed above): `arkbox scrub` repairs damaged shards from parity where the pool has it; errors that remain after it name the snapshots and files affected", len(rep.Errors))
	}
	return nil
}

func cmdPrune(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags("prune", e, &c, true)
	dry := fs.Bool("dry-run", false, "only say what would be done")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	r, err := c.open(ctx, e)
	if err != nil {
		return err
	}
	defer r.Close()
	return runPrune(ctx, e, r.Repository, *dry, c.json)
}

func runPrune(ctx context.Context, e *env, r *repo.Repository, dry, asJSON bool) error {
	prog, stop := phaseProgress(e)
	// The live shares of a served data folder are roots too.
	rep, err := maint.Prune(ctx, r, maint.PruneOptions{DryRun: dry, Logger: e.log, Progress: prog,
		Roots: func(ctx context.Context, markTree, markData func(blob.ID) error) error {
			return sharefs.LiveRoots(ctx, r.Catalog().DB(), markTree, markData)
		}})
	stop()
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(e.stdout, rep)
	}
	verb := "freed"
	if dry {
		verb = "would free"
	}
	fmt.Fprintf(e.stdout, "%d packs: %d deleted, %d repacked into %d; %d blobs used, %d removed; %s %s\n",
		rep.Packs, rep.PacksDeleted, rep.PacksRepacked, rep.PacksWritten, rep.BlobsUsed, rep.BlobsRemoved, verb, humanBytes(uint64(rep.BytesFreed)))
	return nil
}

func cmdStats(ctx context.Context, e *env, args []string) (err error) {
	var c common
	fs := newFlags("stats", e, &c, true)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	r, err := c.openRead(ctx, e)
	if err != nil {
		return err
	}
	defer r.Close()
	defer func() { err = r.readErr(ctx, err) }()
	var disk uint64
	for _, d := range r.home.DiskDirs() {
		disk += duBytes(d)
	}
	st, err := maint.ComputeStats(ctx, r.Repository, disk)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(e.stdout, st)
	}
	fmt.Fprintf(e.stdout, "snapshots:          %d\n", st.Snapshots)
	fmt.Fprintf(e.stdout, "logical size:       %s (sum of all snapshots)\n", humanBytes(st.LogicalBytes))
	fmt.Fprintf(e.stdout, "unique data:        %s in %d chunks, %d trees\n", humanBytes(st.UniqueBytes), st.DataBlobs, st.TreeBlobs)
	fmt.Fprintf(e.stdout, "stored:             %s in %d packs\n", humanBytes(st.StoredBytes), st.Packs)
	fmt.Fprintf(e.stdout, "on disks:           %s\n", humanBytes(st.DiskBytes))
	fmt.Fprintf(e.stdout, "deduplication:      %.2f×\n", st.DedupRatio)
	fmt.Fprintf(e.stdout, "compression:        %.2f×\n", st.CompressionRatio)
	fmt.Fprintf(e.stdout, "redundancy factor:  %.2f× (erasure coding overhead)\n", st.RedundancyFactor)
	return nil
}

func duBytes(dir string) uint64 {
	var n uint64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += uint64(fi.Size())
			}
		}
		return nil
	})
	return n
}

type diffEntry struct {
	Change string `json:"change"` // + - M T
	Path   string `json:"path"`
}

func cmdDiff(ctx context.Context, e *env, args []string) (err error) {
	var c common
	fs := newFlags("diff", e, &c, true)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("give two snapshots")
	}
	r, err := c.openRead(ctx, e)
	if err != nil {
		return err
	}
	defer r.Close()
	defer func() { err = r.readErr(ctx, err) }()
	a, err := r.FindSnapshot(pos[0])
	if err != nil {
		return err
	}
	b, err := r.FindSnapshot(pos[1])
	if err != nil {
		return err
	}
	out := []diffEntry{}
	emit := func(ch, p string) {
		if c.json {
			out = append(out, diffEntry{ch, p})
		} else {
			fmt.Fprintf(e.stdout, "%s %s\n", ch, p)
		}
	}
	if err := diffTrees(ctx, r.Repository, a.Tree, b.Tree, "/", emit); err != nil {
		return err
	}
	if c.json {
		return printJSON(e.stdout, out)
	}
	return nil
}

func diffTrees(ctx context.Context, r *repo.Repository, aid, bid [32]byte, prefix string, emit func(string, string)) error {
	if aid == bid {
		return nil
	}
	var at, bt *tree.Tree
	var err error
	if aid != ([32]byte{}) {
		if at, err = r.LoadTree(ctx, aid); err != nil {
			return err
		}
	} else {
		at = &tree.Tree{}
	}
	if bid != ([32]byte{}) {
		if bt, err = r.LoadTree(ctx, bid); err != nil {
			return err
		}
	} else {
		bt = &tree.Tree{}
	}
	// whole emits a node that is only on one side, and everything below it.
	whole := func(ch string, n *tree.Node) error {
		p := filepath.Join(prefix, n.Name)
		emit(ch, p)
		if n.Type != tree.Dir {
			return nil
		}
		sub, err := r.LoadTree(ctx, n.Subtree)
		if err != nil {
			return err
		}
		return walkTree(ctx, r, sub, p, func(q string, _ *tree.Node) error { emit(ch, q); return nil })
	}
	i, j := 0, 0
	for i < len(at.Nodes) || j < len(bt.Nodes) {
		switch {
		case j >= len(bt.Nodes) || (i < len(at.Nodes) && at.Nodes[i].Name < bt.Nodes[j].Name):
			if err := whole("-", &at.Nodes[i]); err != nil {
				return err
			}
			i++
		case i >= len(at.Nodes) || bt.Nodes[j].Name < at.Nodes[i].Name:
			if err := whole("+", &bt.Nodes[j]); err != nil {
				return err
			}
			j++
		default:
			an, bn := &at.Nodes[i], &bt.Nodes[j]
			p := filepath.Join(prefix, an.Name)
			switch {
			case an.Type != bn.Type:
				emit("T", p)
			case an.Type == tree.Dir:
				if an.Mode != bn.Mode || an.UID != bn.UID || an.GID != bn.GID {
					emit("M", p)
				}
				if err := diffTrees(ctx, r, an.Subtree, bn.Subtree, p, emit); err != nil {
					return err
				}
			default:
				if !sameContent(an, bn) || an.Mode != bn.Mode || an.LinkTarget != bn.LinkTarget || an.UID != bn.UID || an.GID != bn.GID {
					emit("M", p)
				}
			}
			i++
			j++
		}
	}
	return nil
}

func sameContent(a, b *tree.Node) bool {
	if a.Size != b.Size || len(a.Content) != len(b.Content) {
		return false
	}
	for i := range a.Content {
		if a.Content[i] != b.Content[i] {
			return false
		}
	}
	return true
}

func cmdKey(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("usage: arkbox key add|list|remove ID|passwd --repo DIR")
	}
	sub := args[0]
	var c common
	fs := newFlags("key "+sub, e, &c, true)
	newFile := fs.String("new-password-file", "", "read the new passphrase from this file (default: prompt, or ARKBOX_NEW_PASSWORD)")
	label := fs.String("label", "", "a label for the new key (add)")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	open := c.open
	if sub == "list" {
		open = c.openRead
	}
	r, err := open(ctx, e)
	if err != nil {
		return err
	}
	defer r.Close()
	newPass := func() ([]byte, error) {
		if *newFile != "" {
			b, err := readSecretFile(*newFile)
			return b, err
		}
		if v, ok := os.LookupEnv("ARKBOX_NEW_PASSWORD"); ok {
			return []byte(v), nil
		}
		return prompt(e, "new passphrase: ", true)
	}
	switch sub {
	case "list":
		keys, err := r.Keys(ctx)
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(e.stdout, keys)
		}
		for _, k := range keys {
			cur := " "
			if k.Current {
				cur = "*"
			}
			fmt.Fprintf(e.stdout, "%s %s  %s  %s@%s  %s\n", cur, k.ID.String()[:8], k.Meta.Created.Local().Format(time.DateTime), k.Meta.User, k.Meta.Host, k.Meta.Label)
		}
		return nil
	case "add":
		pw, err := newPass()
		if err != nil {
			return err
		}
		id, err := r.AddKey(ctx, pw, kdfFromEnv(), *label)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "added key %s\n", id.String()[:8])
		return nil
	case "passwd":
		pw, err := newPass()
		if err != nil {
			return err
		}
		id, err := r.ChangePassphrase(ctx, pw, kdfFromEnv())
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "passphrase changed; new key %s\n", id.String()[:8])
		return nil
	case "remove":
		if len(pos) != 1 {
			return usagef("give the id of the key to remove (see `arkbox key list`)")
		}
		keys, err := r.Keys(ctx)
		if err != nil {
			return err
		}
		var match []objstore.ID
		for _, k := range keys {
			if strings.HasPrefix(k.ID.String(), strings.ToLower(pos[0])) {
				match = append(match, k.ID)
			}
		}
		if len(match) != 1 {
			return fmt.Errorf("key id %q matches %d keys", pos[0], len(match))
		}
		if err := r.RemoveKey(ctx, match[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "removed key %s\n", match[0].String()[:8])
		return nil
	}
	return usagef("unknown key command %q: add, list, remove or passwd", sub)
}
