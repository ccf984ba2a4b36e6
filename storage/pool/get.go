package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/arkbox/arkbox/storage/objstore"
)

// locate finds a good file of shard index under its own name, trying the
// predicted disk first and then every other present disk. bad reports
// whether a bad file was seen on the way.
func (p *Pool) locate(st *state, order []*disk, kind objstore.Kind, id objstore.ID, index int) (s *shardFile, bad bool) {
	first := predicted(order, index)
	try := func(d *disk) *shardFile {
		if d == nil || !d.present() {
			return nil
		}
		s, err := d.openShard(kind, id, index)
		if err != nil {
			bad = true
		}
		return s
	}
	if s := try(first); s != nil {
		return s, bad
	}
	for _, d := range order {
		if d != first {
			if s := try(d); s != nil {
				return s, bad
			}
		}
	}
	return nil, bad
}

// Get implements objstore.Store. When all data shards are good it reads
// only them; otherwise it reads every shard, reconstructs, and (unless the
// pool is read-only) rewrites what was bad.
func (p *Pool) Get(ctx context.Context, kind objstore.Kind, id objstore.ID) ([]byte, error) {
	if err := p.check("get", kind); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st := p.st.Load()
	if data, ok := p.getFast(ctx, st, kind, id); ok {
		return data, nil
	}
	return p.getSlow(ctx, st, kind, id)
}

// getFast reads the k data shards where they are expected and returns
// false on any anomaly.
func (p *Pool) getFast(ctx context.Context, st *state, kind objstore.Kind, id objstore.ID) ([]byte, bool) {
	order := st.order(id)
	s0, bad := p.locate(st, order, kind, id, 0)
	if s0 == nil || bad {
		if s0 != nil {
			s0.close()
		}
		return nil, false
	}
	h := s0.hdr
	k, size := h.k, h.payloadLen
	out := make([]byte, int64(k)*size)
	files := make([]*shardFile, k)
	files[0] = s0
	okAll := true
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < k; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := files[i]
			if s == nil {
				var bad bool
				s, bad = p.locate(st, order, kind, id, i)
				if s == nil || bad || s.hdr.group() != h.group() {
					if s != nil {
						s.close()
					}
					mu.Lock()
					okAll = false
					mu.Unlock()
					return
				}
			}
			defer s.close()
			if ctx.Err() != nil || s.readPayload(out[int64(i)*size:int64(i+1)*size], 0) != nil {
				mu.Lock()
				okAll = false
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if !okAll {
		return nil, false
	}
	out = out[:h.objLen]
	if objstore.Sum(out) != id {
		return nil, false
	}
	return out, true
}

// getSlow reads every shard, reconstructs and repairs.
func (p *Pool) getSlow(ctx context.Context, st *state, kind objstore.Kind, id objstore.ID) ([]byte, error) {
	if p.readOnly {
		l, err := p.load(ctx, st, kind, id, true)
		if err != nil {
			return nil, err
		}
		return l.data, nil
	}
	l, _, _, err := p.repairObject(ctx, kind, id)
	if l != nil && l.data != nil {
		if err != nil {
			p.log.Warn("pool: read repair failed", "kind", kind, "object", id.String(), "err", err)
		}
		return l.data, nil
	}
	return nil, err
}

// anyHeader returns the header of some good shard of (kind, id),
// preferring one under its own name. sawBad reports whether a bad or
// misnamed file was seen on the way.
func (p *Pool) anyHeader(st *state, order []*disk, kind objstore.Kind, id objstore.ID) (h *shardHeader, sawBad bool, err error) {
	var fallback *shardHeader
	for idx := 0; idx < st.total; idx++ {
		s, bad := p.locate(st, order, kind, id, idx)
		sawBad = sawBad || bad
		if s != nil {
			s.close()
			return s.hdr, sawBad, nil
		}
		if bad && fallback == nil {
			// A misnamed file of this object still tells its size.
			for _, d := range order {
				if !d.present() {
					continue
				}
				if f, _ := d.openFile(kind, id, idx); f != nil {
					f.close()
					if f.hdr.kind == kind && f.hdr.id == id {
						fallback = f.hdr
						break
					}
				}
			}
		}
	}
	if fallback != nil {
		return fallback, true, nil
	}
	if sawBad {
		return nil, true, fmt.Errorf("pool: %s/%s: no shard with a good header: %w", kind, id, objstore.ErrCorrupt)
	}
	return nil, false, fmt.Errorf("pool: %s/%s: %w", kind, id, objstore.ErrNotFound)
}

// GetRange implements objstore.Store. It reads only the checksum blocks
// of the data shards that cover the range; a bad or missing shard is
// reconstructed for those blocks only from k other shards, and the object
// is then repaired unless the pool is read-only.
func (p *Pool) GetRange(ctx context.Context, kind objstore.Kind, id objstore.ID, off, n int64) ([]byte, error) {
	if err := p.check("get range", kind); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("pool: get range %s/%s [%d,+%d): %w", kind, id, off, n, objstore.ErrRange)
	}
	st := p.st.Load()
	order := st.order(id)
	h, sawBad, err := p.anyHeader(st, order, kind, id)
	if err != nil {
		if errors.Is(err, objstore.ErrCorrupt) {
			// Every header we tried is bad: let a full load decide.
			data, err := p.getSlow(ctx, st, kind, id)
			if err != nil {
				return nil, err
			}
			return sliceRange(kind, id, data, off, n)
		}
		return nil, err
	}
	if off > h.objLen || n > h.objLen-off {
		return nil, fmt.Errorf("pool: get range %s/%s [%d,+%d) of %d bytes: %w", kind, id, off, n, h.objLen, objstore.ErrRange)
	}
	out := make([]byte, n)
	if n == 0 {
		return out, nil
	}
	size, bs := h.payloadLen, h.blockSize()
	reconstructed := false
	for i := off / size; i < int64(h.k) && i*size < off+n; i++ {
		// Payload range [a, b) of shard i, widened to blocks [ba, bb).
		a := max(off, i*size) - i*size
		b := min(off+n, (i+1)*size) - i*size
		ba := a / bs * bs
		bb := min(ceilDiv(b, bs)*bs, size)
		buf := make([]byte, bb-ba)
		s, bad := p.locate(st, order, kind, id, int(i))
		sawBad = sawBad || bad
		okShard := s != nil && s.hdr.group() == h.group()
		if okShard {
			if err := s.readPayload(buf, ba); err != nil {
				sawBad, okShard = true, false
			}
		}
		if s != nil {
			s.close()
		}
		if !okShard {
			if err := p.rangeReconstruct(ctx, st, order, kind, id, h, int(i), ba, buf); err != nil {
				data, err := p.getSlow(ctx, st, kind, id)
				if err != nil {
					return nil, err
				}
				return sliceRange(kind, id, data, off, n)
			}
			reconstructed = true
		}
		copy(out[i*size+a-off:], buf[a-ba:b-ba])
	}
	if (sawBad || reconstructed && !anyMissing(st)) && !p.readOnly {
		if _, _, _, err := p.repairObject(ctx, kind, id); err != nil {
			p.log.Warn("pool: read repair failed", "kind", kind, "object", id.String(), "err", err)
		}
	}
	return out, nil
}

