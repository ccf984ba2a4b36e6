package sftp

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/arkbox/arkbox/appliance/users"
	"github.com/arkbox/arkbox/storage/sharefs"
	"github.com/arkbox/arkbox/storage/tree"
	"github.com/pkg/sftp"
)

// session serves the SFTP requests of one channel of an authenticated
// user: it implements pkg/sftp's handler interfaces over the share
// filesystem. The top level "/" lists the shares the user may read;
// "/SHARE/…" is inside that share.
type session struct {
	srv  *Server
	conn *conn
	ch   *sftpChannel
	user string
	log  *slog.Logger

	// Counters for the session's summary line.
	opened, written, read atomic.Int64
}

// Interfaces pkg/sftp looks for.
var (
	_ sftp.FileReader           = (*session)(nil)
	_ sftp.OpenFileWriter       = (*session)(nil)
	_ sftp.PosixRenameFileCmder = (*session)(nil)
	_ sftp.StatVFSFileCmder     = (*session)(nil)
	_ sftp.LstatFileLister      = (*session)(nil)
	_ sftp.ReadlinkFileLister   = (*session)(nil)
	_ sftp.RealPathFileLister   = (*session)(nil)
)

func (s *session) handlers() sftp.Handlers {
	return sftp.Handlers{FileGet: s, FilePut: s, FileCmd: s, FileList: s}
}

// cleanPath makes p absolute and removes ".", ".." and repeated slashes
// lexically: ".." at the top stays at the top, so no path leaves "/", and
// a path inside a share never leaves it.
func cleanPath(p string) string { return path.Clean("/" + p) }

// depth is the number of elements of a clean path ("/" is 0, "/docs" 1).
func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// loc is a resolved SFTP path.
type loc struct {
	path   string         // clean SFTP path
	share  *sharefs.Share // nil for the top level "/"
	access users.Access
	parent uint64         // directory holding the last element; 0 for a share's root
	name   string         // last element; "" for a share's root
	in     *sharefs.Inode // nil if the last element does not exist
	snap   *snapLoc       // set for /SHARE/.snapshots and everything below it
}

// snapLoc is a path in a share's read-only snapshot folder: the folder
// itself (snapshot ""), a snapshot's root (path "") or an entry of one.
type snapLoc struct {
	snapshot string     // folder name of the snapshot, "" for /SHARE/.snapshots
	path     string     // slash path inside the snapshot, "" for its root
	node     *tree.Node // nil if the last element does not exist
}

// resolve finds p. Every element but the last must be a directory: the
// server never follows a symlink, so a path through one fails with
// errSymlink. The last element may be missing (in is nil) or a symlink
// (in is the link itself). A share the user may not read does not exist.
func (s *session) resolve(p string) (*loc, error) {
	p = cleanPath(p)
	if p == "/" {
		return &loc{path: p}, nil
	}
	parts := strings.Split(p[1:], "/")
	access := s.srv.authorizer().Access(s.user, parts[0])
	if !access.CanRead() {
		return nil, fs.ErrNotExist
	}
	sh, err := s.srv.opt.Store.Share(parts[0])
	if err != nil {
		return nil, err
	}
	l := &loc{path: p, share: sh, access: access}
	if len(parts) == 1 {
		l.in, err = sh.Stat(sharefs.RootIno)
		return l, err
	}
	if parts[1] == sharefs.SnapshotsDir {
		return s.resolveSnapshot(l, parts[2:])
	}
	dir := uint64(sharefs.RootIno)
	for _, part := range parts[1 : len(parts)-1] {
		in, err := sh.Lookup(dir, part)
		if err != nil {
			return nil, err
		}
		switch in.Type {
		case tree.Dir:
			dir = in.Ino
		case tree.Symlink:
			return nil, errSymlink
		default:
			return nil, syscall.ENOTDIR
		}
	}
	l.parent, l.name = dir, parts[len(parts)-1]
	in, err := sh.Lookup(dir, l.name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		l.in = in
	}
	return l, nil
}

