package cli_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The contract tests pin what users and scripts rely on: exit codes, the
// one-line error messages, the --json fields and what each command does.

// fixture is a repository made with the CLI holding two snapshots of a
// small tree: first (with --time, --tag and --exclude) and second, after a
// file was added, one removed and one modified.
type fixture struct {
	ark           *arkbox
	repo, src     string
	first, second snap
	firstTree     manifest // the source at the first backup, *.tmp excluded
}

const fixtureTime = "2025-01-02T03:04:05Z"

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{repo: filepath.Join(base, "repo"), src: filepath.Join(base, "src")}
	f.ark = newArkbox(t, f.repo)
	for name, content := range map[string]string{
		"a.txt":                 "alpha\n",
		"keep.txt":              "kept as it is\n",
		"mod.txt":               "before\n",
		"gone.txt":              "removed before the second backup\n",
		"junk.tmp":              "scratch\n",
		"sub/other.txt":         "other\n",
		"sub/dir/x.txt":         "x\n",
		"sub/dir/z.tmp":         "scratch below\n",
		"sub/dir/deeper/y.txt":  "why\n",
		"sub/dir/deeper/e.conf": "",
	} {
		writeFile(t, filepath.Join(f.src, filepath.FromSlash(name)), []byte(content), 0o644)
	}
	os.Chmod(f.src, 0o755)
	os.Chmod(filepath.Join(f.src, "sub/dir/x.txt"), 0o600)
	os.Chmod(filepath.Join(f.src, "sub/dir"), 0o750)
	if err := os.Symlink("../a.txt", filepath.Join(f.src, "sub/link")); err != nil {
		t.Fatal(err)
	}
	out := f.ark.ok("init")
	if !strings.Contains(out, "created repository") {
		t.Errorf("init says %q", out)
	}
	f.firstTree = takeManifest(t, f.src)
	for p := range f.firstTree {
		if strings.HasSuffix(p, ".tmp") {
			delete(f.firstTree, p)
		}
	}
	f.ark.okJSON(&f.first, "backup", "--json", "--source-name", "files", "--time", fixtureTime,
		"--tag", "first", "--tag", "manual", "--exclude", "*.tmp", f.src)
	writeFile(t, filepath.Join(f.src, "new.txt"), []byte("added\n"), 0o644)
	os.Remove(filepath.Join(f.src, "gone.txt"))
	writeFile(t, filepath.Join(f.src, "mod.txt"), []byte("after the change\n"), 0o644)
	f.ark.okJSON(&f.second, "backup", "--json", "--source-name", "files", "--exclude", "*.tmp", f.src)
	return f
}

