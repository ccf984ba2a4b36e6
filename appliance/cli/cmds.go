package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/arkbox/arkbox/appliance/control"
	"github.com/arkbox/arkbox/storage/archiver"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/restorer"
	"github.com/arkbox/arkbox/storage/sharefs"
	"github.com/arkbox/arkbox/storage/tree"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func cmdInit(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags("init", e, &c, false)
	var disks multiFlag
	fs.Var(&disks, "disk", "a disk folder of the pool (repeat; default: one folder inside --repo)")
	parity := fs.Int("parity", -1, "parity shards per object (default: by disk count)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if c.repo == "" {
		return usagef("give --repo DIR")
	}
	pw, err := c.passphrase(e, true)
	if err != nil {
		return err
	}
	if len(pw) == 0 {
		return errors.New("the passphrase is empty")
	}
	h, err := home.Create(ctx, c.repo, disks, home.Options{Logger: e.log, Parity: *parity})
	if err != nil {
		return err
	}
	defer h.Close()
	r, err := repo.Init(ctx, h.Store, h.Catalog, pw, repo.Options{Logger: e.log, KDF: kdfFromEnv(), KeyLabel: "initial"})
	if err != nil {
		return err
	}
	defer r.Close(ctx)
	fmt.Fprintf(e.stdout, "created repository %s in %s (cipher %s)\n", r.Config().ID, c.repo, r.Config().Cipher)
	fmt.Fprintln(e.stdout, "Keep the passphrase safe: without it the backups cannot be read.")
	return nil
}

func cmdBackup(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags("backup", e, &c, true)
	source := fs.String("source-name", "", "name of the source (default: host and paths)")
	at := fs.String("time", "", "snapshot time, RFC 3339 (default: now)")
	var tags, excludes multiFlag
	fs.Var(&tags, "tag", "tag the snapshot (repeat)")
	fs.Var(&excludes, "exclude", "skip files matching this glob (repeat)")
	fixed := fs.Bool("image", false, "chunk files in fixed 4 MiB blocks (disk images)")
	noParent := fs.Bool("force", false, "read every file, ignoring the parent snapshot")
	paths, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return usagef("give at least one path to back up")
	}
	opt := archiver.Options{Paths: paths, Source: *source, Tags: tags, Excludes: excludes, Fixed: *fixed, NoParent: *noParent,
		Logger: e.log, Progress: &archiver.Progress{}, Program: Version}
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usagef("--time: %v", err)
		}
		opt.Time = t
	}
	r, err := c.open(ctx, e)
	if err != nil {
		return err
	}
	defer r.Close()
	stop := progress(e, func() string {
		p := opt.Progress
		return fmt.Sprintf("%d files, %s, %d errors", p.Files.Load(), humanBytes(p.Bytes.Load()), p.Errors.Load())
	})
	res, err := archiver.Run(ctx, r.Repository, opt)
	stop()
	if err != nil {
		return err
	}
	sn := res.Snapshot
	for _, fe := range res.Errors {
		fmt.Fprintf(e.stderr, "warning: %v\n", fe)
	}
	if c.json {
		return printJSON(e.stdout, snapJSON(sn))
	}
	st := sn.Stats
	fmt.Fprintf(e.stdout, "snapshot %s saved: %d files, %d dirs, %s\n", sn.ID.String()[:8], st.Files, st.Dirs, humanBytes(st.Bytes))
	fmt.Fprintf(e.stdout, "  new %d, changed %d, unchanged %d files; added %s (%s stored) in %s\n",
		st.NewFiles, st.ChangedFiles, st.UnchangedFiles, humanBytes(st.NewRawBytes), humanBytes(st.NewStoredBytes), st.Duration.Round(time.Millisecond))
	if len(res.Errors) > 0 {
		return fmt.Errorf("%d files could not be read (listed above); the snapshot holds everything else", len(res.Errors))
	}
	return nil
}

