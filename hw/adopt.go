package hw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"
)

// Errors returned by Adopt (wrapped).
var (
	// ErrNeedsConfirmation: the disk holds data arkbox did not put there
	// (or is a pool member), and the caller's confirmation string does not
	// equal the disk's Identity.
	ErrNeedsConfirmation = errors.New("disk holds data: confirm with the disk's model and serial")
	// ErrInUse: a partition of the disk is mounted.
	ErrInUse = errors.New("disk is in use")
	// ErrReadOnly: the disk is write-protected.
	ErrReadOnly = errors.New("disk is read-only")
)

// AdoptOptions are the choices of Adopt.
type AdoptOptions struct {
	// Confirm must equal the disk's Identity() ("model serial") when the
	// disk holds a partition table or filesystem that arkbox did not
	// create, or belongs to a pool. A blank disk, or one arkbox adopted
	// that holds no pool, needs no confirmation.
	Confirm string
	// Label is the ext4 label; it must start with LabelPrefix. Default
	// "arkbox-" and the first 8 digits of the filesystem UUID.
	Label string
	// UUID fixes the filesystem UUID (tests); default random.
	UUID string
	// InodeRatio is bytes per inode; default 256 KiB (pool shards are
	// large files; this keeps the inode tables, and formatting, small).
	InodeRatio int64
}

// Adopted describes the filesystem Adopt created.
type Adopted struct {
	Disk            string `json:"disk"`
	PartitionNumber int    `json:"partition_number"`
	PartitionGUID   string `json:"partition_guid"`
	StartBytes      int64  `json:"start_bytes"`
	SizeBytes       int64  `json:"size_bytes"`
	UUID            string `json:"uuid"`
	Label           string `json:"label"`
	// Reread is empty when the kernel re-read the new partition table (or
	// the disk is an image file); otherwise it says why it could not.
	Reread string `json:"reread,omitempty"`
}

const (
	sectorSize     = 512
	partStartLBA   = 2048 // 1 MiB: aligned for every flash page and SMR zone size that matters
	gptTailSectors = 33   // backup entries (32) and header (1)
	minAdoptBytes  = 64 << 20
)