// TestContract runs the read-only contract checks against one fixture.
func TestContract(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ark := f.ark

	t.Run("BackupTimeTagsExclude", func(t *testing.T) {
		snaps := ark.snapshots()
		if len(snaps) != 2 {
			t.Fatalf("%d snapshots, want 2", len(snaps))
		}
		s := snaps[0]
		if s.ID != f.first.ID {
			t.Errorf("oldest snapshot %s, want %s (backup --json)", s.ID, f.first.ID)
		}
		if want, _ := time.Parse(time.RFC3339, fixtureTime); !s.Time.Equal(want) {
			t.Errorf("backup --time %s recorded %s", fixtureTime, s.Time)
		}
		if !slices.Equal(s.Tags, []string{"first", "manual"}) {
			t.Errorf("tags %q, want [first manual]", s.Tags)
		}
		if s.Source != "files" || snaps[1].Source != "files" {
			t.Errorf("sources %q, %q; want files", s.Source, snaps[1].Source)
		}
		if snaps[1].Parent != s.ID {
			t.Errorf("second snapshot's parent %q, want %s", snaps[1].Parent, s.ID)
		}
		var ls []lsEntry
		ark.okJSON(&ls, "ls", "--json", s.ID)
		got := map[string]bool{}
		for _, e := range ls {
			got[e.Path] = true
			if strings.HasSuffix(e.Path, ".tmp") {
				t.Errorf("--exclude '*.tmp' kept %s", e.Path)
			}
		}
		for _, p := range []string{"/src/a.txt", "/src/sub/dir/x.txt", "/src/sub/dir/deeper/y.txt"} {
			if !got[p] {
				t.Errorf("ls of the first snapshot lacks %s", p)
			}
		}
	})

	t.Run("SnapshotsJSON", func(t *testing.T) {
		var raw []map[string]any
		ark.okJSON(&raw, "snapshots", "--json")
		for _, s := range raw {
			requireKeys(t, "snapshots --json", s, "id", "short_id", "time", "source", "host", "paths", "tree", "archived", "stats")
			requireKeys(t, "snapshots --json stats", s["stats"], "files", "dirs", "bytes", "new_files", "changed_files", "unchanged_files", "duration_ns")
		}
		for _, s := range ark.snapshots() {
			if len(s.ID) != 64 || s.Short != s.ID[:8] {
				t.Errorf("id %q, short_id %q", s.ID, s.Short)
			}
			if len(s.Paths) != 1 || s.Paths[0] != f.src {
				t.Errorf("paths %q, want [%s]", s.Paths, f.src)
			}
		}
		var none []snap
		ark.okJSON(&none, "snapshots", "--json", "--source", "no such source")
		if none == nil || len(none) != 0 {
			t.Errorf("snapshots --json of no snapshot should print [], got %v", none)
		}
	})

	t.Run("LsJSON", func(t *testing.T) {
		var raw []map[string]any
		ark.okJSON(&raw, "ls", "--json", "latest")
		if len(raw) == 0 {
			t.Fatal("ls --json latest lists nothing")
		}
		for _, e := range raw {
			requireKeys(t, "ls --json", e, "path", "type", "mode", "size", "mtime")
		}
		var ls []lsEntry
		ark.okJSON(&ls, "ls", "--json", "latest")
		byPath := map[string]lsEntry{}
		for _, e := range ls {
			byPath[e.Path] = e
		}
		for _, c := range []struct {
			path, typ, mode, target string
			size                    uint64
		}{
			{"/src", "dir", "drwxr-xr-x", "", 0},
			{"/src/sub/dir", "dir", "drwxr-x---", "", 0},
			{"/src/sub/dir/x.txt", "file", "-rw-------", "", 2},
			{"/src/mod.txt", "file", "-rw-r--r--", "", uint64(len("after the change\n"))},
			{"/src/sub/link", "symlink", "", "../a.txt", 0},
		} {
			e, ok := byPath[c.path]
			switch {
			case !ok:
				t.Errorf("ls --json lacks %s", c.path)
			case e.Type != c.typ || (c.mode != "" && e.Mode != c.mode) || e.Target != c.target || (c.typ == "file" && e.Size != c.size):
				t.Errorf("ls --json %s = %+v; want type %s mode %s size %d target %q", c.path, e, c.typ, c.mode, c.size, c.target)
			}
		}
	})

	t.Run("LsSubtree", func(t *testing.T) {
		for _, ref := range []string{f.second.ID[:8] + ":src/sub/dir", "latest:/src/sub/dir/", f.second.ID + ":src/sub/dir"} {
			got := lines(ark.ok("ls", ref))
			want := []string{"/src/sub/dir/deeper", "/src/sub/dir/deeper/e.conf", "/src/sub/dir/deeper/y.txt", "/src/sub/dir/x.txt"}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Errorf("ls %s:\n%s\nwant:\n%s", ref, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
		if got := lines(ark.ok("ls", "latest:src/sub/dir/x.txt")); !slices.Equal(got, []string{"/src/sub/dir/x.txt"}) {
			t.Errorf("ls of one file: %q", got)
		}
		if r := ark.run("ls", "latest:src/no/such/dir"); r.code != 1 || !strings.Contains(r.stderr, "src/no") {
			t.Errorf("ls of a missing path should fail naming it:\n%s", r)
		}
	})

	t.Run("Diff", func(t *testing.T) {
		got := lines(ark.ok("diff", f.first.ID[:8], f.second.ID[:8]))
		sort.Strings(got)
		want := []string{"+ /src/new.txt", "- /src/gone.txt", "M /src/mod.txt"}
		if !slices.Equal(got, want) {
			t.Errorf("diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		var js []struct{ Change, Path string }
		ark.okJSON(&js, "diff", "--json", f.second.ID[:8], f.first.ID[:8])
		var back []string
		for _, d := range js {
			back = append(back, d.Change+" "+d.Path)
		}
		sort.Strings(back)
		if want := []string{"+ /src/gone.txt", "- /src/new.txt", "M /src/mod.txt"}; !slices.Equal(back, want) {
			t.Errorf("diff --json in reverse: %q, want %q", back, want)
		}
		if out := ark.ok("diff", "latest", f.second.ID); out != "" {
			t.Errorf("diff of a snapshot with itself: %q", out)
		}
	})

	t.Run("RestoreSubtree", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "out")
		ark.ok("restore", f.first.ID[:8]+":src/sub/dir", "--target", dst)
		want := manifest{}
		for p, n := range f.firstTree {
			if rel, ok := strings.CutPrefix(p, "sub/dir/"); ok {
				want[rel] = n
			}
		}
		want["."] = f.firstTree["sub/dir"]
		if d := want.diff(takeManifest(t, dst), 20); len(d) > 0 {
			t.Errorf("restore SNAP:src/sub/dir:\n  %s", strings.Join(d, "\n  "))
		}
	})

	t.Run("RestoreAll", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "out")
		ark.ok("restore", f.first.ID, "--target", dst)
		if d := f.firstTree.diff(takeManifest(t, filepath.Join(dst, "src")), 20); len(d) > 0 {
			t.Errorf("restore of the first snapshot:\n  %s", strings.Join(d, "\n  "))
		}
	})

	t.Run("CheckJSON", func(t *testing.T) {
		var raw map[string]any
		ark.okJSON(&raw, "check", "--read-data", "--json")
		requireKeys(t, "check --json", raw, "indexes", "packs", "snapshots", "trees", "data_blobs_referenced",
			"packs_read", "blobs_read", "bytes_read", "errors", "warnings")
		var rep checkReport
		ark.okJSON(&rep, "check", "--read-data", "--json")
		if rep.Snapshots != 2 || rep.PacksRead == 0 || rep.PacksRead != rep.Packs || len(rep.Errors) != 0 {
			t.Errorf("check --read-data --json: %+v", rep)
		}
		ark.okJSON(&rep, "check", "--read-data=50%", "--json")
		if len(rep.Errors) != 0 {
			t.Errorf("check --read-data=50%%: %+v", rep)
		}
	})

	t.Run("StatsJSON", func(t *testing.T) {
		var raw map[string]any
		ark.okJSON(&raw, "stats", "--json")
		requireKeys(t, "stats --json", raw, "snapshots", "logical_bytes", "unique_bytes", "data_blobs", "tree_blobs",
			"sealed_bytes", "stored_bytes", "packs", "disk_bytes", "dedup_ratio", "compression_ratio", "redundancy_factor")
		if raw["snapshots"] != 2.0 {
			t.Errorf("stats --json snapshots = %v, want 2", raw["snapshots"])
		}
		if lb, _ := raw["logical_bytes"].(float64); lb < float64(f.first.Stats.Bytes+f.second.Stats.Bytes) {
			t.Errorf("stats --json logical_bytes = %v, want the sum of the snapshots' bytes", raw["logical_bytes"])
		}
	})

	t.Run("KeyListJSON", func(t *testing.T) {
		var raw []map[string]any
		ark.okJSON(&raw, "key", "list", "--json")
		if len(raw) != 1 {
			t.Fatalf("key list --json: %d keys, want 1", len(raw))
		}
		requireKeys(t, "key list --json", raw[0], "id", "current", "created", "host", "user", "label", "kdf")
		if raw[0]["current"] != true {
			t.Errorf("key list --json: the only key is not current: %v", raw[0])
		}
	})

	t.Run("UnknownSnapshot", func(t *testing.T) {
		for _, args := range [][]string{{"ls", "ffffffff"}, {"restore", "ffffffff", "--target", t.TempDir()}, {"diff", "latest", "ffffffff"}} {
			if r := ark.run(args...); r.code != 1 || !strings.Contains(r.stderr, "ffffffff") {
				t.Errorf("want exit 1 and a message naming the snapshot:\n%s", r)
			}
		}
	})
}

