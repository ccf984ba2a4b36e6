// Package repo is the repository engine: it turns blobs into compressed,
// encrypted, deduplicated packs on an object store, keeps indexes and
// snapshots, and loads everything back verified. The formats are specified
// in doc/format.md.
package repo

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/chunker"
	"github.com/arkbox/arkbox/storage/crypto"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/klauspost/compress/zstd"
)

// Config is the repository's configuration object, stored in clear (it
// holds no secret) so that tools without the passphrase can identify a
// repository.
type Config struct {
	Version  int       `json:"version"`
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Cipher   string    `json:"cipher"`
	ChunkMin int       `json:"chunk_min"`
	ChunkAvg int       `json:"chunk_avg"`
	ChunkMax int       `json:"chunk_max"`
	PackSize int       `json:"pack_size"`
}

// ConfigVersion is the repository format version this code writes.
const ConfigVersion = 1

// Errors callers test with errors.Is.
var (
	ErrNoRepository    = errors.New("no arkbox repository here")
	ErrWrongPassphrase = crypto.ErrWrongPassphrase
	ErrBlobNotFound    = errors.New("blob not in index")
)

// Options tunes Init and Open.
type Options struct {
	// KDF sets the argon2id parameters for new key files (zero = default).
	KDF crypto.KDFParams
	// Cipher overrides the AEAD for a new repository ("" = best for this CPU).
	Cipher string
	// PackSize overrides the target pack size of a new repository.
	PackSize int
	// Logger receives diagnostics (nil = discard).
	Logger *slog.Logger
	// KeyLabel is recorded in the first key file.
	KeyLabel string
	// Parallel is the number of concurrent pack uploads (default 2).
	Parallel int
}

// DefaultPackSize is the target pack size.
const DefaultPackSize = 16 << 20

// indexEveryPacks is how many uploaded packs are listed before an index
// object is written.
const indexEveryPacks = 32

// Repository is an open repository. Its methods are safe for concurrent use.
type Repository struct {
	store  objstore.Store
	cat    *catalog.Catalog
	key    *crypto.Key
	cipher *crypto.Cipher
	cfg    Config
	keyID  objstore.ID
	log    *slog.Logger

	enc *zstd.Encoder
	dec *zstd.Decoder

	mu       sync.Mutex
	cur      [3]*packBuf             // by blob type: trees and data go to separate packs
	pending  map[pendingKey]struct{} // blobs stored or being stored but not yet in the catalog
	unindex  []catalog.IndexedPack   // uploaded packs not yet in an index object
	uploads  chan *packBuf
	upWG     sync.WaitGroup
	upErr    error
	stats    WriteStats
	closed   bool
	parallel int

	readBlobs, readRaw, readStored atomic.Uint64
}

type pendingKey struct {
	t  blob.Type
	id blob.ID
}

// WriteStats counts what this handle added to the repository.
type WriteStats struct {
	Blobs       uint64 // new blobs
	RawBytes    uint64 // their plaintext bytes
	SealedBytes uint64 // their stored (compressed, encrypted) bytes
	Packs       uint64
	Dupes       uint64 // blobs that were already stored
}

// ReadStats counts what this handle has read back.
type ReadStats struct {
	Blobs       uint64 // blobs opened (decrypted and verified)
	RawBytes    uint64 // their plaintext bytes
	StoredBytes uint64 // bytes fetched from the store to get them (ranges, or whole packs through a PackCache)
}

type packBuf struct {
	data    []byte
	entries []PackEntry
}

