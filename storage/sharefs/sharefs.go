// Package sharefs is the live, writable filesystem of the box's shares:
// metadata (inodes with stable numbers, directory entries, modes, owners,
// times, xattrs, symlinks, hard links) lives in the catalog database; file
// contents live in the repository. A file is clean (a list of chunks) or
// staged (a staging file on a data disk holds its current content). Writes
// go to staging; a staged file is committed — chunked into the repository —
// when it has been closed and idle, or when a snapshot starts. Protocol
// adapters (SFTP, NFS, SMB, rsync) use only this API.
package sharefs

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/chunker"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/tree"
	bolt "go.etcd.io/bbolt"
)

// Errors, comparable with errors.Is (they are the usual syscall errors so
// protocol adapters can map them).
var (
	ErrNotExist = fs.ErrNotExist
	ErrExist    = fs.ErrExist
	ErrNotDir   = syscall.ENOTDIR
	ErrIsDir    = syscall.EISDIR
	ErrNotEmpty = syscall.ENOTEMPTY
	ErrInvalid  = syscall.EINVAL
	ErrReadOnly = syscall.EROFS
)

// RootIno is the inode number of every share's root directory.
const RootIno = 1

// MaxNameLen is the longest file name accepted.
const MaxNameLen = 255

var bRoot = []byte("sharefs")

// Options tunes Open.
type Options struct {
	Logger *slog.Logger
	// CommitDelay is how long a closed file stays staged before it is
	// committed (default 5 s).
	CommitDelay time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Capacity reports the storage's total and free bytes (the pool's);
	// nil: the staging folder's file system.
	Capacity func() (total, free uint64, err error)
	// BlockSize is the block size of files written in place (default
	// chunker.ImageBlockSize, 4 MiB).
	BlockSize int
	// BlockThreshold is the size from which a file written in place is
	// committed block by block, keeping the chunks of untouched blocks
	// (default 64 MiB); smaller files are chunked whole again.
	BlockThreshold int64
	// InlineMax is the size up to which a file written from empty keeps
	// its staged content in memory and in the catalog instead of a
	// staging file (default 64 KiB; negative: never).
	InlineMax int
}

// StatFS reports total and free bytes for protocols' statfs/statvfs.
func (s *Store) StatFS() (total, free uint64, err error) {
	if s.opt.Capacity != nil {
		return s.opt.Capacity()
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.staging, &st); err != nil {
		return 0, 0, fmt.Errorf("sharefs: statfs %s: %w", s.staging, err)
	}
	return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize), nil
}

// Store holds every share of a repository.
type Store struct {
	repo       *repo.Repository
	cache      *repo.PackCache
	readAhead  chan struct{} // slots for background chunk loads
	chunkLoads atomic.Int64  // chunks of clean content loaded, for tests
	db         *bolt.DB
	staging    string
	log        *slog.Logger
	opt        Options

	// repoMu is held while a commit, a snapshot or Exclusive (prune)
	// writes to the repository: one at a time, so that a failed upload
	// is reported to the writer whose blobs it lost (see repo.Flush).
	repoMu sync.Mutex

	mu     sync.Mutex
	shares map[string]*Share
	closed bool
	wg     sync.WaitGroup
	stop   chan struct{}
}

// Open opens the share store: metadata in cat's database, staging files
// under stagingDir. Files left staged by a crash are recovered (their
// staging file holds what was synced) and committed.
func Open(ctx context.Context, r *repo.Repository, cat *catalog.Catalog, stagingDir string, opt Options) (*Store, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.CommitDelay == 0 {
		opt.CommitDelay = 5 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.BlockSize <= 0 {
		opt.BlockSize = chunker.ImageBlockSize
	}
	if opt.BlockSize > repo.MaxBlobSize {
		return nil, fmt.Errorf("sharefs: block size %d exceeds the largest blob (%d)", opt.BlockSize, repo.MaxBlobSize)
	}
	if opt.BlockThreshold <= 0 {
		opt.BlockThreshold = 64 << 20
	}
	if opt.InlineMax == 0 {
		opt.InlineMax = 64 << 10
	}
	if err := os.MkdirAll(stagingDir, 0o700); err != nil {
		return nil, fmt.Errorf("sharefs: staging folder %s: %w", stagingDir, err)
	}
	s := &Store{repo: r, cache: r.NewPackCache(4), readAhead: make(chan struct{}, readAheadLoads), db: cat.DB(),
		staging: stagingDir, log: opt.Logger, opt: opt, shares: map[string]*Share{}, stop: make(chan struct{})}
	err := s.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bRoot)
		if err != nil {
			return err
		}
		// Shares made before block mode have no blocks bucket.
		var names [][]byte
		if err := root.ForEachBucket(func(k []byte) error {
			names = append(names, append([]byte(nil), k...))
			return nil
		}); err != nil {
			return err
		}
		for _, n := range names {
			for _, bn := range [][]byte{bBlocks, bInline} {
				if _, err := root.Bucket(n).CreateBucketIfNotExists(bn); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sharefs: open: %w", err)
	}
	names, err := s.shareNames()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		sh := s.newShare(n)
		if err := sh.recover(ctx); err != nil {
			return nil, err
		}
		s.shares[n] = sh
	}
	s.wg.Add(1)
	go s.committer()
	return s, nil
}

