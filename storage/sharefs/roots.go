package sharefs

import (
	"context"
	"fmt"

	"github.com/arkbox/arkbox/storage/blob"
	bolt "go.etcd.io/bbolt"
)

// LiveRoots reports what the live shares kept in the catalog database db
// (removed shares included, whose data stays) refer to in the repository:
// the clean content chunks of every file and the cached tree of every
// directory whose cache is valid (the next snapshot reuses it). Prune
// keeps these as it keeps what snapshots reach. In a running server call
// it inside Store.Exclusive, so that no commit changes them meanwhile. A
// database without shares has no roots.
func LiveRoots(ctx context.Context, db *bolt.DB, markTree, markData func(blob.ID) error) error {
	var names []string
	err := db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bRoot)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("sharefs: live roots: %w", err)
	}
	for _, name := range names {
		// Collected first: marking writes to the same database.
		var trees, data []blob.ID
		err := db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bRoot).Bucket([]byte(name))
			if b == nil || b.Bucket(bInodes) == nil {
				return nil
			}
			return b.Bucket(bInodes).ForEach(func(k, v []byte) error {
				in, err := decodeInode(v)
				if err != nil {
					return err
				}
				for _, c := range in.Content {
					data = append(data, c.ID)
				}
				if in.TreeValid && !in.Tree.IsZero() {
					trees = append(trees, in.Tree)
				}
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("sharefs: live roots of share %s: %w", name, err)
		}
		for _, id := range trees {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := markTree(id); err != nil {
				return fmt.Errorf("sharefs: share %s: cached tree %s: %w", name, id.Short(), err)
			}
		}
		for _, id := range data {
			if err := markData(id); err != nil {
				return fmt.Errorf("sharefs: share %s: %w", name, err)
			}
		}
	}
	return nil
}
