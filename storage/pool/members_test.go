package pool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arkbox/arkbox/storage/objstore"
)

type testObj struct {
	kind objstore.Kind
	data []byte
}

func (o testObj) id() objstore.ID { return objstore.Sum(o.data) }

// putObjs stores n objects, alternating large (striped) and small
// (replicated) ones.
func putObjs(t testing.TB, p *Pool, seed uint64, n int) []testObj {
	t.Helper()
	var objs []testObj
	for i := 0; i < n; i++ {
		size := 3*blockSize + int(seed)*7 + i
		if i%2 == 1 {
			size = 1000 + i
		}
		o := testObj{objstore.KindPack, randBytes(seed*1000+uint64(i), size)}
		if err := p.Put(context.Background(), o.kind, o.id(), o.data); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	return objs
}

func checkObjs(t testing.TB, p *Pool, objs []testObj) {
	t.Helper()
	for _, o := range objs {
		got, err := p.Get(context.Background(), o.kind, o.id())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, o.data) {
			t.Fatalf("object %s: wrong bytes", o.id().Short())
		}
		r, err := p.GetRange(context.Background(), o.kind, o.id(), 10, int64(len(o.data))-20)
		if err != nil || !bytes.Equal(r, o.data[10:len(o.data)-10]) {
			t.Fatalf("object %s: range: %v", o.id().Short(), err)
		}
	}
}

func scrubClean(t testing.TB, p *Pool, objects int) {
	t.Helper()
	rep, err := p.Scrub(context.Background(), ScrubOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ProblemCount != 0 || len(rep.Unrepairable) != 0 || int(rep.Objects) != objects {
		t.Fatalf("scrub: %d objects, %d problems %+v, unrepairable %+v", rep.Objects, rep.ProblemCount, rep.Problems, rep.Unrepairable)
	}
}

func TestAddDisk(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name         string
		disks        int
		parity       int
		wantK, wantM int
	}{
		{"1to2", 1, -1, 1, 1},
		{"1inparity-to2", 1, 1, 1, 1},
		{"3to4", 3, -1, 3, 1},
		{"5to6", 5, -1, 4, 2},
		{"4p2-to5", 4, 2, 3, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dirs := diskDirs(t, c.disks+1)
			p := createPool(t, dirs[:c.disks], c.parity)
			old := putObjs(t, p, 1, 4)
			if err := p.AddDisk(ctx, dirs[c.disks]); err != nil {
				t.Fatal(err)
			}
			if err := p.AddDisk(ctx, dirs[0]); err == nil {
				t.Fatal("AddDisk accepted a member")
			}
			s := p.Status(ctx)
			if s.K != c.wantK || s.M != c.wantM || s.Generation != 2 || len(s.Disks) != c.disks+1 {
				t.Fatalf("status after AddDisk: %+v", s)
			}
			fresh := putObjs(t, p, 2, 4)
			if files := shardFiles(t, dirs, fresh[0].kind, fresh[0].id()); len(files) != c.wantK+c.wantM {
				t.Fatalf("new large object has %d shards, want %d", len(files), c.wantK+c.wantM)
			}
			checkObjs(t, p, append(old, fresh...))
			p.Close()
			// Reopen with the disks in reverse order.
			rev := append([]string(nil), dirs...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			p = openPool(t, rev, false)
			checkObjs(t, p, append(old, fresh...))
			scrubClean(t, p, 8)
		})
	}
}

