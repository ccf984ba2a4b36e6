package hw

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Transport is the bus a disk is attached by.
type Transport string

// Transports that Discover reports.
const (
	TransportUSB    Transport = "usb"
	TransportSATA   Transport = "sata"
	TransportNVMe   Transport = "nvme"
	TransportVirtio Transport = "virtio"
	TransportMMC    Transport = "mmc" // SD cards and eMMC (the Raspberry Pi's boot medium)
	TransportOther  Transport = "other"
)

// Disk is one whole block device as the kernel presents it.
type Disk struct {
	Name       string      `json:"name"`              // kernel name, e.g. "sda"
	Path       string      `json:"path"`              // device node, e.g. "/dev/sda"
	Dev        string      `json:"dev"`               // "major:minor"
	Transport  Transport   `json:"transport"`         // usb, sata, nvme, virtio, mmc or other
	Vendor     string      `json:"vendor,omitempty"`  // as sysfs reports it, trimmed
	Model      string      `json:"model,omitempty"`   // likewise
	Serial     string      `json:"serial,omitempty"`  // from sysfs, the SCSI VPD page 0x80 or the USB device
	WWID       string      `json:"wwid,omitempty"`    // world-wide id where the kernel has one
	SizeBytes  int64       `json:"size_bytes"`        // capacity
	Removable  bool        `json:"removable"`         // the kernel's removable flag (media, not the bus)
	ReadOnly   bool        `json:"read_only"`         // write-protected
	Partitions []Partition `json:"partitions"`        // as the kernel sees them
	Mounted    []string    `json:"mounted,omitempty"` // mount points of the disk or its partitions
	Content    *Content    `json:"content,omitempty"` // what Probe found on the disk, if probed
	ProbeError string      `json:"probe_error,omitempty"`
}

// Identity is the string a caller must repeat to confirm that a disk holding
// data of unknown origin may be overwritten: model and serial separated by a
// space (either may be empty; then the disk's name stands in for both).
func (d *Disk) Identity() string {
	id := strings.TrimSpace(d.Model + " " + d.Serial)
	if id == "" {
		return d.Name
	}
	return id
}

// Partition is one partition of a disk as the kernel sees it.
type Partition struct {
	Name       string `json:"name"`   // e.g. "sda1"
	Path       string `json:"path"`   // e.g. "/dev/sda1"
	Dev        string `json:"dev"`    // "major:minor"
	Number     int    `json:"number"` // 1-based
	StartBytes int64  `json:"start_bytes"`
	SizeBytes  int64  `json:"size_bytes"`
	ReadOnly   bool   `json:"read_only"`
}

// DiscoverOptions says where Discover looks.
type DiscoverOptions struct {
	SysRoot   string // sysfs mount point; "" means "/sys"
	DevRoot   string // device directory; "" means "/dev"
	MountInfo string // mountinfo file to mark mounted disks; "" means "/proc/self/mountinfo", "-" means none
	Probe     bool   // read each disk's start to find partition tables, filesystems and pool markers
	// Virtual also lists loop, ram, zram, device-mapper and md devices
	// (normally skipped: they are not disks one can adopt).
	Virtual bool
}

func (o DiscoverOptions) sysRoot() string {
	if o.SysRoot == "" {
		return "/sys"
	}
	return o.SysRoot
}

func (o DiscoverOptions) devRoot() string {
	if o.DevRoot == "" {
		return "/dev"
	}
	return o.DevRoot
}

// virtualPrefixes are kernel names of block devices that are not disks.
var virtualPrefixes = []string{"loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd", "mtdblock"}

func isVirtual(name string) bool {
	for _, p := range virtualPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	// eMMC boot and RPMB areas are not usable disks.
	return strings.HasPrefix(name, "mmcblk") && (strings.Contains(name, "boot") || strings.Contains(name, "rpmb"))
}

