// Package cli implements the arkbox command line: one function per
// subcommand, each parsing its flags, opening the repository and printing
// results (tables for people, --json for scripts) with progress on stderr.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"

	"github.com/arkbox/arkbox/appliance/control"
	"github.com/arkbox/arkbox/replicate/target"
	"github.com/arkbox/arkbox/storage/crypto"
	"github.com/arkbox/arkbox/storage/home"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
	"golang.org/x/term"
)

// defaultMemoryLimit is the CLI's soft heap limit unless GOMEMLIMIT is set.
const defaultMemoryLimit = 128 << 20

// Version is the program version recorded in snapshots.
const Version = "arkbox 0.1"

// Build identifies the build of an image: set at link time
// (-ldflags=-X github.com/arkbox/arkbox/appliance/cli.Build=ID, which
// image/mkinstance adds), empty otherwise. `arkbox version` prints it and
// `serve` logs it when it starts, so that an update can be seen to run.
var Build string

// versionLine is what `arkbox version` prints.
func versionLine() string {
	if Build == "" {
		return Version
	}
	return Version + " (build " + Build + ")"
}

type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the appliance: shares, services, schedules", cmdServe},
		{"share", "the shares: add, list, remove", cmdShare},
		{"user", "the users: add, list, passwd, grant, revoke, key add", cmdUser},
		{"snapshot", "snapshot a share now", cmdSnapshot},
		{"jobs", "the job history", cmdJobs},
		{"init", "create a repository", cmdInit},
		{"backup", "back up files and directories", cmdBackup},
		{"snapshots", "list snapshots", cmdSnapshots},
		{"ls", "list the files of a snapshot", cmdLs},
		{"diff", "show what changed between two snapshots", cmdDiff},
		{"restore", "restore a snapshot or part of it", cmdRestore},
		{"forget", "remove snapshots by retention policy", cmdForget},
		{"prune", "remove data no snapshot needs", cmdPrune},
		{"check", "verify the repository's structure (and data)", cmdCheck},
		{"scrub", "verify and repair every shard on the disks", cmdScrub},
		{"pool", "the pool's disks: status, add-disk, replace-disk", cmdPool},
		{"disks", "list disks, their content and health", cmdDisks},
		{"stats", "show sizes, deduplication and compression", cmdStats},
		{"key", "manage passphrases: add, list, remove, passwd", cmdKey},
		{"repair", "rebuild caches: repair catalog", cmdRepair},
		{"archive", "mark a snapshot as never to be removed", cmdArchive},
		{"unarchive", "clear a snapshot's archive mark", cmdUnarchive},
		{"replicate", "offsite copies: add, list, remove, run, status, verify", cmdReplicate},
		{"seed", "carry objects on a disk: export, import, pull, load", cmdSeed},
		{"recover", "rebuild a box from its offsite copy", cmdRecover},
	}
}

// Main runs the CLI and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr,
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Fprintln(stdout, versionLine())
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft heap limit: the box may be a Pi with 1 GiB. The garbage
		// collector works harder near it; nothing fails above it.
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if p := os.Getenv("ARKBOX_CPUPROFILE"); p != "" {
		// For performance work: a CPU profile of this command.
		if f, err := os.Create(p); err == nil {
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, e, args[1:])
			if err == nil {
				return 0
			}
			if errors.Is(err, flag.ErrHelp) {
				return 2
			}
			var ue usageError
			var ce *control.Error
			if errors.As(err, &ue) || errors.As(err, &ce) && ce.Usage {
				fmt.Fprintf(stderr, "arkbox %s: %v\n", c.name, err)
				return 2
			}
			fmt.Fprintf(stderr, "arkbox %s: %s\n", c.name, explain(err))
			return 1
		}
	}
	fmt.Fprintf(stderr, "arkbox: unknown command %q (see `arkbox help`)\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: arkbox COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nThe passphrase comes from ARKBOX_PASSWORD, --password-file, or a prompt.")
	fmt.Fprintln(w, "Run `arkbox COMMAND -h` for a command's flags.")
}

// explain turns an error into a one-line message that says what to do.
func explain(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, crypto.ErrWrongPassphrase):
		return msg + " — check the passphrase (ARKBOX_PASSWORD or --password-file)"
	case errors.Is(err, home.ErrNoHome):
		return msg
	case errors.Is(err, syscall.ENOSPC):
		return msg + " — a disk is full: free space (forget + prune) or add a disk; nothing incomplete was kept"
	case errors.Is(err, context.Canceled):
		return "interrupted"
	}
	return msg
}