// resolveSnapshot resolves the rest of a path below the read-only
// snapshot folder /SHARE/.snapshots (sharefs.SnapshotsDir; sharefs
// reserves the name, so nothing in the live tree can hide behind it):
// the folder itself, one folder per snapshot, and the snapshot's tree
// below it, read through Share.SnapshotLookup. As in the live tree every
// element but the last must be a directory, a path through a symlink
// fails with errSymlink, and the last element may be missing (node is
// nil). On failure l is still returned with snap set, so that a change
// is refused as such whatever the path.
func (s *session) resolveSnapshot(l *loc, rest []string) (*loc, error) {
	l.snap = &snapLoc{}
	if len(rest) == 0 {
		l.parent, l.name = sharefs.RootIno, sharefs.SnapshotsDir
		fi, err := s.snapshotsInfo(l.share)
		if err != nil {
			return l, err
		}
		l.snap.node = &tree.Node{Type: tree.Dir, Mode: 0o555, MTime: fi.mtime.UnixNano()}
		return l, nil
	}
	ctx := s.srv.ctx
	l.snap.snapshot, l.name = rest[0], rest[len(rest)-1]
	l.snap.path = strings.Join(rest[1:], "/")
	if len(rest) == 1 {
		root, err := l.share.SnapshotLookup(ctx, rest[0], "")
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return l, err
		default:
			l.snap.node = &root.Node
		}
		return l, nil
	}
	dirs := rest[1 : len(rest)-1]
	parent, err := l.share.SnapshotLookup(ctx, rest[0], strings.Join(dirs, "/"))
	if errors.Is(err, syscall.ENOTDIR) || err == nil && parent.Tree == nil {
		return l, notDirIn(ctx, l.share, rest[0], dirs)
	}
	if err != nil {
		return l, err
	}
	if n, ok := parent.Tree.Find(l.name); ok {
		node := *n
		l.snap.node = &node
	}
	return l, nil
}

// notDirIn tells why the directory path dirs of a snapshot is not one:
// errSymlink when the first element that is not a directory is a symlink
// (never followed), ENOTDIR otherwise.
func notDirIn(ctx context.Context, sh *sharefs.Share, snapshot string, dirs []string) error {
	for i := 1; i <= len(dirs); i++ {
		n, err := sh.SnapshotLookup(ctx, snapshot, strings.Join(dirs[:i], "/"))
		if err != nil {
			return err
		}
		switch n.Node.Type {
		case tree.Dir:
			continue
		case tree.Symlink:
			return errSymlink
		}
		return syscall.ENOTDIR
	}
	return syscall.ENOTDIR
}

// snapshotsInfo describes /SHARE/.snapshots: a read-only directory whose
// time is that of the newest snapshot (the server's start without one).
func (s *session) snapshotsInfo(sh *sharefs.Share) (*fileInfo, error) {
	dirs, err := sh.Snapshots()
	if err != nil {
		return nil, err
	}
	mtime := s.srv.started
	if len(dirs) > 0 {
		mtime = dirs[len(dirs)-1].Snapshot.Time
	}
	return &fileInfo{name: sharefs.SnapshotsDir, mode: fs.ModeDir | 0o555, mtime: mtime}, nil
}

// nodeInfo presents an entry of a snapshot.
func nodeInfo(name string, n *tree.Node) *fileInfo {
	return &fileInfo{name: name, size: int64(n.Size), mode: fileMode(n.Type, n.Mode),
		mtime: time.Unix(0, n.MTime), uid: n.UID, gid: n.GID}
}

// missing reports whether l is a path in a share whose last element
// does not exist.
func (l *loc) missing() bool {
	if l.snap != nil {
		return l.snap.node == nil
	}
	return l.share != nil && l.in == nil
}

// writable reports whether the user may change l's share.
func (l *loc) writable() error {
	if l.snap != nil {
		return errSnapshotReadOnly
	}
	if l.share == nil {
		return errRootReadOnly
	}
	if !l.access.CanWrite() {
		return errReadOnlyGrant
	}
	return nil
}

// resolveEntry resolves p for an operation that creates, removes or
// renames the entry p itself: never one at the top level (a share or
// not), and only with write access.
func (s *session) resolveEntry(p string) (*loc, error) {
	if depth(cleanPath(p)) < 2 {
		return nil, errRootReadOnly
	}
	return s.resolveChange(p)
}

