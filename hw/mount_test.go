package hw

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const sampleMountInfo = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 179:2 / / ro,relatime shared:1 - squashfs /dev/mmcblk0p2 ro
30 27 179:4 / /perm rw,noatime shared:5 - ext4 /dev/mmcblk0p4 rw
41 27 8:1 / /mnt/disks/0b1c\0402f rw,nosuid,nodev,noexec,noatime shared:7 - ext4 /dev/sda1 ro,errors=remount-ro
42 27 8:17 /sub /mnt/disks/ok rw,noatime master:1 propagate_from:2 - ext4 /dev/sdb1 rw,errors=remount-ro
43 27 8:33 / /mnt/disks/emergency rw,nosuid,nodev,noexec,noatime - ext4 /dev/sdc1 rw,errors=remount-ro,emergency_ro
`

func TestParseMountInfo(t *testing.T) {
	ms, err := ParseMountInfo(strings.NewReader(sampleMountInfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 6 {
		t.Fatalf("%d mounts", len(ms))
	}
	for _, tc := range []struct {
		i                          int
		dev, root, mp, fstype, src string
		ro                         bool
	}{
		{0, "0:21", "/", "/proc", "proc", "proc", false},
		{1, "179:2", "/", "/", "squashfs", "/dev/mmcblk0p2", true},
		{2, "179:4", "/", "/perm", "ext4", "/dev/mmcblk0p4", false},
		{3, "8:1", "/", "/mnt/disks/0b1c 2f", "ext4", "/dev/sda1", true}, // remounted read-only by the kernel
		{4, "8:17", "/sub", "/mnt/disks/ok", "ext4", "/dev/sdb1", false},
		{5, "8:33", "/", "/mnt/disks/emergency", "ext4", "/dev/sdc1", true}, // the same on Linux 6.18
	} {
		m := ms[tc.i]
		if m.Dev != tc.dev || m.Root != tc.root || m.MountPoint != tc.mp || m.FSType != tc.fstype || m.Source != tc.src || m.ReadOnly() != tc.ro {
			t.Errorf("mount %d: %+v (read-only %v)", tc.i, m, m.ReadOnly())
		}
	}
	if !reflect.DeepEqual(ms[3].SuperOptions, []string{"ro", "errors=remount-ro"}) {
		t.Errorf("super options %q", ms[3].SuperOptions)
	}

	for _, bad := range []string{
		"1 2 3",
		"x 1 8:1 / /a rw - ext4 /dev/sda rw",
		"1 1 81 / /a rw - ext4 /dev/sda rw",
		"1 1 8:1 / /a rw ext4 /dev/sda rw",
		"1 1 8:1 / /a rw -",
	} {
		if _, err := ParseMountInfo(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestReadOnlyMounts(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(p, []byte(sampleMountInfo), 0o644); err != nil {
		t.Fatal(err)
	}
	ro, err := ReadOnlyMounts(p, "/mnt/disks/0b1c 2f", "/mnt/disks/ok", "/mnt/disks/absent/", "/mnt/disks/emergency")
	if err != nil {
		t.Fatal(err)
	}
	// The second as Linux 6.18 shows an ext4 it stopped writing to after
	// errors (TestKernelRemountsReadOnlyAfterErrors).
	if !reflect.DeepEqual(ro, []string{"/mnt/disks/0b1c 2f", "/mnt/disks/emergency"}) {
		t.Errorf("read-only %q", ro)
	}
	if _, err := ReadOnlyMounts(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("missing mountinfo: no error")
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`a\040b`:   "a b",
		`\011\012`: "\t\n",
		`\134`:     `\`,
		`tail\04`:  `tail\04`,
		`\999`:     `\999`,
		`plain`:    "plain",
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add(sampleMountInfo)
	f.Add("1 1 8:1 / /a\\ rw - ext4 /dev/sda rw\n")
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseMountInfo(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, m := range ms {
			if !strings.Contains(m.Dev, ":") {
				t.Fatalf("device %q", m.Dev)
			}
			_ = m.ReadOnly()
		}
	})
}