type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// flagSet makes a FlagSet with the flags every repository command takes.
type common struct {
	tf       targetFlags // how to reach --repo when it is a URL
	repo     string
	pwFile   string
	json     bool
	verbose  bool
	readOnly bool
	pw       []byte // the passphrase, once read
}

func newFlags(name string, e *env, c *common, withJSON bool) *flag.FlagSet {
	fs := flag.NewFlagSet("arkbox "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&c.repo, "repo", os.Getenv("ARKBOX_REPO"), "repository home folder (or ARKBOX_REPO)")
	fs.StringVar(&c.pwFile, "password-file", "", "read the passphrase from this file")
	fs.BoolVar(&c.verbose, "v", false, "verbose")
	c.tf.register(fs)
	if withJSON {
		fs.BoolVar(&c.json, "json", false, "print JSON")
	}
	return fs
}

// parse parses flags anywhere among the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (c *common) passphrase(e *env, confirm bool) ([]byte, error) {
	if v, ok := os.LookupEnv("ARKBOX_PASSWORD"); ok && c.pwFile == "" {
		return []byte(v), nil
	}
	if c.pwFile != "" {
		b, err := os.ReadFile(c.pwFile)
		if err != nil {
			return nil, fmt.Errorf("read password file: %w", err)
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
	return prompt(e, "passphrase: ", confirm)
}

func prompt(e *env, label string, confirm bool) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, errors.New("no passphrase: set ARKBOX_PASSWORD or give --password-file (no terminal to ask on)")
	}
	defer tty.Close()
	fmt.Fprint(tty, label)
	pw, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if confirm {
		fmt.Fprint(tty, "again: ")
		again, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		if string(again) != string(pw) {
			return nil, errors.New("the passphrases differ")
		}
	}
	return pw, nil
}

// openRepo is an open repository and the home folder it lives in.
type openRepo struct {
	*repo.Repository
	home *home.Home
	ctx  context.Context
	// cleanup runs after the home folder is closed (removes a private
	// catalog).
	cleanup func()
	// indexes are the index objects when the repository was opened
	// beside another process that holds its catalog; nil otherwise.
	indexes map[objstore.ID]bool
}

// Close flushes the repository, then closes the catalog and the store.
func (o *openRepo) Close() error {
	err := o.Repository.Close(o.ctx)
	if e := o.home.Close(); err == nil {
		err = e
	}
	if o.cleanup != nil {
		o.cleanup()
	}
	return err
}

// open opens the home folder and the repository in it, for a command
// that may write; openRead is for those that only read.
func (c *common) open(ctx context.Context, e *env) (*openRepo, error) {
	if c.repo == "" {
		return nil, usagef("no repository: give --repo DIR or set ARKBOX_REPO")
	}
	if target.IsURL(c.repo) {
		return c.openRemote(ctx, e)
	}
	h, err := home.Open(ctx, resolveRepo(c.repo), home.Options{Logger: e.log, ReadOnly: c.readOnly})
	if err != nil {
		return nil, err
	}
	return c.openIn(ctx, e, h, nil)
}

// openIn opens the repository of the opened home folder h. On failure
// it closes h and then runs cleanup.
func (c *common) openIn(ctx context.Context, e *env, h *home.Home, cleanup func()) (*openRepo, error) {
	fail := func(err error) (*openRepo, error) {
		h.Close()
		if cleanup != nil {
			cleanup()
		}
		return nil, err
	}
	if c.pw == nil {
		var err error
		if !target.IsURL(c.repo) && resolveRepo(c.repo) != c.repo {
			c.pw, err = c.servePassphrase(e, c.repo)
		} else {
			c.pw, err = c.passphrase(e, false)
		}
		if err != nil {
			return fail(err)
		}
	}
	r, err := repo.Open(ctx, h.Store, h.Catalog, c.pw, repo.Options{Logger: e.log, KDF: kdfFromEnv()})
	if err != nil {
		return fail(err)
	}
	return &openRepo{Repository: r, home: h, ctx: ctx, cleanup: cleanup}, nil
}

// kdfFromEnv lets tests use cheap argon2id parameters
// (ARKBOX_TEST_KDF=1); never set it for a real repository.
func kdfFromEnv() crypto.KDFParams {
	if os.Getenv("ARKBOX_TEST_KDF") == "1" {
		return crypto.KDFParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}
	}
	return crypto.KDFParams{}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func readSecretFile(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}
