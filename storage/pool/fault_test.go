package pool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/arkbox/arkbox/storage/objstore"
)

// shardLoc is a shard file as a test finds it on disk.
type shardLoc struct {
	disk  int // index into the test's disk folders
	index int
	path  string
}

// shardFiles lists the shard files of (kind, id) in dirs, by index.
func shardFiles(t testing.TB, dirs []string, kind objstore.Kind, id objstore.ID) []shardLoc {
	t.Helper()
	var out []shardLoc
	for i, d := range dirs {
		matches, err := filepath.Glob(filepath.Join(d, poolDirName, string(kind), id.String()[:2], id.String()+".*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range matches {
			_, idx, ok := parseShardName(filepath.Base(m))
			if ok {
				out = append(out, shardLoc{i, idx, m})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].index < out[j].index })
	return out
}

// verifyShards checks that (kind, id) has exactly total shard files, one
// per index, each with a good header under its own name and a good
// payload.
func verifyShards(t testing.TB, dirs []string, kind objstore.Kind, id objstore.ID, total int) {
	t.Helper()
	files := shardFiles(t, dirs, kind, id)
	seen := map[int]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		h, err := decodeHeader(b)
		if err != nil {
			t.Fatalf("shard %s: %v", f.path, err)
		}
		if h.id != id || h.kind != kind || h.index != f.index || h.fileSize() != int64(len(b)) {
			t.Fatalf("shard %s: header %+v", f.path, h)
		}
		if bad := h.verifyBlocks(b[h.headerLen():], 0); bad >= 0 {
			t.Fatalf("shard %s: block %d bad", f.path, bad)
		}
		seen[f.index] = true
	}
	if len(seen) != total {
		t.Fatalf("%s: %d distinct shards verify, want %d (%v)", id.Short(), len(seen), total, files)
	}
}

