package sftp

import (
	"errors"
	"io/fs"
	"syscall"

	"github.com/pkg/sftp"
)

// statusError is what a handler returns to pkg/sftp: the message goes to
// the client as the status message, code (one of pkg/sftp's ErrSSHFx…
// values, found through Unwrap) becomes the status code.
type statusError struct {
	msg  string
	code error
}

func (e *statusError) Error() string { return e.msg }
func (e *statusError) Unwrap() error { return e.code }

// Errors of the server's own policy, mapped like the syscall errors they
// wrap.
var (
	// errSymlink: a path runs through a symlink, or a symlink was opened;
	// the server never follows symlinks.
	errSymlink = &policyError{"symbolic links are not followed by this server", syscall.ELOOP}
	// errRootReadOnly: the top level lists the shares and cannot change.
	errRootReadOnly = &policyError{"the top level lists the shares and is read-only", syscall.EACCES}
	// errReadOnlyGrant: the user may only read this share.
	errReadOnlyGrant = &policyError{"read-only access to this share", syscall.EACCES}
	// errGrantWithdrawn: the grant on the share of a file open for
	// reading or writing was withdrawn after the open.
	errGrantWithdrawn = &policyError{"access to this share was withdrawn", syscall.EACCES}
	// errSnapshotReadOnly: /SHARE/.snapshots and the snapshots in it
	// never change, whatever the grant.
	errSnapshotReadOnly = &policyError{"snapshots are read-only", syscall.EACCES}
	// errCrossShare: renames and links stay within one share.
	errCrossShare = &policyError{"cannot move or link between shares", syscall.EXDEV}
	// errShuttingDown: no new files are opened while the server stops.
	errShuttingDown = &policyError{"the server is shutting down", syscall.ESHUTDOWN}
)

type policyError struct {
	msg   string
	errno syscall.Errno
}

func (e *policyError) Error() string { return e.msg }
func (e *policyError) Unwrap() error { return e.errno }

// status maps err from operation op on path p (an SFTP path) to the status
// the client gets, and reports whether the error is unexpected (an
// internal failure, whose details are logged and not sent: they may name
// files of the appliance itself).
//
//	no such file          fs.ErrNotExist (ENOENT)
//	permission denied     EACCES, EPERM, EROFS, fs.ErrPermission
//	operation unsupported ENOTSUP, EOPNOTSUPP, ENOSYS
//	failure               everything else, with the reason as the message;
//	                      ENOSPC and EDQUOT say the appliance is full
//	                      (SFTP v3 has no code for it)
func status(op, p string, err error) (st error, internal bool) {
	code := sftp.ErrSSHFxFailure
	var text string
	var pe *policyError
	var errno syscall.Errno
	switch {
	case errors.As(err, &pe):
		text = pe.msg
		errno = pe.errno
	case errors.Is(err, fs.ErrNotExist):
		errno = syscall.ENOENT
	case errors.Is(err, fs.ErrPermission):
		errno = syscall.EACCES
	case errors.As(err, &errno):
	default:
		return &statusError{msg: op + " " + p + ": internal error", code: code}, true
	}
	switch errno {
	case syscall.ENOENT:
		code = sftp.ErrSSHFxNoSuchFile
	case syscall.EACCES, syscall.EPERM, syscall.EROFS:
		code = sftp.ErrSSHFxPermissionDenied
	case syscall.ENOTSUP, syscall.ENOSYS:
		code = sftp.ErrSSHFxOpUnsupported
	}
	if text == "" {
		text = errno.Error()
		if errno == syscall.ENOSPC || errno == syscall.EDQUOT {
			text += " (the appliance's storage is full)"
		}
	}
	return &statusError{msg: op + " " + p + ": " + text, code: code}, !clientErrno(errno)
}

// clientErrno reports whether e is an error a client's request explains;
// any other (EIO, ENOSPC…) is the appliance's problem and is logged as such.
func clientErrno(e syscall.Errno) bool {
	switch e {
	case syscall.ENOENT, syscall.EEXIST, syscall.ENOTDIR, syscall.EISDIR, syscall.ENOTEMPTY,
		syscall.EINVAL, syscall.EROFS, syscall.EPERM, syscall.EACCES, syscall.ENAMETOOLONG,
		syscall.EXDEV, syscall.ENOTSUP, syscall.ELOOP, syscall.ENODATA, syscall.ESHUTDOWN:
		return true
	}
	return false
}
