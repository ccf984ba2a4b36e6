package hw

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
)

const testPoolJSON = `{"format":1,"pool":"4f0c7a52-8d1e-4b8a-9a55-0c2c9d1f6e3b","disk":"9d2f5e10-3b7c-4a1e-8f0d-6a4b2c8e1f57","layouts":[]}`

func newImage(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func writeAt(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// extSuperblock returns a minimal ext4 superblock with the given label.
func extSuperblock(label string) []byte {
	sb := make([]byte, 1024)
	binary.LittleEndian.PutUint16(sb[extMagicOffset:], extMagic)
	binary.LittleEndian.PutUint32(sb[extCompatOffset:], extCompatJournal)
	binary.LittleEndian.PutUint32(sb[extIncompOffset:], extIncompExtents)
	copy(sb[extUUIDOffset:], []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef})
	copy(sb[extLabelOffset:], label)
	return sb
}

// mbrWithPartition writes a classic MBR with one Linux partition.
func mbrWithPartition(startLBA, sectors uint32) []byte {
	b := make([]byte, 512)
	e := b[446:]
	e[4] = 0x83
	binary.LittleEndian.PutUint32(e[8:], startLBA)
	binary.LittleEndian.PutUint32(e[12:], sectors)
	b[510], b[511] = 0x55, 0xAA
	return b
}

func TestProbe(t *testing.T) {
	ctx := context.Background()
	const size = 64 << 20
	for _, tc := range []struct {
		name   string
		setup  func(path string)
		table  string
		fs     string // whole disk, or first partition
		label  string
		origin Origin
	}{
		{name: "blank", setup: func(string) {}, origin: OriginBlank},
		{name: "whole-disk ext4", setup: func(p string) { writeAt(t, p, 1024, extSuperblock("backup")) },
			fs: "ext4", label: "backup", origin: OriginUnknown},
		{name: "mbr with ext4", setup: func(p string) {
			writeAt(t, p, 0, mbrWithPartition(2048, 100000))
			writeAt(t, p, 2048*512+1024, extSuperblock("photos"))
		}, table: "mbr", fs: "ext4", label: "photos", origin: OriginUnknown},
		{name: "fat32 stick", setup: func(p string) {
			b := make([]byte, 512)
			copy(b[82:], "FAT32   ")
			b[510], b[511] = 0x55, 0xAA
			writeAt(t, p, 0, b)
		}, fs: "vfat", origin: OriginUnknown},
		{name: "ntfs", setup: func(p string) { writeAt(t, p, 3, []byte("NTFS    ")) }, fs: "ntfs", origin: OriginUnknown},
		{name: "luks", setup: func(p string) { writeAt(t, p, 0, []byte("LUKS\xba\xbe")) }, fs: "crypto_LUKS", origin: OriginUnknown},
		{name: "gpt with foreign ext4", setup: func(p string) {
			if _, err := Adopt(ctx, Disk{Path: p}, AdoptOptions{}); err != nil {
				t.Fatal(err)
			}
			writeAt(t, p, 2048*512+1024, extSuperblock("someone"))
		}, table: "gpt", fs: "ext4", label: "someone", origin: OriginUnknown},
		{name: "adopted", setup: func(p string) {
			if _, err := Adopt(ctx, Disk{Path: p}, AdoptOptions{Label: "arkbox-test"}); err != nil {
				t.Fatal(err)
			}
		}, table: "gpt", fs: "ext4", label: "arkbox-test", origin: OriginArkbox},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newImage(t, size)
			tc.setup(p)
			c, err := ProbeFile(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if c.Table != tc.table || c.Origin != tc.origin {
				t.Errorf("table %q origin %q, want %q %q", c.Table, c.Origin, tc.table, tc.origin)
			}
			fs := c.Filesystem
			if len(c.Partitions) > 0 {
				fs = c.Partitions[0].Filesystem
			}
			switch {
			case tc.fs == "" && fs != nil:
				t.Errorf("filesystem %+v, want none", fs)
			case tc.fs != "" && (fs == nil || fs.Type != tc.fs || fs.Label != tc.label):
				t.Errorf("filesystem %+v, want %s %q", fs, tc.fs, tc.label)
			}
		})
	}
}

