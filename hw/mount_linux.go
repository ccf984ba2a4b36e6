//go:build linux

package hw

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MountFlags are the flags Mount uses: no access-time updates (they would
// turn every read of a USB disk into a write), and nothing on a data disk
// may be executed or act as a device.
const MountFlags = unix.MS_NOATIME | unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC

// MountData is the ext4 option string Mount passes: on a metadata error the
// kernel remounts the disk read-only instead of carrying on.
const MountData = "errors=remount-ro"

// Mount finds the ext4 filesystem with the given UUID on the disks under
// SysRoot and mounts it at Dir/UUID, creating the folder. If it is already
// mounted there, Mount does nothing. It returns the mount point. Needs root.
func Mount(ctx context.Context, o MountOptions) (string, error) {
	uuid := strings.ToLower(o.UUID)
	if uuid == "" || strings.ContainsAny(uuid, "/\x00") || uuid == "." || uuid == ".." {
		return "", fmt.Errorf("hw: mount %q: not a filesystem UUID", o.UUID)
	}
	target := filepath.Join(o.Dir, uuid)
	mi := o.MountInfo
	if mi == "" {
		mi = "/proc/self/mountinfo"
	}
	if ms, err := ReadMountInfo(mi); err == nil {
		for _, m := range ms {
			if m.MountPoint == target {
				return target, nil
			}
		}
	}
	dev, err := FindFilesystem(ctx, DiscoverOptions{SysRoot: o.SysRoot, DevRoot: o.DevRoot, MountInfo: "-", Virtual: true}, uuid)
	if err != nil {
		return "", fmt.Errorf("hw: mount %s: %w", uuid, err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", fmt.Errorf("hw: mount %s: %w", uuid, err)
	}
	flags := uintptr(MountFlags)
	if o.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, target, "ext4", flags, MountData); err != nil {
		return "", fmt.Errorf("hw: mount %s (%s) at %s: %w", uuid, dev, target, err)
	}
	return target, nil
}

// Unmount unmounts a mount point made by Mount and removes its folder.
func Unmount(ctx context.Context, mountPoint string) error {
	if err := unix.Unmount(mountPoint, 0); err != nil {
		return fmt.Errorf("hw: unmount %s: %w", mountPoint, err)
	}
	if err := os.Remove(mountPoint); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hw: unmount %s: remove folder: %w", mountPoint, err)
	}
	return nil
}

// UnmountLazy detaches a mount point whose disk has gone (MNT_DETACH):
// the kernel takes it out of the tree at once and lets go of the
// filesystem when nothing uses it any more. It then removes the folder.
func UnmountLazy(ctx context.Context, mountPoint string) error {
	if err := unix.Unmount(mountPoint, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("hw: unmount %s lazily: %w", mountPoint, err)
	}
	if err := os.Remove(mountPoint); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hw: unmount %s lazily: remove folder: %w", mountPoint, err)
	}
	return nil
}

// ensureNode creates a block device node for dev ("major:minor") at path
// if there is none.
func ensureNode(path, dev string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(dev, "%d:%d", &major, &minor); err != nil {
		return "", fmt.Errorf("create device node %s: bad device number %q", path, dev)
	}
	if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil {
		return "", fmt.Errorf("create device node %s: %w", path, err)
	}
	return path, nil
}