// Discover lists the disks under SysRoot/block, sorted by name. A disk whose
// attributes cannot be read is still listed, with what could be read; an
// error is returned only when the block directory itself is unreadable.
func Discover(ctx context.Context, opts DiscoverOptions) ([]Disk, error) {
	blockDir := filepath.Join(opts.sysRoot(), "block")
	entries, err := os.ReadDir(blockDir)
	if err != nil {
		return nil, fmt.Errorf("hw: list disks in %s: %w", blockDir, err)
	}
	var mounts []MountInfo
	if opts.MountInfo != "-" {
		mi := opts.MountInfo
		if mi == "" {
			mi = "/proc/self/mountinfo"
		}
		mounts, _ = ReadMountInfo(mi) // best effort: a missing file only means no Mounted lists
	}
	var disks []Disk
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := e.Name()
		if !opts.Virtual && isVirtual(name) {
			continue
		}
		d := readDisk(opts.sysRoot(), opts.devRoot(), name)
		d.Mounted = mountedOn(mounts, d)
		if opts.Probe {
			c, err := ProbeFile(ctx, d.Path)
			if err != nil {
				d.ProbeError = err.Error()
			} else {
				d.Content = c
			}
		}
		disks = append(disks, d)
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	return disks, nil
}

// readDisk reads one disk's attributes; missing attributes stay empty.
func readDisk(sysRoot, devRoot, name string) Disk {
	dir := filepath.Join(sysRoot, "block", name)
	d := Disk{Name: name, Path: filepath.Join(devRoot, name), Partitions: []Partition{}}
	d.Dev = readAttr(dir, "dev")
	d.SizeBytes = readInt(dir, "size") * 512
	d.Removable = readAttr(dir, "removable") == "1"
	d.ReadOnly = readAttr(dir, "ro") == "1"

	devPath := resolveDevicePath(sysRoot, name)
	d.Transport = transportOf(devPath, name)

	dev := filepath.Join(dir, "device")
	d.Vendor = readAttr(dev, "vendor")
	d.Model = readAttr(dev, "model")
	if d.Transport == TransportVirtio {
		// virtio's "vendor" is the PCI vendor id (0x1af4), not a name.
		d.Vendor, d.Model = "", "virtio disk"
	}
	if m := ataModel(filepath.Join(dev, "vpd_pg89")); m != "" {
		// The SCSI model attribute is the 16-character INQUIRY product
		// that libata cuts the drive's 40-character model to.
		d.Model = m
	}
	if d.Transport == TransportMMC {
		d.Model = readAttr(dev, "name")
		d.Vendor = readAttr(dev, "manfid")
	}
	d.Serial = firstNonEmpty(
		readAttr(dir, "serial"),                   // virtio_blk
		readAttr(dev, "serial"),                   // nvme controller, mmc card
		vpdSerial(filepath.Join(dev, "vpd_pg80")), // SCSI/ATA
		usbSerial(sysRoot, devPath),
	)
	d.WWID = firstNonEmpty(readAttr(dir, "wwid"), readAttr(dev, "wwid"))

	parts, _ := os.ReadDir(dir)
	for _, p := range parts {
		pdir := filepath.Join(dir, p.Name())
		if !strings.HasPrefix(p.Name(), name) {
			continue
		}
		if _, err := os.Stat(filepath.Join(pdir, "partition")); err != nil {
			continue
		}
		n, _ := strconv.Atoi(readAttr(pdir, "partition"))
		d.Partitions = append(d.Partitions, Partition{
			Name:       p.Name(),
			Path:       filepath.Join(devRoot, p.Name()),
			Dev:        readAttr(pdir, "dev"),
			Number:     n,
			StartBytes: readInt(pdir, "start") * 512,
			SizeBytes:  readInt(pdir, "size") * 512,
			ReadOnly:   readAttr(pdir, "ro") == "1",
		})
	}
	sort.Slice(d.Partitions, func(i, j int) bool { return d.Partitions[i].Number < d.Partitions[j].Number })
	return d
}