// resolveChange resolves p for an operation that changes it: only with
// write access, and never in the snapshot folder, whether the path there
// exists or not.
func (s *session) resolveChange(p string) (*loc, error) {
	l, err := s.resolve(p)
	if l != nil && l.snap != nil {
		return nil, errSnapshotReadOnly
	}
	if err != nil {
		return nil, err
	}
	return l, l.writable()
}

// contain turns a panic in a handler into a failure of that one request,
// logged with its stack: a bad request must not stop the appliance, whose
// other services run in the same process. Every entry point from pkg/sftp
// defers it.
func (s *session) contain(op string, err *error) {
	if v := recover(); v != nil {
		s.log.Error("sftp: request handler panicked", "op", op, "panic", v, "stack", string(debug.Stack()))
		*err = &statusError{msg: op + ": internal error", code: sftp.ErrSSHFxFailure}
	}
}

// fail logs err of operation op on p and turns it into the status sent.
func (s *session) fail(op, p string, err error) error {
	st, internal := status(op, p, err)
	if internal {
		s.log.Error("sftp: operation failed", "op", op, "path", p, "err", err)
	} else {
		s.log.Debug("sftp: operation refused", "op", op, "path", p, "err", err)
	}
	return st
}

// Fileread opens a file for reading.
func (s *session) Fileread(r *sftp.Request) (_ io.ReaderAt, err error) {
	defer s.contain("open", &err)
	l, err := s.resolve(r.Filepath)
	var h io.ReaderAt
	switch {
	case err != nil:
	case l.snap != nil:
		h, err = s.openSnapshot(l)
	default:
		h, err = s.openLoc(r, l, false)
	}
	if err != nil {
		return nil, s.fail("open", r.Filepath, err)
	}
	return h, nil
}

// Filewrite opens a file for writing.
func (s *session) Filewrite(r *sftp.Request) (_ io.WriterAt, err error) {
	defer s.contain("open", &err)
	h, err := s.openWrite(r)
	if err != nil {
		return nil, s.fail("open", r.Filepath, err)
	}
	return h, nil
}

// OpenFile opens a file for reading and writing.
func (s *session) OpenFile(r *sftp.Request) (_ sftp.WriterAtReaderAt, err error) {
	defer s.contain("open", &err)
	h, err := s.openWrite(r)
	if err != nil {
		return nil, s.fail("open", r.Filepath, err)
	}
	return h, nil
}

// openWrite resolves and opens a file of the live tree for writing (and
// reading).
func (s *session) openWrite(r *sftp.Request) (*handle, error) {
	l, err := s.resolveEntry(r.Filepath)
	if err != nil {
		return nil, err
	}
	return s.openLoc(r, l, true)
}

// openLoc opens the file of the live tree at l.
func (s *session) openLoc(r *sftp.Request, l *loc, write bool) (*handle, error) {
	fl := r.Pflags()
	if l.name == "" {
		return nil, syscall.EISDIR
	}
	if err := s.conn.acquire(); err != nil {
		return nil, err
	}
	f, err := s.openFile(l, fl, write, createMode(r))
	if err != nil {
		s.conn.release()
		return nil, err
	}
	s.opened.Add(1)
	return &handle{s: s, f: f, sh: l.share, path: l.path, append: write && fl.Append}, nil
}

// openFile opens (and with O_CREAT creates) the file at l.
func (s *session) openFile(l *loc, fl sftp.FileOpenFlags, write bool, mode uint32) (*sharefs.File, error) {
	in := l.in
	switch {
	case in == nil && (!write || !fl.Creat):
		return nil, fs.ErrNotExist
	case in == nil:
		_, f, err := l.share.CreateFile(l.parent, l.name, mode, 0, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) || fl.Excl {
			return nil, err
		}
		// Created meanwhile: open it.
		if in, err = l.share.Lookup(l.parent, l.name); err != nil {
			return nil, err
		}
	case write && fl.Creat && fl.Excl:
		return nil, fs.ErrExist
	}
	switch in.Type {
	case tree.File:
	case tree.Dir:
		return nil, syscall.EISDIR
	case tree.Symlink:
		return nil, errSymlink
	default:
		return nil, syscall.EINVAL
	}
	return l.share.OpenFile(in.Ino, write, write && fl.Trunc)
}

