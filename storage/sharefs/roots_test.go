package sharefs

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/maint"
)

// Prune keeps what the live shares hold: a committed file no snapshot has
// yet, and the cached tree of an unchanged folder whose only snapshot was
// forgotten (the next snapshot reuses it). Without the live roots both
// would be lost — the control case shows the test can tell.
func TestPruneKeepsLiveData(t *testing.T) {
	for _, withRoots := range []bool{true, false} {
		ctx := context.Background()
		e, err := openCrashEnv(ctx, t.TempDir(), true)
		if err != nil {
			t.Fatal(err)
		}
		sh, err := e.store.CreateShare("docs")
		if err != nil {
			t.Fatal(err)
		}
		d, err := sh.Mkdir(1, "d", 0o755, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		write := func(parent uint64, name string, data []byte) uint64 {
			in, err := sh.Create(parent, name, 0o644, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := shareWriteAll(sh, in.Ino, data); err != nil {
				t.Fatal(err)
			}
			if err := sh.CommitAll(ctx, true); err != nil {
				t.Fatal(err)
			}
			return in.Ino
		}
		a := bytes.Repeat([]byte("in a folder that does not change "), 4000)
		b := bytes.Repeat([]byte("written after the last snapshot "), 4000)
		aIno := write(d.Ino, "a", a)
		sn, err := sh.Snapshot(ctx, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		bIno := write(1, "b", b)
		if err := e.r.DeleteSnapshot(ctx, sn.ID); err != nil {
			t.Fatal(err)
		}
		opt := maint.PruneOptions{}
		if withRoots {
			opt.Roots = func(ctx context.Context, markTree, markData func(blob.ID) error) error {
				return LiveRoots(ctx, e.cat.DB(), markTree, markData)
			}
		}
		if err := e.store.Exclusive(func() error { _, err := maint.Prune(ctx, e.r, opt); return err }); err != nil {
			t.Fatal(err)
		}
		lost := false
		for _, f := range []struct {
			ino  uint64
			want []byte
		}{{aIno, a}, {bIno, b}} {
			h, err := sh.OpenFile(f.ino, false, false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(io.NewSectionReader(h, 0, 1<<30))
			h.Close()
			if err != nil || !bytes.Equal(got, f.want) {
				lost = true
			}
		}
		// The next snapshot reuses the folder's cached tree: it must exist.
		if _, err := sh.Snapshot(ctx, time.Now(), nil); err != nil {
			lost = true
		}
		rep, err := maint.Check(ctx, e.r, maint.CheckOptions{ReadDataPercent: 100})
		if err != nil || !rep.OK() {
			lost = true
		}
		if withRoots && lost {
			t.Fatalf("prune with the live roots lost data (check: %+v, %v)", rep, err)
		}
		if !withRoots && !lost {
			t.Fatal("prune without the live roots lost nothing: the test cannot tell")
		}
		e.store.Close(ctx)
		e.r.Close(ctx)
		e.cat.Close()
	}
}
