package pool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arkbox/arkbox/internal/crashtest"
	"github.com/arkbox/arkbox/storage/objstore"
)

// resyncSizes are the object sizes the resync tests write: replicated
// (below SmallObjectSize) and striped ones, with odd lengths.
var resyncSizes = []int{8, 1000, SmallObjectSize - 1, SmallObjectSize, 3*blockSize + 5, 1<<20 + 17}

// sizedObj is object i of a test series: its size cycles through
// resyncSizes, and it starts with its seed and number, so that no two
// objects are the same.
func sizedObj(seed uint64, i int) testObj {
	n := seed*100000 + uint64(i)
	b := randBytes(n, resyncSizes[i%len(resyncSizes)])
	binary.LittleEndian.PutUint64(b, n)
	return testObj{objstore.KindPack, b}
}

func putSized(t testing.TB, p *Pool, seed uint64, n int) []testObj {
	t.Helper()
	var objs []testObj
	for i := range n {
		o := sizedObj(seed, i)
		if err := p.Put(context.Background(), o.kind, o.id(), o.data); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	return objs
}

// totalOf is the number of shards an object of n bytes has.
func totalOf(k, m, n int) int {
	if n < SmallObjectSize {
		return 1 + m
	}
	return k + m
}

// checkPlaced checks that o reads back and has exactly its shards, each
// good and on the disk placement predicts for it.
func checkPlaced(t testing.TB, p *Pool, dirs []string, o testObj) {
	t.Helper()
	st := p.st.Load()
	got, err := p.Get(context.Background(), o.kind, o.id())
	if err != nil || !bytes.Equal(got, o.data) {
		t.Fatalf("object %s (%d bytes): get: %v", o.id().Short(), len(o.data), err)
	}
	total := totalOf(st.cur.K, st.cur.M, len(o.data))
	verifyShards(t, dirs, o.kind, o.id(), total)
	files := shardFiles(t, dirs, o.kind, o.id())
	if len(files) != total {
		t.Fatalf("object %s: %d shard files, want %d", o.id().Short(), len(files), total)
	}
	order := st.order(o.id())
	for _, f := range files {
		if want := predicted(order, f.index); want.root != dirs[f.disk] {
			t.Errorf("object %s (%d bytes): shard %d on %s, placement wants %s", o.id().Short(), len(o.data), f.index, dirs[f.disk], want.root)
		}
	}
}

func checkGone(t testing.TB, dirs []string, o testObj) {
	t.Helper()
	if files := shardFiles(t, dirs, o.kind, o.id()); len(files) > 0 {
		t.Errorf("deleted object %s (%d bytes) left shards: %v", o.id().Short(), len(o.data), files)
	}
}

func checkNoJournals(t testing.TB, dirs []string) {
	t.Helper()
	for _, d := range dirs {
		ents, _ := os.ReadDir(filepath.Join(d, poolDirName, missedDirName))
		if len(ents) > 0 {
			t.Errorf("%s: journals left after the resync: %v", d, ents)
		}
	}
}

// away is a pool with one disk detached, and the objects written before
// and while it was away.
type away struct {
	p              *Pool
	dirs           []string
	x              string // the detached disk's UUID
	before, during []testObj
}

// goAway makes a pool of layout lc with nBefore objects, detaches the
// disk at dirs[disk] and writes nDuring objects.
func goAway(t *testing.T, lc layoutCase, disk int, seed uint64, nBefore, nDuring int, setup func(*Pool)) *away {
	t.Helper()
	a := &away{dirs: diskDirs(t, lc.disks)}
	a.p = createPool(t, a.dirs, lc.parity)
	t.Cleanup(func() { a.p.Close() })
	if setup != nil {
		setup(a.p)
	}
	a.before = putSized(t, a.p, seed, nBefore)
	a.x = a.p.Status(context.Background()).Disks[disk].UUID
	if err := a.p.Detach(a.x, errors.New("unplugged")); err != nil {
		t.Fatal(err)
	}
	a.during = putSized(t, a.p, seed+1, nDuring)
	return a
}

func deleteObjs(t testing.TB, p *Pool, objs ...testObj) {
	t.Helper()
	for _, o := range objs {
		if err := p.Delete(context.Background(), o.kind, o.id()); err != nil {
			t.Fatal(err)
		}
	}
}

// checkResynced checks that every live object reads back with its shards
// where placement wants them, no shard of a gone one is left, scrub finds
// nothing and no journal is left.
func checkResynced(t testing.TB, p *Pool, dirs []string, live, gone []testObj) {
	t.Helper()
	for _, o := range gone {
		checkGone(t, dirs, o)
	}
	for _, o := range live {
		checkPlaced(t, p, dirs, o)
	}
	scrubClean(t, p, len(live))
	checkNoJournals(t, dirs)
}

func diskState(p *Pool, uuid string) DiskState {
	for _, d := range p.Status(context.Background()).Disks {
		if d.UUID == uuid {
			return d.State
		}
	}
	return ""
}

// TestResync takes a disk away, writes and deletes objects of every size
// class, brings it back, and checks that the resync leaves every object
// with all its shards where placement wants them, and no shard of a
// deleted one — from the journal, without checking every object.
func TestResync(t *testing.T) {
	ctx := context.Background()
	for _, lc := range []layoutCase{layoutCases[2], layoutCases[3], layoutCases[4], layoutCases[7]} {
		t.Run(lc.name, func(t *testing.T) {
			a := goAway(t, lc, 0, 1, 12, 12, nil)
			p, dirs, x := a.p, a.dirs, a.x
			if err := os.Rename(dirs[0], dirs[0]+".away"); err != nil {
				t.Fatal(err)
			}
			if s := p.Status(ctx); !s.Degraded || diskState(p, x) != DiskMissing {
				t.Fatalf("status after detach: %+v", s)
			}
			var deleted []testObj
			gone := map[objstore.ID]bool{}
			for _, i := range []int{0, 3, 4, 5} {
				deleted = append(deleted, a.before[i], a.during[i+1])
				gone[a.before[i].id()], gone[a.during[i+1].id()] = true, true
			}
			deleteObjs(t, p, deleted...)
			if err := os.Rename(dirs[0]+".away", dirs[0]); err != nil {
				t.Fatal(err)
			}
			r, err := p.Reattach(ctx, x, dirs[0])
			if err != nil {
				t.Fatal(err)
			}
			rep, err := r.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Full || len(rep.Unrepairable) > 0 || rep.Errors > 0 || rep.Objects != int64(len(a.during)+4) || rep.ShardsWritten == 0 {
				t.Fatalf("resync report: %+v", rep)
			}
			if pr := r.Progress(); pr.Done != pr.Total || pr.Objects != rep.Objects {
				t.Errorf("progress at the end: %+v", pr)
			}
			if s := p.Status(ctx); s.Degraded || s.Resyncing != 0 {
				t.Fatalf("status after the resync: %+v", s)
			}
			live := slices.DeleteFunc(slices.Concat(a.before, a.during), func(o testObj) bool { return gone[o.id()] })
			checkResynced(t, p, dirs, live, deleted)
		})
	}
}

// TestResyncDiskVanishesAgain: the disk goes away again in the middle of
// its resync; the resync stops, the pool stays degraded and usable, and
// the next return finishes the job.
func TestResyncDiskVanishesAgain(t *testing.T) {
	ctx := context.Background()
	a := goAway(t, layoutCases[4], 1, 3, 6, 24, nil)
	p, dirs, x, before, during := a.p, a.dirs, a.x, a.before, a.during
	deleteObjs(t, p, before[:2]...)
	var n atomic.Int32
	p.resyncHook = func(disk string, kind objstore.Kind, id objstore.ID) {
		if n.Add(1) == 8 {
			// Pulled out mid-resync: the folder goes, and the watcher
			// has not noticed yet.
			if err := os.Rename(dirs[1], dirs[1]+".away"); err != nil {
				t.Error(err)
			}
		}
	}
	r, err := p.Reattach(ctx, x, dirs[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(ctx); !errors.Is(err, ErrVanished) {
		t.Fatalf("resync of a disk that vanished: %v", err)
	}
	if st := diskState(p, x); st != DiskMissing {
		t.Fatalf("disk state after it vanished mid-resync: %s", st)
	}
	p.resyncHook = nil
	p.Detach(x, errors.New("unplugged")) // the watcher's notice comes late
	more := putSized(t, p, 5, 6)
	deleteObjs(t, p, during[0])
	if err := os.Rename(dirs[1]+".away", dirs[1]); err != nil {
		t.Fatal(err)
	}
	r, err = p.Reattach(ctx, x, dirs[1])
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Wait(ctx)
	if err != nil || rep.Full || len(rep.Unrepairable) > 0 {
		t.Fatalf("second resync: %+v, %v", rep, err)
	}
	checkResynced(t, p, dirs, slices.Concat(before[2:], during[1:], more), slices.Concat(before[:2], during[:1]))
}

// TestReattachRefuses: only the member itself comes back.
func TestReattachRefuses(t *testing.T) {
	ctx := context.Background()
	dirs := diskDirs(t, 3)
	p := createPool(t, dirs, -1)
	defer p.Close()
	other := diskDirs(t, 2)
	createPool(t, other, -1).Close()
	empty := diskDirs(t, 1)
	st := p.Status(ctx)
	x, y := st.Disks[0].UUID, st.Disks[1].UUID
	if err := p.Detach(x, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, uuid, dir, want string
	}{
		{"other-pool", x, other[0], "belongs to pool"},
		{"other-member", x, dirs[1], "holds disk " + y},
		{"no-pool", x, empty[0], "holds no pool"},
		{"not-a-folder", x, filepath.Join(empty[0], "nothing"), "no such file"},
		{"present-member", y, dirs[1], "attached already"},
		{"unknown-member", "0b7a3c52-0000-4000-8000-000000000000", dirs[0], "holds disk " + x},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := p.Reattach(ctx, c.uuid, c.dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Reattach(%s, %s) = %v, %v; want an error saying %q", c.uuid, c.dir, r, err, c.want)
			}
		})
	}
	if diskState(p, x) != DiskMissing {
		t.Fatal("a refused reattach changed the disk's state")
	}
	r, err := p.Reattach(ctx, x, dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestResyncWithoutJournal: a journal that was lost or overflowed makes
// the resync check every object.
func TestResyncWithoutJournal(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		limit int
		lose  bool
	}{
		{"lost", defaultJournalLimit, true},
		{"overflowed", 3, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := goAway(t, layoutCases[3], 2, 6, 6, 12, func(p *Pool) { p.journalLimit = c.limit })
			// Deleted while the disk was away: without a journal, the
			// striped one (one shard left on the disk) goes, the
			// replicated one (a whole copy) is kept.
			striped, replicated := a.before[4], a.before[1]
			deleteObjs(t, a.p, striped, replicated)
			gone := []testObj{striped}
			live := slices.Concat(a.before[:1], a.before[2:4], a.before[5:], a.during)
			if len(shardFiles(t, a.dirs[2:], replicated.kind, replicated.id())) > 0 {
				live = append(live, replicated)
			} else {
				gone = append(gone, replicated)
			}
			if c.lose {
				for _, d := range a.dirs[:2] {
					if err := os.RemoveAll(filepath.Join(d, poolDirName, missedDirName)); err != nil {
						t.Fatal(err)
					}
				}
			}
			r, err := a.p.Reattach(ctx, a.x, a.dirs[2])
			if err != nil {
				t.Fatal(err)
			}
			rep, err := r.Wait(ctx)
			if err != nil || !rep.Full || len(rep.Unrepairable) > 0 || rep.Objects < int64(len(live)) {
				t.Fatalf("resync: %+v, %v", rep, err)
			}
			checkResynced(t, a.p, a.dirs, live, gone)
		})
	}
}

// TestResyncConcurrent runs puts, gets and deletes while a resync runs.
func TestResyncConcurrent(t *testing.T) {
	ctx := context.Background()
	a := goAway(t, layoutCases[4], 3, 8, 12, 24, nil)
	p, dirs, x, before, during := a.p, a.dirs, a.x, a.before, a.during
	deleteObjs(t, p, during[:6]...)
	p.resyncHook = func(string, objstore.Kind, objstore.ID) { time.Sleep(time.Millisecond) }
	r, err := p.Reattach(ctx, x, dirs[3])
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var added, removed []testObj
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-r.Done():
					return
				default:
				}
				// record does op on o and notes o in list.
				record := func(o testObj, list *[]testObj, op func(testObj) error) bool {
					if err := op(o); err != nil {
						t.Error(err)
						return false
					}
					mu.Lock()
					*list = append(*list, o)
					mu.Unlock()
					return true
				}
				put := func(o testObj) error { return p.Put(ctx, o.kind, o.id(), o.data) }
				del := func(o testObj) error { return p.Delete(ctx, o.kind, o.id()) }
				ok := true
				switch {
				case w == 0: // new objects
					ok = record(sizedObj(10, i), &added, put)
				case w == 1: // reads of what is there
					o := during[6+i%18]
					if got, err := p.Get(ctx, o.kind, o.id()); err != nil || !bytes.Equal(got, o.data) {
						t.Errorf("get during the resync: %v", err)
						ok = false
					}
				case i < 6: // deletes
					ok = record(before[i], &removed, del)
				case i < 9: // puts again of objects deleted while the disk was away
					ok = record(during[i-6], &added, put)
				}
				if !ok {
					return
				}
			}
		}()
	}
	rep, err := r.Wait(ctx)
	wg.Wait()
	if err != nil || rep.Full || len(rep.Unrepairable) > 0 || rep.Errors > 0 {
		t.Fatalf("resync: %+v, %v", rep, err)
	}
	live := map[objstore.ID]testObj{}
	for _, o := range slices.Concat(before, during[6:], added) {
		live[o.id()] = o
	}
	for _, o := range removed {
		delete(live, o.id())
	}
	checkResynced(t, p, dirs, slices.Collect(maps.Values(live)), slices.Concat(removed, during[3:6]))
}

