package sftp

import (
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/arkbox/arkbox/storage/sharefs"
	"github.com/arkbox/arkbox/storage/tree"
)

// fileInfo presents an inode as the os.FileInfo pkg/sftp encodes; it also
// gives the owner (sftp.FileInfoUidGid).
type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
	uid   uint32
	gid   uint32
}

func inodeInfo(name string, in *sharefs.Inode) *fileInfo {
	return &fileInfo{name: name, size: int64(in.Size), mode: fileMode(in.Type, in.Mode),
		mtime: time.Unix(0, in.MTime), uid: in.UID, gid: in.GID}
}

// fileMode converts an inode's type and Unix permission bits.
func fileMode(t tree.Type, mode uint32) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch t {
	case tree.Dir:
		m |= fs.ModeDir
	case tree.Symlink:
		m |= fs.ModeSymlink
	case tree.BlockDev:
		m |= fs.ModeDevice
	case tree.CharDev:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case tree.FIFO:
		m |= fs.ModeNamedPipe
	case tree.Socket:
		m |= fs.ModeSocket
	}
	return m
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.size }
func (fi *fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi *fileInfo) ModTime() time.Time { return fi.mtime }
func (fi *fileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi *fileInfo) Sys() any           { return nil }
func (fi *fileInfo) Uid() uint32        { return fi.uid }
func (fi *fileInfo) Gid() uint32        { return fi.gid }

// lister pages through a listing made when the directory was opened.
type lister []os.FileInfo

func (l lister) ListAt(dst []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[off:])
	if off+int64(n) == int64(len(l)) {
		return n, io.EOF
	}
	return n, nil
}
