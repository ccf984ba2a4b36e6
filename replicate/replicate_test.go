package replicate_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arkbox/arkbox/internal/testpeer"
	"github.com/arkbox/arkbox/replicate"
	"github.com/arkbox/arkbox/replicate/bwlimit"
	"github.com/arkbox/arkbox/replicate/s3store"
	"github.com/arkbox/arkbox/replicate/sftpstore"
	"github.com/arkbox/arkbox/storage/objstore"
)

// fill adds n random objects of every kind (packs of size packSize) to st.
func fill(t testing.TB, st objstore.Store, seed uint64, n, packSize int) map[objstore.Kind][]objstore.ID {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	ids := map[objstore.Kind][]objstore.ID{}
	for _, k := range objstore.Kinds {
		for i := 0; i < n; i++ {
			size := 100 + r.IntN(3000)
			if k == objstore.KindPack {
				size = packSize/2 + r.IntN(packSize/2+1)
			}
			b := make([]byte, size)
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			id := objstore.Sum(b)
			if err := st.Put(context.Background(), k, id, b); err != nil {
				t.Fatal(err)
			}
			ids[k] = append(ids[k], id)
		}
	}
	return ids
}

func localDir(t testing.TB) *objstore.Dir {
	d, err := objstore.OpenDir(t.TempDir(), objstore.DirOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func state(t testing.TB) *replicate.State {
	st, err := replicate.OpenState(filepath.Join(t.TempDir(), "target.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// sameObjects fails unless remote holds exactly local's objects.
func sameObjects(t testing.TB, local, remote objstore.Store) {
	t.Helper()
	ctx := context.Background()
	for _, k := range objstore.Kinds {
		want := map[objstore.ID]int64{}
		local.List(ctx, k, func(i objstore.Info) error { want[i.ID] = i.Size; return nil })
		got := map[objstore.ID]int64{}
		if err := remote.List(ctx, k, func(i objstore.Info) error { got[i.ID] = i.Size; return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: target holds %d objects, box %d", k, len(got), len(want))
		}
		for id, n := range want {
			if got[id] != n {
				t.Fatalf("%s/%s: target size %d, box %d", k, id.Short(), got[id], n)
			}
		}
	}
}

func s3Target(t testing.TB, endpoint string, srv *testpeer.S3Server, bucket string) *s3store.Store {
	t.Helper()
	s, err := s3store.Open(context.Background(), s3store.Options{Endpoint: endpoint, Bucket: bucket, Prefix: "box",
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true, PathStyle: true, CreateBucket: true,
		MultipartThreshold: 6 << 20, PartSize: 5 << 20, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Every kind of target: a first sync copies everything, an up-to-date sync
// sends nothing, a later sync sends only what is new, verify reads it all.
func TestSyncTargets(t *testing.T) {
	targets := []struct {
		name string
		open func(t *testing.T) objstore.Store
	}{
		{"dir", func(t *testing.T) objstore.Store { return localDir(t) }},
		{"s3", func(t *testing.T) objstore.Store {
			srv := testpeer.S3(t)
			return s3Target(t, srv.Endpoint, srv, "offsite")
		}},
		{"sftp", func(t *testing.T) objstore.Store {
			srv := testpeer.SSHD(t)
			s, err := sftpstore.Open(context.Background(), sftpstore.Options{Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile,
				KnownHosts: filepath.Join(t.TempDir(), "known_hosts"), Path: filepath.Join(srv.Dir, "box"), Create: true})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
	for _, tc := range targets {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			local := localDir(t)
			fill(t, local, 1, 12, 200<<10)
			remote := tc.open(t)
			defer remote.Close()
			st := state(t)
			rep, err := replicate.Sync(ctx, local, remote, st, replicate.Options{Name: tc.name})
			if err != nil {
				t.Fatal(err)
			}
			if rep.UploadedTotal.Objects != 5*12 || !rep.Listed {
				t.Fatalf("first sync: %+v", rep)
			}
			sameObjects(t, local, remote)

			rep, err = replicate.Sync(ctx, local, remote, st, replicate.Options{Name: tc.name})
			if err != nil || rep.UploadedTotal.Objects != 0 || rep.Listed {
				t.Fatalf("up-to-date sync: uploaded %+v listed %v err %v", rep.UploadedTotal, rep.Listed, err)
			}
			fill(t, local, 2, 3, 200<<10)
			rep, err = replicate.Sync(ctx, local, remote, st, replicate.Options{Name: tc.name})
			if err != nil || rep.UploadedTotal.Objects != 5*3 {
				t.Fatalf("incremental sync: uploaded %+v err %v", rep.UploadedTotal, err)
			}
			sameObjects(t, local, remote)
			vr, err := replicate.Verify(ctx, local, remote, st, replicate.VerifyOptions{ReadData: 1})
			if err != nil || !vr.OK() || vr.Read.Objects != 5*15 || vr.Pending != 0 {
				t.Fatalf("verify: %+v %v", vr, err)
			}
			status, err := replicate.GetStatus(ctx, local, st, tc.name, time.Now())
			if err != nil || status.Pending.Objects != 0 || status.Remote.Objects != 75 || status.LastOK.IsZero() {
				t.Fatalf("status: %+v %v", status, err)
			}
		})
	}
}

// recorder notes the order of Puts.
type recorder struct {
	objstore.Store
	mu   sync.Mutex
	puts []objstore.Kind
}

func (r *recorder) Put(ctx context.Context, k objstore.Kind, id objstore.ID, b []byte) error {
	r.mu.Lock()
	r.puts = append(r.puts, k)
	r.mu.Unlock()
	return r.Store.Put(ctx, k, id, b)
}

// Packs first, snapshots last: every kind finishes before the next starts.
func TestSyncOrder(t *testing.T) {
	local := localDir(t)
	fill(t, local, 3, 20, 4<<10)
	rec := &recorder{Store: localDir(t)}
	if _, err := replicate.Sync(context.Background(), local, rec, state(t), replicate.Options{Parallel: 8}); err != nil {
		t.Fatal(err)
	}
	rank := map[objstore.Kind]int{}
	for i, k := range objstore.Kinds {
		rank[k] = i
	}
	for i := 1; i < len(rec.puts); i++ {
		if rank[rec.puts[i]] < rank[rec.puts[i-1]] {
			t.Fatalf("put %d is a %s after a %s", i, rec.puts[i], rec.puts[i-1])
		}
	}
}

// Objects the box deleted leave the target after the grace period, never
// from an append-only target.
func TestDelayedDeletion(t *testing.T) {
	ctx := context.Background()
	local := localDir(t)
	ids := fill(t, local, 4, 6, 4<<10)
	remote := localDir(t)
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	st := state(t)
	opt := replicate.Options{Grace: 48 * time.Hour, Now: clock}
	if _, err := replicate.Sync(ctx, local, remote, st, opt); err != nil {
		t.Fatal(err)
	}
	appendOnly := localDir(t)
	stAO := state(t)
	if _, err := replicate.Sync(ctx, local, appendOnly, stAO, replicate.Options{AppendOnly: true, Now: clock}); err != nil {
		t.Fatal(err)
	}
	// The box prunes a snapshot and two packs.
	for _, d := range []objstore.Info{{Kind: objstore.KindSnapshot, ID: ids[objstore.KindSnapshot][0]}, {Kind: objstore.KindPack, ID: ids[objstore.KindPack][0]}, {Kind: objstore.KindPack, ID: ids[objstore.KindPack][1]}} {
		if err := local.Delete(ctx, d.Kind, d.ID); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Hour)
	rep, err := replicate.Sync(ctx, local, remote, st, opt)
	if err != nil || rep.Deleted.Objects != 0 || rep.PendingDelete.Objects != 3 {
		t.Fatalf("within grace: deleted %+v pending %+v err %v", rep.Deleted, rep.PendingDelete, err)
	}
	now = now.Add(48 * time.Hour)
	rep, err = replicate.Sync(ctx, local, remote, st, opt)
	if err != nil || rep.Deleted.Objects != 3 || rep.PendingDelete.Objects != 0 {
		t.Fatalf("after grace: deleted %+v pending %+v err %v", rep.Deleted, rep.PendingDelete, err)
	}
	sameObjects(t, local, remote)
	now = now.Add(30 * 24 * time.Hour)
	rep, err = replicate.Sync(ctx, local, appendOnly, stAO, replicate.Options{AppendOnly: true, Now: clock, Rescan: -1})
	if err != nil || rep.Deleted.Objects != 0 || rep.PendingDelete.Objects != 3 {
		t.Fatalf("append-only: deleted %+v kept %+v err %v", rep.Deleted, rep.PendingDelete, err)
	}
	n := 0
	appendOnly.List(ctx, objstore.KindPack, func(objstore.Info) error { n++; return nil })
	if n != 6 {
		t.Fatalf("append-only target holds %d packs, want all 6", n)
	}
}

// A flaky link: cuts, stalls, 500s and a damaged body are retried; the
// damaged body is refused by the server (it checks the SHA-256); a
// multipart upload cut in the middle resumes; verify is clean afterwards.
func TestSyncFaults(t *testing.T) {
	srv := testpeer.S3(t)
	proxy := testpeer.NewProxy(t, srv.Endpoint)
	ctx := context.Background()
	local := localDir(t)
	fill(t, local, 5, 8, 1<<20)
	// One large object goes multipart (5 MiB parts).
	big := bytes.Repeat([]byte("arkbox multipart "), 1<<20) // 17 MiB
	if err := local.Put(ctx, objstore.KindPack, objstore.Sum(big), big); err != nil {
		t.Fatal(err)
	}
	remote := s3Target(t, proxy.Addr, srv, "faults")
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	remote2, err := s3store.Open(ctx, s3store.Options{Endpoint: proxy.Addr, Bucket: "faults", Prefix: "box", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Insecure: true, PathStyle: true, MultipartThreshold: 6 << 20, PartSize: 5 << 20, Timeout: 3 * time.Second, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	remote = remote2
	var stalled atomic.Bool
	plans := []struct {
		name string
		plan func(n int, head string) testpeer.Fault
	}{
		{"cut", func(n int, _ string) testpeer.Fault {
			if n%5 == 1 && n < 30 {
				return testpeer.Fault{CutAfter: 300 << 10}
			}
			return testpeer.Fault{}
		}},
		{"500", func(n int, _ string) testpeer.Fault { return testpeer.Fault{Respond500: rand.IntN(5) == 0} }},
		{"flip", func(n int, _ string) testpeer.Fault {
			if n%2 == 1 {
				return testpeer.Fault{FlipAt: 200 << 10}
			}
			return testpeer.Fault{}
		}},
		{"stall", func(n int, head string) testpeer.Fault {
			if strings.HasPrefix(head, "PUT ") && strings.Contains(head, "/packs/") && stalled.CompareAndSwap(false, true) {
				return testpeer.Fault{StallAfter: 100 << 10}
			}
			return testpeer.Fault{}
		}},
	}
	for i, p := range plans {
		proxy.SetPlan(p.plan)
		st := state(t)
		rep, err := replicate.Sync(ctx, local, remote, st, replicate.Options{Name: p.name, Parallel: 3, Backoff: 50 * time.Millisecond, Retries: 10,
			Timeout: 4 * time.Second, Rescan: -1, Logger: logger})
		if err != nil {
			t.Fatalf("%s: sync: %v", p.name, err)
		}
		t.Logf("%s: uploaded %d objects, %d retries, %d connections", p.name, rep.UploadedTotal.Objects, rep.Retried, proxy.Conns.Load())
		if rep.Retried == 0 {
			t.Errorf("%s: the fault caused no retry", p.name)
		}
		proxy.SetPlan(nil)
		vr, err := replicate.Verify(ctx, local, remote, st, replicate.VerifyOptions{ReadData: 1})
		if err != nil || !vr.OK() || vr.Pending != 0 {
			t.Fatalf("%s: verify: %+v %v", p.name, vr, err)
		}
		sameObjects(t, local, remote)
		if i < len(plans)-1 { // start the next fault on an empty bucket prefix
			local.List(ctx, objstore.KindPack, func(o objstore.Info) error { return nil })
			for _, k := range objstore.Kinds {
				var ids []objstore.ID
				remote.List(ctx, k, func(o objstore.Info) error { ids = append(ids, o.ID); return nil })
				for _, id := range ids {
					remote.Delete(ctx, k, id)
				}
			}
		}
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "retrying") {
		t.Fatal("no retry was logged")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A multipart upload cut after its first part resumes: the part the server
// holds is not sent again.
func TestMultipartResume(t *testing.T) {
	srv := testpeer.S3(t)
	proxy := testpeer.NewProxy(t, srv.Endpoint)
	ctx := context.Background()
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	s3Target(t, srv.Endpoint, srv, "resume").Close()
	// Part 2 is cut after 1 MiB, every time: the put fails with part 1 on
	// the server.
	proxy.SetPlan(func(n int, head string) testpeer.Fault {
		if strings.Contains(head, "partNumber=2") {
			return testpeer.Fault{CutAfter: 1 << 20}
		}
		return testpeer.Fault{}
	})
	s, err := s3store.Open(ctx, s3store.Options{Endpoint: proxy.Addr, Bucket: "resume", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Insecure: true, PathStyle: true, MultipartThreshold: 6 << 20, PartSize: 5 << 20, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(i * 7 / 13)
	}
	id := objstore.Sum(data)
	if err := s.Put(ctx, objstore.KindPack, id, data); err == nil {
		t.Fatal("put through a link cut in part 2 succeeded")
	}
	proxy.SetPlan(nil)
	if err := s.Put(ctx, objstore.KindPack, id, data); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, objstore.KindPack, id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get after resume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "resumed multipart upload") {
		t.Fatalf("upload was not resumed: %s", logs.String())
	}
}

// The bandwidth limit holds within ±10% over 20 seconds.
func TestBandwidthLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s")
	}
	srv := testpeer.S3(t)
	ctx := context.Background()
	local := localDir(t)
	fill(t, local, 6, 40, 1<<20) // ~30 MB of packs
	sch, err := bwlimit.Parse("1MB/s")
	if err != nil {
		t.Fatal(err)
	}
	lim := bwlimit.New(sch, nil)
	s, err := s3store.Open(ctx, s3store.Options{Endpoint: srv.Endpoint, Bucket: "limited", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Insecure: true, PathStyle: true, CreateBucket: true, Dial: lim.Dialer(nil)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var samples []replicate.Progress
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	replicate.Sync(cctx, local, s, state(t), replicate.Options{Parallel: 4, Progress: func(p replicate.Progress) {
		mu.Lock()
		samples = append(samples, p)
		mu.Unlock()
	}})
	mu.Lock()
	defer mu.Unlock()
	var last replicate.Progress
	for _, p := range samples {
		if p.Phase == "upload" {
			last = p
		}
	}
	rate := float64(last.DoneBytes) / last.Elapsed.Seconds()
	t.Logf("%d bytes in %.1f s = %.0f B/s under a 1 MB/s limit", last.DoneBytes, last.Elapsed.Seconds(), rate)
	if last.Elapsed < 15*time.Second || rate < 0.9e6 || rate > 1.1e6 {
		t.Fatalf("rate %.0f B/s over %.1f s, want 1 MB/s ±10%% over ~20 s", rate, last.Elapsed.Seconds())
	}
}

var _ = fmt.Sprint
