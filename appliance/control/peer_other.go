//go:build !linux

package control

import (
	"io/fs"
	"net"
	"syscall"
)

// peerUID cannot tell the peer here: the socket's modes are the only
// check.
func peerUID(c net.Conn) (int, error) { return -1, nil }

// ownerOf returns the user id owning a file.
func ownerOf(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// withSockAddr calls fn with path as the socket's address.
func withSockAddr(path string, fn func(addr string) error) error { return fn(path) }
