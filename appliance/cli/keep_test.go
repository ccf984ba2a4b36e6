package cli_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A target with its own retention keeps snapshots the box has forgotten
// and pruned — with their data, through the box's repacking — and every
// one of them restores from the target; a mirroring target does not keep
// them.
func TestReplicateKeepsMore(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	ark := newArkbox(t, filepath.Join(base, "box"))
	ark.ok("init")
	r := rand.New(rand.NewPCG(3, 4))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	writeFile(t, filepath.Join(src, "stays.bin"), random(300<<10), 0o644)
	var versions []manifest
	for m := 1; m <= 4; m++ {
		// Each month a file of its own, and the previous month's file goes.
		os.Remove(filepath.Join(src, fmt.Sprintf("month%d.bin", m-1)))
		writeFile(t, filepath.Join(src, fmt.Sprintf("month%d.bin", m)), random(200<<10), 0o644)
		writeFile(t, filepath.Join(src, "notes.txt"), []byte(fmt.Sprintf("month %d\n", m)), 0o644)
		versions = append(versions, takeManifest(t, src))
		ark.ok("backup", "--source-name", "files", "--time", fmt.Sprintf("2026-%02d-15T12:00:00Z", m+5), src)
	}
	keepDir, mirrorDir := filepath.Join(base, "keep"), filepath.Join(base, "mirror")
	ark.ok("replicate", "add", "dc", "file://"+keepDir, "--grace", "0s", "--keep-monthly", "12")
	ark.ok("replicate", "add", "mirror", "file://"+mirrorDir, "--grace", "0s")
	twoDir := filepath.Join(base, "two")
	ark.ok("replicate", "add", "two", "file://"+twoDir, "--grace", "0s", "--keep-monthly", "2")
	for _, n := range []string{"dc", "mirror", "two"} {
		ark.ok("replicate", "run", n)
	}

	// The box keeps only the newest snapshot and prunes the rest away.
	prune := ark.ok("forget", "--keep-last", "1", "--prune")
	t.Logf("%s", prune)
	if n := len(ark.snapshots()); n != 1 {
		t.Fatalf("the box has %d snapshots after forget, want 1", n)
	}
	out := ark.ok("replicate", "run", "dc")
	t.Logf("%s", out)
	if !strings.Contains(out, "keeps") {
		t.Fatalf("sync after the prune:\n%s", out)
	}
	ark.ok("replicate", "run", "mirror")
	ark.ok("replicate", "run", "two")
	// A second sync changes nothing and writes no new index.
	before := objectCount(t, keepDir)
	ark.ok("replicate", "run", "dc")
	if after := objectCount(t, keepDir); after != before {
		t.Fatalf("an idle sync changed the target: %d objects, then %d", before, after)
	}

	remote := newArkbox(t, "file://"+keepDir)
	remote.env = append(remote.env, "XDG_CACHE_HOME="+filepath.Join(base, "cache"))
	snaps := remote.snapshots()
	if len(snaps) != 4 {
		t.Fatalf("the keeping target has %d snapshots, want 4", len(snaps))
	}
	remote.ok("check", "--read-data")
	for i, sn := range snaps {
		dst := filepath.Join(base, "restore", fmt.Sprint(i))
		remote.ok("restore", sn.ID, "--target", dst)
		if d := versions[i].diff(takeManifest(t, filepath.Join(dst, "src")), 10); len(d) > 0 {
			t.Fatalf("month %d from the keeping target differs:\n  %s", i+1, strings.Join(d, "\n  "))
		}
	}
	mirror := newArkbox(t, "file://"+mirrorDir)
	mirror.env = append(mirror.env, "XDG_CACHE_HOME="+filepath.Join(base, "cache2"))
	if n := len(mirror.snapshots()); n != 1 {
		t.Fatalf("the mirroring target has %d snapshots, want 1", n)
	}
	mirror.ok("check", "--read-data")
	if objectCount(t, mirrorDir) >= objectCount(t, keepDir) {
		t.Fatal("the mirror holds as much as the keeping target")
	}
	// Monthly 2 keeps the box's snapshot and the month before; the older
	// two and the data only they needed leave the target.
	two := newArkbox(t, "file://"+twoDir)
	two.env = append(two.env, "XDG_CACHE_HOME="+filepath.Join(base, "cache3"))
	got := two.snapshots()
	if len(got) != 2 || got[0].ID != snaps[2].ID || got[1].ID != snaps[3].ID {
		t.Fatalf("monthly-2 target has %d snapshots", len(got))
	}
	two.ok("check", "--read-data")
	dst := filepath.Join(base, "restore", "two")
	two.ok("restore", got[0].ID, "--target", dst)
	if d := versions[2].diff(takeManifest(t, filepath.Join(dst, "src")), 10); len(d) > 0 {
		t.Fatalf("month 3 from the monthly-2 target differs:\n  %s", strings.Join(d, "\n  "))
	}
	if objectCount(t, twoDir) >= objectCount(t, keepDir) {
		t.Fatal("the monthly-2 target holds as much as the monthly-12 one")
	}
}

func objectCount(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n++
		}
		return nil
	})
	return n
}