// createMode is the mode of a file created by an SSH_FXP_OPEN: the
// permissions the client sent, or 0644. pkg/sftp drops the attributes'
// flags word of an open request and passes on only the bytes after it, so
// those bytes are decoded only when they can hold nothing but the
// permissions: 4 bytes, as OpenSSH's sftp and sshfs send them. (Other
// attribute sets — OpenSSH's put -p adds the times — are followed by a
// setstat of the same attributes anyway.)
func createMode(r *sftp.Request) uint32 {
	if len(r.Attrs) == 4 {
		if m := binary.BigEndian.Uint32(r.Attrs) & tree.ModeMask; m != 0 {
			return m
		}
	}
	return 0o644
}

// handle is an open file. pkg/sftp calls ReadAt and WriteAt from several
// goroutines at once; sharefs.File allows that.
type handle struct {
	s      *session
	f      *sharefs.File
	sh     *sharefs.Share
	path   string
	append bool

	appendMu  sync.Mutex // serialises appends
	closeOnce sync.Once
	closeErr  error
}

func (h *handle) ReadAt(p []byte, off int64) (_ int, err error) {
	defer h.s.contain("read", &err)
	if err := h.s.granted(h.sh.Name(), false); err != nil {
		return 0, h.s.fail("read", h.path, err)
	}
	n, err := h.f.ReadAt(p, off)
	h.s.read.Add(int64(n))
	if err != nil && err != io.EOF {
		return n, h.s.fail("read", h.path, err)
	}
	return n, err
}

// WriteAt writes at off, or at the end of the file on a handle opened
// with SSH_FXF_APPEND (as a POSIX O_APPEND descriptor would).
func (h *handle) WriteAt(p []byte, off int64) (_ int, err error) {
	defer h.s.contain("write", &err)
	if err := h.s.granted(h.sh.Name(), true); err != nil {
		return 0, h.s.fail("write", h.path, err)
	}
	if h.append {
		h.appendMu.Lock()
		defer h.appendMu.Unlock()
		in, err := h.sh.Stat(h.f.Ino())
		if err != nil {
			return 0, h.s.fail("write", h.path, err)
		}
		off = int64(in.Size)
	}
	n, err := h.f.WriteAt(p, off)
	h.s.written.Add(int64(n))
	if err != nil {
		return n, h.s.fail("write", h.path, err)
	}
	return n, nil
}

// Close closes the sharefs handle: for a handle that wrote, the data is
// durable when the client gets the status of its SSH_FXP_CLOSE.
func (h *handle) Close() (err error) {
	defer h.s.contain("close", &err)
	h.closeOnce.Do(func() {
		if err := h.f.Close(); err != nil {
			h.closeErr = h.s.fail("close", h.path, err)
		}
		h.s.conn.release()
	})
	return h.closeErr
}

// granted checks the user's grant on share again for a read or write of
// a file opened earlier, so that a grant withdrawn or lowered while the
// file is open (Server.SetUsers) applies to its next read or write. The
// handle can still be closed.
func (s *session) granted(share string, write bool) error {
	a := s.srv.authorizer().Access(s.user, share)
	switch {
	case !a.CanRead():
		return errGrantWithdrawn
	case write && !a.CanWrite():
		return errReadOnlyGrant
	}
	return nil
}

// TransferError is called when the connection ends while the file is
// still open (pkg/sftp then closes it).
func (h *handle) TransferError(err error) {
	h.s.log.Warn("sftp: connection ended with a file open; what was written so far is kept", "path", h.path, "err", err)
}

// openSnapshot opens a file of a snapshot for reading.
func (s *session) openSnapshot(l *loc) (*snapHandle, error) {
	n := l.snap.node
	switch {
	case n == nil:
		return nil, fs.ErrNotExist
	case n.Type == tree.Dir:
		return nil, syscall.EISDIR
	case n.Type == tree.Symlink:
		return nil, errSymlink
	case n.Type != tree.File:
		return nil, syscall.EINVAL
	}
	if err := s.conn.acquire(); err != nil {
		return nil, err
	}
	f, err := l.share.SnapshotOpen(s.srv.ctx, l.snap.snapshot, l.snap.path)
	if err != nil {
		s.conn.release()
		return nil, err
	}
	s.opened.Add(1)
	return &snapHandle{s: s, f: f, share: l.share.Name(), path: l.path}, nil
}