const crashChildEnv = "ARKBOX_POOL_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dirs := os.Getenv(crashChildEnv); dirs != "" {
		if err := crashChild(strings.Split(dirs, string(os.PathListSeparator))); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(crashtest.ChildFailed)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashOp is operation i of the crash test's child: every third one
// deletes one of the objects written before the disk went away, the
// others write new objects.
func crashOp(i int) (del bool, o testObj) {
	if i%3 == 2 {
		return true, sizedObj(20, i/3)
	}
	return false, sizedObj(21, i)
}

// crashChild opens the pool without its first disk and writes and
// deletes until it is killed, printing "done N" once operation N
// returned.
func crashChild(dirs []string) error {
	ctx := context.Background()
	p, err := Open(ctx, dirs, OpenOptions{})
	if err != nil {
		return err
	}
	start, _ := strconv.Atoi(os.Getenv("ARKBOX_CRASH_START"))
	out := bufio.NewWriter(os.Stdout)
	for i := start; ; i++ {
		del, o := crashOp(i)
		if del {
			err = p.Delete(ctx, o.kind, o.id())
			if errors.Is(err, objstore.ErrNotFound) {
				err = nil // deleted by a child killed after the delete
			}
		} else {
			err = p.Put(ctx, o.kind, o.id(), o.data)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "done %d\n", i)
		out.Flush()
	}
}

