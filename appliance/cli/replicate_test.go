package cli_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/arkbox/arkbox/internal/testpeer"
)

// marker appears in the source files; no object on a target may hold it.
const marker = "ARKBOX-PLAINTEXT-MARKER-7d1e"

// offsiteSource writes a tree of real files (Go's own sources), files
// holding the marker and incompressible data; about 12 MB.
func offsiteSource(t *testing.T, dir string) {
	t.Helper()
	goroot := runtime.GOROOT()
	n := 0
	filepath.WalkDir(filepath.Join(goroot, "src", "net", "http"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || n >= 200 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(goroot, p)
		writeFile(t, filepath.Join(dir, "real", rel), b, 0o644)
		n++
		return nil
	})
	for i := 0; i < 20; i++ {
		writeFile(t, filepath.Join(dir, "notes", fmt.Sprintf("note%02d.txt", i)), []byte(strings.Repeat(marker+fmt.Sprintf(" line of note %d\n", i), 200)), 0o644)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 4; i++ {
		b := make([]byte, 2<<20)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		writeFile(t, filepath.Join(dir, "bin", fmt.Sprintf("blob%d", i)), b, 0o644)
	}
}

// offsiteBox starts an S3 server and makes a box (a repository holding
// one backup of offsiteSource) in a fresh folder.
func offsiteBox(t *testing.T) (srv *testpeer.S3Server, base, src string, ark *arkbox) {
	t.Helper()
	srv = testpeer.S3(t)
	base = t.TempDir()
	src = filepath.Join(base, "src")
	offsiteSource(t, src)
	ark = newArkbox(t, filepath.Join(base, "box"))
	ark.ok("init")
	ark.ok("backup", src)
	return srv, base, src, ark
}

// s3Env is how the CLI reaches a versitygw.
func s3Env(t *testing.T, srv *testpeer.S3Server) (secretFile string, flags []string) {
	secretFile = filepath.Join(t.TempDir(), "s3.secret")
	writeFile(t, secretFile, []byte(srv.SecretKey+"\n"), 0o600)
	return secretFile, []string{"--access-key", srv.AccessKey, "--secret-key-file", secretFile, "--insecure"}
}

// rcloneCheck downloads the bucket with rclone (an independent S3 client)
// and checks that every object's SHA-256 is its name and that no object
// holds the marker. It returns the number of objects.
func rcloneCheck(t *testing.T, srv *testpeer.S3Server, bucketPath string) int {
	t.Helper()
	if _, err := exec.LookPath("rclone"); err != nil {
		if os.Getenv("ARKBOX_REQUIRE_PEERS") != "" {
			t.Fatal("rclone is not installed (make test-deps installs it)")
		}
		t.Skip("rclone is not installed")
	}
	dst := t.TempDir()
	cmd := exec.Command("rclone", "copy", ":s3:"+bucketPath, dst, "--s3-provider=Other", "--s3-endpoint=http://"+srv.Endpoint,
		"--s3-access-key-id="+srv.AccessKey, "--s3-secret-access-key="+srv.SecretKey, "--s3-force-path-style=true")
	cmd.Env = append(os.Environ(), "AWS_CA_BUNDLE=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rclone copy: %v\n%s", err, out)
	}
	n := 0
	filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != d.Name() {
			t.Errorf("%s: SHA-256 is %x", p, sum)
		}
		if bytes.Contains(b, []byte(marker)) || bytes.Contains(b, []byte("package http")) {
			t.Errorf("%s holds plaintext", p)
		}
		n++
		return nil
	})
	return n
}

type syncReport struct {
	Uploaded struct {
		Objects int64 `json:"objects"`
	} `json:"uploaded_total"`
	Retried     int64  `json:"retried"`
	SeedWaiting int64  `json:"seed_waiting"`
	Error       string `json:"error"`
}