func TestReplaceDiskRebuild(t *testing.T) {
	ctx := context.Background()
	for _, lc := range []layoutCase{layoutCases[2], layoutCases[3], layoutCases[5], layoutCases[7]} {
		t.Run(lc.name, func(t *testing.T) {
			dirs := diskDirs(t, lc.disks+1)
			p := createPool(t, dirs[:lc.disks], lc.parity)
			objs := putObjs(t, p, 3, 10)
			gone := p.Status(ctx).Disks[1]
			p.Close()
			if err := os.RemoveAll(gone.Path); err != nil {
				t.Fatal(err)
			}
			var rest []string
			for _, d := range dirs[:lc.disks] {
				if d != gone.Path {
					rest = append(rest, d)
				}
			}
			p = openPool(t, rest, false)
			s := p.Status(ctx)
			if !s.Degraded || s.Disks[1].State != DiskMissing || s.Disks[1].Path != gone.Path {
				t.Fatalf("status with a disk gone: %+v", s)
			}
			checkObjs(t, p, objs)
			if err := p.ReplaceDisk(ctx, gone.UUID, dirs[lc.disks]); err != nil {
				t.Fatal(err)
			}
			if err := p.ReplaceDisk(ctx, gone.UUID, dirs[lc.disks]); err == nil {
				t.Fatal("replaced a disk that is no longer a member")
			}
			var progress int
			rep, err := p.Scrub(ctx, ScrubOptions{Repair: true, Progress: func(ScrubProgress) { progress++ }})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Repaired == 0 || len(rep.Unrepairable) > 0 || progress != 5*256 {
				t.Fatalf("rebuild: %+v (progress calls %d)", rep, progress)
			}
			for i, o := range objs {
				total := lc.k + lc.m
				if i%2 == 1 {
					total = 1 + lc.m
				}
				verifyShards(t, append(rest, dirs[lc.disks]), o.kind, o.id(), total)
			}
			p.Close()
			// The rebuilt pool opens from its new disk set, under new paths.
			newSet := append([]string{dirs[lc.disks]}, rest...)
			var moved []string
			for i, d := range newSet {
				m := filepath.Join(filepath.Dir(d), "moved", filepath.Base(d)+string(rune('a'+i)))
				if err := os.MkdirAll(filepath.Dir(m), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(d, m); err != nil {
					t.Fatal(err)
				}
				moved = append(moved, m)
			}
			p = openPool(t, moved, false)
			if s := p.Status(ctx); s.Degraded || s.Generation != 2 {
				t.Fatalf("status after rebuild: %+v", s)
			}
			for _, d := range p.Status(ctx).Disks {
				found := false
				for _, m := range moved {
					found = found || d.Path == m
				}
				if !found {
					t.Fatalf("disk %s reported at %s, not at a new path", d.UUID, d.Path)
				}
			}
			checkObjs(t, p, objs)
			scrubClean(t, p, len(objs))
		})
	}
}

func TestDegradedWrite(t *testing.T) {
	ctx := context.Background()
	for _, lc := range []layoutCase{layoutCases[2], layoutCases[3], layoutCases[7]} {
		t.Run(lc.name, func(t *testing.T) {
			dirs := diskDirs(t, lc.disks)
			p := createPool(t, dirs, lc.parity)
			p.Close()
			if err := os.Rename(dirs[0], dirs[0]+".away"); err != nil {
				t.Fatal(err)
			}
			p = openPool(t, dirs[1:], false)
			objs := putObjs(t, p, 4, 6)
			checkObjs(t, p, objs)
			if files := shardFiles(t, dirs, objs[0].kind, objs[0].id()); len(files) != lc.k+lc.m-1 {
				t.Fatalf("degraded write stored %d shards, want %d", len(files), lc.k+lc.m-1)
			}
			p.Close()
			if err := os.Rename(dirs[0]+".away", dirs[0]); err != nil {
				t.Fatal(err)
			}
			p, err := Open(ctx, dirs, OpenOptions{Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			// The disk missed the writes: Open resyncs it.
			reps := waitResyncs(t, p)
			if len(reps) != 1 || reps[0].Full || reps[0].ShardsWritten == 0 || len(reps[0].Unrepairable) != 0 {
				t.Fatalf("resync after the disk returned: %+v", reps)
			}
			for i, o := range objs {
				total := lc.k + lc.m
				if i%2 == 1 {
					total = 1 + lc.m
				}
				verifyShards(t, dirs, o.kind, o.id(), total)
			}
			scrubClean(t, p, len(objs))
		})
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	dirs := diskDirs(t, 3)
	p := createPool(t, dirs, -1)
	st := p.Status(ctx)
	p.Close()
	other := diskDirs(t, 2)
	createPool(t, other, -1).Close()
	empty := diskDirs(t, 1)

	_, err := Open(ctx, dirs[2:], OpenOptions{Logger: testLogger(t)})
	if err == nil {
		t.Fatal("opened a 2+1 pool with two disks missing")
	}
	for _, d := range st.Disks[:2] {
		if !strings.Contains(err.Error(), d.UUID) || !strings.Contains(err.Error(), d.Path) {
			t.Fatalf("error does not name missing disk %s at %s: %v", d.UUID, d.Path, err)
		}
	}
	cases := []struct {
		name string
		dirs []string
		want string
	}{
		{"mixed-pools", []string{dirs[0], other[0]}, "belongs to pool"},
		{"no-pool", []string{dirs[0], empty[0]}, "holds no pool"},
		{"twice", []string{dirs[0], dirs[0]}, "given twice"},
		{"none", nil, "no disks"},
	}
	for _, c := range cases {
		if _, err := Open(ctx, c.dirs, OpenOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := Create(ctx, dirs[:1], CreateOptions{Parity: -1}); err == nil || !strings.Contains(err.Error(), "already holds a pool") {
		t.Errorf("create on a pool disk: %v", err)
	}
	if _, err := Create(ctx, diskDirs(t, 2), CreateOptions{Parity: 2}); err == nil {
		t.Error("create with parity 2 on two disks succeeded")
	}
}

func TestReadOnlyPool(t *testing.T) {
	ctx := context.Background()
	dirs := diskDirs(t, 3)
	p := createPool(t, dirs, -1)
	objs := putObjs(t, p, 5, 2)
	p.Close()
	p = openPool(t, dirs, true)
	checkObjs(t, p, objs)
	d := randBytes(1, 10)
	if err := p.Put(ctx, objstore.KindPack, objstore.Sum(d), d); !errors.Is(err, objstore.ErrReadOnly) {
		t.Fatalf("put: %v", err)
	}
	if err := p.Delete(ctx, objs[0].kind, objs[0].id()); !errors.Is(err, objstore.ErrReadOnly) {
		t.Fatalf("delete: %v", err)
	}
	if _, err := p.Scrub(ctx, ScrubOptions{Repair: true}); !errors.Is(err, objstore.ErrReadOnly) {
		t.Fatalf("scrub with repair: %v", err)
	}
	scrubClean(t, p, 2)
}

// TestCrashRecovery simulates Puts interrupted after their temp files
// were written: Open completes objects that have at least k shards and
// removes the rest.
func TestCrashRecovery(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		temps    func(k, m int) int // how many shards reach their temp file
		complete bool
	}{
		{"all-temps", func(k, m int) int { return k + m }, true},
		{"k-temps", func(k, m int) int { return k }, true},
		{"short", func(k, m int) int { return k - 1 }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dirs := diskDirs(t, 3)
			p := createPool(t, dirs, -1)
			st := p.st.Load()
			data := randBytes(6, 4*blockSize)
			id := objstore.Sum(data)
			k, m := st.cur.K, st.cur.M
			shards, err := p.encode(data, k, m)
			if err != nil {
				t.Fatal(err)
			}
			order := st.order(id)
			for i := 0; i < c.temps(k, m); i++ {
				hdr := newHeader(objstore.KindPack, id, k, m, i, int64(len(data)), shards[i]).encode()
				if _, err := order[i].writeTemp(ctx, objstore.KindPack, id, i, hdr, shards[i]); err != nil {
					t.Fatal(err)
				}
			}
			// A temp file cut short by the crash, and junk.
			hdr := newHeader(objstore.KindPack, id, k, m, 2, int64(len(data)), shards[2]).encode()
			if err := os.WriteFile(filepath.Join(order[2].base, tmpDirName, "packs."+id.String()+".2.999"), hdr, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(order[0].base, tmpDirName, "junk"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			p.Close()
			p = openPool(t, dirs, false)
			for _, d := range dirs {
				ents, err := os.ReadDir(filepath.Join(d, poolDirName, tmpDirName))
				if err != nil || len(ents) != 0 {
					t.Fatalf("temp dir of %s after open: %v %v", d, ents, err)
				}
			}
			got, err := p.Get(ctx, objstore.KindPack, id)
			if c.complete {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("get: %v", err)
				}
			} else if !errors.Is(err, objstore.ErrNotFound) {
				t.Fatalf("get of an object short of k shards: %v", err)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	dirs := diskDirs(t, 2)
	p := createPool(t, dirs, -1)
	defer p.Close()
	s := p.Status(ctx)
	if s.Pool != p.ID() || s.K != 1 || s.M != 1 || s.Degraded || len(s.Disks) != 2 {
		t.Fatalf("status: %+v", s)
	}
	for i, d := range s.Disks {
		if d.State != DiskOK || d.BytesTotal == 0 || d.BytesFree == 0 || d.BytesFree > d.BytesTotal || d.Path != dirs[i] {
			t.Fatalf("disk status: %+v", d)
		}
	}
}
