package hw

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"unicode/utf16"
)

// Content is what Probe found on a disk: a partition table and the
// filesystems in it, or a filesystem on the whole disk.
type Content struct {
	Table      string             `json:"table,omitempty"`     // "gpt", "mbr" or "" (none)
	DiskGUID   string             `json:"disk_guid,omitempty"` // GPT only
	Partitions []PartitionContent `json:"partitions,omitempty"`
	Filesystem *Filesystem        `json:"filesystem,omitempty"` // on the whole disk, when there is no table
	Origin     Origin             `json:"origin"`
}

// PartitionContent is one partition-table entry and what it holds.
type PartitionContent struct {
	Number     int         `json:"number"`
	StartBytes int64       `json:"start_bytes"`
	SizeBytes  int64       `json:"size_bytes"`
	Type       string      `json:"type"`           // GPT type GUID, or MBR type as "0x83"
	Name       string      `json:"name,omitempty"` // GPT partition name
	GUID       string      `json:"guid,omitempty"` // GPT unique partition GUID (PARTUUID)
	Filesystem *Filesystem `json:"filesystem,omitempty"`
}

// Filesystem is a filesystem signature found at the start of a partition.
type Filesystem struct {
	Type  string      `json:"type"` // ext4 (also ext2/3), vfat, exfat, ntfs, xfs, btrfs, crypto_LUKS, swap, iso9660, …
	UUID  string      `json:"uuid,omitempty"`
	Label string      `json:"label,omitempty"`
	Pool  *PoolMarker `json:"pool,omitempty"` // an arkbox pool member's marker, ext4 only
}

// Origin says who made what is on a disk.
type Origin string

// Origins of a disk's content.
const (
	OriginBlank   Origin = "blank"   // no partition table, no filesystem signature
	OriginArkbox  Origin = "arkbox"  // adopted by arkbox (GPT with one "arkbox" ext4 partition)
	OriginUnknown Origin = "unknown" // anything else: someone else's data
)

// PartitionName is the GPT partition name that Adopt gives the one
// partition of an adopted disk; with LabelPrefix it marks a disk as
// arkbox's own.
const PartitionName = "arkbox"

// LabelPrefix starts the ext4 label of every filesystem Adopt creates.
const LabelPrefix = "arkbox"

// ProbeFile opens a block device or image file read-only and probes it,
// pool markers included.
func ProbeFile(ctx context.Context, path string) (*Content, error) {
	return probeFile(ctx, path, true)
}

func probeFile(ctx context.Context, path string, markers bool) (*Content, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hw: probe %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("hw: probe %s: size: %w", path, err)
	}
	c, err := Probe(ctx, f, size)
	if err != nil {
		return nil, fmt.Errorf("hw: probe %s: %w", path, err)
	}
	if markers {
		readPoolMarkers(ctx, f, c)
	}
	c.Origin = c.origin()
	return c, nil
}

// Probe reads the partition table of a disk of size bytes and the
// filesystem signature of each partition (or of the whole disk). It never
// writes. Pool markers need a file and are read by ProbeFile only.
func Probe(ctx context.Context, r io.ReaderAt, size int64) (*Content, error) {
	c := &Content{}
	if gpt, err := readGPT(r, size); err == nil {
		c.Table = "gpt"
		c.DiskGUID = gpt.diskGUID
		c.Partitions = gpt.parts
	} else if parts, ok := readMBR(r, size); ok {
		c.Table = "mbr"
		c.Partitions = parts
	}
	for i := range c.Partitions {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := &c.Partitions[i]
		p.Filesystem = probeFS(io.NewSectionReader(r, p.StartBytes, p.SizeBytes))
	}
	if c.Table == "" {
		c.Filesystem = probeFS(io.NewSectionReader(r, 0, size))
	}
	c.Origin = c.origin()
	return c, nil
}

func (c *Content) origin() Origin {
	switch {
	case c.Table == "" && c.Filesystem == nil:
		return OriginBlank
	case c.Table == "gpt" && len(c.Partitions) == 1 && c.Partitions[0].Name == PartitionName &&
		c.Partitions[0].Filesystem != nil && c.Partitions[0].Filesystem.Type == "ext4" &&
		strings.HasPrefix(c.Partitions[0].Filesystem.Label, LabelPrefix):
		return OriginArkbox
	}
	return OriginUnknown
}

