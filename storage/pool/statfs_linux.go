package pool

import "golang.org/x/sys/unix"

// statDisk returns the size and free space (available to unprivileged
// users) of the file system holding dir, and whether it is mounted
// read-only.
func statDisk(dir string) (total, free uint64, readOnly bool, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, false, err
	}
	bs := uint64(st.Bsize)
	return st.Blocks * bs, st.Bavail * bs, st.Flags&unix.ST_RDONLY != 0, nil
}
