package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/tree"
)

// Snapshot is one version of a source: the root tree plus what describes it.
type Snapshot struct {
	Time     time.Time     `json:"time"`
	Source   string        `json:"source"`
	Host     string        `json:"host,omitempty"`
	Paths    []string      `json:"paths,omitempty"`
	Tags     []string      `json:"tags,omitempty"`
	Parent   *objstore.ID  `json:"parent,omitempty"`
	Tree     blob.ID       `json:"tree"`
	Stats    SnapshotStats `json:"stats"`
	Archived bool          `json:"archived,omitempty"`
	// Original is the first id of a snapshot whose object was rewritten
	// (archive/unarchive).
	Original *objstore.ID `json:"original,omitempty"`
	Program  string       `json:"program,omitempty"`

	// ID is the snapshot object's id (not stored in the object).
	ID objstore.ID `json:"-"`
}

// SnapshotStats summarises a backup run.
type SnapshotStats struct {
	Files          uint64        `json:"files"`
	Dirs           uint64        `json:"dirs"`
	Others         uint64        `json:"others,omitempty"`
	Bytes          uint64        `json:"bytes"`
	NewFiles       uint64        `json:"new_files"`
	ChangedFiles   uint64        `json:"changed_files"`
	UnchangedFiles uint64        `json:"unchanged_files"`
	NewBlobs       uint64        `json:"new_blobs"`
	NewRawBytes    uint64        `json:"new_raw_bytes"`
	NewStoredBytes uint64        `json:"new_stored_bytes"`
	Errors         uint64        `json:"errors,omitempty"`
	Duration       time.Duration `json:"duration_ns"`
}

// SaveSnapshot writes sn as a snapshot object and records it in the
// catalog. The data it references must be flushed first.
func (r *Repository) SaveSnapshot(ctx context.Context, sn *Snapshot) (objstore.ID, error) {
	plain, err := json.Marshal(sn)
	if err != nil {
		return objstore.ID{}, err
	}
	id, err := r.saveSealed(ctx, objstore.KindSnapshot, plain, adSnapshot)
	if err != nil {
		return id, err
	}
	sn.ID = id
	if err := r.cat.PutSnapshot(id, plain); err != nil {
		return id, fmt.Errorf("repo: %w", err)
	}
	return id, nil
}

// DeleteSnapshot removes a snapshot object.
func (r *Repository) DeleteSnapshot(ctx context.Context, id objstore.ID) error {
	if err := r.store.Delete(ctx, objstore.KindSnapshot, id); err != nil && !errors.Is(err, objstore.ErrNotFound) {
		return fmt.Errorf("repo: delete snapshot %s: %w", id.Short(), err)
	}
	return r.cat.DeleteSnapshot(id)
}

// Snapshots lists every snapshot, oldest first.
func (r *Repository) Snapshots() ([]*Snapshot, error) {
	var out []*Snapshot
	err := r.cat.ForEachSnapshot(func(id objstore.ID, plain []byte) error {
		sn := &Snapshot{}
		if err := json.Unmarshal(plain, sn); err != nil {
			return fmt.Errorf("repo: snapshot %s: %w", id.Short(), err)
		}
		sn.ID = id
		out = append(out, sn)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID.String() < out[j].ID.String()
	})
	return out, nil
}

// FindSnapshot resolves "latest", "latest:SOURCE" or a hex id prefix.
func (r *Repository) FindSnapshot(ref string) (*Snapshot, error) {
	all, err := r.Snapshots()
	if err != nil {
		return nil, err
	}
	if ref == "latest" || strings.HasPrefix(ref, "latest@") {
		src := strings.TrimPrefix(strings.TrimPrefix(ref, "latest"), "@")
		for i := len(all) - 1; i >= 0; i-- {
			if src == "" || all[i].Source == src {
				return all[i], nil
			}
		}
		return nil, fmt.Errorf("repo: no snapshot matches %q", ref)
	}
	ref = strings.ToLower(ref)
	if len(ref) < 4 {
		return nil, fmt.Errorf("repo: snapshot id %q: give at least 4 hex digits", ref)
	}
	var found *Snapshot
	for _, sn := range all {
		if strings.HasPrefix(sn.ID.String(), ref) {
			if found != nil {
				return nil, fmt.Errorf("repo: snapshot id %q is ambiguous: give more digits", ref)
			}
			found = sn
		}
	}
	if found == nil {
		return nil, fmt.Errorf("repo: no snapshot with id %q (list them with `arkbox snapshots`)", ref)
	}
	return found, nil
}

// SaveTree encodes and stores a tree, returning its blob id.
func (r *Repository) SaveTree(ctx context.Context, t *tree.Tree) (blob.ID, error) {
	b, err := t.Encode()
	if err != nil {
		return blob.ID{}, fmt.Errorf("repo: encode tree: %w", err)
	}
	id, _, err := r.SaveBlob(ctx, blob.Tree, b)
	return id, err
}

// LoadTree loads and decodes a tree blob.
func (r *Repository) LoadTree(ctx context.Context, id blob.ID) (*tree.Tree, error) {
	b, err := r.LoadBlob(ctx, blob.Tree, id)
	if err != nil {
		return nil, err
	}
	return decodeTree(id, b)
}

func decodeTree(id blob.ID, b []byte) (*tree.Tree, error) {
	t, err := tree.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("repo: tree %s: %w", id.Short(), err)
	}
	return t, nil
}