func (s *Store) shareNames() ([]string, error) {
	var names []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bRoot).ForEachBucket(func(k []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	sort.Strings(names)
	return names, err
}

// ValidShareName reports whether name can name a share.
func ValidShareName(name string) error {
	if name == "" || len(name) > 64 || strings.HasPrefix(name, ".") {
		return fmt.Errorf("sharefs: share name %q: 1–64 characters, not starting with a dot", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("sharefs: share name %q: only letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// CreateShare makes a new, empty share.
func (s *Store) CreateShare(name string) (*Share, error) {
	if err := ValidShareName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.shares[name]; ok {
		return nil, fmt.Errorf("sharefs: create share %s: %w", name, ErrExist)
	}
	now := s.opt.Now().UnixNano()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bRoot).CreateBucket([]byte(name))
		if err != nil {
			return err
		}
		for _, n := range [][]byte{bInodes, bDirents, bMeta, bBlocks, bInline} {
			if _, err := b.CreateBucket(n); err != nil {
				return err
			}
		}
		root := &Inode{Ino: RootIno, Type: tree.Dir, Mode: 0o755, MTime: now, CTime: now, Nlink: 2}
		if err := putInode(b, root); err != nil {
			return err
		}
		return b.Bucket(bMeta).Put(kNextIno, inoKey(RootIno+1))
	})
	if err != nil {
		return nil, fmt.Errorf("sharefs: create share %s: %w", name, err)
	}
	sh := s.newShare(name)
	s.shares[name] = sh
	return sh, nil
}

// RemoveShare deletes a share's live tree (its snapshots stay in the
// repository until retention removes them).
func (s *Store) RemoveShare(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, ok := s.shares[name]
	if !ok {
		return fmt.Errorf("sharefs: remove share %s: %w", name, ErrNotExist)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.open) > 0 {
		return fmt.Errorf("sharefs: remove share %s: %d files are open", name, len(sh.open))
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bRoot).DeleteBucket([]byte(name)) }); err != nil {
		return fmt.Errorf("sharefs: remove share %s: %w", name, err)
	}
	delete(s.shares, name)
	return os.RemoveAll(sh.stagingDir())
}

// Shares lists the share names.
func (s *Store) Shares() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.shares))
	for n := range s.shares {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Share returns the named share.
func (s *Store) Share(name string) (*Share, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, ok := s.shares[name]
	if !ok {
		return nil, fmt.Errorf("sharefs: share %s: %w", name, ErrNotExist)
	}
	return sh, nil
}

// Exclusive runs fn while no commit or snapshot writes to the repository.
// Prune must run this way: it deletes packs no index lists, and a commit's
// packs are unlisted until its flush completes.
func (s *Store) Exclusive(fn func() error) error {
	s.repoMu.Lock()
	defer s.repoMu.Unlock()
	return fn()
}

// settle ends a failed write to the repository (with repoMu held): a
// Flush stores or forgets what the failed writer saved, and clears the
// repository's error (repo.Flush), so the next writer starts clean.
func (s *Store) settle(ctx context.Context) {
	if err := s.repo.Flush(ctx); err != nil {
		s.log.Debug("sharefs: flush after a failed write", "err", err)
	}
}

// Close commits every staged file that is not open and stops the
// background committer. Open handles should be closed first.
func (s *Store) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	shares := make([]*Share, 0, len(s.shares))
	for _, sh := range s.shares {
		shares = append(shares, sh)
	}
	s.mu.Unlock()
	s.wg.Wait()
	// Take every read-ahead slot: running background loads finish (they
	// use the repository, which the caller closes next), and no new one
	// starts.
	for range cap(s.readAhead) {
		s.readAhead <- struct{}{}
	}
	var first error
	for _, sh := range shares {
		if err := sh.flushPending(); err != nil && first == nil {
			first = err
		}
		if err := sh.CommitAll(ctx, true); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// committer commits files that were closed and have been idle long enough.
func (s *Store) committer() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		shares := make([]*Share, 0, len(s.shares))
		for _, sh := range s.shares {
			shares = append(shares, sh)
		}
		s.mu.Unlock()
		for _, sh := range shares {
			if err := sh.CommitAll(context.Background(), false); err != nil {
				s.log.Error("sharefs: commit failed; the files stay staged and are retried", "share", sh.name, "err", err)
			}
		}
	}
}

func (s *Store) newShare(name string) *Share {
	return &Share{store: s, name: name, open: map[uint64]*openFile{}, idle: map[uint64]time.Time{},
		committing: map[uint64]chan struct{}{}, pend: newPendingSet()}
}

var (
	bInodes  = []byte("inodes")
	bDirents = []byte("dirents")
	bMeta    = []byte("meta")
	bBlocks  = []byte("blocks")
	bInline  = []byte("inline")
	kNextIno = []byte("next-ino")
)

func putInode(b *bolt.Bucket, in *Inode) error {
	v, err := encodeInode(in)
	if err != nil {
		return err
	}
	return b.Bucket(bInodes).Put(inoKey(in.Ino), v)
}

func (sh *Share) stagingDir() string { return filepath.Join(sh.store.staging, sh.name) }

func (sh *Share) stagingPath(ino uint64) string {
	return filepath.Join(sh.stagingDir(), fmt.Sprintf("%016x", ino))
}
