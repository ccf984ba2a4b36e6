package pool

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/objstore/storetest"
	"github.com/klauspost/reedsolomon"
)

// layoutCase is one pool shape the tests run on.
type layoutCase struct {
	name   string
	disks  int
	parity int
	k, m   int
}

var layoutCases = []layoutCase{
	{"1disk", 1, -1, 1, 0},
	{"1disk-inparity", 1, 1, 4, 1},
	{"2disks", 2, -1, 1, 1},
	{"3disks", 3, -1, 2, 1},
	{"4disks", 4, -1, 3, 1},
	{"4disks-p2", 4, 2, 2, 2},
	{"5disks", 5, -1, 4, 1},
	{"6disks", 6, -1, 4, 2},
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

// diskDirs makes n empty disk folders.
func diskDirs(t testing.TB, n int) []string {
	root := t.TempDir()
	var dirs []string
	for i := 0; i < n; i++ {
		d := filepath.Join(root, fmt.Sprintf("disk%d", i))
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	return dirs
}

func createPool(t testing.TB, dirs []string, parity int) *Pool {
	t.Helper()
	p, err := Create(context.Background(), dirs, CreateOptions{Parity: parity, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func openPool(t testing.TB, dirs []string, ro bool) *Pool {
	t.Helper()
	p, err := Open(context.Background(), dirs, OpenOptions{ReadOnly: ro, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	waitResyncs(t, p)
	return p
}

// waitResyncs waits for the resyncs the pool runs (e.g. those Open
// started for disks that missed writes) and returns their reports.
func waitResyncs(t testing.TB, p *Pool) []ResyncReport {
	t.Helper()
	var reps []ResyncReport
	for _, r := range p.Resyncs() {
		rep, err := r.Wait(context.Background())
		if err != nil {
			t.Fatalf("resync of disk %s: %v", r.Disk(), err)
		}
		reps = append(reps, rep)
	}
	return reps
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestConformance(t *testing.T) {
	for _, lc := range layoutCases {
		t.Run(lc.name, func(t *testing.T) {
			t.Parallel()
			large := 20 << 20
			if lc.disks > 3 || testing.Short() {
				large = 5<<20 + 3
			}
			storetest.Run(t, func(t *testing.T) objstore.Store {
				p := createPool(t, diskDirs(t, lc.disks), lc.parity)
				if s := p.Status(context.Background()); s.K != lc.k || s.M != lc.m {
					t.Fatalf("layout %d+%d, want %d+%d", s.K, s.M, lc.k, lc.m)
				}
				return p
			}, storetest.Options{LargeSize: large})
		})
	}
}

func TestLayoutFor(t *testing.T) {
	cases := []struct {
		n, parity int
		k, m      int
		bad       bool
	}{
		{1, -1, 1, 0, false}, {1, 0, 1, 0, false}, {1, 1, 4, 1, false}, {1, 2, 4, 2, false}, {1, 5, 0, 0, true},
		{2, -1, 1, 1, false}, {2, 0, 2, 0, false}, {2, 2, 0, 0, true},
		{3, -1, 2, 1, false}, {4, -1, 3, 1, false}, {4, 2, 2, 2, false}, {5, -1, 4, 1, false},
		{6, -1, 4, 2, false}, {8, -1, 6, 2, false}, {8, 3, 5, 3, false}, {0, -1, 0, 0, true}, {3, -2, 0, 0, true},
		{256, -1, 0, 0, true},
	}
	for _, c := range cases {
		k, m, err := layoutFor(c.n, c.parity)
		if (err != nil) != c.bad || !c.bad && (k != c.k || m != c.m) {
			t.Errorf("layoutFor(%d, %d) = %d+%d, %v; want %d+%d bad=%v", c.n, c.parity, k, m, err, c.k, c.m, c.bad)
		}
	}
}

// TestPlacementSpread checks that rendezvous ordering is deterministic
// and spreads shard 0 over all disks.
func TestPlacementSpread(t *testing.T) {
	p := createPool(t, diskDirs(t, 4), -1)
	defer p.Close()
	st := p.st.Load()
	first := map[string]int{}
	for i := 0; i < 4000; i++ {
		id := objstore.Sum([]byte(fmt.Sprint(i)))
		o := st.order(id)
		o2 := st.order(id)
		for j := range o {
			if o[j] != o2[j] {
				t.Fatal("order not deterministic")
			}
		}
		first[o[0].uuid]++
	}
	for u, n := range first {
		if n < 800 || n > 1200 {
			t.Errorf("disk %s first for %d of 4000 objects", u, n)
		}
	}
}

// TestReplicaIsRS checks the documented fact that with k=1 every
// Reed-Solomon parity shard equals the data shard, so replicated objects
// are the k=1 case of the same code.
func TestReplicaIsRS(t *testing.T) {
	enc, err := reedsolomon.New(1, 3)
	if err != nil {
		t.Fatal(err)
	}
	data := randBytes(1, 1000)
	shards := [][]byte{data, make([]byte, 1000), make([]byte, 1000), make([]byte, 1000)}
	if err := enc.Encode(shards); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		if !bytes.Equal(shards[i], data) {
			t.Fatalf("parity shard %d differs from the data", i)
		}
	}
}
