package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/arkbox/arkbox/hw"
	"github.com/arkbox/arkbox/hw/hwtest"
)

// TestDisksCapture: `arkbox disks --capture FILE` writes the disks' sysfs
// record in the tests' fake-tree format.
func TestDisksCapture(t *testing.T) {
	root := t.TempDir()
	blk := filepath.Join(root, "devices", "pci0000:00", "virtio1", "block", "vda")
	if err := os.MkdirAll(blk, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"dev": "254:0", "size": "2048", "ro": "0", "removable": "0", "serial": "ARK123"} {
		if err := os.WriteFile(filepath.Join(blk, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../devices/pci0000:00/virtio1/block/vda", filepath.Join(root, "block", "vda")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "capture.txt")
	var out bytes.Buffer
	if code := Main([]string{"disks", "--sysfs", root, "--smart=false", "--capture", file}, nil, &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"L block/vda -> ../devices/pci0000:00/virtio1/block/vda\n",
		"F devices/pci0000:00/virtio1/block/vda/serial ARK123\n",
		"F devices/pci0000:00/virtio1/block/vda/size 2048\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("capture lacks %q:\n%s", want, b)
		}
	}
}

// TestDisksListing: `arkbox disks` and `arkbox disks --json` list the
// disks of a sysfs tree the Linux kernel made (recorded under qemu with a
// SATA, an NVMe, a USB and a virtio disk) by bus, size, model and serial.
func TestDisksListing(t *testing.T) {
	root := t.TempDir()
	hwtest.SysfsFixture(t, root, filepath.Join("..", "..", "hw", "testdata", "sysfs", "qemu.txt"))
	dev := t.TempDir() // no device nodes: nothing to probe
	var out bytes.Buffer
	if code := Main([]string{"disks", "--sysfs", root, "--dev", dev, "--smart=false"}, nil, &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{
		{"DISK", "BUS", "SIZE", "MODEL", "SERIAL", "CONTENT", "MOUNTED", "HEALTH"},
		{"nvme0n1", "nvme", "0.3 GB", "QEMU NVMe Ctrl", "ARKNVME0001", "unreadable", "-", "-"},
		{"sda", "sata", "0.3 GB", "ARKBOX TEST SATA DISK", "ARKSATA0001", "unreadable", "-", "-"},
		{"sdb", "usb", "0.3 GB", "QEMU HARDDISK", "ARKUSB0001", "unreadable", "-", "-"},
		{"vda", "virtio", "0.3 GB", "virtio disk", "arkbox-out", "unreadable", "-", "-"},
	}
	if len(lines) < len(want) {
		t.Fatalf("listing:\n%s", out.String())
	}
	for i, w := range want {
		cols := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(lines[i]), -1)
		if i == 4 {
			w[2] = "0.0 GB"
		}
		if !reflect.DeepEqual(cols, w) {
			t.Errorf("line %d: %q, want %q", i, cols, w)
		}
	}

	out.Reset()
	if code := Main([]string{"disks", "--sysfs", root, "--dev", dev, "--smart=false", "--json"}, nil, &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	var r hw.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(r.Disks) != 4 || r.Disks[1].Transport != hw.TransportSATA || r.Disks[1].Serial != "ARKSATA0001" || r.Disks[1].SizeBytes != 256<<20 {
		t.Errorf("json: %+v", r.Disks)
	}
}