// The box's copy on a real S3 server: consistent, ciphertext only,
// incremental, verifiable, restorable without the box, and a new box
// recovers from it.
func TestReplicateS3(t *testing.T) {
	t.Parallel()
	srv := testpeer.S3(t)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	offsiteSource(t, src)
	want := takeManifest(t, src)
	ark := newArkbox(t, filepath.Join(base, "box"))
	ark.ok("init", "--disk", filepath.Join(base, "d1"), "--disk", filepath.Join(base, "d2"), "--disk", filepath.Join(base, "d3"))
	ark.ok("backup", src)
	_, s3flags := s3Env(t, srv)
	url := "s3://" + srv.Endpoint + "/offsite/box1"
	ark.ok(append([]string{"replicate", "add", "offsite", url}, s3flags...)...)
	cfg, _ := os.ReadFile(filepath.Join(base, "box", "replicate.json"))
	if bytes.Contains(cfg, []byte(srv.SecretKey)) {
		t.Fatal("replicate.json holds the secret key")
	}
	if fi, err := os.Stat(filepath.Join(base, "box", "secrets", "replicate-offsite.secret")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the kept secret key file: %v %v", fi, err)
	}

	var rep syncReport
	ark.okJSON(&rep, "replicate", "run", "offsite", "--json")
	total := localObjectsOf(t, ark, "offsite")
	if rep.Uploaded.Objects != total || total < 5 {
		t.Fatalf("first sync uploaded %d objects, the box has %d", rep.Uploaded.Objects, total)
	}
	if n := rcloneCheck(t, srv, "offsite/box1"); int64(n) != total {
		t.Fatalf("rclone finds %d objects, want %d", n, total)
	}
	// Up to date: nothing to send.
	ark.okJSON(&rep, "replicate", "run", "offsite", "--json")
	if rep.Uploaded.Objects != 0 {
		t.Fatalf("up-to-date sync uploaded %d objects", rep.Uploaded.Objects)
	}
	// Restore straight from the copy, with the passphrase alone.
	remote := newArkbox(t, url)
	remote.env = append(remote.env, "XDG_CACHE_HOME="+filepath.Join(base, "cache"))
	dst := filepath.Join(base, "from-s3")
	remote.ok(append([]string{"restore", "latest", "--target", dst}, s3flags...)...)
	if d := want.diff(takeManifest(t, filepath.Join(dst, "src")), 20); len(d) > 0 {
		t.Fatalf("restore from S3 differs:\n  %s", strings.Join(d, "\n  "))
	}
	wrong := remote.with()
	wrong.pass = "not the passphrase"
	if r := wrong.run(append([]string{"snapshots"}, s3flags...)...); r.code != 1 || !strings.Contains(r.stderr, "passphrase") {
		t.Fatalf("wrong passphrase on the copy: %s", r)
	}

	// A change: the next sync sends only the new objects.
	writeFile(t, filepath.Join(src, "notes", "new.txt"), []byte("a new note "+marker), 0o644)
	ark.ok("backup", src)
	ark.okJSON(&rep, "replicate", "run", "offsite", "--json")
	now := localObjectsOf(t, ark, "offsite")
	if rep.Uploaded.Objects != now-total || rep.Uploaded.Objects == 0 {
		t.Fatalf("incremental sync uploaded %d objects, %d are new", rep.Uploaded.Objects, now-total)
	}
	out := ark.ok("replicate", "status", "offsite")
	if !strings.Contains(out, "lag:             none") {
		t.Fatalf("status after sync:\n%s", out)
	}
	out = ark.ok("replicate", "verify", "offsite", "--read-data")
	if !strings.Contains(out, "no problems found") {
		t.Fatalf("verify:\n%s", out)
	}

	// Damage one pack on the server: verify finds it, --repair sends it again.
	var victim string
	filepath.WalkDir(filepath.Join(srv.Dir, "offsite", "box1", "packs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && victim == "" {
			victim = p
		}
		return nil
	})
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := ark.run("replicate", "verify", "offsite", "--read-data"); r.code != 1 || !strings.Contains(r.stdout, "corrupt: packs/"+filepath.Base(victim)) {
		t.Fatalf("verify of a damaged pack: %s", r)
	}
	ark.ok("replicate", "verify", "offsite", "--read-data", "--repair")
	ark.ok("replicate", "verify", "offsite", "--read-data")

	// Disaster: a new box recovers from the copy.
	fresh := newArkbox(t, filepath.Join(base, "newbox"))
	out = fresh.ok(append([]string{"recover", "--from", url, "--disk", filepath.Join(base, "n1"), "--disk", filepath.Join(base, "n2")}, s3flags...)...)
	if !strings.Contains(out, "2 snapshots") {
		t.Fatalf("recover:\n%s", out)
	}
	dst2 := filepath.Join(base, "recovered")
	fresh.ok("restore", "latest", "--target", dst2)
	want2 := takeManifest(t, src)
	if d := want2.diff(takeManifest(t, filepath.Join(dst2, "src")), 20); len(d) > 0 {
		t.Fatalf("restore on the recovered box differs:\n  %s", strings.Join(d, "\n  "))
	}
	fresh.ok("check", "--read-data")
	fresh.okJSON(&rep, "replicate", "run", "offsite", "--json")
	if rep.Uploaded.Objects != 0 {
		t.Fatalf("the recovered box re-sent %d objects", rep.Uploaded.Objects)
	}
}