func flipByte(t testing.TB, path string, off func(h *shardHeader) int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	b[off(h)] ^= 0x5a
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func headerByte(*shardHeader) int64    { return 20 }
func payloadByte(h *shardHeader) int64 { return h.headerLen() + h.payloadLen/2 }

// pick chooses n shard files to damage: data shards first (so reads must
// reconstruct), then from the end.
func pick(files []shardLoc, n int) []shardLoc {
	var out []shardLoc
	for i := 0; len(out) < n && i < len(files); i++ {
		if i%2 == 0 {
			out = append(out, files[i/2])
		} else {
			out = append(out, files[len(files)-1-i/2])
		}
	}
	return out
}

type fault struct {
	name string
	// apply damages object id and returns the disk folders to reopen
	// with, and a function that undoes disk losses.
	apply func(t *testing.T, lc layoutCase, dirs []string, kind objstore.Kind, id objstore.ID) (reopen []string, restore func())
	// tooMany: more than m shards are bad.
	tooMany bool
	// lostDisks: shards are unavailable, not bad; repair has no place.
	lostDisks bool
	minM      int
}

func damage(n func(lc layoutCase) int, do func(t *testing.T, f shardLoc)) func(*testing.T, layoutCase, []string, objstore.Kind, objstore.ID) ([]string, func()) {
	return func(t *testing.T, lc layoutCase, dirs []string, kind objstore.Kind, id objstore.ID) ([]string, func()) {
		for _, f := range pick(shardFiles(t, dirs, kind, id), n(lc)) {
			do(t, f)
		}
		return dirs, func() {}
	}
}

func mOf(lc layoutCase) int    { return lc.m }
func one(layoutCase) int       { return 1 }
func mPlus1(lc layoutCase) int { return lc.m + 1 }

var faults = []fault{
	{name: "corrupt-header", minM: 1, apply: damage(mOf, func(t *testing.T, f shardLoc) { flipByte(t, f.path, headerByte) })},
	{name: "corrupt-payload", minM: 1, apply: damage(mOf, func(t *testing.T, f shardLoc) { flipByte(t, f.path, payloadByte) })},
	{name: "corrupt-mixed", minM: 2, apply: func(t *testing.T, lc layoutCase, dirs []string, kind objstore.Kind, id objstore.ID) ([]string, func()) {
		fs := pick(shardFiles(t, dirs, kind, id), 2)
		flipByte(t, fs[0].path, headerByte)
		flipByte(t, fs[1].path, payloadByte)
		return dirs, func() {}
	}},
	{name: "truncate", minM: 1, apply: damage(one, func(t *testing.T, f shardLoc) {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f.path, st.Size()/2); err != nil {
			t.Fatal(err)
		}
	})},
	{name: "delete", minM: 1, apply: damage(mOf, func(t *testing.T, f shardLoc) {
		if err := os.Remove(f.path); err != nil {
			t.Fatal(err)
		}
	})},
	{name: "swap", minM: 1, apply: func(t *testing.T, lc layoutCase, dirs []string, kind objstore.Kind, id objstore.ID) ([]string, func()) {
		fs := shardFiles(t, dirs, kind, id)
		a, b := fs[0], fs[len(fs)-1]
		tmp := a.path + ".swap"
		for _, mv := range [][2]string{{a.path, tmp}, {b.path, a.path}, {tmp, b.path}} {
			if err := os.Rename(mv[0], mv[1]); err != nil {
				t.Fatal(err)
			}
		}
		return dirs, func() {}
	}},
	{name: "lose-disks", minM: 1, lostDisks: true, apply: func(t *testing.T, lc layoutCase, dirs []string, kind objstore.Kind, id objstore.ID) ([]string, func()) {
		if lc.disks == 1 {
			t.Skip("a one-disk pool cannot lose its disk")
		}
		lost := map[int]bool{}
		for _, f := range pick(shardFiles(t, dirs, kind, id), lc.m) {
			lost[f.disk] = true
		}
		var keep []string
		for i, d := range dirs {
			if lost[i] {
				if err := os.Rename(d, d+".gone"); err != nil {
					t.Fatal(err)
				}
			} else {
				keep = append(keep, d)
			}
		}
		return keep, func() {
			for i, d := range dirs {
				if lost[i] {
					if err := os.Rename(d+".gone", d); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}},
	{name: "too-many", tooMany: true, apply: damage(mPlus1, func(t *testing.T, f shardLoc) { flipByte(t, f.path, payloadByte) })},
}

// TestFaults damages a large (striped) and a small (replicated) object
// in every way, on every layout, and checks reads, scrub and repair.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	for _, lc := range layoutCases {
		for _, ft := range faults {
			t.Run(lc.name+"/"+ft.name, func(t *testing.T) {
				if lc.m < ft.minM {
					t.Skipf("layout %d+%d has too little parity", lc.k, lc.m)
				}
				t.Parallel()
				dirs := diskDirs(t, lc.disks)
				p := createPool(t, dirs, lc.parity)
				objs := map[string][]byte{
					"large": randBytes(7, 5*blockSize+12345),
					"small": randBytes(8, 5000),
				}
				totals := map[string]int{"large": lc.k + lc.m, "small": 1 + lc.m}
				other := randBytes(9, 3*blockSize)
				for _, d := range append([][]byte{other}, objs["large"], objs["small"]) {
					if err := p.Put(ctx, objstore.KindPack, objstore.Sum(d), d); err != nil {
						t.Fatal(err)
					}
				}
				p.Close()
				var reopen []string
				restore := func() {}
				for _, name := range []string{"large", "small"} {
					id := objstore.Sum(objs[name])
					if ft.name == "lose-disks" && name == "small" {
						continue // the disks are already gone
					}
					reopen, restore = ft.apply(t, lc, dirs, objstore.KindPack, id)
				}

				// Reads, without read repair.
				ro := openPool(t, reopen, true)
				for name, data := range objs {
					checkReads(t, ro, name, data, ft.tooMany)
				}
				checkReads(t, ro, "other", other, false)
				listed := map[objstore.ID]int64{}
				if err := ro.List(ctx, objstore.KindPack, func(i objstore.Info) error { listed[i.ID] = i.Size; return nil }); err != nil {
					t.Fatal(err)
				}
				for _, d := range append([][]byte{other}, objs["large"], objs["small"]) {
					if n, ok := listed[objstore.Sum(d)]; !ok || n != int64(len(d)) {
						t.Fatalf("list: %s has size %d (listed %v), want %d", objstore.Sum(d).Short(), n, ok, len(d))
					}
				}
				ro.Close()

				// Scrub finds and repairs.
				rw := openPool(t, reopen, false)
				rep, err := rw.Scrub(ctx, ScrubOptions{Repair: true})
				if err != nil {
					t.Fatal(err)
				}
				if rep.ProblemCount == 0 {
					t.Fatalf("scrub found no problem: %+v", rep)
				}
				if ft.tooMany {
					named := map[objstore.ID]bool{}
					for _, u := range rep.Unrepairable {
						named[u.ID] = true
					}
					for name, data := range objs {
						if !named[objstore.Sum(data)] {
							t.Fatalf("scrub did not name the %s object unrepairable: %+v", name, rep.Unrepairable)
						}
					}
					if len(rep.Unrepairable) != 2 {
						t.Fatalf("unrepairable: %+v", rep.Unrepairable)
					}
					return
				}
				if len(rep.Unrepairable) > 0 {
					t.Fatalf("unrepairable: %+v", rep.Unrepairable)
				}
				if !ft.lostDisks && rep.Repaired == 0 {
					t.Fatalf("scrub repaired nothing: %+v", rep)
				}
				for _, pr := range rep.Problems {
					if !ft.lostDisks && !pr.Repaired {
						t.Errorf("problem not repaired: %+v", pr)
					}
				}
				rw.Close()
				restore()
				rw = openPool(t, dirs, false)
				rep, err = rw.Scrub(ctx, ScrubOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if rep.ProblemCount != 0 || rep.Objects != 3 {
					t.Fatalf("second scrub: %d objects, problems %+v", rep.Objects, rep.Problems)
				}
				for name, data := range objs {
					verifyShards(t, dirs, objstore.KindPack, objstore.Sum(data), totals[name])
					checkReads(t, rw, name, data, false)
				}
			})
		}
	}
}

// checkReads checks Get, GetRange and Stat of one object: the right
// bytes, or (when broken) an ErrCorrupt naming the object.
func checkReads(t *testing.T, p *Pool, name string, data []byte, broken bool) {
	t.Helper()
	ctx := context.Background()
	id := objstore.Sum(data)
	okOrCorrupt := func(what string, got []byte, err error, want []byte) {
		t.Helper()
		if err != nil {
			if !broken || !errors.Is(err, objstore.ErrCorrupt) || !strings.Contains(err.Error(), id.String()) {
				t.Fatalf("%s of %s: %v", what, name, err)
			}
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s of %s: wrong bytes", what, name)
		}
	}
	got, err := p.Get(ctx, objstore.KindPack, id)
	if broken && err == nil {
		t.Fatalf("get of broken %s succeeded", name)
	}
	okOrCorrupt("get", got, err, data)
	n := int64(len(data))
	for _, r := range [][2]int64{{0, n}, {1, 100}, {n - 10, 10}, {n / 3, n / 3}, {blockSize - 5, 10}, {n / 2, 1}} {
		if r[0] < 0 || r[0]+r[1] > n {
			continue
		}
		got, err := p.GetRange(ctx, objstore.KindPack, id, r[0], r[1])
		okOrCorrupt("get range", got, err, data[r[0]:r[0]+r[1]])
	}
	if info, err := p.Stat(ctx, objstore.KindPack, id); err != nil && !broken || err == nil && info.Size != n {
		t.Fatalf("stat of %s: %+v %v", name, info, err)
	}
}

// TestReadRepair checks that Get and GetRange on a writable pool rewrite
// the shards they had to reconstruct.
func TestReadRepair(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"get", "range"} {
		for _, lc := range []layoutCase{layoutCases[2], layoutCases[3], layoutCases[7]} {
			t.Run(how+"/"+lc.name, func(t *testing.T) {
				dirs := diskDirs(t, lc.disks)
				p := createPool(t, dirs, lc.parity)
				data := randBytes(11, 4*blockSize+99)
				id := objstore.Sum(data)
				if err := p.Put(ctx, objstore.KindIndex, id, data); err != nil {
					t.Fatal(err)
				}
				for _, f := range pick(shardFiles(t, dirs, objstore.KindIndex, id), lc.m) {
					flipByte(t, f.path, payloadByte)
				}
				var got []byte
				var err error
				if how == "get" {
					got, err = p.Get(ctx, objstore.KindIndex, id)
				} else {
					got, err = p.GetRange(ctx, objstore.KindIndex, id, 0, int64(len(data)))
				}
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("read: %v", err)
				}
				verifyShards(t, dirs, objstore.KindIndex, id, lc.k+lc.m)
				p.Close()
			})
		}
	}
}

