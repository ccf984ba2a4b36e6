// Package fsnode converts between files on a local filesystem and tree
// nodes: reading type, mode, owner, times, device numbers, symlink targets
// and extended attributes, and applying them back on restore.
package fsnode

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"sort"
	"strconv"
	"sync"
	"syscall"

	"github.com/arkbox/arkbox/storage/tree"
	"golang.org/x/sys/unix"
)

// Names caches uid/gid → name lookups. The zero value is ready to use; it is
// safe for concurrent use.
type Names struct {
	mu     sync.Mutex
	users  map[uint32]string
	groups map[uint32]string
}

// User returns the name of uid ("" if unknown).
func (n *Names) User(uid uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.users == nil {
		n.users = map[uint32]string{}
	}
	if v, ok := n.users[uid]; ok {
		return v
	}
	name := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	n.users[uid] = name
	return name
}

// Group returns the name of gid ("" if unknown).
func (n *Names) Group(gid uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.groups == nil {
		n.groups = map[uint32]string{}
	}
	if v, ok := n.groups[gid]; ok {
		return v
	}
	name := ""
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		name = g.Name
	}
	n.groups[gid] = name
	return name
}

// TypeOf maps a file mode to a node type (0 if unsupported).
func TypeOf(m fs.FileMode) tree.Type {
	switch {
	case m.IsRegular():
		return tree.File
	case m.IsDir():
		return tree.Dir
	case m&fs.ModeSymlink != 0:
		return tree.Symlink
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		return tree.CharDev
	case m&fs.ModeDevice != 0:
		return tree.BlockDev
	case m&fs.ModeNamedPipe != 0:
		return tree.FIFO
	case m&fs.ModeSocket != 0:
		return tree.Socket
	}
	return 0
}

// Options says what to read besides the stat data.
type Options struct {
	Xattrs bool
	Names  *Names // nil: no user/group names
}

// FromStat builds a node (without content) for the file at path, whose
// lstat result is fi.
func FromStat(path, name string, fi fs.FileInfo, opt Options) (tree.Node, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return tree.Node{}, fmt.Errorf("fsnode: %s: no stat data", path)
	}
	n := tree.Node{
		Name:  name,
		Type:  TypeOf(fi.Mode()),
		Mode:  uint32(st.Mode) & tree.ModeMask,
		UID:   st.Uid,
		GID:   st.Gid,
		MTime: st.Mtim.Nano(),
		// ATime is not recorded: reading a file changes it, and a
		// backup must not see every file it read as changed.
		CTime:  st.Ctim.Nano(),
		Inode:  st.Ino,
		Device: st.Dev,
		Links:  uint32(st.Nlink),
	}
	if n.Type == 0 {
		return n, fmt.Errorf("fsnode: %s: unsupported file type %v", path, fi.Mode().Type())
	}
	if opt.Names != nil {
		n.User = opt.Names.User(st.Uid)
		n.Group = opt.Names.Group(st.Gid)
	}
	switch n.Type {
	case tree.File:
		n.Size = uint64(st.Size)
	case tree.Symlink:
		t, err := os.Readlink(path)
		if err != nil {
			return n, fmt.Errorf("fsnode: readlink %s: %w", path, err)
		}
		n.LinkTarget = t
	case tree.BlockDev, tree.CharDev:
		n.Rdev = st.Rdev
	}
	if n.Type == tree.Dir {
		n.Links = 0 // directory link counts change with subdirectories; not identity
	}
	if opt.Xattrs {
		xs, err := ReadXattrs(path)
		if err != nil {
			return n, err
		}
		n.Xattrs = xs
	}
	return n, nil
}

// ReadXattrs returns the extended attributes of path (not following
// symlinks), sorted by name.
func ReadXattrs(path string) ([]tree.Xattr, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
			return nil, nil
		}
		return nil, fmt.Errorf("fsnode: list xattrs of %s: %w", path, err)
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, fmt.Errorf("fsnode: list xattrs of %s: %w", path, err)
	}
	var out []tree.Xattr
	for _, name := range splitNull(buf[:size]) {
		vs, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return nil, fmt.Errorf("fsnode: read xattr %s of %s: %w", name, path, err)
		}
		v := make([]byte, vs)
		vs, err = unix.Lgetxattr(path, name, v)
		if err != nil {
			return nil, fmt.Errorf("fsnode: read xattr %s of %s: %w", name, path, err)
		}
		out = append(out, tree.Xattr{Name: name, Value: v[:vs]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func splitNull(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}

// ApplyOptions says what Apply restores.
type ApplyOptions struct {
	// Owners restores uid/gid (needs root).
	Owners bool
	// Xattrs restores extended attributes.
	Xattrs bool
}

// Apply sets owner, mode, xattrs and times of path from n. It does not
// follow symlinks. Call it after the content is written, and on
// directories after their entries are restored.
func Apply(path string, n *tree.Node, opt ApplyOptions) error {
	if opt.Owners {
		if err := os.Lchown(path, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("fsnode: chown %s: %w", path, err)
		}
	}
	if opt.Xattrs {
		for _, x := range n.Xattrs {
			if err := unix.Lsetxattr(path, x.Name, x.Value, 0); err != nil {
				if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
					continue
				}
				return fmt.Errorf("fsnode: set xattr %s on %s: %w", x.Name, path, err)
			}
		}
	}
	if n.Type != tree.Symlink {
		// chmod after chown: chown clears setuid/setgid bits.
		if err := unix.Fchmodat(unix.AT_FDCWD, path, n.Mode&tree.ModeMask, 0); err != nil {
			return fmt.Errorf("fsnode: chmod %s: %w", path, err)
		}
	}
	at := n.ATime
	if at == 0 {
		at = n.MTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at), unix.NsecToTimespec(n.MTime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("fsnode: set times of %s: %w", path, err)
	}
	return nil
}

// MakeSpecial creates a device node, FIFO or socket placeholder at path.
func MakeSpecial(path string, n *tree.Node) error {
	var mode uint32
	switch n.Type {
	case tree.BlockDev:
		mode = unix.S_IFBLK
	case tree.CharDev:
		mode = unix.S_IFCHR
	case tree.FIFO:
		mode = unix.S_IFIFO
	case tree.Socket:
		mode = unix.S_IFSOCK
	default:
		return fmt.Errorf("fsnode: mknod %s: not a special file", path)
	}
	if err := unix.Mknod(path, mode|(n.Mode&0o777), int(n.Rdev)); err != nil {
		return fmt.Errorf("fsnode: mknod %s: %w", path, err)
	}
	return nil
}
