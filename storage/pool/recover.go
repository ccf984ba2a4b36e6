package pool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/arkbox/arkbox/storage/objstore"
)

// tempShard is a complete, verified temp shard file left by a Put that
// was interrupted.
type tempShard struct {
	d    *disk
	path string
	hdr  *shardHeader
}

type objKey struct {
	kind objstore.Kind
	id   objstore.ID
}

// recoverTemps finishes or undoes Puts interrupted by a crash. Put fsyncs
// the temp files of all shards before it renames any into place, so:
// every temp file that verifies completely is a finished shard; an object
// whose verified temp files and shards in place reach k distinct shards
// is completed by renaming its temp files into place; all other temp
// files (partial writes, objects short of k shards) are removed.
func (p *Pool) recoverTemps(ctx context.Context, st *state) error {
	temps := map[objKey][]tempShard{}
	var keys []objKey
	removed, finished := 0, 0
	var errs []error
	for _, d := range st.present() {
		if d.getState() != DiskOK {
			continue
		}
		n, err := removeStrayTemps(d.base)
		removed += n
		if err != nil {
			errs = append(errs, d.fault("remove stale temp files", err))
		}
		dir := filepath.Join(d.base, tmpDirName)
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, d.fault("read temp files", err))
			continue
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return err
			}
			path := filepath.Join(dir, e.Name())
			kind, id, idx, ok := parseTempName(e.Name())
			var t *tempShard
			if ok && e.Type().IsRegular() {
				t = verifyTemp(d, path, kind, id, idx)
			}
			if t == nil {
				if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, d.fault("remove temp file", err))
				}
				removed++
				continue
			}
			k := objKey{kind, id}
			if temps[k] == nil {
				keys = append(keys, k)
			}
			temps[k] = append(temps[k], *t)
		}
	}
	for _, k := range keys {
		ts := temps[k]
		g := ts[0].hdr.group()
		have := map[int]bool{}
		for _, t := range ts {
			if t.hdr.group() == g {
				have[t.hdr.index] = true
			}
		}
		if l, _ := p.load(ctx, st, k.kind, k.id, false); l != nil && l.group == g {
			for i, named := range l.named {
				if named {
					have[i] = true
				}
			}
		}
		complete := len(have) >= g.k
		for _, t := range ts {
			if complete && t.hdr.group() == g {
				if err := t.d.commitTemp(k.kind, k.id, t.hdr.index, t.path); err != nil {
					errs = append(errs, err)
				} else {
					finished++
					continue
				}
			}
			if err := os.Remove(t.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, t.d.fault("remove temp file", err))
			}
			removed++
		}
		if complete {
			p.log.Info("pool: completed an interrupted write", "kind", k.kind, "object", k.id.String(), "shards", len(have))
		}
	}
	if removed > 0 || finished > 0 {
		p.log.Info("pool: recovered interrupted writes", "completed shards", finished, "removed temp files", removed)
	}
	return errors.Join(errs...)
}

// verifyTemp returns the temp shard at path if it is complete and its
// header and payload verify.
func verifyTemp(d *disk, path string, kind objstore.Kind, id objstore.ID, idx int) *tempShard {
	s, err := d.openPath(path, idx)
	if s == nil || err != nil {
		return nil
	}
	defer s.close()
	if s.checkName(kind, id) != nil {
		return nil
	}
	if s.verifyPayload(make([]byte, 16*blockSize)) != nil {
		return nil
	}
	return &tempShard{d: d, path: path, hdr: s.hdr}
}

// removeStrayTemps removes what objstore.WriteFileAtomic leaves behind
// in the arkbox folder when interrupted (".tmp-pool.json-*").
func removeStrayTemps(base string) (int, error) {
	ents, err := os.ReadDir(base)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			if err := os.Remove(filepath.Join(base, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, fmt.Errorf("remove %s: %w", e.Name(), err)
			}
			n++
		}
	}
	return n, nil
}