// PoolMember returns the pool marker of an adopted disk, or nil.
func (c *Content) PoolMember() *PoolMarker {
	if c == nil {
		return nil
	}
	for _, p := range c.Partitions {
		if p.Filesystem != nil && p.Filesystem.Pool != nil {
			return p.Filesystem.Pool
		}
	}
	if c.Filesystem != nil {
		return c.Filesystem.Pool
	}
	return nil
}

// GPT partition type GUIDs (in their text form).
const (
	GPTTypeLinuxFilesystem = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

type gptTable struct {
	diskGUID string
	parts    []PartitionContent
}

var errNoGPT = errors.New("no GPT")

// readGPT reads the primary GPT header at LBA 1 (512-byte sectors) and
// its entries, checking both CRCs.
func readGPT(r io.ReaderAt, size int64) (*gptTable, error) {
	const sector = 512
	hdr := make([]byte, sector)
	if _, err := r.ReadAt(hdr, sector); err != nil {
		return nil, errNoGPT
	}
	if string(hdr[0:8]) != "EFI PART" {
		return nil, errNoGPT
	}
	hsize := binary.LittleEndian.Uint32(hdr[12:16])
	if hsize < 92 || hsize > sector {
		return nil, fmt.Errorf("gpt header size %d", hsize)
	}
	want := binary.LittleEndian.Uint32(hdr[16:20])
	h := append([]byte(nil), hdr[:hsize]...)
	binary.LittleEndian.PutUint32(h[16:20], 0)
	if crc32.ChecksumIEEE(h) != want {
		return nil, errors.New("gpt header checksum mismatch")
	}
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:80])
	count := binary.LittleEndian.Uint32(hdr[80:84])
	esize := binary.LittleEndian.Uint32(hdr[84:88])
	if esize < 128 || esize > 4096 || count > 1024 || entriesLBA > uint64(size/sector) {
		return nil, fmt.Errorf("gpt entries: %d of %d bytes at LBA %d", count, esize, entriesLBA)
	}
	entries := make([]byte, int(count)*int(esize))
	if _, err := r.ReadAt(entries, int64(entriesLBA)*sector); err != nil {
		return nil, fmt.Errorf("gpt entries: %w", err)
	}
	if crc32.ChecksumIEEE(entries) != binary.LittleEndian.Uint32(hdr[88:92]) {
		return nil, errors.New("gpt entries checksum mismatch")
	}
	t := &gptTable{diskGUID: guidString(hdr[56:72])}
	for i := 0; i < int(count); i++ {
		e := entries[i*int(esize) : (i+1)*int(esize)]
		if allZero(e[0:16]) {
			continue
		}
		first := binary.LittleEndian.Uint64(e[32:40])
		last := binary.LittleEndian.Uint64(e[40:48])
		if last < first || last >= uint64(size/sector) {
			continue
		}
		t.parts = append(t.parts, PartitionContent{
			Number:     i + 1,
			StartBytes: int64(first) * sector,
			SizeBytes:  int64(last-first+1) * sector,
			Type:       guidString(e[0:16]),
			GUID:       guidString(e[16:32]),
			Name:       utf16String(e[56:128]),
		})
	}
	return t, nil
}

// readMBR reads a classic MBR's four primary entries (extended partitions
// are listed but not followed).
func readMBR(r io.ReaderAt, size int64) ([]PartitionContent, bool) {
	b := make([]byte, 512)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, false
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return nil, false
	}
	// A FAT or NTFS boot sector also ends in 55 AA: it is a filesystem, not a table.
	if probeFS(io.NewSectionReader(r, 0, size)) != nil {
		return nil, false
	}
	var parts []PartitionContent
	for i := 0; i < 4; i++ {
		e := b[446+16*i : 446+16*(i+1)]
		if e[0] != 0 && e[0] != 0x80 {
			return nil, false // not a partition table
		}
		typ := e[4]
		start := int64(binary.LittleEndian.Uint32(e[8:12])) * 512
		n := int64(binary.LittleEndian.Uint32(e[12:16])) * 512
		if typ == 0 || n == 0 || start+n > size {
			continue
		}
		parts = append(parts, PartitionContent{Number: i + 1, StartBytes: start, SizeBytes: n, Type: fmt.Sprintf("0x%02x", typ)})
	}
	return parts, true
}

