package sharefs

import (
	"encoding/binary"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/tree"
)

// Inode is the metadata of one file, directory or symlink of a share, as
// kept in the catalog. Inode numbers are never reused within a share, so
// protocol file handles (NFS) and file ids (SMB) stay valid.
type Inode struct {
	Ino    uint64            `json:"ino"`
	Type   tree.Type         `json:"type"`
	Mode   uint32            `json:"mode"`
	UID    uint32            `json:"uid"`
	GID    uint32            `json:"gid"`
	Size   uint64            `json:"size"`
	MTime  int64             `json:"mtime"`
	CTime  int64             `json:"ctime"`
	ATime  int64             `json:"atime,omitempty"`
	Nlink  uint32            `json:"nlink"`
	Target string            `json:"target,omitempty"`
	Rdev   uint64            `json:"rdev,omitempty"`
	Xattrs map[string][]byte `json:"xattrs,omitempty"`

	// Content is the clean content: the chunks stored in the repository.
	Content []tree.Chunk `json:"content,omitempty"`
	// Staged: the file's current content is in its staging file;
	// Content is stale until the file is committed.
	Staged bool `json:"staged,omitempty"`
	// BlockSize is set while the file is staged in block mode: the
	// staging file holds only the blocks of this size listed in the
	// share's blocks bucket; every other byte below CleanSize comes from
	// Content, and the rest reads as zeros. Zero while staged whole: the
	// staging file's first Size bytes are the content.
	BlockSize uint32 `json:"block_size,omitempty"`
	// CleanSize is, in block mode, how many leading bytes of Content are
	// still the file's (a truncation cuts it).
	CleanSize uint64 `json:"clean_size,omitempty"`

	// Parents are the directories holding a link to this inode (a
	// directory has one; a hard-linked file several).
	Parents []uint64 `json:"parents,omitempty"`
	// Tree is a directory's tree blob id as of the last snapshot, valid
	// while TreeValid (cleared whenever anything below it changes).
	Tree      blob.ID `json:"tree,omitzero"`
	TreeValid bool    `json:"tree_valid,omitempty"`
	// TreeTotals are the totals of that tree and everything below it,
	// cached with Tree and valid with it, so that a snapshot reusing the
	// tree still counts what it holds.
	TreeTotals *TreeTotals `json:"tree_totals,omitempty"`
}

// TreeTotals counts a directory's subtree: the directory itself and
// every directory, file and other entry below it, and the bytes of the
// files.
type TreeTotals struct {
	Files  uint64 `json:"files"`
	Dirs   uint64 `json:"dirs"`
	Others uint64 `json:"others,omitempty"`
	Bytes  uint64 `json:"bytes"`
}

func (t *TreeTotals) add(o TreeTotals) {
	t.Files += o.Files
	t.Dirs += o.Dirs
	t.Others += o.Others
	t.Bytes += o.Bytes
}

func inoKey(ino uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], ino)
	return k[:]
}

func direntKey(parent uint64, name string) []byte {
	k := make([]byte, 8, 8+len(name))
	binary.BigEndian.PutUint64(k, parent)
	return append(k, name...)
}

// Node returns the inode as a tree node named name (without Subtree).
func (in *Inode) Node(name string) tree.Node {
	n := tree.Node{Name: name, Type: in.Type, Mode: in.Mode & tree.ModeMask, UID: in.UID, GID: in.GID,
		MTime: in.MTime, CTime: in.CTime, Inode: in.Ino, Links: in.Nlink, LinkTarget: in.Target, Rdev: in.Rdev}
	if in.Type == tree.File {
		n.Size = in.Size
		n.Content = in.Content
	}
	if in.Type == tree.Dir {
		n.Links = 0
	}
	for k, v := range in.Xattrs {
		n.Xattrs = append(n.Xattrs, tree.Xattr{Name: k, Value: v})
	}
	sortXattrs(n.Xattrs)
	return n
}

func sortXattrs(xs []tree.Xattr) {
	for i := 1; i < len(xs); i++ {
		for j := i; j > 0 && xs[j].Name < xs[j-1].Name; j-- {
			xs[j], xs[j-1] = xs[j-1], xs[j]
		}
	}
}
