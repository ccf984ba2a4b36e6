package home

import (
	"context"
	"fmt"

	"github.com/arkbox/arkbox/storage/objstore"
)

// Until the erasure-coded pool lands, a "pool" of one folder is a plain
// directory store.
func createPool(ctx context.Context, disks []string, opt Options) (objstore.Store, error) {
	if len(disks) != 1 {
		return nil, fmt.Errorf("home: pools of %d disks are not available in this build", len(disks))
	}
	return objstore.OpenDir(disks[0], objstore.DirOptions{Create: true})
}

func openPool(ctx context.Context, disks []string, opt Options) (objstore.Store, error) {
	if len(disks) != 1 {
		return nil, fmt.Errorf("home: pools of %d disks are not available in this build", len(disks))
	}
	return objstore.OpenDir(disks[0], objstore.DirOptions{ReadOnly: opt.ReadOnly})
}