// TestOtherBlockSize reads shards written with another checksum block
// size than this writer's, as the format allows.
func TestOtherBlockSize(t *testing.T) {
	ctx := context.Background()
	dirs := diskDirs(t, 3)
	p := createPool(t, dirs, -1)
	defer p.Close()
	st := p.st.Load()
	data := randBytes(12, 3*blockSize+4321)
	id := objstore.Sum(data)
	k, m := st.cur.K, st.cur.M
	shards, err := p.encode(data, k, m)
	if err != nil {
		t.Fatal(err)
	}
	order := st.order(id)
	for i := range shards {
		h := newHeader(objstore.KindPack, id, k, m, i, int64(len(data)), shards[i])
		h.blockShift = 12
		h.sums = blockSums(shards[i], 12)
		if err := order[i].writeShard(ctx, objstore.KindPack, id, i, h.encode(), shards[i]); err != nil {
			t.Fatal(err)
		}
	}
	checkReads(t, p, "4k-blocks", data, false)
	scrubClean(t, p, 1)
	files := shardFiles(t, dirs, objstore.KindPack, id)
	flipByte(t, files[0].path, payloadByte)
	rep, err := p.Scrub(ctx, ScrubOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ProblemCount != 1 || !strings.Contains(rep.Problems[0].What, "block") {
		t.Fatalf("scrub: %+v", rep)
	}
	checkReads(t, p, "4k-blocks", data, false)
	scrubClean(t, p, 1)
}
