package maint

import (
	"context"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/repo"
)

// Stats describes the repository's size and savings.
type Stats struct {
	Snapshots int `json:"snapshots"`
	// LogicalBytes is the sum of the file sizes of every snapshot: what the
	// backups would occupy stored naively.
	LogicalBytes uint64 `json:"logical_bytes"`
	// UniqueBytes is the plaintext size of the distinct blobs.
	UniqueBytes uint64 `json:"unique_bytes"`
	DataBlobs   uint64 `json:"data_blobs"`
	TreeBlobs   uint64 `json:"tree_blobs"`
	// SealedBytes is the size of the blobs as stored (compressed, encrypted).
	SealedBytes uint64 `json:"sealed_bytes"`
	// StoredBytes is the size of all pack objects (blobs plus headers).
	StoredBytes uint64 `json:"stored_bytes"`
	Packs       uint64 `json:"packs"`
	// DiskBytes is what the objects occupy on the disks, with redundancy
	// (0 when the store cannot tell).
	DiskBytes uint64 `json:"disk_bytes"`

	DedupRatio       float64 `json:"dedup_ratio"`       // logical / unique
	CompressionRatio float64 `json:"compression_ratio"` // unique / sealed
	RedundancyFactor float64 `json:"redundancy_factor"` // disk / stored
}

// ComputeStats gathers Stats from the catalog; diskBytes is the store's
// on-disk usage (0 if unknown).
func ComputeStats(ctx context.Context, r *repo.Repository, diskBytes uint64) (*Stats, error) {
	s := &Stats{DiskBytes: diskBytes}
	snaps, err := r.Snapshots()
	if err != nil {
		return nil, err
	}
	s.Snapshots = len(snaps)
	for _, sn := range snaps {
		s.LogicalBytes += sn.Stats.Bytes
	}
	cat := r.Catalog()
	err = cat.ForEachBlob(func(t blob.Type, _ blob.ID, loc catalog.BlobLoc) error {
		if t == blob.Data {
			s.DataBlobs++
		} else {
			s.TreeBlobs++
		}
		s.UniqueBytes += uint64(loc.RawLength)
		s.SealedBytes += uint64(loc.Length)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = cat.ForEachPack(func(_ objstore.ID, p catalog.PackInfo) error {
		s.Packs++
		s.StoredBytes += uint64(p.Size)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.UniqueBytes > 0 {
		s.DedupRatio = float64(s.LogicalBytes) / float64(s.UniqueBytes)
	}
	if s.SealedBytes > 0 {
		s.CompressionRatio = float64(s.UniqueBytes) / float64(s.SealedBytes)
	}
	if s.StoredBytes > 0 && diskBytes > 0 {
		s.RedundancyFactor = float64(diskBytes) / float64(s.StoredBytes)
	}
	return s, nil
}
