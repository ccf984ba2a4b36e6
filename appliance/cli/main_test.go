package cli_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/cli"
	"github.com/arkbox/arkbox/storage/objstore"
)

// asCLI makes the test binary behave as the arkbox program, so that tests
// run the CLI in a child process they can really kill.
const asCLI = "ARKBOX_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// testPassphrase is the passphrase of every repository the tests create.
const testPassphrase = "correct horse battery staple"

// childTimeout bounds one CLI run, so that a hang fails the test instead of
// eating the whole CI budget.
const childTimeout = 3 * time.Minute

// arkbox runs the CLI in child processes against one repository.
type arkbox struct {
	t    testing.TB
	repo string   // ARKBOX_REPO ("" = unset)
	pass string   // ARKBOX_PASSWORD ("" = unset)
	env  []string // more KEY=VALUE settings
}

func newArkbox(t testing.TB, repo string) *arkbox {
	return &arkbox{t: t, repo: repo, pass: testPassphrase}
}

// with returns a copy of a with extra environment settings.
func (a *arkbox) with(env ...string) *arkbox {
	b := *a
	b.env = append(append([]string(nil), a.env...), env...)
	return &b
}

// result is one finished CLI run.
type result struct {
	args           []string
	stdout, stderr string
	code           int  // exit code; -1 if killed by a signal
	killed         bool // ended by a signal
	dur            time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("arkbox %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// proc is a running CLI child.
type proc struct {
	a      *arkbox
	cmd    *exec.Cmd
	cancel context.CancelFunc
	out    bytes.Buffer
	err    bytes.Buffer
	start  time.Time
	done   chan struct{}
	res    result
}

// start starts the CLI with args; it does not wait.
func (a *arkbox) start(args ...string) *proc {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	// A child built with -race sleeps a second before exiting unless
	// told otherwise.
	env := []string{asCLI + "=1", "ARKBOX_TEST_KDF=1", "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ARKBOX_") && !strings.HasPrefix(kv, "GORACE=") {
			env = append(env, kv)
		}
	}
	if a.repo != "" {
		env = append(env, "ARKBOX_REPO="+a.repo)
	}
	if a.pass != "" {
		env = append(env, "ARKBOX_PASSWORD="+a.pass)
	}
	cmd.Env = append(env, a.env...)
	// No controlling terminal: a passphrase prompt fails instead of
	// waiting for someone to type.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	p := &proc{a: a, cmd: cmd, cancel: cancel, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.err
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		a.t.Fatalf("start arkbox %v: %v", args, err)
	}
	go func() {
		defer close(p.done)
		defer cancel()
		werr := cmd.Wait()
		p.res = result{args: args, stdout: p.out.String(), stderr: p.err.String(), dur: time.Since(p.start)}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.res.killed = true
			p.res.code = -1
		} else {
			p.res.code = cmd.ProcessState.ExitCode()
		}
		if werr != nil && p.res.code == 0 && !p.res.killed {
			p.res.code = -2
		}
	}()
	return p
}

// wait waits for the child to end.
func (p *proc) wait() result {
	<-p.done
	p.a.checkRace(p.res)
	return p.res
}