// snapHandle is a file of a snapshot open for reading. pkg/sftp calls
// ReadAt from several goroutines at once; sharefs.SnapshotFile allows
// that.
type snapHandle struct {
	s     *session
	f     *sharefs.SnapshotFile
	share string
	path  string

	closeOnce sync.Once
}

func (h *snapHandle) ReadAt(p []byte, off int64) (_ int, err error) {
	defer h.s.contain("read", &err)
	if err := h.s.granted(h.share, false); err != nil {
		return 0, h.s.fail("read", h.path, err)
	}
	n, err := h.f.ReadAt(p, off)
	h.s.read.Add(int64(n))
	if err != nil && err != io.EOF {
		return n, h.s.fail("read", h.path, err)
	}
	return n, err
}

func (h *snapHandle) Close() (err error) {
	defer h.s.contain("close", &err)
	h.closeOnce.Do(func() {
		h.f.Close()
		h.s.conn.release()
	})
	return nil
}

// Filecmd changes the tree: Setstat, Rename, Rmdir, Mkdir, Link, Symlink,
// Remove.
func (s *session) Filecmd(r *sftp.Request) (err error) {
	defer s.contain(strings.ToLower(r.Method), &err)
	switch r.Method {
	case "Setstat":
		err = s.setstat(r)
	case "Rename":
		err = s.rename(r.Filepath, r.Target, false)
	case "Rmdir", "Remove":
		err = s.remove(r.Filepath, r.Method == "Rmdir")
	case "Mkdir":
		err = s.mkdir(r.Filepath)
	case "Link":
		err = s.link(r.Filepath, r.Target)
	case "Symlink":
		// pkg/sftp: Filepath is the link's target (verbatim), Target the
		// new link's path.
		err = s.symlink(r.Filepath, r.Target)
		return s.failIf(strings.ToLower(r.Method), r.Target, err)
	default:
		err = syscall.ENOTSUP
	}
	return s.failIf(strings.ToLower(r.Method), r.Filepath, err)
}

func (s *session) failIf(op, p string, err error) error {
	if err != nil {
		return s.fail(op, p, err)
	}
	return nil
}

// PosixRename renames, replacing an existing target
// (posix-rename@openssh.com).
func (s *session) PosixRename(r *sftp.Request) (err error) {
	defer s.contain("rename", &err)
	return s.failIf("rename", r.Filepath, s.rename(r.Filepath, r.Target, true))
}

func (s *session) setstat(r *sftp.Request) error {
	s.ch.awaitEarlier()
	l, err := s.resolveChange(r.Filepath)
	if err != nil {
		return err
	}
	if l.in == nil {
		return fs.ErrNotExist
	}
	af, a := r.AttrFlags(), r.Attributes()
	if a == nil { // the attributes are shorter than their flags say
		return syscall.EINVAL
	}
	var set sharefs.SetAttr
	if af.Size {
		if l.in.Type != tree.File {
			if l.in.Type == tree.Dir {
				return syscall.EISDIR
			}
			return syscall.EINVAL
		}
		set.Size = &a.Size
	}
	if af.Permissions {
		if l.in.Type == tree.Symlink {
			// The mode of a link is not its target's, which the server
			// does not follow, and Linux keeps links at 0777.
			return syscall.ENOTSUP
		}
		mode := a.Mode & tree.ModeMask
		set.Mode = &mode
	}
	if af.UidGid {
		set.UID, set.GID = &a.UID, &a.GID
	}
	if af.Acmodtime {
		at, mt := time.Unix(int64(a.Atime), 0), time.Unix(int64(a.Mtime), 0)
		set.ATime, set.MTime = &at, &mt
	}
	_, err = l.share.SetAttr(l.in.Ino, set)
	return err
}

func (s *session) rename(from, to string, replace bool) error {
	src, err := s.resolveEntry(from)
	if err != nil {
		return err
	}
	dst, err := s.resolveEntry(to)
	if err != nil {
		return err
	}
	if src.share != dst.share {
		return errCrossShare
	}
	if src.in == nil {
		return fs.ErrNotExist
	}
	if dst.in != nil && !replace && dst.in.Ino != src.in.Ino {
		// SSH_FXP_RENAME (SFTP v3) does not replace.
		return fs.ErrExist
	}
	return src.share.Rename(src.parent, src.name, dst.parent, dst.name)
}