func TestAdoptImage(t *testing.T) {
	ctx := context.Background()
	p := newImage(t, 80<<20)
	d := Disk{Name: "img", Path: p, Model: "Test Disk", Serial: "SN1"}
	res, err := Adopt(ctx, d, AdoptOptions{UUID: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Label != "arkbox-0b1c2d3e" || res.StartBytes != 1<<20 || res.UUID != "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0" {
		t.Errorf("adopted %+v", res)
	}
	c, err := ProbeFile(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Origin != OriginArkbox || len(c.Partitions) != 1 || c.Partitions[0].Type != GPTTypeLinuxFilesystem ||
		c.Partitions[0].Filesystem.UUID != res.UUID || c.Partitions[0].GUID != res.PartitionGUID {
		t.Fatalf("probe after adopt: %+v", c)
	}
	e2fsck(t, p, res.StartBytes, res.SizeBytes)

	// An adopted disk without a pool may be adopted again without asking.
	if _, err := Adopt(ctx, d, AdoptOptions{}); err != nil {
		t.Fatalf("re-adopt: %v", err)
	}
	c, _ = ProbeFile(ctx, p)

	// Make it a pool member (go-diskfs writes the marker, ProbeFile reads it
	// back without mounting).
	fsys, err := ext4.Read(openRW(t, p), c.Partitions[0].SizeBytes, c.Partitions[0].StartBytes, 512)
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.Mkdir("arkbox"); err != nil {
		t.Fatal(err)
	}
	f, err := fsys.OpenFile("arkbox/pool.json", os.O_CREATE|os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(testPoolJSON))
	f.Close()
	c, err = ProbeFile(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	m := c.PoolMember()
	if m == nil || m.Pool != "4f0c7a52-8d1e-4b8a-9a55-0c2c9d1f6e3b" || m.Disk != "9d2f5e10-3b7c-4a1e-8f0d-6a4b2c8e1f57" {
		t.Fatalf("pool marker %+v", m)
	}
	_, err = Adopt(ctx, d, AdoptOptions{})
	if !errors.Is(err, ErrNeedsConfirmation) || !strings.Contains(err.Error(), "pool 4f0c7a52") || !strings.Contains(err.Error(), `"Test Disk SN1"`) {
		t.Fatalf("adopting a pool member: %v", err)
	}
	if _, err := Adopt(ctx, d, AdoptOptions{Confirm: "Test Disk SN1"}); err != nil {
		t.Fatalf("confirmed: %v", err)
	}
}

func openRW(t testing.TB, p string) backend.Storage {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return file.New(f, false)
}

func TestAdoptRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		disk    func(p string) Disk
		setup   func(p string)
		confirm string
		want    error
	}{
		{name: "foreign filesystem", setup: func(p string) { writeAt(t, p, 1024, extSuperblock("photos")) },
			disk: func(p string) Disk { return Disk{Path: p, Model: "M", Serial: "S"} }, want: ErrNeedsConfirmation},
		{name: "wrong confirmation", setup: func(p string) { writeAt(t, p, 1024, extSuperblock("photos")) },
			disk: func(p string) Disk { return Disk{Path: p, Model: "M", Serial: "S"} }, confirm: "M", want: ErrNeedsConfirmation},
		{name: "right confirmation", setup: func(p string) { writeAt(t, p, 1024, extSuperblock("photos")) },
			disk: func(p string) Disk { return Disk{Path: p, Model: "M", Serial: "S"} }, confirm: "M S"},
		{name: "mbr table", setup: func(p string) { writeAt(t, p, 0, mbrWithPartition(2048, 1000)) },
			disk: func(p string) Disk { return Disk{Path: p, Model: "M", Serial: "S"} }, want: ErrNeedsConfirmation},
		{name: "mounted", setup: func(string) {},
			disk: func(p string) Disk { return Disk{Path: p, Mounted: []string{"/perm"}} }, confirm: "x", want: ErrInUse},
		{name: "read-only", setup: func(string) {},
			disk: func(p string) Disk { return Disk{Path: p, ReadOnly: true} }, want: ErrReadOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newImage(t, 64<<20)
			tc.setup(p)
			before := ends(t, p)
			_, err := Adopt(ctx, tc.disk(p), AdoptOptions{Confirm: tc.confirm})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if after := ends(t, p); !bytes.Equal(before, after) {
				t.Error("a refused adopt changed the disk")
			}
		})
	}
	if _, err := Adopt(ctx, Disk{Path: newImage(t, 1<<20)}, AdoptOptions{}); err == nil {
		t.Error("adopted a 1 MiB disk")
	}
}

// ends returns the first and last 2 MiB of a file: what Adopt writes
// before formatting.
func ends(t testing.TB, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return append(b[:2<<20:2<<20], b[len(b)-2<<20:]...)
}

// e2fsck checks the filesystem at [off, off+n) of an image with Debian's
// e2fsck -fn (on a copy of the partition: e2fsck takes no offset).
func e2fsck(t testing.TB, img string, off, n int64) {
	t.Helper()
	bin, err := exec.LookPath("e2fsck")
	if err != nil {
		if bin, err = exec.LookPath("/sbin/e2fsck"); err != nil {
			t.Log("e2fsck not installed (Debian: e2fsprogs); skipping the fsck check")
			return
		}
	}
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	part := filepath.Join(t.TempDir(), "part.img")
	dst, err := os.Create(part)
	if err != nil {
		t.Fatal(err)
	}
	if err := copySparse(dst, io.NewSectionReader(src, off, n), n); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	out, err := exec.Command(bin, "-fn", part).CombinedOutput()
	if err != nil || strings.Contains(string(out), "?") {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	t.Logf("e2fsck -fn: %s", lastLine(string(out)))
}

// copySparse copies n bytes, skipping runs of zeros.
func copySparse(dst *os.File, src io.Reader, n int64) error {
	buf := make([]byte, 1<<20)
	var off int64
	for off < n {
		k, err := io.ReadFull(src, buf[:min(int64(len(buf)), n-off)])
		if k > 0 && !allZero(buf[:k]) {
			if _, err := dst.WriteAt(buf[:k], off); err != nil {
				return err
			}
		}
		off += int64(k)
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			return err
		}
	}
	return dst.Truncate(n)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func FuzzProbe(f *testing.F) {
	gptDisk := func() []byte {
		dir := f.TempDir()
		p := filepath.Join(dir, "d.img")
		fh, _ := os.Create(p)
		fh.Truncate(64 << 20)
		fh.Close()
		if _, err := Adopt(context.Background(), Disk{Path: p}, AdoptOptions{}); err != nil {
			f.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		return b[:64<<10] // the table and the start of the partition
	}()
	f.Add(gptDisk)
	f.Add(append(mbrWithPartition(1, 100), make([]byte, 4096)...))
	f.Add(append(make([]byte, 1024), extSuperblock("x")...))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Probe(context.Background(), bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for _, p := range c.Partitions {
			if p.StartBytes < 0 || p.SizeBytes < 0 || p.StartBytes+p.SizeBytes > int64(len(b)) {
				t.Fatalf("partition %+v outside a %d-byte disk", p, len(b))
			}
		}
	})
}

func FuzzParseExtSuperblock(f *testing.F) {
	f.Add(extSuperblock("arkbox-1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if fs, err := ParseExtSuperblock(b); err == nil && fs.Type == "" {
			t.Fatal("no type")
		}
	})
}

func FuzzParsePoolMarker(f *testing.F) {
	f.Add([]byte(testPoolJSON))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := ParsePoolMarker(b); err == nil && (m.Pool == "" || m.Disk == "") {
			t.Fatal("accepted a marker without ids")
		}
	})
}