// resolveDevicePath returns the target of /sys/block/NAME relative to the
// sysfs root (e.g. "devices/pci0000:00/…/usb2/…/block/sda"), or "".
func resolveDevicePath(sysRoot, name string) string {
	link := filepath.Join(sysRoot, "block", name)
	target, err := os.Readlink(link)
	if err != nil {
		return ""
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	rel, err := filepath.Rel(sysRoot, target)
	if err != nil {
		return ""
	}
	return filepath.ToSlash(rel)
}

// transportOf classifies a disk by the path of its device in sysfs.
func transportOf(devPath, name string) Transport {
	p := "/" + devPath + "/"
	switch {
	case strings.Contains(p, "/usb"):
		return TransportUSB
	case strings.HasPrefix(name, "nvme") || strings.Contains(p, "/nvme"):
		return TransportNVMe
	case strings.Contains(p, "/ata"):
		return TransportSATA
	case strings.Contains(p, "/virtio"):
		return TransportVirtio
	case strings.HasPrefix(name, "mmcblk") || strings.Contains(p, "/mmc"):
		return TransportMMC
	}
	return TransportOther
}

// usbSerial walks up from a USB disk's device path to the USB device (the
// directory that has idVendor) and returns its serial attribute.
func usbSerial(sysRoot, devPath string) string {
	if devPath == "" || !strings.Contains(devPath, "/usb") {
		return ""
	}
	dir := filepath.Join(sysRoot, filepath.FromSlash(devPath))
	for ; len(dir) > len(sysRoot); dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "idVendor")); err == nil {
			return readAttr(dir, "serial")
		}
	}
	return ""
}

// ataModel returns the model number of an ATA drive from its ATA
// Information VPD page (89h), which carries the drive's IDENTIFY DEVICE
// data from byte 60: the model is words 27–46, two ASCII characters per
// word with the first in the high byte. "" when the page is missing or
// does not hold IDENTIFY DEVICE data.
func ataModel(path string) string {
	b, err := os.ReadFile(path)
	const identify = 60
	if err != nil || len(b) < identify+512 || b[1] != 0x89 || b[56] != 0xec {
		return ""
	}
	w := b[identify+27*2 : identify+47*2]
	m := make([]byte, len(w))
	for i := 0; i+1 < len(w); i += 2 {
		m[i], m[i+1] = w[i+1], w[i]
	}
	return cleanString(m)
}

// vpdSerial decodes a SCSI Unit Serial Number VPD page (0x80): a 4-byte
// header whose last two bytes are the length, then ASCII.
func vpdSerial(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	if n > len(b)-4 {
		n = len(b) - 4
	}
	return cleanString(b[4 : 4+n])
}

// cleanString trims spaces and NULs and drops non-printable bytes.
func cleanString(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			sb.WriteByte(c)
		}
	}
	return strings.TrimSpace(sb.String())
}

func readAttr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return cleanString(b)
}

func readInt(dir, name string) int64 {
	n, _ := strconv.ParseInt(readAttr(dir, name), 10, 64)
	return n
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// mountedOn lists the mount points of d and its partitions, matched by
// major:minor.
func mountedOn(mounts []MountInfo, d Disk) []string {
	devs := map[string]bool{}
	if d.Dev != "" {
		devs[d.Dev] = true
	}
	for _, p := range d.Partitions {
		if p.Dev != "" {
			devs[p.Dev] = true
		}
	}
	var out []string
	for _, m := range mounts {
		if devs[m.Dev] {
			out = append(out, m.MountPoint)
		}
	}
	return out
}

// FindDisk returns the disk named name (e.g. "sda"), or an error wrapping
// fs.ErrNotExist.
func FindDisk(ctx context.Context, opts DiscoverOptions, name string) (Disk, error) {
	name = strings.TrimPrefix(name, "/dev/")
	if strings.ContainsAny(name, "/") || name == "" || name == "." || name == ".." {
		return Disk{}, fmt.Errorf("hw: find disk %q: not a kernel disk name", name)
	}
	if _, err := os.Lstat(filepath.Join(opts.sysRoot(), "block", name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Disk{}, fmt.Errorf("hw: find disk %s: %w", name, fs.ErrNotExist)
		}
		return Disk{}, fmt.Errorf("hw: find disk %s: %w", name, err)
	}
	opts.Virtual = true
	d := readDisk(opts.sysRoot(), opts.devRoot(), name)
	if opts.MountInfo != "-" {
		mi := opts.MountInfo
		if mi == "" {
			mi = "/proc/self/mountinfo"
		}
		mounts, _ := ReadMountInfo(mi)
		d.Mounted = mountedOn(mounts, d)
	}
	if opts.Probe {
		c, err := ProbeFile(ctx, d.Path)
		if err != nil {
			d.ProbeError = err.Error()
		} else {
			d.Content = c
		}
	}
	return d, nil
}