func anyMissing(st *state) bool {
	for _, d := range st.members {
		if !d.present() {
			return true
		}
	}
	return false
}

func sliceRange(kind objstore.Kind, id objstore.ID, data []byte, off, n int64) ([]byte, error) {
	L := int64(len(data))
	if off > L || n > L-off {
		return nil, fmt.Errorf("pool: get range %s/%s [%d,+%d) of %d bytes: %w", kind, id, off, n, L, objstore.ErrRange)
	}
	return data[off : off+n : off+n], nil
}

// rangeReconstruct rebuilds payload bytes [ba, ba+len(buf)) of data
// shard i from the same bytes of k other shards.
func (p *Pool) rangeReconstruct(ctx context.Context, st *state, order []*disk, kind objstore.Kind, id objstore.ID,
	h *shardHeader, i int, ba int64, buf []byte) error {
	k, m := h.k, h.m
	shards := make([][]byte, k+m)
	got := 0
	for j := 0; j < k+m && got < k; j++ {
		if j == i {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		s, _ := p.locate(st, order, kind, id, j)
		if s == nil {
			continue
		}
		if s.hdr.group() == h.group() {
			b := make([]byte, len(buf))
			if s.readPayload(b, ba) == nil {
				shards[j] = b
				got++
			}
		}
		s.close()
	}
	if got < k {
		return fmt.Errorf("pool: get range %s/%s: %d good shards, need %d: %w", kind, id, got, k, objstore.ErrCorrupt)
	}
	if k == 1 {
		for _, s := range shards {
			if s != nil {
				copy(buf, s)
				return nil
			}
		}
	}
	enc, err := p.encoder(k, m)
	if err != nil {
		return err
	}
	shards[i] = buf[:0]
	required := make([]bool, k)
	required[i] = true
	if err := enc.ReconstructSome(shards, required); err != nil {
		return fmt.Errorf("pool: get range %s/%s: %v: %w", kind, id, err, objstore.ErrCorrupt)
	}
	if &shards[i][0] != &buf[0] {
		copy(buf, shards[i])
	}
	return nil
}

// Stat implements objstore.Store. It reads one shard header.
func (p *Pool) Stat(ctx context.Context, kind objstore.Kind, id objstore.ID) (objstore.Info, error) {
	if err := p.check("stat", kind); err != nil {
		return objstore.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return objstore.Info{}, err
	}
	st := p.st.Load()
	h, _, err := p.anyHeader(st, st.order(id), kind, id)
	if err != nil {
		return objstore.Info{}, fmt.Errorf("pool: stat: %w", err)
	}
	return objstore.Info{Kind: kind, ID: id, Size: h.objLen}, nil
}
