//go:build linux

package hwtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// BreakDirectory makes the kernel itself meet a file system error on the
// ext4 file system of device dev, mounted at mountPoint: it makes the
// folder rel (relative to mountPoint) with a few entries, all in one
// block, writes it out, finds that block with debugfs, overwrites it on
// the device behind ext4's back (O_DIRECT, then drops the kernel's
// caches so that the block is read from the device again) and lists the
// folder. ext4 finds the bad directory block ("bad entry in directory")
// and does what its errors= mount option says: with errors=remount-ro it
// stops writing — mountinfo then shows the file system "ro", or, from
// Linux 6.18, "emergency_ro" — possibly a moment later. Needs root and
// debugfs (RequireRoot).
func BreakDirectory(t testing.TB, dev, mountPoint, rel string) {
	t.Helper()
	dir := filepath.Join(mountPoint, rel)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if err := os.WriteFile(filepath.Join(dir, "file-"+strconv.Itoa(i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mountPoint, &sfs); err != nil {
		t.Fatalf("statfs %s: %v", mountPoint, err)
	}
	bsize := int64(sfs.Bsize)
	unix.Sync() // the folder's inode and block reach the device, where debugfs reads them
	out, err := exec.Command("debugfs", "-R", "blocks /"+filepath.ToSlash(rel), dev).Output()
	if err != nil {
		t.Fatalf("debugfs -R 'blocks /%s' %s: %v", rel, dev, err)
	}
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		t.Fatalf("debugfs lists no blocks of /%s on %s: %q", rel, dev, out)
	}
	block, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		t.Fatalf("debugfs -R 'blocks /%s' %s: %q", rel, dev, out)
	}
	f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Anonymous memory is page-aligned, as O_DIRECT wants.
	junk, err := unix.Mmap(-1, 0, int(bsize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(junk)
	for i := range junk {
		junk[i] = 0xa5
	}
	if _, err := f.WriteAt(junk, block*bsize); err != nil {
		t.Fatalf("overwrite block %d of %s: %v", block, dev, err)
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		t.Fatal(err)
	}
	// The listing itself may come back short rather than fail.
	ents, err := os.ReadDir(dir)
	t.Logf("listing the damaged folder %s: %d entries, %v", dir, len(ents), err)
}