func (s *session) remove(p string, dir bool) error {
	l, err := s.resolveEntry(p)
	if err != nil {
		return err
	}
	switch {
	case l.in == nil:
		return fs.ErrNotExist
	case dir && l.in.Type != tree.Dir:
		return syscall.ENOTDIR
	case !dir && l.in.Type == tree.Dir:
		return syscall.EISDIR
	}
	return l.share.Remove(l.parent, l.name)
}

func (s *session) mkdir(p string) error {
	l, err := s.resolveEntry(p)
	if err != nil {
		return err
	}
	if l.in != nil {
		return fs.ErrExist
	}
	// pkg/sftp does not pass SSH_FXP_MKDIR's attributes on.
	_, err = l.share.Mkdir(l.parent, l.name, 0o755, 0, 0)
	return err
}

func (s *session) link(from, to string) error {
	src, err := s.resolveChange(from)
	if err != nil {
		return err
	}
	dst, err := s.resolveEntry(to)
	if err != nil {
		return err
	}
	if src.share != dst.share {
		return errCrossShare
	}
	if src.in == nil {
		return fs.ErrNotExist
	}
	if dst.in != nil {
		return fs.ErrExist
	}
	_, err = src.share.Link(src.in.Ino, dst.parent, dst.name)
	return err
}

// symlink makes linkPath a symlink to target. The target is stored as it
// is: it is data, never resolved by the server.
func (s *session) symlink(target, linkPath string) error {
	l, err := s.resolveEntry(linkPath)
	if err != nil {
		return err
	}
	if l.in != nil {
		return fs.ErrExist
	}
	_, err = l.share.Symlink(l.parent, l.name, target, 0, 0)
	return err
}

// StatVFS reports the capacity of the store behind every share
// (statvfs@openssh.com, "df" in sftp). Read-only places (the top level, a
// read-only grant) carry ST_RDONLY.
func (s *session) StatVFS(r *sftp.Request) (_ *sftp.StatVFS, err error) {
	defer s.contain("statvfs", &err)
	l, err := s.resolve(r.Filepath)
	if err == nil && l.missing() {
		err = fs.ErrNotExist
	}
	if err != nil {
		return nil, s.fail("statvfs", r.Filepath, err)
	}
	total, free, err := s.srv.opt.Store.StatFS()
	if err != nil {
		return nil, s.fail("statvfs", r.Filepath, err)
	}
	const bsize = 4096
	const stRdonly, stNosuid = 1, 2
	st := &sftp.StatVFS{Bsize: bsize, Frsize: bsize, Blocks: total / bsize, Bfree: free / bsize,
		Bavail: free / bsize, Flag: stNosuid, Namemax: sharefs.MaxNameLen}
	if l.writable() != nil {
		st.Flag |= stRdonly
	}
	if l.share != nil {
		h := fnv.New64a()
		h.Write([]byte(l.share.Name()))
		st.Fsid = h.Sum64()
	}
	return st, nil
}

// Filelist lists a directory (List) or stats a path (Stat).
func (s *session) Filelist(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer s.contain(strings.ToLower(r.Method), &err)
	switch r.Method {
	case "List":
		l, err := s.list(r.Filepath)
		if err != nil {
			return nil, s.fail("opendir", r.Filepath, err)
		}
		return l, nil
	case "Stat":
		return s.Lstat(r)
	}
	return nil, s.fail(strings.ToLower(r.Method), r.Filepath, syscall.ENOTSUP)
}

// Lstat stats a path. Stat is the same: the server does not follow
// symlinks, so stat of a symlink describes the link.
func (s *session) Lstat(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer s.contain("stat", &err)
	fi, err := s.stat(r.Filepath)
	if err != nil {
		return nil, s.fail("stat", r.Filepath, err)
	}
	return lister{fi}, nil
}