// killAfter lets the child run for d, then kills it with SIGKILL (unless it
// ended by itself before).
func (p *proc) killAfter(d time.Duration) result {
	select {
	case <-p.done:
	case <-time.After(d):
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	p.a.checkRace(p.res)
	return p.res
}

// checkRace fails the test when the child (built with -race) reported a
// data race.
func (a *arkbox) checkRace(r result) {
	if strings.Contains(r.stderr, "WARNING: DATA RACE") {
		a.t.Errorf("data race in the CLI child:\n%s", r)
	}
}

// run runs the CLI to completion.
func (a *arkbox) run(args ...string) result {
	a.t.Helper()
	return a.start(args...).wait()
}

// ok runs the CLI and fails the test unless it exits 0; it returns stdout.
func (a *arkbox) ok(args ...string) string {
	a.t.Helper()
	r := a.run(args...)
	if r.code != 0 {
		a.t.Fatalf("want exit 0: %s", r)
	}
	return r.stdout
}

// okJSON runs the CLI, expects exit 0 and decodes stdout into v.
func (a *arkbox) okJSON(v any, args ...string) {
	a.t.Helper()
	out := a.ok(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		a.t.Fatalf("arkbox %s: stdout is not the expected JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// snap is the documented JSON of a snapshot (snapshots --json, backup --json).
type snap struct {
	ID       string    `json:"id"`
	Short    string    `json:"short_id"`
	Time     time.Time `json:"time"`
	Source   string    `json:"source"`
	Host     string    `json:"host"`
	Paths    []string  `json:"paths"`
	Tags     []string  `json:"tags"`
	Parent   string    `json:"parent"`
	Tree     string    `json:"tree"`
	Archived bool      `json:"archived"`
	Stats    struct {
		Files uint64 `json:"files"`
		Dirs  uint64 `json:"dirs"`
		Bytes uint64 `json:"bytes"`
	} `json:"stats"`
}

func (a *arkbox) snapshots() []snap {
	a.t.Helper()
	var out []snap
	a.okJSON(&out, "snapshots", "--json")
	return out
}

// node is what a test compares of one file system entry.
type node struct {
	Type   string // file, dir, symlink
	Perm   fs.FileMode
	Size   int64
	Sum    [32]byte
	Target string
	MTime  int64 // files and directories
	LinkTo string
}

// manifest maps slash-separated paths relative to a root ("." is the root)
// to what they hold.
type manifest map[string]node

// takeManifest records the tree under root. Hard-linked files record the
// first path (in walk order) that shares their inode.
func takeManifest(t testing.TB, root string) manifest {
	t.Helper()
	m := manifest{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		n := node{Perm: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
		switch {
		case fi.Mode().IsRegular():
			n.Type, n.Size, n.MTime = "file", fi.Size(), fi.ModTime().UnixNano()
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.Sum = sha256.Sum256(b)
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					n.LinkTo = first
				} else {
					inodes[st.Ino] = rel
				}
			}
		case fi.IsDir():
			n.Type, n.MTime = "dir", fi.ModTime().UnixNano()
		case fi.Mode()&fs.ModeSymlink != 0:
			n.Type = "symlink"
			n.Perm = 0 // not meaningful on Linux
			if n.Target, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			n.Type = fi.Mode().Type().String()
		}
		m[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("manifest of %s: %v", root, err)
	}
	return m
}

// diff lists how got differs from want (at most max lines).
func (want manifest) diff(got manifest, max int) []string {
	var out []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: missing", p))
		case g.Type != w.Type:
			out = append(out, fmt.Sprintf("%s: type %s, want %s", p, g.Type, w.Type))
		case g.Sum != w.Sum || g.Size != w.Size:
			out = append(out, fmt.Sprintf("%s: content differs (%d bytes, want %d)", p, g.Size, w.Size))
		case g.Perm != w.Perm:
			out = append(out, fmt.Sprintf("%s: mode %v, want %v", p, g.Perm, w.Perm))
		case g.Target != w.Target:
			out = append(out, fmt.Sprintf("%s: symlink to %q, want %q", p, g.Target, w.Target))
		case g.MTime != w.MTime:
			out = append(out, fmt.Sprintf("%s: mtime %s, want %s", p, time.Unix(0, g.MTime).UTC().Format(time.RFC3339Nano), time.Unix(0, w.MTime).UTC().Format(time.RFC3339Nano)))
		case g.LinkTo != w.LinkTo:
			out = append(out, fmt.Sprintf("%s: hard link to %q, want %q", p, g.LinkTo, w.LinkTo))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			out = append(out, fmt.Sprintf("%s: unexpected", p))
		}
	}
	sort.Strings(out)
	if len(out) > max {
		out = append(out[:max], fmt.Sprintf("… and %d more", len(out)-max))
	}
	return out
}

// writeFile writes a file with mode perm (not filtered by the umask).
func writeFile(t testing.TB, p string, data []byte, perm fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
}

// firstLine returns the first line of s.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// objectFiles lists the files under the repository's disk folders that
// hold objects of kind (any layout that keeps the kind as a folder name).
func objectFiles(t testing.TB, repoDir string, kind objstore.Kind) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repoDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoDir, p)
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && slices.Contains(strings.Split(filepath.ToSlash(rel), "/"), string(kind)) &&
			!strings.HasPrefix(d.Name(), ".") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkReport is the documented JSON of check.
type checkReport struct {
	Indexes      int `json:"indexes"`
	Packs        int `json:"packs"`
	Snapshots    int `json:"snapshots"`
	Trees        int `json:"trees"`
	DataBlobs    int `json:"data_blobs_referenced"`
	PacksRead    int `json:"packs_read"`
	BlobsRead    int `json:"blobs_read"`
	BytesRead    int `json:"bytes_read"`
	Unreferenced int `json:"unindexed_packs"`
	Errors       []struct {
		Object string `json:"object"`
		What   string `json:"what"`
	} `json:"errors"`
	Warnings []struct {
		Object string `json:"object"`
		What   string `json:"what"`
	} `json:"warnings"`
}

// pruneReport is the documented JSON of prune.
type pruneReport struct {
	Packs         int   `json:"packs"`
	PacksDeleted  int   `json:"packs_deleted"`
	PacksRepacked int   `json:"packs_repacked"`
	PacksWritten  int   `json:"packs_written"`
	BytesFreed    int64 `json:"bytes_freed"`
}