// probeFS recognizes a filesystem by its signature. It returns nil when
// none is found.
func probeFS(r io.ReaderAt) *Filesystem {
	if fs := probeExt(r); fs != nil {
		return fs
	}
	sig := func(off int64, magic string) bool {
		b := make([]byte, len(magic))
		_, err := r.ReadAt(b, off)
		return err == nil && string(b) == magic
	}
	switch {
	case sig(0, "XFSB"):
		return &Filesystem{Type: "xfs"}
	case sig(65536+64, "_BHRfS_M"):
		return &Filesystem{Type: "btrfs"}
	case sig(0, "LUKS\xba\xbe"):
		return &Filesystem{Type: "crypto_LUKS"}
	case sig(3, "NTFS    "):
		return &Filesystem{Type: "ntfs"}
	case sig(3, "EXFAT   "):
		return &Filesystem{Type: "exfat"}
	case sig(82, "FAT32   "), sig(54, "FAT12   "), sig(54, "FAT16   "), sig(54, "FAT     "):
		return &Filesystem{Type: "vfat"}
	case sig(4086, "SWAPSPACE2"), sig(4086, "SWAP-SPACE"):
		return &Filesystem{Type: "swap"}
	case sig(32769, "CD001"):
		return &Filesystem{Type: "iso9660"}
	case sig(0, "hsqs"):
		return &Filesystem{Type: "squashfs"}
	case sig(0, "BCACHE"), sig(24, "LVM2 001"), sig(536, "LVM2 001"):
		return &Filesystem{Type: "LVM2_member"}
	case sig(4096, "\xfc\x4e\x2b\xa9"), sig(0, "\xa9\x2b\x4e\xfc"):
		return &Filesystem{Type: "linux_raid_member"}
	}
	return nil
}

// Ext superblock layout (offsets within the superblock, which starts at
// byte 1024 of the filesystem).
const (
	extSuperOffset   = 1024
	extMagicOffset   = 0x38 // le16 0xEF53
	extCompatOffset  = 0x5C
	extIncompOffset  = 0x60
	extUUIDOffset    = 0x68
	extLabelOffset   = 0x78
	extMagic         = 0xEF53
	extIncompExtents = 0x40
	extIncomp64bit   = 0x80
	extCompatJournal = 0x4
)

// ParseExtSuperblock decodes the fields of an ext2/3/4 superblock (the
// 1024 bytes at offset 1024 of the filesystem) that identify it.
func ParseExtSuperblock(sb []byte) (*Filesystem, error) {
	if len(sb) < 0x88 {
		return nil, fmt.Errorf("ext superblock: %d bytes", len(sb))
	}
	if binary.LittleEndian.Uint16(sb[extMagicOffset:]) != extMagic {
		return nil, errors.New("ext superblock: bad magic")
	}
	typ := "ext2"
	compat := binary.LittleEndian.Uint32(sb[extCompatOffset:])
	incompat := binary.LittleEndian.Uint32(sb[extIncompOffset:])
	if compat&extCompatJournal != 0 {
		typ = "ext3"
	}
	if incompat&(extIncompExtents|extIncomp64bit) != 0 {
		typ = "ext4"
	}
	return &Filesystem{
		Type:  typ,
		UUID:  uuidString(sb[extUUIDOffset : extUUIDOffset+16]),
		Label: cString(sb[extLabelOffset : extLabelOffset+16]),
	}, nil
}

func probeExt(r io.ReaderAt) *Filesystem {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, extSuperOffset); err != nil {
		return nil
	}
	fs, err := ParseExtSuperblock(sb)
	if err != nil {
		return nil
	}
	return fs
}

// guidString formats a GPT GUID (mixed-endian) in upper case as sgdisk does.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

// uuidString formats a big-endian UUID in lower case as blkid does.
func uuidString(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func utf16String(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.ToValidUTF8(string(b), "?")
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