// A sync killed with SIGKILL in the middle resumes; the copy verifies.
func TestReplicateKilled(t *testing.T) {
	t.Parallel()
	srv, _, _, ark := offsiteBox(t)
	_, s3flags := s3Env(t, srv)
	url := "s3://" + srv.Endpoint + "/killed"
	ark.ok(append([]string{"replicate", "add", "offsite", url, "--bwlimit", "3MB/s", "--parallel", "2"}, s3flags...)...)
	for i, after := range []time.Duration{1500 * time.Millisecond, 1500 * time.Millisecond} {
		if r := ark.start("replicate", "run", "offsite").killAfter(after); !r.killed {
			t.Logf("run %d finished before the kill: %s", i, r)
		}
	}
	var rep syncReport
	ark.okJSON(&rep, "replicate", "run", "offsite", "--json")
	t.Logf("the sync after two kills uploaded %d objects", rep.Uploaded.Objects)
	out := ark.ok("replicate", "verify", "offsite", "--read-data")
	if !strings.Contains(out, "no problems found") || !strings.Contains(out, "not yet sent 0") {
		t.Fatalf("verify after kills:\n%s", out)
	}
	if n := rcloneCheck(t, srv, "killed"); int64(n) != localObjectsOf(t, ark, "offsite") {
		t.Fatalf("rclone finds %d objects", n)
	}
}

// Seed round trip: export what the target lacks to a disk, import it at
// the "datacenter"; syncs meanwhile send only new packs; afterwards a sync
// sends only what came after the seed. Then the other way: pull the copy
// onto a disk and recover a box from it.
func TestSeedRoundTrip(t *testing.T) {
	t.Parallel()
	srv, base, src, ark := offsiteBox(t)
	_, s3flags := s3Env(t, srv)
	url := "s3://" + srv.Endpoint + "/seeded/box"
	ark.ok(append([]string{"replicate", "add", "dc", url, "--no-check"}, s3flags...)...)
	seed := filepath.Join(base, "seeddisk")
	out := ark.ok("seed", "export", "--target", "dc", "--to", seed)
	if !strings.Contains(out, "seed disk") {
		t.Fatalf("export:\n%s", out)
	}
	// Export again: resumes, copies nothing new.
	ark.ok("seed", "export", "--target", "dc", "--to", seed)
	seeded := 0
	filepath.WalkDir(filepath.Join(seed, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			seeded++
		}
		return nil
	})

	// New data while the disk travels: the sync sends packs only.
	writeFile(t, filepath.Join(src, "after-seed.txt"), bytes.Repeat([]byte("written after the seed left "), 5000), 0o644)
	ark.ok("backup", src)
	var rep syncReport
	ark.okJSON(&rep, "replicate", "run", "dc", "--json")
	if rep.SeedWaiting == 0 {
		t.Fatalf("sync before the import does not wait for the seed: %+v", rep)
	}
	early := rep.Uploaded.Objects

	// At the datacenter: no passphrase, no box.
	dc := &arkbox{t: t, env: []string{"ARKBOX_S3_ACCESS_KEY=" + srv.AccessKey, "ARKBOX_S3_SECRET_KEY=" + srv.SecretKey}}
	out = dc.ok("seed", "import", "--from", seed, "--to", url, "--insecure")
	if !strings.Contains(out, fmt.Sprintf("all %d objects", seeded)) {
		t.Fatalf("import:\n%s", out)
	}
	// A damaged seed disk is refused before anything is uploaded.
	bad := filepath.Join(base, "badseed")
	if err := os.CopyFS(bad, os.DirFS(seed)); err != nil {
		t.Fatal(err)
	}
	var one string
	filepath.WalkDir(filepath.Join(bad, "objects", "packs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && one == "" {
			one = p
		}
		return nil
	})
	os.WriteFile(one, []byte("damaged"), 0o644)
	if r := dc.run("seed", "import", "--from", bad, "--to", "s3://"+srv.Endpoint+"/other", "--insecure"); r.code != 1 || !strings.Contains(r.stdout, filepath.Base(one)) {
		t.Fatalf("import of a damaged seed: %s", r)
	}

	rep = syncReport{}
	ark.okJSON(&rep, "replicate", "run", "dc", "--json")
	if rep.SeedWaiting != 0 {
		t.Fatalf("the seed is still waited for after its import: %+v", rep)
	}
	after := localObjectsOf(t, ark, "dc")
	if got, want := early+rep.Uploaded.Objects, after-int64(seeded); got != want {
		t.Fatalf("syncs around the seed uploaded %d objects; %d came after the seed", got, want)
	}
	ark.ok("replicate", "verify", "dc", "--read-data")

	// Seed restore: pull the copy onto a disk at the datacenter, recover
	// a box from the disk.
	pulled := filepath.Join(base, "pulled")
	dc.ok("seed", "pull", "--from", url, "--to", pulled, "--insecure")
	fresh := newArkbox(t, filepath.Join(base, "newbox"))
	fresh.ok("recover", "--from", "file://"+filepath.Join(pulled, "objects"))
	dst := filepath.Join(base, "restored")
	fresh.ok("restore", "latest", "--target", dst)
	if d := takeManifest(t, src).diff(takeManifest(t, filepath.Join(dst, "src")), 20); len(d) > 0 {
		t.Fatalf("restore after seed recovery differs:\n  %s", strings.Join(d, "\n  "))
	}
	// seed load on a box that has it all copies nothing and checks all.
	out = fresh.ok("seed", "load", "--from", pulled)
	if !strings.Contains(out, "loaded 0 B") {
		t.Fatalf("seed load:\n%s", out)
	}
}

