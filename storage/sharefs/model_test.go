package sharefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/internal/testrepo"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/restorer"
)

type fixture struct {
	t       *testing.T
	tr      *testrepo.Repo
	store   *Store
	sh      *Share
	dir     string
	staging string
	opt     Options
}

func newFixture(t *testing.T) *fixture { return newFixtureOpt(t, Options{}) }

// newFixtureOpt is newFixture with store options (CommitDelay defaults to
// an hour: tests commit explicitly).
func newFixtureOpt(t *testing.T, opt Options) *fixture { return newFixtureStaging(t, opt, "") }

// newFixtureStaging is newFixtureOpt with the staging folder at staging
// ("": in the fixture's folder).
func newFixtureStaging(t *testing.T, opt Options, staging string) *fixture {
	tr := testrepo.New(t, repo.Options{PackSize: 256 << 10})
	if opt.CommitDelay == 0 {
		opt.CommitDelay = time.Hour
	}
	f := &fixture{t: t, tr: tr, dir: t.TempDir(), staging: staging, opt: opt}
	if f.staging == "" {
		f.staging = filepath.Join(f.dir, "staging")
	}
	f.open()
	t.Cleanup(func() { f.store.Close(context.Background()) }) // the store of the moment
	sh, err := f.store.CreateShare("docs")
	if err != nil {
		t.Fatal(err)
	}
	f.sh = sh
	return f
}

func (f *fixture) open() {
	st, err := Open(context.Background(), f.tr.Repository, f.tr.Cat, f.staging, f.opt)
	if err != nil {
		f.t.Fatal(err)
	}
	f.store = st
	if f.sh != nil {
		f.sh, err = st.Share("docs")
		if err != nil {
			f.t.Fatal(err)
		}
	}
}

// restart closes everything and opens it again, as after a clean restart.
func (f *fixture) restart() {
	if err := f.store.Close(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	f.tr.Reopen(f.t)
	f.open()
}

// dump lists a tree as path → description, for comparison.
func dumpShare(t *testing.T, sh *Share) map[string]string {
	out := map[string]string{}
	var walk func(ino uint64, p string)
	walk = func(ino uint64, p string) {
		ents, err := sh.ReadDir(ino)
		if err != nil {
			t.Fatalf("readdir %s: %v", p, err)
		}
		for _, e := range ents {
			q := path.Join(p, e.Name)
			switch e.Inode.Type {
			case 1:
				fh, err := sh.OpenFile(e.Inode.Ino, false, false)
				if err != nil {
					t.Fatalf("open %s: %v", q, err)
				}
				b, err := io.ReadAll(io.NewSectionReader(fh, 0, int64(e.Inode.Size)+10))
				fh.Close()
				if err != nil {
					t.Fatalf("read %s: %v", q, err)
				}
				out[q] = fmt.Sprintf("file %o %x", e.Inode.Mode, b)
			case 2:
				out[q] = fmt.Sprintf("dir %o", e.Inode.Mode)
				walk(e.Inode.Ino, q)
			case 3:
				out[q] = "symlink " + e.Inode.Target
			}
		}
	}
	walk(RootIno, "/")
	return out
}

func dumpDir(t *testing.T, root string) map[string]string {
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		q := "/" + filepath.ToSlash(rel)
		fi, _ := os.Lstat(p)
		switch {
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			out[q] = fmt.Sprintf("file %o %x", fi.Mode().Perm(), b)
		case fi.IsDir():
			out[q] = fmt.Sprintf("dir %o", fi.Mode().Perm())
		case fi.Mode()&fs.ModeSymlink != 0:
			tg, _ := os.Readlink(p)
			out[q] = "symlink " + tg
		}
		return nil
	})
	return out
}

