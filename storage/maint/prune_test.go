package maint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/arkbox/arkbox/storage/archiver"
	"github.com/arkbox/arkbox/storage/internal/testrepo"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/restorer"
)

func fill(t *testing.T, dir string, seed uint64, files int) map[string][32]byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	sums := map[string][32]byte{}
	for i := 0; i < files; i++ {
		n := 1000 + r.IntN(600<<10)
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		name := filepath.Join(dir, "f", string(rune('a'+i%26)), "file"+string(rune('0'+i/26)))
		os.MkdirAll(filepath.Dir(name), 0o755)
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, name)
		sums[rel] = sha256.Sum256(b)
	}
	return sums
}

func verifyRestore(t *testing.T, r *repo.Repository, sn *repo.Snapshot, src string, want map[string][32]byte) {
	t.Helper()
	dst := t.TempDir()
	if _, err := restorer.Run(context.Background(), r, sn, restorer.Options{Target: dst}); err != nil {
		t.Fatalf("restore %s: %v", sn.ID.Short(), err)
	}
	for rel, sum := range want {
		b, err := os.ReadFile(filepath.Join(dst, filepath.Base(src), rel))
		if err != nil {
			t.Fatalf("restore %s: %v", sn.ID.Short(), err)
		}
		if sha256.Sum256(b) != sum {
			t.Fatalf("restore %s: %s differs", sn.ID.Short(), rel)
		}
	}
}

// TestPruneCrashSafe interrupts prune after each of its steps and checks
// that the repository stays complete and that a later prune finishes.
func TestPruneCrashSafe(t *testing.T) {
	for _, step := range []string{"", "repack", "index", "delete-index"} {
		t.Run("crash-after-"+step, func(t *testing.T) {
			ctx := context.Background()
			r := testrepo.New(t, repo.Options{PackSize: 1 << 20})
			src := filepath.Join(t.TempDir(), "src")
			now := fill(t, src, 1, 40)
			first, err := archiver.Run(ctx, r.Repository, archiver.Options{Paths: []string{src}, Source: "s"})
			if err != nil {
				t.Fatal(err)
			}
			// Delete half the files: their data, which shares packs with
			// the data kept, becomes garbage once the first snapshot is
			// forgotten.
			for rel := range now {
				if d := filepath.Base(filepath.Dir(rel)); d < "h" {
					os.Remove(filepath.Join(src, rel))
					delete(now, rel)
				}
			}
			second, err := archiver.Run(ctx, r.Repository, archiver.Options{Paths: []string{src}, Source: "s"})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.DeleteSnapshot(ctx, first.Snapshot.ID); err != nil {
				t.Fatal(err)
			}
			before := packBytes(t, r)
			if step != "" {
				_, err := Prune(ctx, r.Repository, PruneOptions{RepackPercent: 1, crashAfter: step})
				if !errors.Is(err, errCrashHook) {
					t.Fatalf("prune with crash hook: %v", err)
				}
				r.Reopen(t)
				rep, err := Check(ctx, r.Repository, CheckOptions{ReadDataPercent: 100})
				if err != nil || !rep.OK() {
					t.Fatalf("check after crash at %s: %v %+v", step, err, rep.Errors)
				}
				verifyRestore(t, r.Repository, second.Snapshot, src, now)
			}
			// Without a crash, use a high repack threshold, so that kept
			// packs still hold unused blobs.
			pct := 1.0
			if step == "" {
				pct = 90
			}
			rep, err := Prune(ctx, r.Repository, PruneOptions{RepackPercent: pct})
			if err != nil {
				t.Fatal(err)
			}
			if rep.BytesFreed == 0 {
				t.Errorf("prune freed nothing: %+v", rep)
			}
			r.Reopen(t)
			after := packBytes(t, r)
			if after >= before {
				t.Errorf("pack bytes %d → %d: nothing removed", before, after)
			}
			crep, err := Check(ctx, r.Repository, CheckOptions{ReadDataPercent: 100})
			if err != nil || !crep.OK() || crep.Unreferenced != 0 {
				t.Fatalf("check after prune: %v %+v", err, crep)
			}
			verifyRestore(t, r.Repository, second.Snapshot, src, now)
			// A second prune has nothing left to do.
			rep2, err := Prune(ctx, r.Repository, PruneOptions{RepackPercent: pct})
			if err != nil || rep2.PacksDeleted != 0 || rep2.PacksRepacked != 0 {
				t.Fatalf("second prune: %v %+v", err, rep2)
			}
		})
	}
}

func packBytes(t *testing.T, r *testrepo.Repo) int64 {
	var n int64
	err := r.Objects.List(context.Background(), objstore.KindPack, func(i objstore.Info) error { n += i.Size; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCheckFindsCorruption(t *testing.T) {
	ctx := context.Background()
	r := testrepo.New(t, repo.Options{})
	src := filepath.Join(t.TempDir(), "src")
	fill(t, src, 3, 5)
	if _, err := archiver.Run(ctx, r.Repository, archiver.Options{Paths: []string{src}}); err != nil {
		t.Fatal(err)
	}
	// Corrupt the largest pack: a data pack (trees live in packs of their own).
	var pack objstore.ID
	var size int64
	r.Objects.List(ctx, objstore.KindPack, func(i objstore.Info) error {
		if i.Size > size {
			pack, size = i.ID, i.Size
		}
		return nil
	})
	p := filepath.Join(r.Objects.Root(), "packs", pack.String()[:2], pack.String())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 0x40
	os.WriteFile(p, b, 0o600)
	rep, err := Check(ctx, r.Repository, CheckOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("structural check should not read data: %v %+v", err, rep.Errors)
	}
	rep, err = Check(ctx, r.Repository, CheckOptions{ReadDataPercent: 100})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !bytes.Contains([]byte(rep.Errors[0].Object), []byte(pack.String())) {
		t.Fatalf("corrupt pack not reported by name: %+v", rep.Errors)
	}
	// Remove it: check names the missing pack and the files that need it.
	os.Remove(p)
	rep, err = Check(ctx, r.Repository, CheckOptions{})
	if err != nil || rep.OK() {
		t.Fatalf("missing pack not reported: %v %+v", err, rep)
	}
}