// lsEntry is the documented JSON of one ls entry.
type lsEntry struct {
	Path   string    `json:"path"`
	Type   string    `json:"type"`
	Mode   string    `json:"mode"`
	Size   uint64    `json:"size"`
	MTime  time.Time `json:"mtime"`
	Target string    `json:"target"`
}

func requireKeys(t *testing.T, what string, v any, keys ...string) {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Errorf("%s: not a JSON object: %v", what, v)
		return
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: no %q field in %v", what, k, m)
		}
	}
}

// oneLine demands a single-line error message on stderr.
func oneLine(t *testing.T, r result) {
	t.Helper()
	if msg := strings.TrimRight(r.stderr, "\n"); msg == "" || strings.Contains(msg, "\n") {
		t.Errorf("want a one-line message on stderr:\n%s", r)
	}
}

// smallRepo makes a repository with the CLI holding one snapshot of a few
// files; it returns the runner and the source folder.
func smallRepo(t *testing.T) (*arkbox, string) {
	t.Helper()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	writeFile(t, filepath.Join(src, "a.txt"), []byte("some text\n"), 0o644)
	writeFile(t, filepath.Join(src, "d/b.bin"), []byte(strings.Repeat("0123456789", 5000)), 0o640)
	noise := make([]byte, 100<<10)
	rand.NewChaCha8([32]byte{2}).Read(noise)
	writeFile(t, filepath.Join(src, "d/noise"), noise, 0o600)
	ark := newArkbox(t, filepath.Join(base, "repo"))
	ark.ok("init")
	ark.ok("backup", src)
	return ark, src
}

