package sharefs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arkbox/arkbox/internal/crashtest"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/internal/testrepo"
	"github.com/arkbox/arkbox/storage/maint"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
)

const crashChildEnv = "ARKBOX_SHAREFS_CRASH_CHILD"

// crashModeEnv selects the child's work: "" writes new files, "blocks"
// writes in place into one large file.
const crashModeEnv = "ARKBOX_SHAREFS_CRASH_MODE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		child := crashChild
		if os.Getenv(crashModeEnv) == "blocks" {
			child = crashBlocksChild
		}
		if err := child(dir); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(crashtest.ChildFailed)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func crashContent(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 5))
	n := 1 + r.IntN(700<<10)
	if i%3 == 0 {
		n = 1 + r.IntN(64<<10) // staged inline
	}
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(r.IntN(8))
	}
	return b
}

type crashEnv struct {
	st    objstore.Store
	cat   *catalog.Catalog
	r     *repo.Repository
	store *Store
}

func openCrashEnv(ctx context.Context, dir string, create bool) (*crashEnv, error) {
	return openCrashEnvOpt(ctx, dir, create, Options{CommitDelay: 50 * time.Millisecond})
}

func openCrashEnvOpt(ctx context.Context, dir string, create bool, opt Options) (*crashEnv, error) {
	st, err := objstore.OpenDir(filepath.Join(dir, "objects"), objstore.DirOptions{Create: true})
	if err != nil {
		return nil, err
	}
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		return nil, err
	}
	var r *repo.Repository
	if create {
		r, err = repo.Init(ctx, st, cat, []byte(testrepo.Passphrase), repo.Options{KDF: testrepo.FastKDF, PackSize: 1 << 20})
	} else {
		r, err = repo.Open(ctx, st, cat, []byte(testrepo.Passphrase), repo.Options{})
	}
	if err != nil {
		return nil, err
	}
	store, err := Open(ctx, r, cat, filepath.Join(dir, "staging"), opt)
	if err != nil {
		return nil, err
	}
	return &crashEnv{st, cat, r, store}, nil
}