// TestResyncCrash kills (SIGKILL) processes writing and deleting while a
// disk is away, then brings the disk back: the journal survived every
// crash, so the resync finds every object it missed.
func TestResyncCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	ctx := context.Background()
	dirs := diskDirs(t, 4)
	p := createPool(t, dirs, -1)
	initial := putSized(t, p, 20, 40)
	p.Close()

	rng := rand.New(rand.NewPCG(7, 7))
	done := map[int]bool{}
	next := 0
	for range 4 {
		env := []string{crashChildEnv + "=" + strings.Join(dirs[1:], string(os.PathListSeparator)),
			"ARKBOX_CRASH_START=" + strconv.Itoa(next)}
		crashtest.Kill(t, env, time.Duration(300+rng.IntN(700))*time.Millisecond, func(l string) {
			if n, err := strconv.Atoi(strings.TrimPrefix(l, "done ")); err == nil {
				done[n] = true
				next = n + 1
			}
		})
		// The operation in flight at the kill may or may not have
		// happened: the next child starts after it.
		next++
	}
	if len(done) < 10 {
		t.Fatalf("only %d operations acknowledged", len(done))
	}

	// The disk returns; Open finds the journal and resyncs it.
	p, err := Open(ctx, dirs, OpenOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	reps := waitResyncs(t, p)
	if len(reps) != 1 || reps[0].Full || len(reps[0].Unrepairable) > 0 {
		t.Fatalf("resync: %+v", reps)
	}
	deleted := map[objstore.ID]bool{}
	var inFlight []testObj
	for i := 0; i < next; i++ {
		del, o := crashOp(i)
		switch {
		case !done[i]:
			inFlight = append(inFlight, o)
		case del:
			deleted[o.id()] = true
			checkGone(t, dirs, o)
		default:
			checkPlaced(t, p, dirs, o)
		}
	}
	for _, o := range initial {
		if !deleted[o.id()] && !slicesContainsObj(inFlight, o) {
			checkPlaced(t, p, dirs, o)
		}
	}
	// An operation cut off by the kill either happened or not, but
	// leaves no half state behind after the resync.
	for _, o := range inFlight {
		if len(shardFiles(t, dirs, o.kind, o.id())) > 0 {
			checkPlaced(t, p, dirs, o)
		}
	}
	checkNoJournals(t, dirs)
}

func slicesContainsObj(objs []testObj, o testObj) bool {
	for _, x := range objs {
		if x.id() == o.id() {
			return true
		}
	}
	return false
}