// progress prints a status line on stderr every second on a terminal, every
// ten seconds otherwise, until the returned function is called.
func progress(e *env, line func() string) func() {
	tty := isTerminal(e.stderr)
	every := 10 * time.Second
	if tty {
		every = time.Second
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(e.stderr, "\r\033[K")
				}
				return
			case <-t.C:
				s := fmt.Sprintf("[%s] %s", time.Since(start).Round(time.Second), line())
				if tty {
					fmt.Fprintf(e.stderr, "\r\033[K%s", s)
				} else {
					fmt.Fprintln(e.stderr, s)
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// snapJSON is a snapshot as the listings print it.
func snapJSON(sn *repo.Snapshot) control.Snapshot { return control.SnapshotOf(sn) }

func cmdSnapshots(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags("snapshots", e, &c, true)
	source := fs.String("source", "", "only this source")
	share := fs.String("share", "", "only the snapshots of this share (of a served data folder)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *share != "" {
		if *source != "" {
			return usagef("give --source or --share, not both")
		}
		*source = sharefs.SourcePrefix + *share
	}
	var out []control.Snapshot
	if isDataFolder(c.repo) {
		// Through the server when it runs.
		ops, done, err := c.controlOps(ctx, e)
		if err != nil {
			return err
		}
		defer done()
		if out, err = ops.Snapshots(ctx, control.SnapshotFilter{Source: *source}); err != nil {
			return err
		}
	} else {
		r, err := c.openRead(ctx, e)
		if err != nil {
			return err
		}
		defer r.Close()
		snaps, err := r.Snapshots()
		if err != nil {
			return err
		}
		for _, sn := range snaps {
			if *source == "" || sn.Source == *source {
				out = append(out, snapJSON(sn))
			}
		}
	}
	if out == nil {
		out = []control.Snapshot{}
	}
	if c.json {
		return printJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tSOURCE\tFILES\tSIZE\tFLAGS\tTAGS")
	for _, s := range out {
		flags := ""
		if s.Archived {
			flags = "archived"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Short, s.Time.Local().Format("2006-01-02 15:04:05"), s.Source,
			s.Stats.Files, humanBytes(s.Stats.Bytes), flags, strings.Join(s.Tags, ","))
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "%d snapshots\n", len(out))
	return nil
}

// splitRef splits SNAP[:PATH].
func splitRef(s string) (string, string) {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

type lsEntry struct {
	Path   string    `json:"path"`
	Type   string    `json:"type"`
	Mode   string    `json:"mode"`
	Size   uint64    `json:"size"`
	MTime  time.Time `json:"mtime"`
	User   string    `json:"user,omitempty"`
	Group  string    `json:"group,omitempty"`
	Target string    `json:"target,omitempty"`
}

func typeString(t tree.Type) string {
	return map[tree.Type]string{tree.File: "file", tree.Dir: "dir", tree.Symlink: "symlink", tree.BlockDev: "blockdev",
		tree.CharDev: "chardev", tree.FIFO: "fifo", tree.Socket: "socket"}[t]
}

func modeString(n *tree.Node) string {
	c := map[tree.Type]byte{tree.File: '-', tree.Dir: 'd', tree.Symlink: 'l', tree.BlockDev: 'b', tree.CharDev: 'c', tree.FIFO: 'p', tree.Socket: 's'}[n.Type]
	b := []byte{c}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if n.Mode&(1<<(8-i)) != 0 {
			b = append(b, rwx[i])
		} else {
			b = append(b, '-')
		}
	}
	return string(b)
}

func walkTree(ctx context.Context, r *repo.Repository, t *tree.Tree, prefix string, fn func(p string, n *tree.Node) error) error {
	for i := range t.Nodes {
		n := &t.Nodes[i]
		p := path.Join(prefix, n.Name)
		if err := fn(p, n); err != nil {
			return err
		}
		if n.Type == tree.Dir {
			sub, err := r.LoadTree(ctx, n.Subtree)
			if err != nil {
				return err
			}
			if err := walkTree(ctx, r, sub, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func cmdLs(ctx context.Context, e *env, args []string) (err error) {
	var c common
	fs := newFlags("ls", e, &c, true)
	long := fs.Bool("l", false, "long listing")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give SNAPSHOT[:PATH]")
	}
	ref, sub := splitRef(pos[0])
	r, err := c.openRead(ctx, e)
	if err != nil {
		return err
	}
	defer r.Close()
	defer func() { err = r.readErr(ctx, err) }()
	sn, err := r.FindSnapshot(ref)
	if err != nil {
		return err
	}
	n, t, err := restorer.Resolve(ctx, r.Repository, sn.Tree, sub)
	if err != nil {
		return err
	}
	prefix := "/" + strings.Trim(path.Clean("/"+sub), "/")
	var out []lsEntry
	add := func(p string, n *tree.Node) error {
		en := lsEntry{Path: p, Type: typeString(n.Type), Mode: modeString(n), Size: n.Size, MTime: time.Unix(0, n.MTime), User: n.User, Group: n.Group, Target: n.LinkTarget}
		if c.json {
			out = append(out, en)
			return nil
		}
		if *long {
			fmt.Fprintf(e.stdout, "%s %8s %8s %12d %s %s", en.Mode, en.User, en.Group, en.Size, en.MTime.Local().Format("2006-01-02 15:04:05"), p)
			if en.Target != "" {
				fmt.Fprintf(e.stdout, " -> %s", en.Target)
			}
			fmt.Fprintln(e.stdout)
		} else {
			fmt.Fprintln(e.stdout, p)
		}
		return nil
	}
	if t == nil {
		err = add(prefix, n)
	} else {
		err = walkTree(ctx, r.Repository, t, prefix, add)
	}
	if err != nil {
		return err
	}
	if c.json {
		if out == nil {
			out = []lsEntry{}
		}
		return printJSON(e.stdout, out)
	}
	return nil
}

func cmdRestore(ctx context.Context, e *env, args []string) (err error) {
	var c common
	fs := newFlags("restore", e, &c, true)
	target := fs.String("target", "", "directory to restore into")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *target == "" {
		return usagef("give SNAPSHOT[:PATH] and --target DIR")
	}
	ref, sub := splitRef(pos[0])
	r, err := c.openRead(ctx, e)
	if err != nil {
		return err
	}
	defer r.Close()
	defer func() { err = r.readErr(ctx, err) }()
	sn, err := r.FindSnapshot(ref)
	if err != nil {
		return err
	}
	prog := &restorer.Progress{}
	stop := progress(e, func() string {
		return fmt.Sprintf("%d files, %s of %s", prog.Files.Load(), humanBytes(prog.Bytes.Load()), humanBytes(sn.Stats.Bytes))
	})
	start := time.Now()
	res, err := restorer.Run(ctx, r.Repository, sn, restorer.Options{Target: *target, Path: sub, Logger: e.log, Progress: prog})
	stop()
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stdout, "restored %d files, %d dirs, %d others, %s from snapshot %s to %s in %s\n",
		res.Files, res.Dirs, res.Others, humanBytes(res.Bytes), sn.ID.String()[:8], *target, time.Since(start).Round(time.Millisecond))
	return nil
}

func cmdArchive(ctx context.Context, e *env, args []string) error {
	return setArchived(ctx, e, "archive", args, true)
}
func cmdUnarchive(ctx context.Context, e *env, args []string) error {
	return setArchived(ctx, e, "unarchive", args, false)
}

func setArchived(ctx context.Context, e *env, name string, args []string, v bool) error {
	var c common
	fs := newFlags(name, e, &c, true)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give one SNAPSHOT")
	}
	r, err := c.open(ctx, e)
	if err != nil {
		return err
	}
	defer r.Close()
	sn, err := r.FindSnapshot(pos[0])
	if err != nil {
		return err
	}
	if sn.Archived == v {
		fmt.Fprintf(e.stdout, "snapshot %s is already %sarchived\n", sn.ID.String()[:8], map[bool]string{true: "", false: "not "}[v])
		return nil
	}
	old := sn.ID
	nsn := *sn
	nsn.Archived = v
	if nsn.Original == nil {
		nsn.Original = &old
	}
	if _, err := r.SaveSnapshot(ctx, &nsn); err != nil {
		return err
	}
	if err := r.DeleteSnapshot(ctx, old); err != nil {
		return err
	}
	if c.json {
		return printJSON(e.stdout, snapJSON(&nsn))
	}
	fmt.Fprintf(e.stdout, "snapshot %s is now %sarchived; its new id is %s\n", old.String()[:8], map[bool]string{true: "", false: "not "}[v], nsn.ID.String()[:8])
	return nil
}

func cmdRepair(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags("repair", e, &c, false)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "catalog" {
		return usagef("usage: arkbox repair catalog --repo DIR")
	}
	if c.repo == "" {
		return usagef("give --repo DIR")
	}
	// A damaged catalog may not even open: move it aside first.
	h, err := home.Open(ctx, c.repo, home.Options{Logger: e.log})
	if err != nil {
		db := c.repo + "/catalog.db"
		if _, serr := os.Stat(db); serr == nil {
			aside := fmt.Sprintf("%s.broken-%d", db, time.Now().Unix())
			if rerr := os.Rename(db, aside); rerr != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "catalog did not open (%v); moved it to %s\n", err, aside)
			h, err = home.Open(ctx, c.repo, home.Options{Logger: e.log})
		}
		if err != nil {
			return err
		}
	}
	defer h.Close()
	pw, err := c.passphrase(e, false)
	if err != nil {
		return err
	}
	if err := h.Catalog.Reset(""); err != nil {
		return err
	}
	r, err := repo.Open(ctx, h.Store, h.Catalog, pw, repo.Options{Logger: e.log})
	if err != nil {
		return err
	}
	defer r.Close(ctx)
	blobs, packs, idx, err := h.Catalog.Counts()
	if err != nil {
		return err
	}
	snaps, _ := r.Snapshots()
	fmt.Fprintf(e.stdout, "catalog rebuilt from the objects: %d index objects, %d packs, %d blobs, %d snapshots\n", idx, packs, blobs, len(snaps))
	return nil
}
