package hw

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// captureMax is the largest attribute file CaptureSysfs records.
const captureMax = 4096

// CaptureSysfs writes what Discover reads of this machine's disks, in the
// format of the fake sysfs trees the tests use (hw/testdata/sysfs/README.md):
// for each disk Discover lists, its /sys/block link, the files and links of
// its block folder and of its partitions' folders, and the links and
// identifying attributes (ancestorAttrs) of every folder above it up to
// devices/. `arkbox disks --capture FILE` records a
// machine's disks so that they can be tested on any other; serial numbers
// are recorded as they are (edit them before publishing).
func CaptureSysfs(ctx context.Context, opts DiscoverOptions, w io.Writer) error {
	opts.Probe = false
	opts.MountInfo = "-"
	disks, err := Discover(ctx, opts)
	if err != nil {
		return err
	}
	root := opts.sysRoot()
	lines := map[string]string{} // path → line
	for _, d := range disks {
		link := filepath.Join(root, "block", d.Name)
		target, err := os.Readlink(link)
		if err != nil {
			return fmt.Errorf("hw: capture %s: %w", d.Name, err)
		}
		lines["block/"+d.Name] = "L block/" + d.Name + " -> " + target
		dev := resolveDevicePath(root, d.Name)
		if dev == "" {
			continue
		}
		dirs := []string{dev}
		ents, _ := os.ReadDir(filepath.Join(root, filepath.FromSlash(dev)))
		for _, e := range ents {
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(dev), e.Name(), "partition")); err == nil {
				dirs = append(dirs, dev+"/"+e.Name())
			}
		}
		ancestors := 0
		for p := filepath.Dir(filepath.FromSlash(dev)); p != "devices" && p != "." && p != string(filepath.Separator); p = filepath.Dir(p) {
			dirs = append(dirs, filepath.ToSlash(p))
			ancestors++
		}
		for i, dir := range dirs {
			allow := ancestorAttr
			if i < len(dirs)-ancestors {
				allow = nil // the block and partition folders: every attribute
			}
			if err := captureDir(root, dir, lines, allow); err != nil {
				return err
			}
		}
	}
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	bw := bufio.NewWriter(w)
	for _, k := range keys {
		fmt.Fprintln(bw, lines[k])
	}
	return bw.Flush()
}

// ancestorAttrs are the attribute files CaptureSysfs reads in the folders
// above a disk's block folder (its SCSI, NVMe or MMC device, USB
// interface and device, hubs, controllers, PCI bridges): the identifying
// ones. Drivers put debugging attributes there too, and reading some has
// effects — the Raspberry Pi's dwc_otg USB controller dumps its registers
// or runs a million-write register test when one of them is read — so
// nothing else is read.
var ancestorAttrs = map[string]bool{
	// every device
	"uevent": true, "modalias": true, "dev": true, "removable": true,
	// SCSI device, NVMe controller, MMC card
	"vendor": true, "model": true, "rev": true, "serial": true, "wwid": true, "type": true, "state": true,
	"scsi_level": true, "vpd_pg80": true, "vpd_pg83": true, "vpd_pg89": true, "firmware_rev": true,
	"transport": true, "cntlid": true, "subsysnqn": true, "name": true, "manfid": true, "oemid": true,
	"cid": true, "date": true, "fwrev": true, "hwrev": true,
	// USB device and interface
	"idVendor": true, "idProduct": true, "manufacturer": true, "product": true, "speed": true,
	"version": true, "bcdDevice": true, "busnum": true, "devnum": true, "devpath": true,
	"bDeviceClass": true, "bNumInterfaces": true, "bInterfaceClass": true, "bInterfaceSubClass": true,
	"bInterfaceProtocol": true, "bInterfaceNumber": true,
	// PCI device
	"class": true, "device": true, "subsystem_vendor": true, "subsystem_device": true, "revision": true,
}

func ancestorAttr(name string) bool { return ancestorAttrs[name] }

// captureDir records the links of folder dir (relative to root), not its
// subfolders, and those of its small readable files that allow accepts
// (nil: all).
func captureDir(root, dir string, lines map[string]string, allow func(string) bool) error {
	full := filepath.Join(root, filepath.FromSlash(dir))
	ents, err := os.ReadDir(full)
	if err != nil {
		return fmt.Errorf("hw: capture %s: %w", dir, err)
	}
	if len(ents) == 0 {
		lines[dir] = "D " + dir
	}
	for _, e := range ents {
		p := dir + "/" + e.Name()
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			if t, err := os.Readlink(filepath.Join(full, e.Name())); err == nil {
				lines[p] = "L " + p + " -> " + t
			}
		case e.Type().IsRegular() && (allow == nil || allow(e.Name())):
			if v, ok := readSmall(filepath.Join(full, e.Name())); ok {
				lines[p] = "F " + p + " " + v
			}
		}
	}
	return nil
}

// readSmall returns a file's content as a fixture line value: as it is,
// without its newline, when that is one plain line; else Go-quoted.
func readSmall(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false // write-only attributes, and the like
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, captureMax+1))
	if err != nil || len(b) > captureMax {
		return "", false
	}
	s := string(b)
	if line, ok := strings.CutSuffix(s, "\n"); ok && line != "" && !strings.HasPrefix(line, `"`) &&
		!strings.ContainsAny(line, "\n\r") && strconv.CanBackquote(line) && strings.TrimSpace(line) == line {
		return line, true
	}
	return strconv.Quote(s), true
}
