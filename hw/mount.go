package hw

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MountInfo is one line of /proc/self/mountinfo (see proc(5)).
type MountInfo struct {
	ID           int      `json:"id"`
	Parent       int      `json:"parent"`
	Dev          string   `json:"dev"`  // "major:minor"
	Root         string   `json:"root"` // the mounted subtree of the filesystem
	MountPoint   string   `json:"mount_point"`
	Options      []string `json:"options"` // per-mount options
	FSType       string   `json:"fstype"`
	Source       string   `json:"source"`
	SuperOptions []string `json:"super_options"` // per-filesystem options
}

// ReadOnly reports whether the mount or its filesystem is read-only. When
// ext4 meets an error with errors=remount-ro, older kernels set "ro" in the
// superblock options (the mount options may still say "rw"); newer ones
// (6.18 does) keep "rw" and add "emergency_ro", and statfs no longer
// reports the filesystem read-only, though every write fails with EROFS.
func (m MountInfo) ReadOnly() bool {
	return hasOpt(m.Options, "ro") || hasOpt(m.SuperOptions, "ro") || hasOpt(m.SuperOptions, "emergency_ro")
}

func hasOpt(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// ReadMountInfo parses a mountinfo file (normally /proc/self/mountinfo).
func ReadMountInfo(path string) ([]MountInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hw: read mountinfo %s: %w", path, err)
	}
	defer f.Close()
	ms, err := ParseMountInfo(f)
	if err != nil {
		return nil, fmt.Errorf("hw: read mountinfo %s: %w", path, err)
	}
	return ms, nil
}

// ParseMountInfo parses the mountinfo format of proc(5):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// Paths have spaces, tabs, newlines and backslashes escaped in octal.
func ParseMountInfo(r io.Reader) ([]MountInfo, error) {
	var out []MountInfo
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		m, err := parseMountInfoLine(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func parseMountInfoLine(text string) (MountInfo, error) {
	f := strings.Fields(text)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 7 || sep < 0 || len(f) < sep+3 {
		return MountInfo{}, fmt.Errorf("malformed mountinfo line %q", text)
	}
	id, err1 := strconv.Atoi(f[0])
	parent, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return MountInfo{}, fmt.Errorf("malformed mount ids in %q", text)
	}
	if !strings.Contains(f[2], ":") {
		return MountInfo{}, fmt.Errorf("malformed device %q", f[2])
	}
	m := MountInfo{
		ID:         id,
		Parent:     parent,
		Dev:        f[2],
		Root:       unescapeOctal(f[3]),
		MountPoint: unescapeOctal(f[4]),
		Options:    strings.Split(f[5], ","),
		FSType:     unescapeOctal(f[sep+1]),
		Source:     unescapeOctal(f[sep+2]),
	}
	if len(f) > sep+3 {
		m.SuperOptions = strings.Split(f[sep+3], ",")
	}
	return m, nil
}

// unescapeOctal undoes the kernel's \ooo escapes.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 || s[0] > '3' {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}

// ReadOnlyMounts returns those of the given mount points that are mounted
// read-only — typically because the kernel remounted a failing disk. A
// mount point that is not mounted is not returned.
func ReadOnlyMounts(mountInfoPath string, mountPoints ...string) ([]string, error) {
	ms, err := ReadMountInfo(mountInfoPath)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, p := range mountPoints {
		want[filepath.Clean(p)] = true
	}
	var ro []string
	for _, m := range ms {
		if want[m.MountPoint] && m.ReadOnly() {
			ro = append(ro, m.MountPoint)
			delete(want, m.MountPoint)
		}
	}
	return ro, nil
}

// MountOptions says which filesystem to mount where.
type MountOptions struct {
	UUID      string // filesystem UUID (as ext4 stores it; case-insensitive)
	Dir       string // the filesystem is mounted at Dir/UUID
	ReadOnly  bool
	SysRoot   string // "" means "/sys"
	DevRoot   string // "" means "/dev"
	MountInfo string // "" means "/proc/self/mountinfo"
}

// ErrNoSuchFilesystem is returned by Mount when no disk holds the UUID.
var ErrNoSuchFilesystem = errors.New("no filesystem with that UUID")

// FindFilesystem returns the device node of the partition (or whole disk)
// holding the ext4 filesystem with the given UUID. When the kernel knows
// the partition but its node is missing under DevRoot (no udev), the node
// is created from the partition's major:minor.
func FindFilesystem(ctx context.Context, opts DiscoverOptions, uuid string) (string, error) {
	opts.Probe = false
	disks, err := Discover(ctx, opts)
	if err != nil {
		return "", err
	}
	var unread error
	for _, d := range disks {
		if d.SizeBytes == 0 {
			continue
		}
		c, err := probeFile(ctx, d.Path, false)
		if err != nil {
			continue
		}
		if c.Filesystem != nil && strings.EqualFold(c.Filesystem.UUID, uuid) {
			return d.Path, nil
		}
		for _, pc := range c.Partitions {
			if pc.Filesystem == nil || !strings.EqualFold(pc.Filesystem.UUID, uuid) {
				continue
			}
			for _, p := range d.Partitions {
				if p.Number == pc.Number {
					return ensureNode(p.Path, p.Dev)
				}
			}
			unread = fmt.Errorf("%s partition %d: the kernel has not read the partition table", d.Name, pc.Number)
		}
	}
	if unread != nil {
		return "", unread
	}
	return "", ErrNoSuchFilesystem
}
