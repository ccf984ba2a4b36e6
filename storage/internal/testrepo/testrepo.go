// Package testrepo makes throwaway repositories for tests: a directory
// store, a catalog and cheap key-derivation parameters.
package testrepo

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/crypto"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
)

// Passphrase is the passphrase of every test repository.
const Passphrase = "test passphrase"

// FastKDF is cheap argon2id for tests.
var FastKDF = crypto.KDFParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}

// Repo is a test repository and what it is made of.
type Repo struct {
	*repo.Repository
	Dir     string
	Objects *objstore.Dir
	Cat     *catalog.Catalog
}

// New creates a repository in a temporary directory. opt.KDF defaults to
// FastKDF.
func New(t testing.TB, opt repo.Options) *Repo {
	t.Helper()
	dir := t.TempDir()
	st, err := objstore.OpenDir(filepath.Join(dir, "objects"), objstore.DirOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	if opt.KDF == (crypto.KDFParams{}) {
		opt.KDF = FastKDF
	}
	r, err := repo.Init(context.Background(), st, cat, []byte(Passphrase), opt)
	if err != nil {
		t.Fatal(err)
	}
	tr := &Repo{Repository: r, Dir: dir, Objects: st, Cat: cat}
	t.Cleanup(func() { tr.Close(context.Background()); cat.Close() })
	return tr
}

// Reopen closes the repository and opens it again (same store and catalog
// file), as a new process would.
func (tr *Repo) Reopen(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Cat.Close()
	cat, err := catalog.Open(filepath.Join(tr.Dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, tr.Objects, cat, []byte(Passphrase), repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr.Repository, tr.Cat = r, cat
}
