package sharefs

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/tree"
)

// Read-ahead: a reader that reads chunk i after chunk i-1 (or chunk 0)
// loads the next readAheadChunks chunks in the background, each verified
// like any read, so that reading, decrypting and decompressing the next
// chunks overlaps the protocol sending this one and uses every core.
// Background loads are bounded per store (readers), so many readers do
// not multiply memory; a reader that finds no slot reads on demand.
const (
	readAheadChunks = 4
	readAheadLoads  = 4 // per store, at once
	// keptBehind: chunks behind the front kept for requests that arrive
	// late (a protocol has several reads in flight, served out of order).
	keptBehind = 4
)

// chunkReader reads a file's clean content: each chunk is loaded once
// (concurrent reads of it wait for that load) and the last ones are kept
// for the next reads. Safe for concurrent use.
type chunkReader struct {
	cache   *repo.PackCache
	slots   chan struct{} // the store's read-ahead slots
	what    string        // "inode N", for errors
	content []tree.Chunk
	offsets []uint64 // offsets[i] = start of content[i]
	end     uint64

	loaded *atomic.Int64 // the store's count of chunk loads

	mu    sync.Mutex
	loads map[int]*chunkLoad // loaded or loading, around the front
	front int                // the furthest chunk read (-1: none)
	ahead int                // chunks up to here are loaded or loading
}

// chunkLoad is one chunk's load; ready closes when data or err is set.
type chunkLoad struct {
	ready chan struct{}
	data  []byte
	err   error
}

func (s *Store) newChunkReader(what string, content []tree.Chunk) *chunkReader {
	c := &chunkReader{cache: s.cache, slots: s.readAhead, loaded: &s.chunkLoads, what: what, content: content,
		offsets: make([]uint64, len(content)), loads: map[int]*chunkLoad{}, front: -1, ahead: -1}
	for i, ch := range content {
		c.offsets[i] = c.end
		c.end += uint64(ch.Size)
	}
	return c
}

// readAt fills p with the content at off; bytes at or past limit read as
// zeros.
func (c *chunkReader) readAt(ctx context.Context, p []byte, off, limit uint64) error {
	for len(p) > 0 {
		if off >= limit {
			clear(p)
			return nil
		}
		i := sort.Search(len(c.offsets), func(i int) bool { return c.offsets[i] > off }) - 1
		if i < 0 || off >= c.end {
			return fmt.Errorf("sharefs: %s: offset %d outside its chunks", c.what, off)
		}
		data, err := c.chunk(ctx, i)
		if err != nil {
			return fmt.Errorf("sharefs: read %s at %d: %w", c.what, off, err)
		}
		n := uint64(copy(p, data[off-c.offsets[i]:]))
		if off+n > limit {
			clear(p[limit-off : n])
		}
		p, off = p[n:], off+n
	}
	return nil
}

// chunk returns chunk i, loading it (once) if needed, and starts the
// read-ahead when reads go forward.
func (c *chunkReader) chunk(ctx context.Context, i int) ([]byte, error) {
	c.mu.Lock()
	l := c.loads[i]
	mine := l == nil
	if mine {
		l = &chunkLoad{ready: make(chan struct{})}
		// Far behind the front: a one-off read, not kept.
		if i >= c.front-keptBehind {
			c.loads[i] = l
		}
	}
	if i > c.front {
		sequential := i == c.front+1
		c.front = i
		for j := range c.loads {
			if j < i-keptBehind || j > i+readAheadChunks {
				delete(c.loads, j)
			}
		}
		if sequential {
			c.startAheadLocked(i)
		} else {
			c.ahead = i
		}
	}
	c.mu.Unlock()
	if mine {
		c.load(ctx, i, l)
	}
	select {
	case <-l.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if l.err != nil && !mine {
		// A read-ahead failed: try again now, to report a real read's error.
		c.mu.Lock()
		if c.loads[i] == l {
			delete(c.loads, i)
		}
		c.mu.Unlock()
		return c.chunk(ctx, i)
	}
	return l.data, l.err
}

// startAheadLocked starts background loads of the chunks after i, as
// many as there are free slots (called with mu held).
func (c *chunkReader) startAheadLocked(i int) {
	for j := max(c.ahead+1, i+1); j <= i+readAheadChunks && j < len(c.content); j++ {
		if _, ok := c.loads[j]; ok {
			c.ahead = j
			continue
		}
		select {
		case c.slots <- struct{}{}:
		default:
			return // busy: the rest is read on demand
		}
		l := &chunkLoad{ready: make(chan struct{})}
		c.loads[j] = l
		c.ahead = j
		go func() {
			defer func() { <-c.slots }()
			c.load(context.Background(), j, l)
		}()
	}
}

// load reads and verifies chunk i into l.
func (c *chunkReader) load(ctx context.Context, i int, l *chunkLoad) {
	defer close(l.ready)
	c.loaded.Add(1)
	ch := c.content[i]
	data, err := c.cache.LoadBlob(ctx, blob.Data, ch.ID)
	if err == nil && len(data) != int(ch.Size) {
		err = fmt.Errorf("chunk %s has %d bytes, the file lists %d", ch.ID.Short(), len(data), ch.Size)
	}
	l.data, l.err = data, err
}

// inodeName names inode ino in errors.
func inodeName(ino uint64) string { return "inode " + strconv.FormatUint(ino, 10) }