// Init creates a new repository on store, protected by passphrase, and
// returns it open.
func Init(ctx context.Context, store objstore.Store, cat *catalog.Catalog, passphrase []byte, opt Options) (*Repository, error) {
	n := 0
	if err := store.List(ctx, objstore.KindConfig, func(objstore.Info) error { n++; return nil }); err != nil {
		return nil, fmt.Errorf("repo: init: %w", err)
	}
	if n > 0 {
		return nil, errors.New("repo: init: a repository already exists here")
	}
	if len(passphrase) == 0 {
		return nil, errors.New("repo: init: empty passphrase")
	}
	key, err := crypto.NewKey()
	if err != nil {
		return nil, fmt.Errorf("repo: init: %w", err)
	}
	alg := opt.Cipher
	if alg == "" {
		alg = crypto.DefaultAlgorithm()
	}
	cp := chunker.DefaultParams()
	ps := opt.PackSize
	if ps == 0 {
		ps = DefaultPackSize
	}
	var rid [16]byte
	if _, err := rand.Read(rid[:]); err != nil {
		return nil, fmt.Errorf("repo: init: %w", err)
	}
	cfg := Config{Version: ConfigVersion, ID: hex.EncodeToString(rid[:]), Created: time.Now().UTC().Truncate(time.Second),
		Cipher: alg, ChunkMin: cp.Min, ChunkAvg: cp.Avg, ChunkMax: cp.Max, PackSize: ps}
	if _, err := addKey(ctx, store, key, passphrase, opt.KDF, opt.KeyLabel); err != nil {
		return nil, fmt.Errorf("repo: init: %w", err)
	}
	cb, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := store.Put(ctx, objstore.KindConfig, objstore.Sum(cb), cb); err != nil {
		return nil, fmt.Errorf("repo: init: write config: %w", err)
	}
	return Open(ctx, store, cat, passphrase, opt)
}

func addKey(ctx context.Context, store objstore.Store, key *crypto.Key, passphrase []byte, kdf crypto.KDFParams, label string) (objstore.ID, error) {
	if kdf == (crypto.KDFParams{}) {
		kdf = crypto.DefaultKDFParams()
	}
	host, _ := os.Hostname()
	uname := ""
	if u, err := user.Current(); err == nil {
		uname = u.Username
	}
	kf, err := crypto.WrapKey(key, passphrase, kdf, crypto.KeyMeta{Created: time.Now().UTC().Truncate(time.Second), Host: host, User: uname, Label: label})
	if err != nil {
		return objstore.ID{}, err
	}
	id := objstore.Sum(kf)
	if err := store.Put(ctx, objstore.KindKey, id, kf); err != nil {
		return objstore.ID{}, fmt.Errorf("write key: %w", err)
	}
	return id, nil
}