func (s *session) stat(p string) (os.FileInfo, error) {
	l, err := s.resolve(p)
	if err != nil {
		return nil, err
	}
	switch {
	case l.share == nil:
		return &fileInfo{name: "/", mode: fs.ModeDir | 0o555, mtime: s.srv.started}, nil
	case l.snap != nil && l.snap.node == nil:
		return nil, fs.ErrNotExist
	case l.snap != nil:
		return nodeInfo(l.name, l.snap.node), nil
	case l.in == nil:
		return nil, fs.ErrNotExist
	case l.name == "":
		return inodeInfo(l.share.Name(), l.in), nil
	}
	return inodeInfo(l.name, l.in), nil
}

func (s *session) list(p string) (lister, error) {
	l, err := s.resolve(p)
	if err != nil {
		return nil, err
	}
	if l.share == nil {
		var out lister
		for _, name := range s.srv.opt.Store.Shares() {
			if !s.srv.authorizer().Access(s.user, name).CanRead() {
				continue
			}
			sh, err := s.srv.opt.Store.Share(name)
			if err != nil {
				continue // removed meanwhile
			}
			in, err := sh.Stat(sharefs.RootIno)
			if err != nil {
				continue
			}
			out = append(out, inodeInfo(name, in))
		}
		return out, nil
	}
	if l.snap != nil {
		return s.listSnapshot(l)
	}
	switch {
	case l.in == nil:
		return nil, fs.ErrNotExist
	case l.in.Type == tree.Symlink:
		return nil, errSymlink
	case l.in.Type != tree.Dir:
		return nil, syscall.ENOTDIR
	}
	ents, err := l.share.ReadDir(l.in.Ino)
	if err != nil {
		return nil, err
	}
	out := make(lister, 0, len(ents)+1)
	for _, e := range ents {
		out = append(out, inodeInfo(e.Name, e.Inode))
	}
	if l.name == "" { // the share's root also shows its snapshot folder
		fi, err := s.snapshotsInfo(l.share)
		if err != nil {
			// The live tree stays listable; the folder itself reports
			// the error when opened.
			s.log.Error("sftp: cannot list snapshots", "share", l.share.Name(), "err", err)
		} else {
			out = append(out, fi)
		}
	}
	return out, nil
}

// listSnapshot lists /SHARE/.snapshots (one folder per snapshot, oldest
// first) or a directory of a snapshot.
func (s *session) listSnapshot(l *loc) (lister, error) {
	n := l.snap.node
	switch {
	case n == nil:
		return nil, fs.ErrNotExist
	case n.Type == tree.Symlink:
		return nil, errSymlink
	case n.Type != tree.Dir:
		return nil, syscall.ENOTDIR
	}
	if l.snap.snapshot == "" {
		dirs, err := l.share.Snapshots()
		if err != nil {
			return nil, err
		}
		out := make(lister, 0, len(dirs))
		for _, d := range dirs {
			out = append(out, &fileInfo{name: d.Name, mode: fs.ModeDir | 0o555, mtime: d.Snapshot.Time})
		}
		return out, nil
	}
	dir, err := l.share.SnapshotLookup(s.srv.ctx, l.snap.snapshot, l.snap.path)
	if err != nil {
		return nil, err
	}
	if dir.Tree == nil {
		return nil, syscall.ENOTDIR
	}
	out := make(lister, 0, len(dir.Tree.Nodes))
	for i := range dir.Tree.Nodes {
		out = append(out, nodeInfo(dir.Tree.Nodes[i].Name, &dir.Tree.Nodes[i]))
	}
	return out, nil
}

// Readlink returns a symlink's target exactly as stored.
func (s *session) Readlink(p string) (_ string, err error) {
	defer s.contain("readlink", &err)
	l, err := s.resolve(p)
	if err == nil {
		switch {
		case l.missing():
			err = fs.ErrNotExist
		case l.snap != nil && l.snap.node.Type != tree.Symlink:
			err = syscall.EINVAL
		case l.snap != nil:
			return l.snap.node.LinkTarget, nil
		case l.in == nil || l.in.Type != tree.Symlink:
			err = syscall.EINVAL
		}
	}
	if err != nil {
		return "", s.fail("readlink", p, err)
	}
	return l.in.Target, nil
}

// RealPath cleans p lexically (relative paths start at "/"); symlinks are
// not resolved.
func (s *session) RealPath(p string) (string, error) { return cleanPath(p), nil }
