package repo

import (
	"context"
	"fmt"
	"sync"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/tree"
)

// PackCache serves small blobs from whole packs kept in memory, so that
// reading many small blobs of the same pack (a restore of a tree of small
// files) costs one read of the pack instead of one per blob. Large blobs are
// read directly. It holds at most Capacity packs. Safe for concurrent use.
type PackCache struct {
	r        *Repository
	capacity int

	mu    sync.Mutex
	packs map[objstore.ID]*cachedPack
	order []objstore.ID // least recently used first
}

type cachedPack struct {
	ready chan struct{}
	data  []byte
	err   error
}

// packCacheBlobLimit: blobs at least this large are read by range.
const packCacheBlobLimit = 256 << 10

// NewPackCache returns a cache of up to capacity packs.
func (r *Repository) NewPackCache(capacity int) *PackCache {
	if capacity < 1 {
		capacity = 1
	}
	return &PackCache{r: r, capacity: capacity, packs: map[objstore.ID]*cachedPack{}}
}

// LoadBlob is Repository.LoadBlob through the cache.
func (c *PackCache) LoadBlob(ctx context.Context, t blob.Type, id blob.ID) ([]byte, error) {
	loc, ok, err := c.r.cat.LookupBlob(t, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("repo: load %s blob %s: %w", t, id, ErrBlobNotFound)
	}
	if loc.Length >= packCacheBlobLimit {
		return c.r.LoadBlob(ctx, t, id)
	}
	data, err := c.pack(ctx, loc.Pack)
	if err != nil {
		return nil, fmt.Errorf("repo: load %s blob %s from pack %s: %w", t, id.Short(), loc.Pack.Short(), err)
	}
	end := uint64(loc.Offset) + uint64(loc.Length)
	if end > uint64(len(data)) {
		return nil, fmt.Errorf("repo: %s blob %s: outside pack %s", t, id.Short(), loc.Pack.Short())
	}
	return c.r.OpenBlob(t, id, data[loc.Offset:end], loc.RawLength)
}

func (c *PackCache) pack(ctx context.Context, id objstore.ID) ([]byte, error) {
	c.mu.Lock()
	p, ok := c.packs[id]
	if ok {
		c.touch(id)
		c.mu.Unlock()
		<-p.ready
		return p.data, p.err
	}
	p = &cachedPack{ready: make(chan struct{})}
	c.packs[id] = p
	c.order = append(c.order, id)
	for len(c.order) > c.capacity {
		old := c.order[0]
		c.order = c.order[1:]
		delete(c.packs, old)
	}
	c.mu.Unlock()
	p.data, p.err = c.r.store.Get(ctx, objstore.KindPack, id)
	c.r.readStored.Add(uint64(len(p.data)))
	close(p.ready)
	if p.err != nil {
		c.mu.Lock()
		if c.packs[id] == p {
			delete(c.packs, id)
			for i, o := range c.order {
				if o == id {
					c.order = append(c.order[:i], c.order[i+1:]...)
					break
				}
			}
		}
		c.mu.Unlock()
	}
	return p.data, p.err
}

func (c *PackCache) touch(id objstore.ID) {
	for i, o := range c.order {
		if o == id {
			copy(c.order[i:], c.order[i+1:])
			c.order[len(c.order)-1] = id
			return
		}
	}
}

// LoadTree is Repository.LoadTree through the cache.
func (c *PackCache) LoadTree(ctx context.Context, id blob.ID) (*tree.Tree, error) {
	b, err := c.LoadBlob(ctx, blob.Tree, id)
	if err != nil {
		return nil, err
	}
	return decodeTree(id, b)
}