func diffMaps(a, b map[string]string) string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		if a[k] != b[k] {
			av, bv := a[k], b[k]
			if len(av) > 60 {
				av = av[:60] + "…"
			}
			if len(bv) > 60 {
				bv = bv[:60] + "…"
			}
			fmt.Fprintf(&sb, "%s: share %q, model %q\n", k, av, bv)
		}
	}
	return sb.String()
}

func (f *fixture) resolveParent(p string) (uint64, string) {
	dir, name := path.Split(p)
	in, err := f.sh.Resolve(dir)
	if err != nil {
		return 0, name
	}
	return in.Ino, name
}

// TestModel applies random operations to a share and to a plain directory
// and compares them after each step, with commits, snapshots (restored and
// compared too) and restarts interleaved.
func TestModel(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if testing.Short() {
		seeds = seeds[:1]
	}
	// ARKBOX_MODEL_SEEDS=N runs N more seeds, for a longer search.
	if n, err := strconv.Atoi(os.Getenv("ARKBOX_MODEL_SEEDS")); err == nil {
		for i := 0; i < n; i++ {
			seeds = append(seeds, uint64(1000+i))
		}
	}
	configs := []struct {
		name string
		opt  Options
		// checkEvery: compare the whole tree after every step (reading
		// every file fills the partly written blocks of open files), or
		// after one step in three and after commits, snapshots, closes
		// and restarts, so that partial blocks live on between steps.
		checkEvery bool
	}{
		{"default", Options{}, true},
		// Small blocks and threshold: files of a few hundred KiB are
		// committed block by block.
		{"blocks", Options{BlockSize: 16 << 10, BlockThreshold: 64 << 10}, false},
		{"tiny-blocks", Options{BlockSize: 4 << 10, BlockThreshold: 1}, false},
	}
	for _, c := range configs {
		for i, seed := range seeds {
			if c.name != "default" && i > 0 && testing.Short() {
				break
			}
			t.Run(fmt.Sprintf("%s/%d", c.name, seed), func(t *testing.T) { runModel(t, c.opt, c.checkEvery, seed, 300) })
		}
	}
}

