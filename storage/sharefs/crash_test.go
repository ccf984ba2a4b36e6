package sharefs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/internal/testrepo"
	"github.com/arkbox/arkbox/storage/maint"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
)

const crashChildEnv = "ARKBOX_SHAREFS_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		if err := crashChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func crashContent(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 5))
	n := 1 + r.IntN(700<<10)
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
	store, err := Open(ctx, r, cat, filepath.Join(dir, "staging"), Options{CommitDelay: 50 * time.Millisecond})
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
		in, err := sh.Create(RootIno, name, 0o644, 0, 0)
		if err != nil {
			return err
		}
		f, err := sh.OpenFile(in.Ino, true, true)
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
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, "ARKBOX_CRASH_START="+strconv.Itoa(next))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		deadline := time.After(time.Duration(150+rng.IntN(1500)) * time.Millisecond)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				if n, err := strconv.Atoi(strings.TrimPrefix(l, "synced ")); err == nil {
					acked[n] = true
					next = n + 1
				}
			case <-deadline:
				cmd.Process.Signal(syscall.SIGKILL)
				for l := range lines {
					if n, err := strconv.Atoi(strings.TrimPrefix(l, "synced ")); err == nil {
						acked[n] = true
						next = n + 1
					}
				}
				break read
			}
		}
		err = cmd.Wait()
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
			t.Fatalf("child failed: %s", stderr.String())
		}
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