// ReadConfig returns the repository's configuration without a passphrase.
func ReadConfig(ctx context.Context, store objstore.Store) (Config, error) {
	var cfg Config
	var ids []objstore.ID
	if err := store.List(ctx, objstore.KindConfig, func(i objstore.Info) error { ids = append(ids, i.ID); return nil }); err != nil {
		return cfg, fmt.Errorf("repo: read config: %w", err)
	}
	if len(ids) == 0 {
		return cfg, fmt.Errorf("repo: %w", ErrNoRepository)
	}
	if len(ids) > 1 {
		return cfg, fmt.Errorf("repo: read config: %d config objects; expected one", len(ids))
	}
	b, err := store.Get(ctx, objstore.KindConfig, ids[0])
	if err != nil {
		return cfg, fmt.Errorf("repo: read config: %w", err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("repo: read config %s: %w", ids[0].Short(), err)
	}
	if cfg.Version != ConfigVersion {
		return cfg, fmt.Errorf("repo: config version %d not supported by this arkbox (supports %d)", cfg.Version, ConfigVersion)
	}
	if cfg.ChunkMin <= 0 || cfg.ChunkAvg < cfg.ChunkMin || cfg.ChunkMax < cfg.ChunkAvg || cfg.ChunkMax > MaxBlobSize || cfg.PackSize <= 0 {
		return cfg, fmt.Errorf("repo: config %s: invalid chunk or pack sizes", ids[0].Short())
	}
	return cfg, nil
}

// Open opens the repository on store with passphrase, bringing the catalog
// up to date with the store's index and snapshot objects.
func Open(ctx context.Context, store objstore.Store, cat *catalog.Catalog, passphrase []byte, opt Options) (*Repository, error) {
	cfg, err := ReadConfig(ctx, store)
	if err != nil {
		return nil, err
	}
	key, keyID, err := openKey(ctx, store, passphrase)
	if err != nil {
		return nil, err
	}
	ciph, err := crypto.NewCipher(key, cfg.Cipher)
	if err != nil {
		return nil, fmt.Errorf("repo: open: %w", err)
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conc := runtime.GOMAXPROCS(0)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(conc), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(conc), zstd.WithDecoderMaxMemory(MaxBlobSize))
	if err != nil {
		return nil, err
	}
	par := opt.Parallel
	if par <= 0 {
		par = 2
	}
	r := &Repository{store: store, cat: cat, key: key, cipher: ciph, cfg: cfg, keyID: keyID, log: log,
		enc: enc, dec: dec, pending: map[pendingKey]struct{}{}, parallel: par}
	if err := r.syncCatalog(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func openKey(ctx context.Context, store objstore.Store, passphrase []byte) (*crypto.Key, objstore.ID, error) {
	var ids []objstore.ID
	if err := store.List(ctx, objstore.KindKey, func(i objstore.Info) error { ids = append(ids, i.ID); return nil }); err != nil {
		return nil, objstore.ID{}, fmt.Errorf("repo: list keys: %w", err)
	}
	if len(ids) == 0 {
		return nil, objstore.ID{}, errors.New("repo: the repository has no key files; restore one from a replica or seed disk")
	}
	var lastErr error
	for _, id := range ids {
		kf, err := store.Get(ctx, objstore.KindKey, id)
		if err != nil {
			lastErr = err
			continue
		}
		k, _, err := crypto.UnwrapKey(kf, passphrase)
		if err == nil {
			return k, id, nil
		}
		if !errors.Is(err, crypto.ErrWrongPassphrase) {
			lastErr = fmt.Errorf("key %s: %w", id.Short(), err)
		}
	}
	if lastErr != nil {
		return nil, objstore.ID{}, fmt.Errorf("repo: open: no key file opens with this passphrase (%d tried; also: %v): %w", len(ids), lastErr, ErrWrongPassphrase)
	}
	return nil, objstore.ID{}, fmt.Errorf("repo: open: no key file opens with this passphrase (%d tried): %w", len(ids), ErrWrongPassphrase)
}

// Config returns the repository configuration.
func (r *Repository) Config() Config { return r.cfg }

// Store returns the underlying object store.
func (r *Repository) Store() objstore.Store { return r.store }

// Catalog returns the catalog.
func (r *Repository) Catalog() *catalog.Catalog { return r.cat }

// Key returns the master key (for the chunker secret and blob ids).
func (r *Repository) Key() *crypto.Key { return r.key }

// KeyID returns the key object the passphrase opened.
func (r *Repository) KeyID() objstore.ID { return r.keyID }

// ChunkerParams returns the content-defined chunking parameters.
func (r *Repository) ChunkerParams() chunker.Params {
	return chunker.Params{Min: r.cfg.ChunkMin, Avg: r.cfg.ChunkAvg, Max: r.cfg.ChunkMax}
}

// Stats returns what this handle has written so far.
func (r *Repository) Stats() WriteStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// ReadStats returns what this handle has read so far.
func (r *Repository) ReadStats() ReadStats {
	return ReadStats{Blobs: r.readBlobs.Load(), RawBytes: r.readRaw.Load(), StoredBytes: r.readStored.Load()}
}

// syncCatalog loads index and snapshot objects the catalog lacks and drops
// what vanished from the store.
func (r *Repository) syncCatalog(ctx context.Context) error {
	rid, err := r.cat.RepoID()
	if err != nil {
		return fmt.Errorf("repo: catalog: %w", err)
	}
	if rid != r.cfg.ID {
		if rid != "" {
			r.log.Warn("catalog belongs to another repository; rebuilding", "catalog", r.cat.Path())
		}
		if err := r.cat.Reset(r.cfg.ID); err != nil {
			return fmt.Errorf("repo: reset catalog: %w", err)
		}
	}
	// Snapshots first: a snapshot object is written after the index
	// objects of its data, so indexes listed after it cover every
	// snapshot seen, even while another process writes (a reader beside
	// a running server).
	if err := r.syncSnapshots(ctx); err != nil {
		return err
	}
	return r.syncIndexes(ctx)
}

func (r *Repository) syncIndexes(ctx context.Context) error { return r.loadIndexes(ctx, false) }

// loadIndexes brings the catalog's blob index up to date with the index
// objects in the store: it adds those it lacks or, with reload (or when
// an index it holds vanished or was superseded: a prune), loads every
// index object again and replaces the blob index with them in one
// transaction, so that lookups meanwhile (reads of the live shares
// while a prune runs) see the old index or the new one, never a
// partial one.
func (r *Repository) loadIndexes(ctx context.Context, reload bool) error {
	inStore := map[objstore.ID]bool{}
	if err := r.store.List(ctx, objstore.KindIndex, func(i objstore.Info) error { inStore[i.ID] = true; return nil }); err != nil {
		return fmt.Errorf("repo: list indexes: %w", err)
	}
	known, err := r.cat.Indexes()
	if err != nil {
		return fmt.Errorf("repo: catalog: %w", err)
	}
	knownSet := map[objstore.ID]bool{}
	for _, id := range known {
		knownSet[id] = true
		if !inStore[id] {
			// An index was replaced (prune): reload everything so no
			// blob points at a pack that may be gone.
			reload = true
		}
	}
	if reload {
		knownSet = map[objstore.ID]bool{}
	}
	// Load new indexes, skipping those superseded by another.
	loaded := map[objstore.ID]*Index{}
	superseded := map[objstore.ID]bool{}
	load := func(id objstore.ID) error {
		idx, err := r.LoadIndex(ctx, id)
		if err != nil {
			return err
		}
		loaded[id] = idx
		for _, s := range idx.Supersedes {
			superseded[s] = true
		}
		return nil
	}
	for id := range inStore {
		if !knownSet[id] {
			if err := load(id); err != nil {
				return err
			}
		}
	}
	// A new index that supersedes one the catalog already holds (a prune
	// stopped before deleting the old index objects): the old entries may
	// point at packs that are about to go, so reload everything that is
	// not superseded.
	for id := range superseded {
		if knownSet[id] {
			reload = true
			for id := range knownSet {
				if !superseded[id] {
					if err := load(id); err != nil {
						return err
					}
				}
			}
			break
		}
	}
	if reload {
		keep := map[objstore.ID][]catalog.IndexedPack{}
		for id, idx := range loaded {
			if !superseded[id] {
				keep[id] = idx.Packs
			}
		}
		if err := r.cat.ReplaceIndex(keep); err != nil {
			return fmt.Errorf("repo: %w", err)
		}
		return nil
	}
	for id, idx := range loaded {
		if superseded[id] {
			continue
		}
		if err := r.cat.AddIndex(id, idx.Packs); err != nil {
			return fmt.Errorf("repo: %w", err)
		}
	}
	return nil
}

// Reindex replaces the catalog's blob index with what the index objects
// list, in one step.
func (r *Repository) Reindex(ctx context.Context) error { return r.loadIndexes(ctx, true) }

// RebuildCatalog empties the catalog and reloads it from the objects.
func (r *Repository) RebuildCatalog(ctx context.Context) error {
	if err := r.cat.Reset(r.cfg.ID); err != nil {
		return err
	}
	return r.syncCatalog(ctx)
}

func (r *Repository) syncSnapshots(ctx context.Context) error {
	inStore := map[objstore.ID]bool{}
	if err := r.store.List(ctx, objstore.KindSnapshot, func(i objstore.Info) error { inStore[i.ID] = true; return nil }); err != nil {
		return fmt.Errorf("repo: list snapshots: %w", err)
	}
	var drop []objstore.ID
	err := r.cat.ForEachSnapshot(func(id objstore.ID, _ []byte) error {
		if !inStore[id] {
			drop = append(drop, id)
		}
		delete(inStore, id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("repo: catalog: %w", err)
	}
	for _, id := range drop {
		if err := r.cat.DeleteSnapshot(id); err != nil {
			return err
		}
	}
	for id := range inStore {
		plain, err := r.loadSealed(ctx, objstore.KindSnapshot, id, adSnapshot)
		if err != nil {
			return err
		}
		if err := r.cat.PutSnapshot(id, plain); err != nil {
			return err
		}
	}
	return nil
}

func (r *Repository) loadSealed(ctx context.Context, kind objstore.Kind, id objstore.ID, ad string) ([]byte, error) {
	b, err := r.store.Get(ctx, kind, id)
	if err != nil {
		return nil, fmt.Errorf("repo: load %s %s: %w", kind, id.Short(), err)
	}
	plain, err := r.cipher.Open(nil, b, []byte(ad))
	if err != nil {
		return nil, fmt.Errorf("repo: decrypt %s %s: %w", kind, id.Short(), err)
	}
	return plain, nil
}

func (r *Repository) saveSealed(ctx context.Context, kind objstore.Kind, plain []byte, ad string) (objstore.ID, error) {
	sealed := r.cipher.Seal(nil, plain, []byte(ad))
	id := objstore.Sum(sealed)
	if err := r.store.Put(ctx, kind, id, sealed); err != nil {
		return id, fmt.Errorf("repo: write %s %s: %w", kind, id.Short(), err)
	}
	return id, nil
}

// LoadIndex reads and decodes an index object.
func (r *Repository) LoadIndex(ctx context.Context, id objstore.ID) (*Index, error) {
	sealed, err := r.store.Get(ctx, objstore.KindIndex, id)
	if err != nil {
		return nil, fmt.Errorf("repo: load %s %s: %w", objstore.KindIndex, id.Short(), err)
	}
	return r.OpenIndexObject(id, sealed)
}

// SaveIndex writes an index object and records it in the catalog.
func (r *Repository) SaveIndex(ctx context.Context, idx *Index) (objstore.ID, error) {
	plain := r.enc.EncodeAll(EncodeIndex(idx), nil)
	id, err := r.saveSealed(ctx, objstore.KindIndex, plain, adIndex)
	if err != nil {
		return id, err
	}
	if err := r.cat.AddIndex(id, idx.Packs); err != nil {
		return id, fmt.Errorf("repo: %w", err)
	}
	return id, nil
}

// BlobID returns the id of data.
func (r *Repository) BlobID(data []byte) blob.ID { return r.key.BlobID(data) }

// HasBlob reports whether the blob is stored (or being stored by this handle).
func (r *Repository) HasBlob(t blob.Type, id blob.ID) (bool, error) {
	r.mu.Lock()
	_, ok := r.pending[pendingKey{t, id}]
	r.mu.Unlock()
	if ok {
		return true, nil
	}
	_, ok, err := r.cat.LookupBlob(t, id)
	return ok, err
}

// SaveBlob stores data as a blob of type t unless it is already stored, and
// returns its id. It reports whether the blob was new.
func (r *Repository) SaveBlob(ctx context.Context, t blob.Type, data []byte) (blob.ID, bool, error) {
	id := r.key.BlobID(data)
	added, err := r.SaveBlobID(ctx, t, id, data)
	return id, added, err
}

// SaveBlobID is SaveBlob for a caller that already computed id = BlobID(data).
func (r *Repository) SaveBlobID(ctx context.Context, t blob.Type, id blob.ID, data []byte) (bool, error) {
	if len(data) > MaxBlobSize {
		return false, fmt.Errorf("repo: save blob %s: %d bytes exceeds the maximum", id.Short(), len(data))
	}
	pk := pendingKey{t, id}
	r.mu.Lock()
	if r.upErr != nil {
		err := r.upErr
		r.mu.Unlock()
		return false, err
	}
	if _, ok := r.pending[pk]; ok {
		r.stats.Dupes++
		r.mu.Unlock()
		return false, nil
	}
	r.mu.Unlock()
	if _, ok, err := r.cat.LookupBlob(t, id); err != nil {
		return false, err
	} else if ok {
		r.mu.Lock()
		r.stats.Dupes++
		r.mu.Unlock()
		return false, nil
	}
	r.mu.Lock()
	if _, ok := r.pending[pk]; ok {
		r.stats.Dupes++
		r.mu.Unlock()
		return false, nil
	}
	r.pending[pk] = struct{}{}
	r.mu.Unlock()

	sealed := r.sealBlob(t, id, data)
	return true, r.addSealed(ctx, t, id, sealed, uint32(len(data)))
}

// CopySealedBlob adds an already sealed blob (from another pack) to the pack
// being written, without decrypting it. Prune uses it to repack.
func (r *Repository) CopySealedBlob(ctx context.Context, t blob.Type, id blob.ID, sealed []byte, rawLen uint32) error {
	r.mu.Lock()
	r.pending[pendingKey{t, id}] = struct{}{}
	r.mu.Unlock()
	return r.addSealed(ctx, t, id, append([]byte(nil), sealed...), rawLen)
}

func (r *Repository) addSealed(ctx context.Context, t blob.Type, id blob.ID, sealed []byte, rawLen uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.cur[t]
	if cur == nil {
		size := r.cfg.PackSize + r.cfg.PackSize/8
		if t == blob.Tree {
			size = 1 << 20 // grows as needed; most runs write few trees
		}
		cur = &packBuf{data: make([]byte, 0, size)}
		r.cur[t] = cur
	}
	cur.entries = append(cur.entries, PackEntry{Type: t, ID: id, Offset: uint32(len(cur.data)), Length: uint32(len(sealed)), RawLength: rawLen})
	cur.data = append(cur.data, sealed...)
	r.stats.Blobs++
	r.stats.RawBytes += uint64(rawLen)
	r.stats.SealedBytes += uint64(len(sealed))
	if len(cur.data) >= r.cfg.PackSize {
		p := cur
		r.cur[t] = nil
		return r.startUploadLocked(ctx, p)
	}
	return nil
}

func (r *Repository) sealBlob(t blob.Type, id blob.ID, data []byte) []byte {
	buf := make([]byte, 1, len(data)+1)
	buf[0] = codecZstd
	buf = r.enc.EncodeAll(data, buf)
	if len(buf)-1 >= len(data) {
		buf = append(buf[:0], codecRaw)
		buf = append(buf, data...)
	}
	return r.cipher.Seal(make([]byte, 0, len(buf)+r.cipher.Overhead()), buf, blobAD(t, id))
}

func (r *Repository) startUploadLocked(ctx context.Context, p *packBuf) error {
	if r.uploads == nil {
		r.uploads = make(chan *packBuf)
		for i := 0; i < r.parallel; i++ {
			r.upWG.Add(1)
			go r.uploader(ctx, r.uploads)
		}
	}
	// Release the lock while waiting for a free uploader so other
	// workers can keep sealing.
	r.mu.Unlock()
	select {
	case r.uploads <- p:
	case <-ctx.Done():
		r.mu.Lock()
		return ctx.Err()
	}
	r.mu.Lock()
	return r.upErr
}

func (r *Repository) uploader(ctx context.Context, uploads <-chan *packBuf) {
	defer r.upWG.Done()
	for p := range uploads {
		ip, err := r.writePack(ctx, p)
		r.mu.Lock()
		if err != nil {
			// The pack's blobs are not stored: forget them, so that
			// saving them again stores them.
			r.dropPendingLocked(p.entries)
			if r.upErr == nil {
				r.upErr = err
			}
			r.mu.Unlock()
			continue
		}
		r.stats.Packs++
		r.unindex = append(r.unindex, ip)
		var flush []catalog.IndexedPack
		if len(r.unindex) >= indexEveryPacks {
			flush = r.unindex
			r.unindex = nil
		}
		r.mu.Unlock()
		if flush != nil {
			if err := r.writeIndex(ctx, flush); err != nil {
				// The packs are stored but not listed: the next Flush
				// tries their index again.
				r.mu.Lock()
				r.unindex = append(flush, r.unindex...)
				if r.upErr == nil {
					r.upErr = err
				}
				r.mu.Unlock()
			}
		}
	}
}

// writePack finishes a pack (header, trailer) and stores it.
func (r *Repository) writePack(ctx context.Context, p *packBuf) (catalog.IndexedPack, error) {
	hdr := r.cipher.Seal(nil, EncodePackHeader(p.entries), []byte(adPackHdr))
	p.data = append(p.data, hdr...)
	p.data = binary.LittleEndian.AppendUint32(p.data, uint32(len(hdr)))
	id := objstore.Sum(p.data)
	if err := r.store.Put(ctx, objstore.KindPack, id, p.data); err != nil {
		return catalog.IndexedPack{}, fmt.Errorf("repo: write pack %s (%d blobs, %d bytes): %w", id.Short(), len(p.entries), len(p.data), err)
	}
	ip := catalog.IndexedPack{ID: id, Size: uint32(len(p.data)), Blobs: make([]catalog.IndexedBlob, len(p.entries))}
	for i, e := range p.entries {
		ip.Blobs[i] = catalog.IndexedBlob{Type: e.Type, ID: e.ID, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength}
	}
	return ip, nil
}

func (r *Repository) writeIndex(ctx context.Context, packs []catalog.IndexedPack) error {
	if len(packs) == 0 {
		return nil
	}
	if _, err := r.SaveIndex(ctx, &Index{Packs: packs}); err != nil {
		return err
	}
	r.mu.Lock()
	for _, p := range packs {
		for _, b := range p.Blobs {
			delete(r.pending, pendingKey{b.Type, b.ID})
		}
	}
	r.mu.Unlock()
	return nil
}

// Flush writes the open pack, waits for every upload and writes an index
// object for everything written, so that all saved blobs are durable and
// indexed when it returns.
//
// When a pack could not be stored (a full pool, a failing disk), SaveBlob
// returns that error from then on and Flush reports it once, drops the
// blobs not stored yet and clears it: the blobs saved since the previous
// successful Flush may be lost, and a caller saves them again (it has not
// referenced them anywhere durable, since its Flush failed). Packs that
// were stored keep their blobs and are indexed by this or a later Flush.
// Callers that share a handle must therefore not interleave their
// save-then-flush sequences; the share filesystem runs one at a time.
func (r *Repository) Flush(ctx context.Context) error {
	r.mu.Lock()
	for t, p := range r.cur {
		r.cur[t] = nil
		if p == nil || len(p.entries) == 0 {
			continue
		}
		if r.upErr != nil {
			r.dropPendingLocked(p.entries)
			continue
		}
		if err := r.startUploadLocked(ctx, p); err != nil {
			// startUploadLocked fails only when ctx ends or an
			// upload failed; this pack is not stored.
			r.dropPendingLocked(p.entries)
			if r.upErr == nil {
				r.upErr = err
			}
		}
	}
	up := r.uploads
	r.uploads = nil
	r.mu.Unlock()
	if up != nil {
		close(up)
		r.upWG.Wait()
	}
	r.mu.Lock()
	upErr := r.upErr
	r.upErr = nil
	flush := r.unindex
	r.unindex = nil
	r.mu.Unlock()
	if err := r.writeIndex(ctx, flush); err != nil {
		r.mu.Lock()
		r.unindex = append(flush, r.unindex...)
		r.mu.Unlock()
		return errors.Join(upErr, err)
	}
	return upErr
}

// dropPendingLocked forgets blobs that will not be stored.
func (r *Repository) dropPendingLocked(entries []PackEntry) {
	for _, e := range entries {
		delete(r.pending, pendingKey{e.Type, e.ID})
	}
}

// Close flushes and releases the repository (not the store or catalog).
func (r *Repository) Close(ctx context.Context) error {
	err := r.Flush(ctx)
	r.enc.Close()
	r.dec.Close()
	return err
}

// LoadBlob reads, decrypts, decompresses and verifies a blob.
func (r *Repository) LoadBlob(ctx context.Context, t blob.Type, id blob.ID) ([]byte, error) {
	loc, ok, err := r.cat.LookupBlob(t, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("repo: load %s blob %s: %w", t, id, ErrBlobNotFound)
	}
	sealed, err := r.store.GetRange(ctx, objstore.KindPack, loc.Pack, int64(loc.Offset), int64(loc.Length))
	if err != nil {
		return nil, fmt.Errorf("repo: load %s blob %s from pack %s: %w", t, id.Short(), loc.Pack.Short(), err)
	}
	r.readStored.Add(uint64(len(sealed)))
	return r.OpenBlob(t, id, sealed, loc.RawLength)
}

// OpenBlob decrypts, decompresses and verifies a sealed blob.
func (r *Repository) OpenBlob(t blob.Type, id blob.ID, sealed []byte, rawLen uint32) ([]byte, error) {
	plain, err := r.cipher.Open(nil, sealed, blobAD(t, id))
	if err != nil {
		return nil, fmt.Errorf("repo: decrypt %s blob %s: %w", t, id.Short(), err)
	}
	if len(plain) == 0 {
		return nil, fmt.Errorf("repo: %s blob %s: empty", t, id.Short())
	}
	var data []byte
	switch plain[0] {
	case codecRaw:
		data = plain[1:]
	case codecZstd:
		data, err = r.dec.DecodeAll(plain[1:], make([]byte, 0, rawLen))
		if err != nil {
			return nil, fmt.Errorf("repo: decompress %s blob %s: %w", t, id.Short(), err)
		}
	default:
		return nil, fmt.Errorf("repo: %s blob %s: unknown codec %d", t, id.Short(), plain[0])
	}
	if r.key.BlobID(data) != id {
		return nil, fmt.Errorf("repo: %s blob %s: content does not match its id: %w", t, id.Short(), objstore.ErrCorrupt)
	}
	r.readBlobs.Add(1)
	r.readRaw.Add(uint64(len(data)))
	return data, nil
}

// ReadPackHeader reads and decrypts the header of a pack object.
func (r *Repository) ReadPackHeader(ctx context.Context, id objstore.ID, size int64) ([]PackEntry, error) {
	if size < 4 {
		return nil, fmt.Errorf("repo: pack %s: %d bytes is too short", id.Short(), size)
	}
	tail, err := r.store.GetRange(ctx, objstore.KindPack, id, size-4, 4)
	if err != nil {
		return nil, fmt.Errorf("repo: read pack %s: %w", id.Short(), err)
	}
	hl := int64(binary.LittleEndian.Uint32(tail))
	if hl > size-4 {
		return nil, fmt.Errorf("repo: pack %s: header length %d exceeds pack", id.Short(), hl)
	}
	sealed, err := r.store.GetRange(ctx, objstore.KindPack, id, size-4-hl, hl)
	if err != nil {
		return nil, fmt.Errorf("repo: read pack %s header: %w", id.Short(), err)
	}
	return r.decodePackHeader(id, sealed, size-4-hl)
}

func (r *Repository) decodePackHeader(id objstore.ID, sealed []byte, dataLen int64) ([]PackEntry, error) {
	plain, err := r.cipher.Open(nil, sealed, []byte(adPackHdr))
	if err != nil {
		return nil, fmt.Errorf("repo: decrypt pack %s header: %w", id.Short(), err)
	}
	ents, err := DecodePackHeader(plain, dataLen)
	if err != nil {
		return nil, fmt.Errorf("repo: pack %s: %w", id.Short(), err)
	}
	return ents, nil
}

// SplitPack parses a whole pack object and returns its entries.
func (r *Repository) SplitPack(id objstore.ID, pack []byte) ([]PackEntry, error) {
	if len(pack) < 4 {
		return nil, fmt.Errorf("repo: pack %s: too short", id.Short())
	}
	hl := int(binary.LittleEndian.Uint32(pack[len(pack)-4:]))
	if hl > len(pack)-4 {
		return nil, fmt.Errorf("repo: pack %s: header length %d exceeds pack", id.Short(), hl)
	}
	return r.decodePackHeader(id, pack[len(pack)-4-hl:len(pack)-4], int64(len(pack)-4-hl))
}