func TestWrongPassphrase(t *testing.T) {
	t.Parallel()
	ark, src := smallRepo(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	writeFile(t, pwFile, []byte("not the passphrase\n"), 0o600)
	wrongEnv := *ark
	wrongEnv.pass = "not the passphrase"
	wrongFile := *ark
	wrongFile.pass = ""
	for _, c := range []struct {
		name string
		ark  *arkbox
		args []string
	}{
		{"env/snapshots", &wrongEnv, []string{"snapshots"}},
		{"env/backup", &wrongEnv, []string{"backup", src}},
		{"env/check", &wrongEnv, []string{"check"}},
		{"env/ls", &wrongEnv, []string{"ls", "latest"}},
		{"file/snapshots", &wrongFile, []string{"snapshots", "--password-file", pwFile}},
		{"file/restore", &wrongFile, []string{"restore", "latest", "--target", t.TempDir(), "--password-file", pwFile}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := c.ark.run(c.args...)
			if r.code != 1 {
				t.Errorf("want exit 1:\n%s", r)
			}
			oneLine(t, r)
			if !strings.Contains(r.stderr, "passphrase") {
				t.Errorf("the message should mention the passphrase:\n%s", r)
			}
		})
	}
	if n := len(ark.snapshots()); n != 1 {
		t.Errorf("%d snapshots after the failed runs, want 1", n)
	}
	if r := wrongFile.run("snapshots"); r.code == 0 || !strings.Contains(r.stderr, "ARKBOX_PASSWORD") {
		t.Errorf("without a passphrase and without a terminal: want an error naming ARKBOX_PASSWORD:\n%s", r)
	}
}

func TestNoRepository(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(base, "src")
	writeFile(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	ark := newArkbox(t, "")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"snapshots", []string{"snapshots", "--repo", empty}},
		{"backup", []string{"backup", "--repo", empty, src}},
		{"check", []string{"check", "--repo", empty}},
		{"restore", []string{"restore", "latest", "--target", filepath.Join(base, "out"), "--repo", empty}},
		{"missing-folder", []string{"snapshots", "--repo", filepath.Join(base, "nowhere")}},
		{"env", []string{"snapshots"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := ark
			if c.name == "env" {
				a = newArkbox(t, empty)
			}
			r := a.run(c.args...)
			if r.code == 0 {
				t.Fatalf("want failure:\n%s", r)
			}
			oneLine(t, r)
			if !strings.Contains(r.stderr, "arkbox init") {
				t.Errorf("the message should say to run `arkbox init`:\n%s", r)
			}
		})
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("commands on an empty folder left files in it: %v", ents)
	}
	if r := ark.run("snapshots"); r.code != 2 || !strings.Contains(r.stderr, "--repo") {
		t.Errorf("without --repo or ARKBOX_REPO: want exit 2 and a hint:\n%s", r)
	}
}