func runModel(t *testing.T, opt Options, checkEvery bool, seed uint64, steps int) {
	ctx := context.Background()
	f := newFixtureOpt(t, opt)
	model := filepath.Join(t.TempDir(), "model")
	os.Mkdir(model, 0o755)
	rng := rand.New(rand.NewPCG(seed, 99))
	names := []string{"a", "b", "c", "d.txt", "e f", "ü"}
	randPath := func(depth int) string {
		p := ""
		for i := 0; i <= rng.IntN(depth+1); i++ {
			p += "/" + names[rng.IntN(len(names))]
		}
		return p
	}
	type handle struct {
		fh *File
		p  string
	}
	var handles []handle
	type snapState struct {
		sn   *repo.Snapshot
		want map[string]string
	}
	var snaps []snapState
	done := map[string]int{}
	existingFile := func() string {
		var files []string
		for q, v := range dumpDir(t, model) {
			if strings.HasPrefix(v, "file") {
				files = append(files, q)
			}
		}
		if len(files) == 0 {
			return randPath(2)
		}
		sort.Strings(files)
		return files[rng.IntN(len(files))]
	}
	for step := 0; step < steps; step++ {
		p := randPath(2)
		if rng.IntN(2) == 0 {
			p = existingFile()
		}
		mp := filepath.Join(model, p)
		parent, name := f.resolveParent(p)
		op := rng.IntN(19)
		check := checkEvery || rng.IntN(3) == 0
		before := dumpDir(t, model)
		var desc string
		var shErr, modErr error
		switch op {
		case 0, 1: // create or overwrite a file with content
			data := make([]byte, rng.IntN(3)*rng.IntN(300<<10))
			for i := range data {
				data[i] = byte(rng.IntN(4))
			}
			desc = fmt.Sprintf("write %s (%d bytes)", p, len(data))
			modErr = os.WriteFile(mp, data, 0o644)
			if modErr == nil {
				in, err := f.sh.Lookup(parent, name)
				var fh *File
				switch {
				case errors.Is(err, ErrNotExist) && rng.IntN(2) == 0:
					in, fh, err = f.sh.CreateFile(parent, name, 0o644, 0, 0)
				case errors.Is(err, ErrNotExist):
					in, err = f.sh.Create(parent, name, 0o644, 0, 0)
				}
				if err == nil && fh == nil {
					fh, err = f.sh.OpenFile(in.Ino, true, true)
				}
				if err == nil {
					_, err = fh.WriteAt(data, 0)
					if err == nil && rng.IntN(3) == 0 {
						// Attributes set while open (as sftp put -p does)
						// are recorded with the close.
						mode := uint32(0o600 + rng.IntN(0o177))
						desc += fmt.Sprintf(", chmod %o before close", mode)
						os.Chmod(mp, os.FileMode(mode))
						_, err = f.sh.SetAttr(in.Ino, SetAttr{Mode: &mode})
					}
					if cerr := fh.Close(); err == nil {
						err = cerr
					}
				}
				shErr = err
			} else {
				shErr = modErr // skip: the model refused (e.g. parent missing)
			}
		case 2: // write in the middle of an existing file, through a kept handle
			in, err := f.sh.Resolve(p)
			fi, serr := os.Lstat(mp)
			if err != nil || serr != nil || !fi.Mode().IsRegular() {
				continue
			}
			off := rng.Int64N(int64(in.Size) + 10)
			if rng.IntN(4) == 0 {
				off = rng.Int64N(int64(in.Size) + 100<<10) // past the end: a hole
			}
			data := randBytes(rng, 1+rng.IntN(70000))
			desc = fmt.Sprintf("pwrite %s at %d (%d bytes)", p, off, len(data))
			mf, _ := os.OpenFile(mp, os.O_WRONLY, 0)
			mf.WriteAt(data, off)
			mf.Close()
			fh, err := f.sh.OpenFile(in.Ino, true, false)
			if err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			if _, err := fh.WriteAt(data, off); err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			if rng.IntN(2) == 0 {
				handles = append(handles, handle{fh, p})
			} else if err := fh.Close(); err != nil {
				t.Fatal(err)
			}
		case 3:
			desc = "mkdir " + p
			modErr = os.Mkdir(mp, 0o755)
			_, shErr = f.sh.Mkdir(parent, name, 0o755, 0, 0)
			if parent == 0 {
				shErr = fs.ErrNotExist
			}
		case 4:
			desc = "remove " + p
			modErr = syscallRemove(mp)
			shErr = f.sh.Remove(parent, name)
			if parent == 0 {
				shErr = fs.ErrNotExist
			}
		case 5:
			q := randPath(2)
			desc = "rename " + p + " -> " + q
			if strings.HasPrefix(q+"/", p+"/") {
				continue // into itself: both refuse, differently
			}
			np, nn := f.resolveParent(q)
			// syscall.Rename: os.Rename refuses to replace a directory.
			modErr = syscall.Rename(mp, filepath.Join(model, q))
			if parent == 0 || np == 0 {
				shErr = fs.ErrNotExist
			} else {
				shErr = f.sh.Rename(parent, name, np, nn)
			}
		case 6:
			desc = "symlink " + p
			modErr = os.Symlink("../target/"+name, mp)
			_, shErr = f.sh.Symlink(parent, name, "../target/"+name, 0, 0)
			if parent == 0 {
				shErr = fs.ErrNotExist
			}
		case 7:
			in, err := f.sh.Resolve(p)
			if err != nil {
				continue
			}
			mode := uint32(0o600 + rng.IntN(0o177))
			desc = fmt.Sprintf("chmod %s %o", p, mode)
			if in.Type == 3 {
				continue
			}
			os.Chmod(mp, os.FileMode(mode))
			_, shErr = f.sh.SetAttr(in.Ino, SetAttr{Mode: &mode})
		case 8:
			in, err := f.sh.Resolve(p)
			fi, serr := os.Lstat(mp)
			if err != nil || serr != nil || !fi.Mode().IsRegular() {
				continue
			}
			size := uint64(rng.IntN(int(in.Size) + 5000))
			desc = fmt.Sprintf("truncate %s %d", p, size)
			os.Truncate(mp, int64(size))
			_, shErr = f.sh.SetAttr(in.Ino, SetAttr{Size: &size})
		case 15: // read a random range through a new handle
			in, err := f.sh.Resolve(p)
			mdata, serr := os.ReadFile(mp)
			if err != nil || serr != nil || in.Type != 1 {
				continue
			}
			off := rng.Int64N(int64(in.Size) + 10)
			n := rng.IntN(40000)
			desc = fmt.Sprintf("read %s at %d (%d bytes)", p, off, n)
			fh, err := f.sh.OpenFile(in.Ino, false, false)
			if err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			got := make([]byte, n)
			m, err := fh.ReadAt(got, off)
			fh.Close()
			want := []byte{}
			if off < int64(len(mdata)) {
				want = mdata[off:min(int64(len(mdata)), off+int64(n))]
			}
			if m != len(want) || !bytes.Equal(got[:m], want) || (m < n && err != io.EOF) || (m == n && err != nil) {
				t.Fatalf("step %d %s: read %d bytes (%v), want %d", step, desc, m, err, len(want))
			}
		case 16: // truncate through a write handle, kept or closed
			in, err := f.sh.Resolve(p)
			fi, serr := os.Lstat(mp)
			if err != nil || serr != nil || !fi.Mode().IsRegular() {
				continue
			}
			size := rng.Int64N(int64(in.Size) + 50000)
			desc = fmt.Sprintf("ftruncate %s %d", p, size)
			os.Truncate(mp, size)
			fh, err := f.sh.OpenFile(in.Ino, true, false)
			if err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			if rng.IntN(2) == 0 {
				// A write across the new end first: its block is
				// partly written when it is cut.
				off := max(0, size-int64(rng.IntN(3000)))
				data := randBytes(rng, 1+rng.IntN(6000))
				desc = fmt.Sprintf("pwrite %s at %d (%d bytes) and ftruncate %d", p, off, len(data), size)
				mf, _ := os.OpenFile(mp, os.O_WRONLY, 0)
				mf.WriteAt(data, off)
				mf.Truncate(size)
				mf.Close()
				if _, err := fh.WriteAt(data, off); err != nil {
					t.Fatalf("step %d %s: %v", step, desc, err)
				}
			}
			if err := fh.Truncate(size); err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			if rng.IntN(2) == 0 {
				handles = append(handles, handle{fh, p})
			} else if err := fh.Close(); err != nil {
				t.Fatal(err)
			}
		case 17: // many small scattered writes (fragmented blocks)
			in, err := f.sh.Resolve(p)
			fi, serr := os.Lstat(mp)
			if err != nil || serr != nil || !fi.Mode().IsRegular() || in.Size == 0 {
				continue
			}
			base := rng.Int64N(int64(in.Size))
			count := 1 + rng.IntN(150)
			desc = fmt.Sprintf("scatter %s at %d (%d writes)", p, base, count)
			mf, _ := os.OpenFile(mp, os.O_WRONLY, 0)
			fh, err := f.sh.OpenFile(in.Ino, true, false)
			if err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			for i := 0; i < count; i++ {
				off := base + rng.Int64N(20000)
				data := randBytes(rng, 1+rng.IntN(40))
				mf.WriteAt(data, off)
				if _, err := fh.WriteAt(data, off); err != nil {
					t.Fatalf("step %d %s: %v", step, desc, err)
				}
			}
			mf.Close()
			if rng.IntN(2) == 0 {
				handles = append(handles, handle{fh, p})
			} else if err := fh.Close(); err != nil {
				t.Fatal(err)
			}
		case 18: // overwrite all of a file in place, in pieces, without truncating
			in, err := f.sh.Resolve(p)
			fi, serr := os.Lstat(mp)
			if err != nil || serr != nil || !fi.Mode().IsRegular() {
				continue
			}
			data := randBytes(rng, int(in.Size))
			desc = fmt.Sprintf("rewrite %s (%d bytes)", p, len(data))
			mf, _ := os.OpenFile(mp, os.O_WRONLY, 0)
			mf.WriteAt(data, 0)
			mf.Close()
			fh, err := f.sh.OpenFile(in.Ino, true, false)
			if err != nil {
				t.Fatalf("step %d %s: %v", step, desc, err)
			}
			for off := 0; off < len(data); {
				n := min(len(data)-off, 1+rng.IntN(9000))
				if _, err := fh.WriteAt(data[off:off+n], int64(off)); err != nil {
					t.Fatalf("step %d %s: %v", step, desc, err)
				}
				off += n
			}
			if err := fh.Close(); err != nil {
				t.Fatal(err)
			}
		case 9:
			desc = "close handles"
			check = true
			for _, h := range handles {
				if err := h.fh.Close(); err != nil {
					t.Fatal(err)
				}
			}
			handles = nil
		case 10:
			desc = "commit"
			check = true
			if err := f.sh.CommitAll(ctx, true); err != nil {
				t.Fatal(err)
			}
		case 11, 12:
			desc = "snapshot"
			check = true
			sn, err := f.sh.Snapshot(ctx, time.Now(), nil)
			if err != nil {
				t.Fatalf("step %d snapshot: %v", step, err)
			}
			snaps = append(snaps, snapState{sn, dumpDir(t, model)})
		case 14:
			in, err := f.sh.Resolve(p)
			fi, serr := os.Lstat(mp)
			if err != nil || serr != nil || !fi.Mode().IsRegular() {
				continue
			}
			q := randPath(2)
			desc = "link " + p + " -> " + q
			np, nn := f.resolveParent(q)
			modErr = os.Link(mp, filepath.Join(model, q))
			if np == 0 {
				shErr = fs.ErrNotExist
			} else {
				_, shErr = f.sh.Link(in.Ino, np, nn)
			}
		case 13:
			desc = "restart"
			check = true
			for _, h := range handles {
				h.fh.Close()
			}
			handles = nil
			f.restart()
		}
		done[desc[:strings.IndexByte(desc+" ", ' ')]]++
		if (shErr == nil) != (modErr == nil) {
			t.Logf("before: %s", diffMaps(before, nil))
			t.Fatalf("step %d %s: share error %v, model error %v", step, desc, shErr, modErr)
		}
		if !check {
			continue
		}
		if d := diffMaps(dumpShare(t, f.sh), dumpDir(t, model)); d != "" {
			t.Fatalf("step %d %s: share differs from the model:\n%s", step, desc, d)
		}
	}
	if d := diffMaps(dumpShare(t, f.sh), dumpDir(t, model)); d != "" {
		t.Fatalf("at the end: share differs from the model:\n%s", d)
	}
	for _, h := range handles {
		h.fh.Close()
	}
	t.Logf("operations: %v", done)
	// Every snapshot restores to what the model held at its time.
	for i, s := range snaps {
		dst := t.TempDir()
		if _, err := restorer.Run(ctx, f.tr.Repository, s.sn, restorer.Options{Target: dst}); err != nil {
			t.Fatalf("restore snapshot %d: %v", i, err)
		}
		if d := diffMaps(dumpDir(t, dst), s.want); d != "" {
			t.Fatalf("snapshot %d differs from the model at its time:\n%s", i, d)
		}
	}
	_ = catalog.Version
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// syscallRemove removes a file or an empty directory like the share does.
func syscallRemove(p string) error { return os.Remove(p) }