// localObjectsOf counts the box's objects: those on the target and those
// still to send.
func localObjectsOf(t *testing.T, ark *arkbox, name string) int64 {
	t.Helper()
	var st struct {
		Pending struct {
			Objects int64 `json:"objects"`
		} `json:"pending"`
		Remote struct {
			Objects int64 `json:"objects"`
		} `json:"remote"`
	}
	ark.okJSON(&st, "replicate", "status", name, "--json")
	return st.Pending.Objects + st.Remote.Objects
}

// An SFTP target (OpenSSH's sshd): sync, restore from it, host key pinned.
func TestReplicateSFTP(t *testing.T) {
	t.Parallel()
	srv := testpeer.SSHD(t)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	writeFile(t, filepath.Join(src, "a.txt"), bytes.Repeat([]byte(marker), 1000), 0o644)
	writeFile(t, filepath.Join(src, "sub", "b.bin"), bytes.Repeat([]byte{1, 2, 3}, 300000), 0o600)
	ark := newArkbox(t, filepath.Join(base, "box"))
	ark.ok("init")
	ark.ok("backup", src)
	url := "sftp://" + srv.User + "@" + srv.Addr + filepath.Join(srv.Dir, "copy")
	ark.ok("replicate", "add", "dc", url, "--key-file", srv.KeyFile)
	var rep syncReport
	ark.okJSON(&rep, "replicate", "run", "dc", "--json")
	if rep.Uploaded.Objects == 0 {
		t.Fatal("nothing uploaded")
	}
	ark.ok("replicate", "verify", "dc", "--read-data")
	kh, err := os.ReadFile(filepath.Join(base, "box", "secrets", "known_hosts"))
	if err != nil || !bytes.Contains(kh, []byte("ssh-ed25519")) {
		t.Fatalf("host key not pinned: %q %v", kh, err)
	}
	remote := newArkbox(t, url)
	remote.env = append(remote.env, "XDG_CACHE_HOME="+filepath.Join(base, "cache"))
	dst := filepath.Join(base, "out")
	remote.ok("restore", "latest", "--target", dst, "--key-file", srv.KeyFile, "--known-hosts", filepath.Join(base, "kh"))
	if d := takeManifest(t, src).diff(takeManifest(t, filepath.Join(dst, "src")), 20); len(d) > 0 {
		t.Fatalf("restore from SFTP differs:\n  %s", strings.Join(d, "\n  "))
	}
}