func TestInitTwice(t *testing.T) {
	t.Parallel()
	ark, _ := smallRepo(t)
	again := *ark
	again.pass = "another passphrase"
	for _, a := range []*arkbox{ark, &again} {
		r := a.run("init")
		if r.code != 1 {
			t.Errorf("init of an existing repository: want exit 1:\n%s", r)
		}
		oneLine(t, r)
		if !strings.Contains(r.stderr, "already") {
			t.Errorf("the message should say a repository is already there:\n%s", r)
		}
	}
	if n := len(ark.snapshots()); n != 1 {
		t.Errorf("%d snapshots after init twice, want 1", n)
	}
	var keys []map[string]any
	ark.okJSON(&keys, "key", "list", "--json")
	if len(keys) != 1 {
		t.Errorf("init twice changed the keys: %d keys", len(keys))
	}
	if r := again.run("snapshots"); r.code != 1 {
		t.Errorf("the second init's passphrase opens the repository:\n%s", r)
	}
}

func TestBackupErrors(t *testing.T) {
	t.Parallel()
	ark, src := smallRepo(t)
	missing := filepath.Join(t.TempDir(), "does-not-exist")
	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"missing-path", []string{"backup", missing}, 1, "does-not-exist"},
		{"missing-among-others", []string{"backup", src, missing}, 1, "does-not-exist"},
		{"no-path", []string{"backup"}, 2, "path"},
		{"bad-time", []string{"backup", "--time", "yesterday", src}, 2, "--time"},
		{"bad-exclude", []string{"backup", "--exclude", "[", src}, 1, "["},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ark.run(c.args...)
			if r.code != c.code {
				t.Errorf("want exit %d:\n%s", c.code, r)
			}
			if !strings.Contains(r.stderr, c.msg) {
				t.Errorf("the message should mention %q:\n%s", c.msg, r)
			}
		})
	}
	if n := len(ark.snapshots()); n != 1 {
		t.Errorf("failed backups left snapshots: %d, want 1", n)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	ark, _ := smallRepo(t)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"unknown-command", []string{"frobnicate"}},
		{"ls-without-snapshot", []string{"ls"}},
		{"restore-without-target", []string{"restore", "latest"}},
		{"diff-with-one-snapshot", []string{"diff", "latest"}},
		{"key-without-command", []string{"key"}},
		{"unknown-key-command", []string{"key", "frobnicate"}},
		{"repair-what", []string{"repair", "everything"}},
		{"unknown-flag", []string{"snapshots", "--no-such-flag"}},
		{"bad-percentage", []string{"check", "--read-data=150%"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ark.run(c.args...)
			if r.code != 2 {
				t.Errorf("a usage error should exit 2:\n%s", r)
			}
			if r.stderr == "" {
				t.Errorf("a usage error should say what is wrong:\n%s", r)
			}
		})
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"version"}} {
		if r := ark.run(args...); r.code != 0 || r.stdout == "" {
			t.Errorf("want exit 0 and output:\n%s", r)
		}
	}
}

// packFiles returns the files of the repository that hold packs, largest
// first, with the pack id each names.
func packFiles(t *testing.T, repo string) (paths, ids []string) {
	t.Helper()
	files := objectFiles(t, repo, "packs")
	sort.Slice(files, func(i, j int) bool {
		a, _ := os.Stat(files[i])
		b, _ := os.Stat(files[j])
		return a.Size() > b.Size()
	})
	hex := regexp.MustCompile(`[0-9a-f]{64}`)
	for _, p := range files {
		if id := hex.FindString(filepath.Base(p)); id != "" {
			paths = append(paths, p)
			ids = append(ids, id)
		}
	}
	if len(paths) == 0 {
		t.Fatalf("no pack files under %s", repo)
	}
	return paths, ids
}

