package hw

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/arkbox/arkbox/hw/hwtest"
)

// fakeSysfs materializes testdata/sysfs fixtures (see its README) in a
// temporary folder and returns its path.
func fakeSysfs(t testing.TB, fixtures ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, name := range fixtures {
		applyFixture(t, root, filepath.Join("testdata", "sysfs", name+".txt"))
	}
	return root
}

func applyFixture(t testing.TB, root, path string) {
	t.Helper()
	hwtest.SysfsFixture(t, root, path)
}

func mustMkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestDiscover(t *testing.T) {
	root := fakeSysfs(t, "virtio", "usb", "sata", "nvme")
	disks, err := Discover(context.Background(), DiscoverOptions{SysRoot: root, DevRoot: "/dev", MountInfo: "-"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Disk{}
	var names []string
	for _, d := range disks {
		got[d.Name] = d
		names = append(names, d.Name)
	}
	if want := []string{"mmcblk0", "nvme0n1", "sda", "sdb", "vda"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("disks %v, want %v (loop and eMMC boot areas skipped)", names, want)
	}
	for _, tc := range []struct {
		name                   string
		transport              Transport
		vendor, model, serial  string
		wwid                   string
		size                   int64
		ro                     bool
		parts                  []int
		firstStart, firstBytes int64
		identity               string
	}{
		{name: "sda", transport: TransportUSB, vendor: "Samsung", model: "SSD 870 EVO 1TB", serial: "0000000000001E5A",
			size: 1953525168 * 512, parts: []int{1}, firstStart: 2048 * 512, firstBytes: 1953523087 * 512,
			identity: "SSD 870 EVO 1TB 0000000000001E5A"},
		{name: "sdb", transport: TransportSATA, vendor: "ATA", model: "WDC WD40EFRX-68N", serial: "WD-WCC7K1234567",
			wwid: "t10.ATA     WDC WD40EFRX-68N32N0                    WD-WCC7K1234567", size: 7814037168 * 512,
			identity: "WDC WD40EFRX-68N WD-WCC7K1234567"},
		{name: "nvme0n1", transport: TransportNVMe, model: "Samsung SSD 980 PRO 2TB", serial: "S6B0NL0T123456X",
			wwid: "eui.002538b221b0a1c2", size: 3907029168 * 512, ro: true, identity: "Samsung SSD 980 PRO 2TB S6B0NL0T123456X"},
		{name: "vda", transport: TransportVirtio, model: "virtio disk", serial: "2016647397191706", size: 536870912 * 512,
			identity: "virtio disk 2016647397191706"},
		{name: "mmcblk0", transport: TransportMMC, vendor: "0x000003", model: "SC32G", serial: "0x8a4c1d02", size: 62333952 * 512,
			parts: []int{1, 4}, firstStart: 8192 * 512, firstBytes: 204800 * 512, identity: "SC32G 0x8a4c1d02"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := got[tc.name]
			if d.Transport != tc.transport || d.Vendor != tc.vendor || d.Model != tc.model || d.Serial != tc.serial ||
				d.WWID != tc.wwid || d.SizeBytes != tc.size || d.ReadOnly != tc.ro {
				t.Errorf("got %+v\nwant %+v", d, tc)
			}
			if d.Path != "/dev/"+tc.name {
				t.Errorf("path %q", d.Path)
			}
			if d.Identity() != tc.identity {
				t.Errorf("identity %q, want %q", d.Identity(), tc.identity)
			}
			var parts []int
			for _, p := range d.Partitions {
				parts = append(parts, p.Number)
			}
			if !reflect.DeepEqual(parts, tc.parts) {
				t.Fatalf("partitions %v, want %v", parts, tc.parts)
			}
			if len(parts) > 0 && (d.Partitions[0].StartBytes != tc.firstStart || d.Partitions[0].SizeBytes != tc.firstBytes) {
				t.Errorf("first partition %+v", d.Partitions[0])
			}
		})
	}

	all, err := Discover(context.Background(), DiscoverOptions{SysRoot: root, MountInfo: "-", Virtual: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 7 {
		t.Errorf("with Virtual: %d disks, want 7 (loop0 and mmcblk0boot0 too)", len(all))
	}
}

// TestDiscoverQEMU lists the disks of the sysfs trees that the Linux
// kernels of the images made for qemu's disks (recorded by
// TestVirtualMachineDisks and TestRaspberryPiDisks): AHCI, NVMe, xHCI +
// usb-storage and virtio on the PC; the SD card and a USB disk behind a hub
// on the SoC's DWC OTG controller on the Pi.
func TestDiscoverQEMU(t *testing.T) {
	type listing struct {
		Name, Dev                   string
		Transport                   Transport
		Vendor, Model, Serial, WWID string
		Size                        int64
		Removable                   bool
	}
	list := func(fixture string) []listing {
		root := fakeSysfs(t, fixture)
		disks, err := Discover(t.Context(), DiscoverOptions{SysRoot: root, MountInfo: "-"})
		if err != nil {
			t.Fatal(err)
		}
		var got []listing
		for _, d := range disks {
			got = append(got, listing{d.Name, d.Dev, d.Transport, d.Vendor, d.Model, d.Serial, d.WWID, d.SizeBytes, d.Removable})
		}
		return got
	}
	got := list("qemu")
	want := []listing{
		{"nvme0n1", "259:0", TransportNVMe, "", "QEMU NVMe Ctrl", "ARKNVME0001", "nvme.1b36-41524b4e564d4530303031-51454d55204e564d65204374726c-00000001", 256 << 20, false},
		// The model comes from the drive's IDENTIFY data (VPD page 89h):
		// the SCSI model attribute holds only its first 16 characters.
		{"sda", "8:0", TransportSATA, "ATA", "ARKBOX TEST SATA DISK", "ARKSATA0001", "t10.ATA     ARKBOX TEST SATA DISK                   ARKSATA0001", 256 << 20, false},
		{"sdb", "8:16", TransportUSB, "QEMU", "QEMU HARDDISK", "ARKUSB0001", "", 256 << 20, false},
		{"vda", "253:0", TransportVirtio, "", "virtio disk", "arkbox-out", "", 16 << 20, false},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PC: got\n%+v\nwant\n%+v", got, want)
	}
	got = list("qemu-pi")
	want = []listing{
		{"mmcblk0", "179:0", TransportMMC, "0x0000aa", "QEMU!", "0xdeadbeef", "", 512 << 20, false},
		{"sda", "8:0", TransportUSB, "QEMU", "QEMU HARDDISK", "ARKUSB0002", "", 256 << 20, false},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Pi: got\n%+v\nwant\n%+v", got, want)
	}
}

func TestDiscoverMounted(t *testing.T) {
	root := fakeSysfs(t, "usb")
	mi := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(mi, []byte("1 0 179:2 / / ro,relatime - squashfs /dev/mmcblk0p2 ro\n"+
		"2 1 179:4 / /perm rw,relatime - ext4 /dev/mmcblk0p4 rw\n"), 0o644)
	disks, err := Discover(context.Background(), DiscoverOptions{SysRoot: root, MountInfo: mi})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		switch d.Name {
		case "mmcblk0":
			if !reflect.DeepEqual(d.Mounted, []string{"/perm"}) {
				t.Errorf("mmcblk0 mounted %v, want [/perm]", d.Mounted)
			}
		default:
			if len(d.Mounted) != 0 {
				t.Errorf("%s mounted %v", d.Name, d.Mounted)
			}
		}
	}
	if _, err := FindDisk(context.Background(), DiscoverOptions{SysRoot: root, MountInfo: "-"}, "sdz"); err == nil {
		t.Error("FindDisk of a missing disk succeeded")
	}
	if _, err := FindDisk(context.Background(), DiscoverOptions{SysRoot: root, MountInfo: "-"}, "../sda"); err == nil {
		t.Error("FindDisk accepted a path")
	}
	d, err := FindDisk(context.Background(), DiscoverOptions{SysRoot: root, MountInfo: mi}, "/dev/mmcblk0")
	if err != nil || d.Name != "mmcblk0" || len(d.Mounted) != 1 {
		t.Errorf("FindDisk: %+v, %v", d, err)
	}
}

func TestDiscoverMissingRoot(t *testing.T) {
	if _, err := Discover(context.Background(), DiscoverOptions{SysRoot: filepath.Join(t.TempDir(), "nope")}); err == nil {
		t.Fatal("no error for a missing sysfs")
	}
}

// TestCaptureSysfs: a capture of a sysfs tree, materialized again, gives
// Discover the same disks.
func TestCaptureSysfs(t *testing.T) {
	for _, fixture := range []string{"usb", "sata", "nvme", "virtio", "qemu", "qemu-pi", "this machine"} {
		t.Run(fixture, func(t *testing.T) {
			root := "/sys" // the real one: more files, binary ones, unreadable ones
			if fixture != "this machine" {
				root = fakeSysfs(t, fixture)
			} else if ds, err := Discover(t.Context(), DiscoverOptions{MountInfo: "-"}); err != nil || len(ds) == 0 {
				t.Skip("no disks in /sys")
			}
			opts := DiscoverOptions{SysRoot: root, MountInfo: "-"}
			want, err := Discover(t.Context(), opts)
			if err != nil || len(want) == 0 {
				t.Fatalf("discover: %v %v", want, err)
			}
			var buf strings.Builder
			if err := CaptureSysfs(t.Context(), opts, &buf); err != nil {
				t.Fatal(err)
			}
			capture := filepath.Join(t.TempDir(), "capture.txt")
			if err := os.WriteFile(capture, []byte(buf.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			root2 := t.TempDir()
			applyFixture(t, root2, capture)
			got, err := Discover(t.Context(), DiscoverOptions{SysRoot: root2, MountInfo: "-"})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("from the capture:\n%+v\nwant\n%+v\ncapture:\n%s", got, want, buf.String())
			}
		})
	}
}

// TestCaptureSkipsDebugAttributes: above the block folder, CaptureSysfs
// reads only identifying attributes — the Raspberry Pi's USB controller
// (dwc_otg) has attributes that dump registers or run a register test
// when read.
func TestCaptureSkipsDebugAttributes(t *testing.T) {
	root := fakeSysfs(t, "usb")
	usbDev := ""
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "idVendor" && usbDev == "" {
			usbDev = filepath.Dir(p)
		}
		return nil
	})
	if usbDev == "" {
		t.Fatal("no USB device in the usb fixture")
	}
	ctrl := filepath.Dir(filepath.Dir(usbDev)) // above the root hub
	for _, dir := range []string{usbDev, ctrl} {
		if err := os.WriteFile(filepath.Join(dir, "wr_reg_test"), []byte("Time to write GNPTXFSIZ reg 1000000 times: 423 msecs\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	var buf strings.Builder
	if err := CaptureSysfs(t.Context(), DiscoverOptions{SysRoot: root, MountInfo: "-"}, &buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "wr_reg_test") {
		t.Errorf("capture read a debugging attribute:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "/idVendor ") {
		t.Errorf("capture lacks the USB device's idVendor:\n%s", buf.String())
	}
}
