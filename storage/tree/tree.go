// Package tree encodes one directory of a snapshot: its entries, sorted by
// name, with their metadata and the ids of their content chunks or
// subdirectory. The encoding is deterministic and strict, so the same
// directory always yields the same bytes and hence the same blob id.
//
// The byte layout is specified in doc/tree.md.
package tree

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/arkbox/arkbox/storage/blob"
)

// Version is the format version that Encode writes and Decode accepts.
const Version = 1

// ErrNewerFormat is wrapped by Decode's error when the input uses a format
// version or a field tag that this version of arkbox does not know: the tree
// was written by a newer arkbox.
var ErrNewerFormat = errors.New("tree encoded by a newer arkbox")

// Type is the kind of a directory entry.
type Type uint8

// Entry types.
const (
	File     Type = 1
	Dir      Type = 2
	Symlink  Type = 3
	BlockDev Type = 4
	CharDev  Type = 5
	FIFO     Type = 6
	Socket   Type = 7
)

// String returns the short lowercase name of t.
func (t Type) String() string {
	switch t {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	case BlockDev:
		return "blockdev"
	case CharDev:
		return "chardev"
	case FIFO:
		return "fifo"
	case Socket:
		return "socket"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Valid reports whether t is one of the known entry types.
func (t Type) Valid() bool { return t >= File && t <= Socket }

// Xattr is one extended attribute. POSIX ACLs are stored as xattrs
// (system.posix_acl_access, system.posix_acl_default).
type Xattr struct {
	Name  string // non-empty, no NUL byte
	Value []byte // may be empty; Decode returns nil for an empty value
}

// Chunk is one content blob of a file and its plaintext length.
type Chunk struct {
	ID   blob.ID
	Size uint32 // > 0
}

// Node is one directory entry.
type Node struct {
	Name        string // raw bytes of the file name (may be invalid UTF-8); never "", ".", "..", never contains '/' or NUL
	Type        Type
	Mode        uint32 // permission and special bits (07777), unix numbering
	UID, GID    uint32
	User, Group string
	MTime       int64 // Unix nanoseconds
	ATime       int64 // Unix nanoseconds
	CTime       int64 // Unix nanoseconds
	Size        uint64
	Inode       uint64 // source identity, for hard links and change detection
	Device      uint64 // source identity, for hard links and change detection
	Links       uint32
	Rdev        uint64  // device number for BlockDev/CharDev
	LinkTarget  string  // Symlink target, raw bytes
	Xattrs      []Xattr // sorted by Name, unique
	Content     []Chunk // File: content chunks in order (sum of sizes == Size)
	Subtree     blob.ID // Dir: the encoded subdirectory's blob id
}

// Tree is one directory: its entries sorted by Name (bytewise), names unique.
type Tree struct {
	Nodes []Node
}

// Sort sorts the nodes by name (bytewise).
func (t *Tree) Sort() {
	slices.SortFunc(t.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
}

// Find returns the node named name, by binary search. t must be sorted.
func (t *Tree) Find(name string) (*Node, bool) {
	i, ok := slices.BinarySearchFunc(t.Nodes, name, func(n Node, name string) int {
		return strings.Compare(n.Name, name)
	})
	if !ok {
		return nil, false
	}
	return &t.Nodes[i], true
}

// ModeMask holds the bits a Node's Mode may use.
const ModeMask = 0o7777

// validName reports why name cannot be a directory entry's name, or "".
func validName(name string) string {
	switch {
	case name == "":
		return "empty name"
	case name == "." || name == "..":
		return "reserved name"
	case strings.IndexByte(name, '/') >= 0:
		return "name contains '/'"
	case strings.IndexByte(name, 0) >= 0:
		return "name contains NUL"
	}
	return ""
}

// check validates n on its own (not its place in the tree). It is shared
// by Encode and Decode so that both accept exactly the same nodes.
func (n *Node) check() error {
	if why := validName(n.Name); why != "" {
		return errors.New(why)
	}
	if !n.Type.Valid() {
		return fmt.Errorf("invalid type %d", uint8(n.Type))
	}
	if n.Mode&^ModeMask != 0 {
		return fmt.Errorf("mode %#o has bits outside %#o", n.Mode, ModeMask)
	}
	if n.Rdev != 0 && n.Type != BlockDev && n.Type != CharDev {
		return fmt.Errorf("rdev set on a %s", n.Type)
	}
	if n.LinkTarget != "" && n.Type != Symlink {
		return fmt.Errorf("link target set on a %s", n.Type)
	}
	if len(n.Content) != 0 && n.Type != File {
		return fmt.Errorf("content set on a %s", n.Type)
	}
	if !n.Subtree.IsZero() && n.Type != Dir {
		return fmt.Errorf("subtree set on a %s", n.Type)
	}
	for i := range n.Xattrs {
		x := &n.Xattrs[i]
		if x.Name == "" {
			return errors.New("xattr with empty name")
		}
		if strings.IndexByte(x.Name, 0) >= 0 {
			return fmt.Errorf("xattr %q: name contains NUL", x.Name)
		}
		if i > 0 && n.Xattrs[i-1].Name >= x.Name {
			return fmt.Errorf("xattr %q: not sorted or duplicate", x.Name)
		}
	}
	if n.Type == File {
		var sum uint64
		for i, c := range n.Content {
			if c.Size == 0 {
				return fmt.Errorf("chunk %d (%s) has size 0", i, c.ID.Short())
			}
			sum += uint64(c.Size) // 2^32 chunks of < 2^32 bytes cannot overflow a uint64
		}
		if sum != n.Size {
			return fmt.Errorf("content chunks sum to %d bytes, size is %d", sum, n.Size)
		}
	}
	return nil
}
