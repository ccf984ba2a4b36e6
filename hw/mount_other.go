//go:build !linux

package hw

import (
	"context"
	"errors"
	"fmt"
)

var errNotLinux = errors.New("only on Linux")

// Mount is only implemented on Linux.
func Mount(ctx context.Context, o MountOptions) (string, error) {
	return "", fmt.Errorf("hw: mount %s: %w", o.UUID, errNotLinux)
}

// Unmount is only implemented on Linux.
func Unmount(ctx context.Context, mountPoint string) error {
	return fmt.Errorf("hw: unmount %s: %w", mountPoint, errNotLinux)
}

// UnmountLazy is only implemented on Linux.
func UnmountLazy(ctx context.Context, mountPoint string) error {
	return fmt.Errorf("hw: unmount %s lazily: %w", mountPoint, errNotLinux)
}

func ensureNode(path, dev string) (string, error) { return path, nil }

// ReadSMART is only implemented on Linux.
func ReadSMART(ctx context.Context, d Disk) (*Health, error) {
	return nil, fmt.Errorf("hw: read smart of %s: %w", d.Path, errNotLinux)
}

// ReadSMARTPages is only implemented on Linux.
func ReadSMARTPages(ctx context.Context, d Disk) (*SMARTPages, error) {
	return nil, fmt.Errorf("hw: read smart of %s: %w", d.Path, errNotLinux)
}