// flipByte flips one bit in the middle of a file.
func flipByte(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	os.Chmod(p, 0o600)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCheckFindsCorruptPack(t *testing.T) {
	t.Parallel()
	ark, _ := smallRepo(t)
	ark.ok("check", "--read-data")
	paths, ids := packFiles(t, ark.repo)
	flipByte(t, paths[0])
	r := ark.run("check", "--read-data")
	if r.code != 1 {
		t.Errorf("check --read-data of a corrupt pack: want exit 1:\n%s", r)
	}
	if !strings.Contains(r.stdout+r.stderr, ids[0][:8]) {
		t.Errorf("check --read-data should name pack %s:\n%s", ids[0], r)
	}
	var rep checkReport
	r = ark.run("check", "--read-data", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("check --json with errors: %v\n%s", err, r)
	}
	named := false
	for _, e := range rep.Errors {
		named = named || e.Object == "pack/"+ids[0]
	}
	if r.code != 1 || !named {
		t.Errorf("check --read-data --json should list pack/%s among the errors and exit 1:\n%s", ids[0], r)
	}
}

// TestRestoreReportsCorruptData restores a snapshot whose data is damaged:
// the restore must fail with the reason, not claim it was interrupted.
func TestRestoreReportsCorruptData(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	// Many small files in one folder, so in one pack followed by the
	// trees, damaged in the middle: the restore finds the damage while it
	// still has files to hand to its workers.
	rnd := rand.NewChaCha8([32]byte{1})
	for i := 0; i < 600; i++ {
		b := make([]byte, 1500)
		rnd.Read(b)
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%04d.bin", i)), b, 0o644)
	}
	ark := newArkbox(t, filepath.Join(base, "repo"))
	ark.ok("init")
	ark.ok("backup", src)
	paths, ids := packFiles(t, ark.repo)
	flipByte(t, paths[0])
	for i := 0; i < 3; i++ {
		r := ark.run("restore", "latest", "--target", filepath.Join(base, fmt.Sprint("out", i)))
		if r.code != 1 {
			t.Fatalf("restore of damaged data: want exit 1:\n%s", r)
		}
		oneLine(t, r)
		if !strings.Contains(r.stderr, ids[0][:8]) {
			t.Errorf("restore of damaged data should name pack %s, not claim an interruption:\n%s", ids[0][:8], r)
		}
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	ark, _ := smallRepo(t)
	const second = "second passphrase"
	if out := ark.with("ARKBOX_NEW_PASSWORD="+second).ok("key", "add", "--label", "laptop"); !strings.Contains(out, "added key") {
		t.Errorf("key add says %q", out)
	}
	ark2 := *ark
	ark2.pass = second
	if n := len(ark2.snapshots()); n != 1 {
		t.Errorf("the added passphrase sees %d snapshots, want 1", n)
	}
	type key struct {
		ID      string `json:"id"`
		Current bool   `json:"current"`
	}
	var keys []key
	ark2.okJSON(&keys, "key", "list", "--json")
	if len(keys) != 2 {
		t.Fatalf("key list --json: %d keys, want 2", len(keys))
	}
	var cur, other string
	for _, k := range keys {
		if k.Current {
			cur = k.ID
		} else {
			other = k.ID
		}
	}
	if cur == "" || other == "" {
		t.Fatalf("key list --json should mark exactly one key current: %+v", keys)
	}
	r := ark2.run("key", "remove", cur[:8])
	if r.code == 0 {
		t.Errorf("key remove of the key in use should be refused:\n%s", r)
	}
	oneLine(t, r)
	ark2.ok("snapshots")

	// Remove the first key with the second passphrase: the first stops
	// working.
	ark2.ok("key", "remove", other[:8])
	if r := ark.run("snapshots"); r.code != 1 || !strings.Contains(r.stderr, "passphrase") {
		t.Errorf("the removed passphrase still works:\n%s", r)
	}
	if r := ark2.run("key", "remove", cur[:8]); r.code == 0 {
		t.Errorf("removing the only key should be refused:\n%s", r)
	}

	// key passwd: the new passphrase works, the old one no longer does.
	const third = "third passphrase"
	ark2.with("ARKBOX_NEW_PASSWORD="+third).ok("key", "passwd")
	ark3 := *ark
	ark3.pass = third
	if n := len(ark3.snapshots()); n != 1 {
		t.Errorf("after key passwd the new passphrase sees %d snapshots", n)
	}
	r = ark2.run("snapshots")
	if r.code != 1 || !strings.Contains(r.stderr, "passphrase") {
		t.Errorf("after key passwd the old passphrase still works:\n%s", r)
	}
	oneLine(t, r)
	ark3.okJSON(&keys, "key", "list", "--json")
	if len(keys) != 1 || !keys[0].Current {
		t.Errorf("after key passwd: keys %+v, want one, current", keys)
	}
	if r := ark3.with("ARKBOX_NEW_PASSWORD=").run("key", "add"); r.code == 0 {
		t.Errorf("key add with an empty passphrase should fail:\n%s", r)
	}
}

func TestArchive(t *testing.T) {
	t.Parallel()
	ark, src := smallRepo(t)
	ark.ok("backup", src)
	snaps := ark.snapshots()
	old := snaps[0]
	var got snap
	ark.okJSON(&got, "archive", "--json", old.ID[:8])
	find := func() snap {
		t.Helper()
		for _, s := range ark.snapshots() {
			if s.Time.Equal(old.Time) && s.Tree == old.Tree {
				return s
			}
		}
		t.Fatalf("snapshot of %s is gone after archive/unarchive", old.Time)
		return snap{}
	}
	s := find()
	if !s.Archived || s.ID != got.ID {
		t.Errorf("after archive: %+v (archive printed %s)", s, got.ID)
	}
	if n := len(ark.snapshots()); n != 2 {
		t.Errorf("%d snapshots after archive, want 2", n)
	}
	if out := ark.ok("archive", s.ID[:8]); !strings.Contains(out, "already") {
		t.Errorf("archive of an archived snapshot says %q", out)
	}
	if !strings.Contains(ark.ok("snapshots"), "archived") {
		t.Error("the snapshots table does not show the archived flag")
	}
	ark.ok("unarchive", s.ID[:8])
	if s := find(); s.Archived {
		t.Errorf("after unarchive: %+v", s)
	}
	if snaps := ark.snapshots(); snaps[1].Archived || len(snaps) != 2 {
		t.Errorf("archive touched other snapshots: %+v", snaps)
	}
	ark.ok("check", "--read-data")
}

func TestRepairCatalog(t *testing.T) {
	t.Parallel()
	ark, src := smallRepo(t)
	writeFile(t, filepath.Join(src, "more.txt"), []byte("more"), 0o644)
	ark.ok("backup", "--tag", "second", src)
	ark.ok("archive", "latest")
	list := ark.ok("snapshots", "--json")
	if err := os.Remove(filepath.Join(ark.repo, "catalog.db")); err != nil {
		t.Fatal(err)
	}
	if out := ark.ok("repair", "catalog"); !strings.Contains(out, "2 snapshots") {
		t.Errorf("repair catalog says %q", out)
	}
	if got := ark.ok("snapshots", "--json"); got != list {
		t.Errorf("snapshots --json after repair catalog:\n%s\nbefore:\n%s", got, list)
	}
	ark.ok("check", "--read-data")

	// A damaged catalog file is moved aside and rebuilt.
	if err := os.WriteFile(filepath.Join(ark.repo, "catalog.db"), []byte("this is not a bbolt file"), 0o600); err != nil {
		t.Fatal(err)
	}
	ark.ok("repair", "catalog")
	if got := ark.ok("snapshots", "--json"); got != list {
		t.Errorf("snapshots --json after repairing a damaged catalog:\n%s\nbefore:\n%s", got, list)
	}
	ark.ok("check", "--read-data")
}

func TestPruneWithoutGarbage(t *testing.T) {
	t.Parallel()
	ark, _ := smallRepo(t)
	var rep pruneReport
	ark.okJSON(&rep, "prune", "--dry-run", "--json")
	if rep.PacksDeleted != 0 || rep.PacksRepacked != 0 || rep.BytesFreed != 0 {
		t.Errorf("prune --dry-run on a repository without garbage plans work: %+v", rep)
	}
	ark.ok("prune")
	ark.okJSON(&rep, "prune", "--json")
	if rep.PacksDeleted != 0 || rep.PacksRepacked != 0 {
		t.Errorf("a second prune still finds work: %+v", rep)
	}
	ark.ok("check", "--read-data")
}

func TestRestoreHardLinks(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	writeFile(t, filepath.Join(src, "a/one"), []byte(strings.Repeat("linked content\n", 1000)), 0o644)
	if err := os.Link(filepath.Join(src, "a/one"), filepath.Join(src, "a/two")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "a/one"), filepath.Join(src, "three")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "a/plain"), []byte("plain"), 0o644)
	want := takeManifest(t, src)
	ark := newArkbox(t, filepath.Join(base, "repo"))
	ark.ok("init")
	ark.ok("backup", src)
	for i := 0; i < 3; i++ {
		dst := filepath.Join(base, "out", string(rune('a'+i)))
		if r := ark.run("restore", "latest", "--target", dst); r.code != 0 {
			t.Fatalf("restore of hard links:\n%s", r)
		}
		if d := want.diff(takeManifest(t, filepath.Join(dst, "src")), 10); len(d) > 0 {
			t.Errorf("restore of hard links:\n  %s", strings.Join(d, "\n  "))
		}
	}
}