// Adopt turns the disk at d.Path (a block device or an image file) into an
// arkbox data disk: it wipes the first and last MiB, writes a GPT with one
// Linux partition named PartitionName from 1 MiB to the end, and formats
// it ext4 (4 KiB blocks, metadata checksums, journal) in Go. It refuses a
// disk that is mounted, read-only, or holds data of unknown origin without
// the right confirmation. d should come from FindDisk; for an image file,
// Path, Name, Model and Serial are enough.
func Adopt(ctx context.Context, d Disk, o AdoptOptions) (*Adopted, error) {
	fail := func(err error) (*Adopted, error) {
		return nil, fmt.Errorf("hw: adopt %s: %w", d.Path, err)
	}
	if len(d.Mounted) > 0 {
		return fail(fmt.Errorf("%w: mounted at %s", ErrInUse, strings.Join(d.Mounted, ", ")))
	}
	if d.ReadOnly {
		return fail(ErrReadOnly)
	}
	// Look at the disk now, not at what the caller saw earlier.
	c, err := ProbeFile(ctx, d.Path)
	if err != nil {
		return nil, fmt.Errorf("hw: adopt: %w", err)
	}
	if err := checkAdoptable(d, c, o.Confirm); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}

	fsUUID := uuid.New()
	if o.UUID != "" {
		if fsUUID, err = uuid.Parse(o.UUID); err != nil {
			return fail(fmt.Errorf("filesystem uuid: %w", err))
		}
	}
	label := o.Label
	if label == "" {
		label = LabelPrefix + "-" + fsUUID.String()[:8]
	}
	if !strings.HasPrefix(label, LabelPrefix) || len(label) > 16 {
		return fail(fmt.Errorf("label %q: must start with %q and have at most 16 bytes", label, LabelPrefix))
	}
	ratio := o.InodeRatio
	if ratio == 0 {
		ratio = 256 << 10
	}

	dk, err := diskfs.Open(d.Path, diskfs.WithOpenMode(diskfs.ReadWriteExclusive), diskfs.WithSectorSize(sectorSize))
	if err != nil {
		return fail(fmt.Errorf("open: %w", err))
	}
	defer dk.Close()
	size := dk.Size
	if size < minAdoptBytes {
		return fail(fmt.Errorf("disk has %d bytes, fewer than %d", size, minAdoptBytes))
	}
	w, err := dk.Backend.Writable()
	if err != nil {
		return fail(fmt.Errorf("open for writing: %w", err))
	}
	// Old tables and signatures at either end must not survive next to ours.
	if err := zeroRange(w, 0, partStartLBA*sectorSize); err != nil {
		return fail(err)
	}
	if err := zeroRange(w, size-(1<<20), 1<<20); err != nil {
		return fail(err)
	}

	lastLBA := uint64(size/sectorSize) - 1
	end := lastLBA - gptTailSectors
	partGUID := uuid.New()
	table := &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		ProtectiveMBR:      true,
		Partitions: []*gpt.Partition{{
			Index: 1,
			Start: partStartLBA,
			End:   end,
			Type:  gpt.LinuxFilesystem,
			Name:  PartitionName,
			GUID:  strings.ToUpper(partGUID.String()),
		}},
	}
	res := &Adopted{Disk: d.Path, PartitionNumber: 1, PartitionGUID: strings.ToUpper(partGUID.String()),
		StartBytes: partStartLBA * sectorSize, SizeBytes: int64(end-partStartLBA+1) * sectorSize,
		UUID: fsUUID.String(), Label: label}
	if err := dk.Partition(table); err != nil {
		// For an image file or a busy loop device the kernel re-read fails;
		// the table itself has been written.
		if !isRereadError(err) {
			return fail(fmt.Errorf("write partition table: %w", err))
		}
		res.Reread = err.Error()
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	_, err = ext4.Create(dk.Backend, res.SizeBytes, res.StartBytes, sectorSize, &ext4.Params{
		UUID:            &fsUUID,
		SectorsPerBlock: 8,
		InodeRatio:      ratio,
		VolumeName:      label,
		Features: []ext4.FeatureOpt{
			ext4.WithFeatureMetadataChecksums(true),
			ext4.WithFeatureDirectoryIndices(true),
			// go-diskfs v1.9.4 writes a resize inode e2fsck rejects; pool disks never grow in place.
			ext4.WithFeatureReservedGDTBlocksForExpansion(false),
		},
	})
	if err != nil {
		return fail(fmt.Errorf("create ext4 on partition 1: %w", err))
	}
	if f, err := dk.Backend.Sys(); err == nil {
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("sync: %w", err))
		}
	}
	return res, nil
}

// checkAdoptable applies Adopt's rules to what is on the disk.
func checkAdoptable(d Disk, c *Content, confirm string) error {
	needs := ""
	switch {
	case c.Origin == OriginBlank:
	case c.Origin == OriginArkbox && c.PoolMember() == nil:
	case c.Origin == OriginArkbox:
		needs = "it is a member of pool " + c.PoolMember().Pool
	default:
		needs = "it holds " + describe(c)
	}
	if needs == "" || confirm == d.Identity() {
		return nil
	}
	return fmt.Errorf("%w: %s; to erase it, confirm with %q", ErrNeedsConfirmation, needs, d.Identity())
}

// describe says in a few words what is on a disk.
func describe(c *Content) string {
	var what []string
	if c.Table != "" {
		what = append(what, fmt.Sprintf("a %s partition table with %d partition(s)", strings.ToUpper(c.Table), len(c.Partitions)))
	}
	if c.Filesystem != nil {
		what = append(what, "a "+c.Filesystem.Type+" filesystem")
	}
	for _, p := range c.Partitions {
		if p.Filesystem != nil {
			s := fmt.Sprintf("%s on partition %d", p.Filesystem.Type, p.Number)
			if p.Filesystem.Label != "" {
				s += fmt.Sprintf(" (%q)", p.Filesystem.Label)
			}
			what = append(what, s)
		}
	}
	if len(what) == 0 {
		return "unknown data"
	}
	return strings.Join(what, ", ")
}

func isRereadError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "re-read") || strings.Contains(s, "BLKRRPART") || strings.Contains(s, "not a block device")
}

func zeroRange(w io.WriterAt, off, n int64) error {
	buf := make([]byte, 1<<20)
	for n > 0 {
		c := min(n, int64(len(buf)))
		if _, err := w.WriteAt(buf[:c], off); err != nil {
			return fmt.Errorf("wipe %d bytes at %d: %w", c, off, err)
		}
		off += c
		n -= c
	}
	return nil
}
