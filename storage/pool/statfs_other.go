//go:build !linux

package pool

import (
	"errors"
	"fmt"
)

// statDisk reports file system sizes on Linux only, the appliance's
// operating system; elsewhere sizes are unknown and read-only mounts are
// found by the first failed write.
func statDisk(dir string) (total, free uint64, readOnly bool, err error) {
	return 0, 0, false, fmt.Errorf("statfs %s: %w", dir, errors.ErrUnsupported)
}