// crashChild writes files forever, printing "synced N" after file N's
// Close returned (the acknowledgement), until it is killed.
func crashChild(dir string) error {
	ctx := context.Background()
	e, err := openCrashEnv(ctx, dir, false)
	if err != nil {
		return err
	}
	sh, err := e.store.Share("docs")
	if err != nil {
		return err
	}
	start, _ := strconv.Atoi(os.Getenv("ARKBOX_CRASH_START"))
	out := bufio.NewWriter(os.Stdout)
	for i := start; ; i++ {
		name := fmt.Sprintf("f%05d", i)
		var f *File
		if i%2 == 0 {
			_, f, err = sh.CreateFile(RootIno, name, 0o644, 0, 0)
		} else {
			var in *Inode
			if in, err = sh.Create(RootIno, name, 0o644, 0, 0); err == nil {
				f, err = sh.OpenFile(in.Ino, true, true)
			}
		}
		if err != nil {
			return err
		}
		data := crashContent(i)
		// Written in pieces, as a protocol would.
		for off := 0; off < len(data); off += 64 << 10 {
			end := min(off+64<<10, len(data))
			if _, err := f.WriteAt(data[off:end], int64(off)); err != nil {
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Fprintf(out, "synced %d\n", i)
		out.Flush()
		if i%7 == 3 {
			if _, err := sh.Snapshot(ctx, time.Now(), nil); err != nil {
				return err
			}
		}
	}
}

// TestCrash kills a process that writes into a share at random moments
// (mid-write, mid-commit, mid-snapshot) and checks after each restart that
// every acknowledged file is complete and the repository checks clean.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	ctx := context.Background()
	dir := t.TempDir()
	e, err := openCrashEnv(ctx, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.CreateShare("docs"); err != nil {
		t.Fatal(err)
	}
	e.store.Close(ctx)
	e.r.Close(ctx)
	e.cat.Close()

	rng := rand.New(rand.NewPCG(42, 42))
	acked := map[int]bool{}
	next := 0
	for round := 0; round < 8; round++ {
		env := []string{crashChildEnv + "=" + dir, "ARKBOX_CRASH_START=" + strconv.Itoa(next)}
		crashtest.Kill(t, env, time.Duration(150+rng.IntN(1500))*time.Millisecond, func(l string) {
			if n, err := strconv.Atoi(strings.TrimPrefix(l, "synced ")); err == nil {
				acked[n] = true
				next = n + 1
			}
		})
		// The next child starts after the highest file any child began:
		// an unacknowledged file may exist half-written; skip its name.
		next++

		e, err := openCrashEnv(ctx, dir, false)
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		sh, err := e.store.Share("docs")
		if err != nil {
			t.Fatal(err)
		}
		for i := range acked {
			in, err := sh.Lookup(RootIno, fmt.Sprintf("f%05d", i))
			if err != nil {
				t.Fatalf("round %d: acknowledged file %d lost: %v", round, i, err)
			}
			f, err := sh.OpenFile(in.Ino, false, false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
			f.Close()
			if err != nil || !bytes.Equal(got, crashContent(i)) {
				t.Fatalf("round %d: acknowledged file %d: %d bytes read (%v), want %d", round, i, len(got), err, len(crashContent(i)))
			}
		}
		if err := e.store.Close(ctx); err != nil { // commits what the crash left staged
			t.Fatalf("round %d: close: %v", round, err)
		}
		rep, err := maint.Check(ctx, e.r, maint.CheckOptions{ReadDataPercent: 100})
		if err != nil || !rep.OK() {
			t.Fatalf("round %d: check: %v %+v", round, err, rep)
		}
		e.r.Close(ctx)
		e.cat.Close()
		t.Logf("round %d: %d files acknowledged so far; check clean (%d snapshots)", round, len(acked), rep.Snapshots)
	}
	if len(acked) == 0 {
		t.Fatal("no file was ever acknowledged: the crash test tested nothing")
	}
}

// Block mode crash test: one large file written in place.

// crashBlocksOpt: 64 KiB blocks, committed block by block from 256 KiB.
var crashBlocksOpt = Options{CommitDelay: 50 * time.Millisecond, BlockSize: 64 << 10, BlockThreshold: 256 << 10}

const crashImageSize = 1 << 20

// crashImage is the large file's first content.
func crashImage() []byte {
	b := make([]byte, crashImageSize)
	fillRand(7, b)
	return b
}

// blockOp is operation k on the large file: a write (in place, across
// blocks, past the end) or a truncation.
type blockOp struct {
	trunc bool
	size  int64 // truncation
	off   int64 // write
	data  []byte
}

func crashBlockOp(k int) blockOp {
	r := rand.New(rand.NewPCG(uint64(k), 11))
	if r.IntN(8) == 0 {
		return blockOp{trunc: true, size: crashImageSize/2 + r.Int64N(crashImageSize)}
	}
	n := 1 + r.IntN(200<<10)
	if r.IntN(3) == 0 {
		n = 1 + r.IntN(2000)
	}
	// Anywhere up to past the largest size truncation leaves: in place,
	// at the end, or leaving a hole.
	op := blockOp{off: r.Int64N(crashImageSize * 3 / 2), data: make([]byte, n)}
	fillRand(uint64(k)+1000, op.data)
	return op
}

func (op blockOp) String() string {
	if op.trunc {
		return fmt.Sprintf("truncate to %d", op.size)
	}
	return fmt.Sprintf("write %d bytes at %d", len(op.data), op.off)
}

// apply returns state after op.
func (op blockOp) apply(state []byte) []byte {
	if op.trunc {
		if int(op.size) <= len(state) {
			return state[:op.size]
		}
		return append(state, make([]byte, int(op.size)-len(state))...)
	}
	if end := int(op.off) + len(op.data); end > len(state) {
		state = append(state, make([]byte, end-len(state))...)
	}
	copy(state[op.off:], op.data)
	return state
}

// blockStates returns the file's content after each of the first n
// operations (states[0] is the first content).
func blockStates(n int) [][]byte {
	states := [][]byte{crashImage()}
	for k := 0; k < n; k++ {
		cur := states[len(states)-1]
		op := crashBlockOp(k)
		states = append(states, op.apply(append([]byte(nil), cur...)))
	}
	return states
}

// crashBlocksChild applies operations to the large file from
// ARKBOX_CRASH_START on, printing "synced K" once operation K is durable
// (Sync or Close returned), committing and snapshotting in between, until
// it is killed.
func crashBlocksChild(dir string) error {
	ctx := context.Background()
	e, err := openCrashEnvOpt(ctx, dir, false, crashBlocksOpt)
	if err != nil {
		return err
	}
	sh, err := e.store.Share("docs")
	if err != nil {
		return err
	}
	in, err := sh.Lookup(RootIno, "disk.img")
	if err != nil {
		return err
	}
	start, _ := strconv.Atoi(os.Getenv("ARKBOX_CRASH_START"))
	out := bufio.NewWriter(os.Stdout)
	rng := rand.New(rand.NewPCG(uint64(start), 3))
	for k := start; ; {
		f, err := sh.OpenFile(in.Ino, true, false)
		if err != nil {
			return err
		}
		for n := 1 + rng.IntN(5); n > 0; n-- {
			op := crashBlockOp(k)
			if op.trunc {
				err = f.Truncate(op.size)
			} else {
				// In pieces, as a protocol would.
				for i := 0; i < len(op.data) && err == nil; i += 32 << 10 {
					_, err = f.WriteAt(op.data[i:min(i+32<<10, len(op.data))], op.off+int64(i))
				}
			}
			if err != nil {
				return err
			}
			if n > 1 {
				if err := f.Sync(); err != nil {
					return err
				}
			} else if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(out, "synced %d\n", k)
			out.Flush()
			k++
		}
		switch rng.IntN(4) {
		case 0:
			if _, err := sh.Snapshot(ctx, time.Now(), nil); err != nil {
				return err
			}
		case 1:
			if err := sh.CommitAll(ctx, true); err != nil {
				return err
			}
		case 2:
			time.Sleep(60 * time.Millisecond) // the committer's turn
		}
	}
}

// TestCrashBlocks kills a process that writes in place into a large file
// (mid-write, mid-fill, mid-sync, mid-commit, mid-snapshot) and checks
// after each restart that the file holds every acknowledged operation and
// at most part of the one in flight, that committing what the crash left
// staged keeps that content, and that the repository checks clean.
func TestCrashBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	ctx := context.Background()
	dir := t.TempDir()
	e, err := openCrashEnvOpt(ctx, dir, true, crashBlocksOpt)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := e.store.CreateShare("docs")
	if err != nil {
		t.Fatal(err)
	}
	in, err := sh.Create(RootIno, "disk.img", 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sh.OpenFile(in.Ino, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(crashImage(), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	e.store.Close(ctx)
	e.r.Close(ctx)
	e.cat.Close()

	rng := rand.New(rand.NewPCG(43, 43))
	acked := -1 // the last operation acknowledged
	blocksSeen := 0
	for round := 0; round < 10; round++ {
		env := []string{crashChildEnv + "=" + dir, crashModeEnv + "=blocks", "ARKBOX_CRASH_START=" + strconv.Itoa(acked+1)}
		crashtest.Kill(t, env, time.Duration(150+rng.IntN(1500))*time.Millisecond, func(l string) {
			if n, err := strconv.Atoi(strings.TrimPrefix(l, "synced ")); err == nil {
				acked = n
			}
		})

		e, err := openCrashEnvOpt(ctx, dir, false, crashBlocksOpt)
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		sh, err := e.store.Share("docs")
		if err != nil {
			t.Fatal(err)
		}
		in, err := sh.Lookup(RootIno, "disk.img")
		if err != nil {
			t.Fatal(err)
		}
		if in.Staged && in.BlockSize > 0 {
			blocksSeen++
		}
		read := func() []byte {
			f, err := sh.OpenFile(in.Ino, false, false)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
			if err != nil {
				t.Fatalf("round %d: read: %v", round, err)
			}
			return got
		}
		states := blockStates(acked + 2)
		got := read()
		if err := crashBlocksCheck(got, states[acked+1], states[acked+2]); err != nil {
			t.Fatalf("round %d (operation %d acknowledged last, %d in flight: %v): %v", round, acked, acked+1, crashBlockOp(acked+1), err)
		}
		if err := e.store.Close(ctx); err != nil { // commits what the crash left staged
			t.Fatalf("round %d: close: %v", round, err)
		}
		rep, err := maint.Check(ctx, e.r, maint.CheckOptions{ReadDataPercent: 100})
		if err != nil || !rep.OK() {
			t.Fatalf("round %d: check: %v %+v", round, err, rep)
		}
		e.r.Close(ctx)
		e.cat.Close()
		// Committed, the file reads the same.
		e, err = openCrashEnvOpt(ctx, dir, false, crashBlocksOpt)
		if err != nil {
			t.Fatal(err)
		}
		if sh, err = e.store.Share("docs"); err != nil {
			t.Fatal(err)
		}
		if in, err = sh.Lookup(RootIno, "disk.img"); err != nil || in.Staged {
			t.Fatalf("round %d: after close: %v, staged %v", round, err, in != nil && in.Staged)
		}
		if again := read(); !bytes.Equal(again, got) {
			t.Fatalf("round %d: the committed file differs from the staged one", round)
		}
		e.store.Close(ctx)
		e.r.Close(ctx)
		e.cat.Close()
		t.Logf("round %d: %d operations acknowledged; file of %d bytes; check clean (%d snapshots)", round, acked+1, len(got), rep.Snapshots)
	}
	if acked < 10 {
		t.Fatalf("only %d operations were acknowledged: the crash test tested little", acked+1)
	}
	t.Logf("%d of 10 restarts found the file staged in block mode", blocksSeen)
}

// crashBlocksCheck reports whether got is before with at most part of the
// operation that leads to after applied: its size is one of theirs, and
// every byte is before's or after's (zero past an end).
func crashBlocksCheck(got, before, after []byte) error {
	if len(got) != len(before) && len(got) != len(after) {
		return fmt.Errorf("size %d, want %d (acknowledged) or %d (in flight)", len(got), len(before), len(after))
	}
	at := func(b []byte, i int) byte {
		if i < len(b) {
			return b[i]
		}
		return 0
	}
	for i := range got {
		if got[i] != at(before, i) && got[i] != at(after, i) {
			return fmt.Errorf("byte %d is %#x: acknowledged %#x, in flight %#x", i, got[i], at(before, i), at(after, i))
		}
	}
	return nil
}
