package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/arkbox/arkbox/storage/objstore"
)

// List implements objstore.Store. It reads the shard directories of all
// present disks one prefix at a time, and one shard header per object.
func (p *Pool) List(ctx context.Context, kind objstore.Kind, fn func(objstore.Info) error) error {
	if err := p.check("list", kind); err != nil {
		return err
	}
	st := p.st.Load()
	disks := st.present()
	for prefix := 0; prefix < 256; prefix++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		pre := fmt.Sprintf("%02x", prefix)
		type cand struct {
			d   *disk
			idx int
		}
		cands := map[objstore.ID][]cand{}
		var ids []objstore.ID
		readable := 0
		var lastErr error
		for _, d := range disks {
			ents, err := os.ReadDir(filepath.Join(d.base, string(kind), pre))
			if err != nil && !os.IsNotExist(err) {
				lastErr = d.fault("list "+string(kind)+"/"+pre, err)
				continue
			}
			readable++
			for _, e := range ents {
				id, idx, ok := parseShardName(e.Name())
				if !ok || !e.Type().IsRegular() || id.String()[:2] != pre {
					continue
				}
				if cands[id] == nil {
					ids = append(ids, id)
				}
				cands[id] = append(cands[id], cand{d, idx})
			}
		}
		if readable == 0 && lastErr != nil {
			return fmt.Errorf("pool: list %s: %w", kind, lastErr)
		}
		for _, id := range ids {
			var size int64 = -1
			for _, c := range cands[id] {
				s, _ := c.d.openFile(kind, id, c.idx)
				if s != nil {
					s.close()
					// A misnamed shard of this object still tells its size.
					if s.hdr.kind == kind && s.hdr.id == id {
						size = s.hdr.objLen
						if s.hdr.index == c.idx {
							break
						}
					}
				}
			}
			if size < 0 {
				p.log.Warn("pool: list: object has no shard with a good header", "kind", kind, "object", id.String())
				continue
			}
			if err := fn(objstore.Info{Kind: kind, ID: id, Size: size}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements objstore.Store. It removes every shard file of the
// object on every present disk; shards on missing disks stay (scrub
// reports them when the disk returns).
func (p *Pool) Delete(ctx context.Context, kind objstore.Kind, id objstore.ID) error {
	if err := p.check("delete", kind); err != nil {
		return err
	}
	if p.readOnly {
		return fmt.Errorf("pool: delete %s/%s: %w", kind, id, objstore.ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.opMu.RLock()
	defer p.opMu.RUnlock()
	unlock := p.lock(id)
	defer unlock()
	st := p.st.Load()
	if err := p.journalMissed(st, opDelete, kind, id); err != nil {
		return fmt.Errorf("pool: delete %s/%s: %w", kind, id, err)
	}
	removed := 0
	var errs []error
	for _, d := range st.present() {
		dirty := false
		for idx := 0; idx < st.total; idx++ {
			err := os.Remove(d.shardPath(kind, id, idx))
			if err == nil {
				removed++
				dirty = true
			} else if !os.IsNotExist(err) {
				errs = append(errs, d.fault(fmt.Sprintf("delete shard %d of %s/%s", idx, kind, id), err))
			}
		}
		if dirty {
			if err := objstore.SyncDir(d.objDir(kind, id)); err != nil {
				errs = append(errs, d.fault("sync dir", err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("pool: delete %s/%s: %w", kind, id, errors.Join(errs...))
	}
	if removed == 0 {
		return fmt.Errorf("pool: delete %s/%s: %w", kind, id, objstore.ErrNotFound)
	}
	if anyMissing(st) {
		p.log.Warn("pool: deleted object while disks are missing; their shards of it remain", "kind", kind, "object", id.String())
	}
	return nil
}
