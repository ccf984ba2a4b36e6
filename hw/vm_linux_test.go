//go:build linux

package hw

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbox/arkbox/hw/hwtest"
)

var updateVM = flag.Bool("update-vm", false, "write the virtual machines' sysfs captures and SMART pages to testdata")

// The disks of the virtual machines, serials set on qemu's command line.
const (
	vmSATASerial  = "ARKSATA0001"
	vmSATAModel   = "ARKBOX TEST SATA DISK"
	vmNVMeSerial  = "ARKNVME0001"
	vmUSBSerial   = "ARKUSB0001"
	vmOutSerial   = "arkbox-out"
	vmPiUSBSerial = "ARKUSB0002"
	vmDiskBytes   = 256 << 20
	vmOutBytes    = 16 << 20 // the result is in the last 16 MiB of the output disk
)

// vmResult mirrors the JSON that hw/hwtest/vmguest writes.
type vmResult struct {
	Kernel     string                 `json:"kernel"`
	Inventory  *Report                `json:"inventory"`
	Capture    string                 `json:"capture"`
	Pages      map[string]*SMARTPages `json:"pages"`
	PageErrors map[string]string      `json:"page_errors"`
	Adopted    map[string]*struct {
		Adopted      *Adopted `json:"adopted"`
		Listed       *Disk    `json:"listed"`
		MountPoint   string   `json:"mount_point"`
		MountOptions []string `json:"mount_options"`
		SuperOptions []string `json:"super_options"`
		WroteBytes   int      `json:"wrote_bytes"`
		ReadBack     bool     `json:"read_back"`
	} `json:"adopted"`
	HotPlug *struct {
		Serial  string  `json:"serial"`
		Removed *Event  `json:"removed"`
		Added   *Event  `json:"added"`
		Others  []Event `json:"others"`
	} `json:"hotplug"`
	LED *struct {
		Dir    string            `json:"dir"`
		States map[string]string `json:"states"`
		Files  map[string]string `json:"files"`
	} `json:"led"`
	Thermal []ThermalZone `json:"thermal"`
	Steps   []string      `json:"steps"`
	Errors  []string      `json:"errors"`
}

// vmMachine is a virtual machine the tests boot.
type vmMachine struct {
	name    string
	qemu    string // qemu-system-x86_64 or qemu-system-aarch64, and its Debian package
	pkg     string
	goarch  string
	kernel  string // module of the kernel, pinned in image/versions.txt
	dtb     string // device tree in the kernel module, "" none
	console string
	images  map[string]int64 // disk image files by name, and their sizes
	out     string           // serial or name of the disk that gets the result (vmguest's ARKBOX_OUT)
	disks   int              // disks the guest waits for
	adopt   []string
	hotplug string // serial of the USB disk unplugged and plugged again (qemu id "usbdisk", node "usb")
	usbBus  string // bus of that disk, "" qemu's choice
	args    func(img map[string]string) []string
	timeout time.Duration
}

// vmTimes are the host's observations of the hot-plug.
type vmTimes struct {
	ran                    time.Duration
	unplugSeen, plugSeen   time.Duration // from qemu's device_del / device_add to the guest's event
	unplugged, plugged     time.Time
	removedSeen, addedSeen time.Time
}

func blockdev(node, file string) string {
	return "driver=raw,node-name=" + node + ",file.driver=file,file.filename=" + file
}

// pcMachine is a PC (q35) with a SATA disk on the chipset's AHCI
// controller, an NVMe disk, a USB disk on an xHCI controller and a virtio
// disk for the result, booting the PC image's kernel.
var pcMachine = vmMachine{
	name: "pc", qemu: "qemu-system-x86_64", pkg: "qemu-system-x86", goarch: "amd64",
	kernel: "github.com/gokrazy/kernel.amd64", console: "ttyS0",
	images: map[string]int64{"sata": vmDiskBytes, "nvme": vmDiskBytes, "usb": vmDiskBytes, "out": vmOutBytes},
	out:    vmOutSerial, disks: 4,
	adopt:   []string{vmSATASerial, vmNVMeSerial, vmUSBSerial},
	hotplug: vmUSBSerial, usbBus: "xhci.0",
	args: func(img map[string]string) []string {
		return []string{
			// Software emulation: fast enough for a kernel and one
			// program (seconds), and it works inside virtual machines
			// whose nested KVM does not. One CPU, qemu's default
			// model: with two, the kernel now and then hit a stale
			// breakpoint of its own code patching (int3 in
			// run_timer_softirq) — emulated CPUs see each other's code
			// changes late — and with "-cpu max" qemu 7.2 crashed.
			"-machine", "q35,accel=tcg", "-m", "512", "-smp", "1",
			"-blockdev", blockdev("sata", img["sata"]),
			"-device", "ide-hd,drive=sata,bus=ide.0,model=" + vmSATAModel + ",serial=" + vmSATASerial,
			"-blockdev", blockdev("nvme", img["nvme"]),
			"-device", "nvme,drive=nvme,serial=" + vmNVMeSerial,
			"-device", "qemu-xhci,id=xhci",
			"-blockdev", blockdev("usb", img["usb"]),
			"-device", "usb-storage,bus=xhci.0,drive=usb,id=usbdisk,serial=" + vmUSBSerial,
			"-blockdev", blockdev("out", img["out"]),
			"-device", "virtio-blk-pci,drive=out,serial=" + vmOutSerial,
		}
	},
	timeout: 4 * time.Minute,
}

// piMachine is qemu's raspi3b — the BCM2837 of a Raspberry Pi 3B, and of
// a Pi 2B v1.2, whose device tree it boots with (the Pi 3's sends the
// serial port to Bluetooth) — with its SD card and a USB disk on the
// SoC's DWC OTG controller, booting the Pi image's kernel. The result
// goes to the end of the SD card.
var piMachine = vmMachine{
	name: "pi", qemu: "qemu-system-aarch64", pkg: "qemu-system-arm", goarch: "arm64",
	kernel: "github.com/gokrazy/kernel.rpi", dtb: "bcm2710-rpi-2-b.dtb", console: "ttyAMA0",
	images: map[string]int64{"sd": 512 << 20, "usb": vmDiskBytes},
	out:    "mmcblk0", disks: 2,
	adopt: []string{vmPiUSBSerial},
	// No hot-plug here: qemu's DWC2 controller reports the disk's removal
	// to the Pi kernel's dwc_otg driver but not its return (with or
	// without a hub between them); the PC machine tests hot-plug.
	args: func(img map[string]string) []string {
		return []string{
			"-machine", "raspi3b", "-m", "1G",
			"-drive", "file=" + img["sd"] + ",if=sd,format=raw",
			// Behind a hub, as on a real Pi 2/3 (a LAN9514 between the
			// SoC and its ports).
			"-device", "usb-hub,port=1",
			"-blockdev", blockdev("usb", img["usb"]),
			"-device", "usb-storage,drive=usb,id=usbdisk,port=1.1,serial=" + vmPiUSBSerial,
		}
	},
	timeout: 10 * time.Minute,
}

// TestVirtualMachineDisks boots the kernel of the appliance's PC image
// under qemu with a SATA disk on an AHCI controller, an NVMe disk and a USB
// disk on an xHCI controller, and runs hw/hwtest/vmguest as init: the
// kernel's real drivers present the disks in sysfs and answer the SMART
// ioctls. It checks what `arkbox disks` would list (bus, model, serial,
// size, SMART health read through SG_IO ATA pass-through and the NVMe
// admin ioctl, a clear error for the USB disk whose emulated bridge has no
// ATA pass-through), that a capture of that sysfs lists the same disks
// elsewhere, adoption and mounting on each bus, and hot-plug: the USB disk
// unplugged and plugged in again through qemu's monitor is seen to vanish
// and return within seconds.
func TestVirtualMachineDisks(t *testing.T) {
	res, times := runVM(t, pcMachine)
	if res == nil {
		return
	}
	checkVMInventory(t, res)
	checkVMCapture(t, res)
	checkVMAdopted(t, res, pcMachine.adopt)
	checkVMHotPlug(t, res, times, TransportUSB)
	if *updateVM {
		writeVMTestdata(t, res, "qemu")
	}
}

// TestRaspberryPiDisks boots the kernel of the appliance's Raspberry Pi
// image on qemu's emulated BCM2837 (a Raspberry Pi 2B v1.2 / 3B) with its
// SD card and a USB disk: the listing (the SD card as mmc, the USB disk on
// the SoC's USB controller behind a hub), adoption and mounting of the USB
// disk, and the activity LED driven through the kernel's LED class in each
// state. Slower than the PC (the Arm CPUs are emulated
// instruction by instruction): 1–3 minutes.
func TestRaspberryPiDisks(t *testing.T) {
	res, _ := runVM(t, piMachine)
	if res == nil {
		return
	}
	if len(res.Inventory.Disks) != 2 {
		t.Fatalf("inventory: %+v", res.Inventory.Disks)
	}
	sd, usb := res.Inventory.Disks[0].Disk, res.Inventory.Disks[1].Disk
	if sd.Name != "mmcblk0" || sd.Transport != TransportMMC || sd.SizeBytes != 512<<20 || sd.Serial == "" {
		t.Errorf("SD card: %+v", sd)
	}
	if usb.Name != "sda" || usb.Transport != TransportUSB || usb.Serial != vmPiUSBSerial || usb.SizeBytes != vmDiskBytes || usb.Model != "QEMU HARDDISK" {
		t.Errorf("USB disk: %+v", usb)
	}
	checkVMCapture(t, res)
	checkVMAdopted(t, res, piMachine.adopt)
	if res.LED == nil {
		t.Errorf("no activity LED found (the device tree declares one)")
	} else {
		for _, st := range []LEDState{LEDDegraded, LEDFailed, LEDOK, LEDOff} {
			if got := res.LED.States[string(st)]; got != string(st) {
				t.Errorf("LED set %s, reads back %q (%s)", st, got, res.LED.Files[string(st)])
			}
		}
		t.Logf("LED %s: %v", res.LED.Dir, res.LED.Files)
	}
	// qemu emulates the SoC's thermal sensor.
	if len(res.Thermal) == 0 || res.Thermal[0].Type != "cpu-thermal" || res.Thermal[0].Celsius < 0 || res.Thermal[0].Celsius > 100 {
		t.Errorf("thermal zones: %+v", res.Thermal)
	}
	if *updateVM {
		writeVMTestdata(t, res, "qemu-pi")
	}
}

// runVM boots the machine with vmguest as init, acts on the guest's
// hot-plug requests through qemu's monitor, and returns the guest's
// result; nil when the test already failed.
func runVM(t *testing.T, m vmMachine) (*vmResult, vmTimes) {
	qemu, kernelDir := vmPeers(t, m)
	dir := t.TempDir()
	initrd := buildVMGuest(t, dir, m.goarch)
	images := map[string]string{}
	for n, size := range m.images {
		images[n] = filepath.Join(dir, n+".img")
		if err := os.WriteFile(images[n], nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(images[n], size); err != nil {
			t.Fatal(err)
		}
	}
	serial := filepath.Join(dir, "serial.log")
	qmpSock := filepath.Join(dir, "qmp.sock")
	cmdline := strings.Join([]string{
		// loglevel 4: the kernel's warnings and errors only, so that its
		// lines rarely cut into the guest's on the console.
		"console=" + m.console, "panic=-1", "rdinit=/init", "loglevel=4",
		fmt.Sprintf("ARKBOX_DISKS=%d", m.disks), "ARKBOX_OUT=" + m.out,
		"ARKBOX_ADOPT=" + strings.Join(m.adopt, ","), "ARKBOX_HOTPLUG=" + m.hotplug,
	}, " ")
	args := append(m.args(images),
		"-display", "none", "-no-reboot", "-monitor", "none",
		"-serial", "file:"+serial,
		"-qmp", "unix:"+qmpSock+",server=on,wait=off",
		"-kernel", filepath.Join(kernelDir, "vmlinuz"), "-initrd", initrd, "-append", cmdline)
	if m.dtb != "" {
		args = append(args, "-dtb", filepath.Join(kernelDir, m.dtb))
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	var qemuOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &qemuOut, &qemuOut
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	t.Cleanup(func() { // when the test ends: the checks after runVM may fail it
		if t.Failed() {
			b, _ := os.ReadFile(serial)
			t.Logf("serial console:\n%s\nqemu:\n%s", b, qemuOut.String())
		}
	})

	con := &vmConsole{path: serial}
	var mon *qmpConn
	var tm vmTimes
	for done := false; !done; {
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("qemu: %v", err)
			}
			done = true // after the last lines
		case <-time.After(100 * time.Millisecond):
		}
		for _, l := range con.newLines() {
			switch {
			case m.hotplug == "":
			case strings.Contains(l, "vmguest: unplug "+m.hotplug) && tm.unplugged.IsZero():
				var err error
				if mon, err = dialQMP(qmpSock); err != nil {
					t.Fatal(err)
				}
				defer mon.Close()
				tm.unplugged = time.Now()
				if err := mon.Do("device_del", map[string]any{"id": "usbdisk"}); err != nil {
					t.Fatal(err)
				}
			case strings.Contains(l, "vmguest: removed "+m.hotplug) && tm.removedSeen.IsZero():
				tm.removedSeen = time.Now()
			case strings.Contains(l, "vmguest: plug "+m.hotplug) && tm.plugged.IsZero():
				if mon == nil {
					t.Fatal("asked to plug before unplugging")
				}
				// qemu removes the device asynchronously; add it back
				// once it is gone.
				if err := mon.WaitEvent("DEVICE_DELETED", 30*time.Second); err != nil {
					t.Fatal(err)
				}
				tm.plugged = time.Now()
				dev := map[string]any{"driver": "usb-storage", "drive": "usb", "id": "usbdisk", "serial": m.hotplug}
				if m.usbBus != "" {
					dev["bus"] = m.usbBus
				}
				if err := mon.Do("device_add", dev); err != nil {
					t.Fatal(err)
				}
			case strings.Contains(l, "vmguest: added "+m.hotplug) && tm.addedSeen.IsZero():
				tm.addedSeen = time.Now()
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the virtual machine did not finish in %v", m.timeout)
		}
	}
	tm.ran = time.Since(start)
	t.Logf("virtual machine ran %v", tm.ran.Round(time.Millisecond))
	if m.hotplug != "" {
		tm.unplugSeen, tm.plugSeen = tm.removedSeen.Sub(tm.unplugged), tm.addedSeen.Sub(tm.plugged)
		t.Logf("USB disk: unplug seen after %v, plug seen after %v", tm.unplugSeen.Round(time.Millisecond), tm.plugSeen.Round(time.Millisecond))
	}
	res := readVMResult(t, images[m.outImage()])
	t.Logf("guest kernel: %s", res.Kernel)
	for _, e := range res.Errors {
		t.Errorf("guest: %s", e)
	}
	if t.Failed() {
		return nil, tm
	}
	return res, tm
}

// outImage is the image file that holds the output disk.
func (m vmMachine) outImage() string {
	if _, ok := m.images["out"]; ok {
		return "out"
	}
	return "sd"
}

// vmPeers returns qemu and the folder of the machine's kernel (the module
// pinned in image/versions.txt, from the Go module cache), skipping the
// test when either is missing unless the peers are required.
func vmPeers(t *testing.T, m vmMachine) (qemu, kernelDir string) {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("ARKBOX_REQUIRE_PEERS") == "1" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	qemu, err := exec.LookPath(m.qemu)
	if err != nil {
		skip("%s not installed (Debian package %s)", m.qemu, m.pkg)
	}
	if testing.Short() {
		t.Skip("boots a virtual machine")
	}
	b, err := os.ReadFile("../image/versions.txt")
	if err != nil {
		t.Fatal(err)
	}
	v := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m.kernel) + ` (\S+)`).FindSubmatch(b)
	if v == nil {
		t.Fatalf("image/versions.txt names no %s", m.kernel)
	}
	mod := m.kernel + "@" + string(v[1])
	out, err := exec.Command("go", "mod", "download", "-json", mod).Output()
	if err != nil {
		skip("go mod download %s: %v", mod, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		t.Fatalf("go mod download %s: %s", mod, out)
	}
	return qemu, info.Dir
}

// buildVMGuest builds hw/hwtest/vmguest as a static binary and packs it as
// the only file of an initramfs.
func buildVMGuest(t *testing.T, dir, goarch string) string {
	t.Helper()
	bin := filepath.Join(dir, "vmguest")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/arkbox/arkbox/hw/hwtest/vmguest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vmguest: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	if err := hwtest.WriteInitramfs(w, []hwtest.InitramfsFile{{Path: "init", Mode: 0o755, Data: data}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return initrd
}

func readVMResult(t *testing.T, img string) *vmResult {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	b = b[len(b)-vmOutBytes:]
	n := binary.BigEndian.Uint64(b[:8])
	if n == 0 || n > uint64(len(b)-8) {
		t.Fatalf("no result on the output disk (length %d)", n)
	}
	var r vmResult
	if err := json.Unmarshal(b[8:8+n], &r); err != nil {
		t.Fatalf("result: %v", err)
	}
	return &r
}

// vmDisk returns the inventory's disk with the serial.
func vmDisk(t *testing.T, r *vmResult, serial string) *DiskReport {
	t.Helper()
	for i := range r.Inventory.Disks {
		if r.Inventory.Disks[i].Serial == serial {
			return &r.Inventory.Disks[i]
		}
	}
	t.Fatalf("no disk with serial %s in %+v", serial, r.Inventory.Disks)
	return nil
}

func checkVMInventory(t *testing.T, r *vmResult) {
	if r.Inventory == nil || len(r.Inventory.Disks) != 4 {
		t.Fatalf("inventory: %+v", r.Inventory)
	}
	for _, c := range []struct {
		serial    string
		transport Transport
		model     string
	}{
		{vmSATASerial, TransportSATA, vmSATAModel},
		{vmNVMeSerial, TransportNVMe, "QEMU NVMe Ctrl"},
		{vmUSBSerial, TransportUSB, "QEMU HARDDISK"},
		{vmOutSerial, TransportVirtio, "virtio disk"},
	} {
		d := vmDisk(t, r, c.serial)
		size := int64(vmDiskBytes)
		if c.serial == vmOutSerial {
			size = 16 << 20
		}
		if d.Transport != c.transport || d.Model != c.model || d.SizeBytes != size || d.Content == nil || d.Content.Origin != OriginBlank {
			t.Errorf("%s: %+v", c.serial, d.Disk)
		}
	}
	sata := vmDisk(t, r, vmSATASerial)
	if h := sata.Health; h == nil || h.Kind != "ata" || h.Status != "passed" || len(h.Warnings) != 0 || len(h.Attributes) == 0 || h.TemperatureC <= 0 {
		t.Errorf("SATA SMART: %+v (%s)", h, sata.HealthError)
	} else {
		t.Logf("SATA SMART: %+v", *h)
	}
	nvme := vmDisk(t, r, vmNVMeSerial)
	if h := nvme.Health; h == nil || h.Kind != "nvme" || h.Status != "passed" || len(h.Warnings) != 0 || h.TemperatureC <= 0 {
		t.Errorf("NVMe SMART: %+v (%s)", h, nvme.HealthError)
	} else {
		t.Logf("NVMe SMART: %+v", *h)
	}
	usb := vmDisk(t, r, vmUSBSerial)
	if usb.Health != nil || !strings.Contains(usb.HealthError, ErrNoATAPassThrough.Error()) {
		t.Errorf("USB disk behind a bridge without ATA pass-through: health %+v, error %q", usb.Health, usb.HealthError)
	} else {
		t.Logf("USB SMART: %s", usb.HealthError)
	}
}

// checkVMCapture checks that the capture of the guest's sysfs, made into a
// tree here, lists the same disks as the guest did.
func checkVMCapture(t *testing.T, r *vmResult) {
	capture := filepath.Join(t.TempDir(), "capture.txt")
	if err := os.WriteFile(capture, []byte(r.Capture), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	applyFixture(t, root, capture)
	got, err := Discover(context.Background(), DiscoverOptions{SysRoot: root, DevRoot: "/nonexistent", MountInfo: "-"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(r.Inventory.Disks) {
		t.Fatalf("capture lists %d disks, the guest %d", len(got), len(r.Inventory.Disks))
	}
	for i, d := range got {
		want := r.Inventory.Disks[i].Disk
		if d.Name != want.Name || d.Transport != want.Transport || d.Model != want.Model || d.Serial != want.Serial || d.SizeBytes != want.SizeBytes || d.Vendor != want.Vendor {
			t.Errorf("capture lists %+v, the guest %+v", d, want)
		}
	}
	for name, p := range r.Pages {
		if _, err := p.Parse(); err != nil {
			t.Errorf("SMART pages of %s: %v", name, err)
		}
	}
}

func checkVMAdopted(t *testing.T, r *vmResult, serials []string) {
	for _, serial := range serials {
		a := r.Adopted[serial]
		if a == nil || a.Adopted == nil || a.Listed == nil {
			t.Errorf("%s not adopted: %+v", serial, a)
			continue
		}
		if a.Adopted.Reread != "" || len(a.Listed.Partitions) != 1 || a.Listed.Partitions[0].SizeBytes != a.Adopted.SizeBytes {
			t.Errorf("%s: the kernel did not read the new partition table: %+v, listed %+v", serial, a.Adopted, a.Listed.Partitions)
		}
		if !hasOpt(a.MountOptions, "noatime") || !hasOpt(a.MountOptions, "nodev") || !hasOpt(a.SuperOptions, "errors=remount-ro") || hasOpt(a.MountOptions, "ro") {
			t.Errorf("%s mounted with %v / %v", serial, a.MountOptions, a.SuperOptions)
		}
		if a.WroteBytes == 0 || !a.ReadBack {
			t.Errorf("%s: wrote %d bytes, read back equal: %v", serial, a.WroteBytes, a.ReadBack)
		}
	}
}

// checkVMHotPlug checks the watcher's events and that each change was seen
// within seconds.
func checkVMHotPlug(t *testing.T, r *vmResult, tm vmTimes, transport Transport) {
	h := r.HotPlug
	switch {
	case h == nil || h.Removed == nil || h.Added == nil:
		t.Errorf("hot-plug: %+v", h)
	case len(h.Others) != 0:
		t.Errorf("hot-plug of the USB disk changed other disks: %+v", h.Others)
	case h.Removed.Disk.Transport != transport || h.Added.Disk.Transport != transport || h.Added.Disk.SizeBytes != vmDiskBytes:
		t.Errorf("hot-plug events: removed %+v, added %+v", h.Removed.Disk, h.Added.Disk)
	}
	// The guest's watcher polls every second: it must see each change
	// within a few seconds of qemu making it.
	for what, d := range map[string]time.Duration{"unplug": tm.unplugSeen, "plug": tm.plugSeen} {
		if d <= 0 || d > 20*time.Second {
			t.Errorf("%s noticed after %v", what, d)
		}
	}
}

// writeVMTestdata records the guest's sysfs and SMART pages as fixtures
// named after prefix (go test ./hw -run 'TestVirtualMachineDisks|TestRaspberryPiDisks' -update-vm).
func writeVMTestdata(t *testing.T, r *vmResult, prefix string) {
	disks := []string{}
	for _, d := range r.Inventory.Disks {
		disks = append(disks, fmt.Sprintf("%s (%s, %s)", d.Name, d.Transport, d.Identity()))
	}
	head := "# Captured by " + t.Name() + " (go test ./hw -run " + t.Name() + " -update-vm):\n" +
		"# " + r.Kernel + "\n# under qemu, disks " + strings.Join(disks, ", ") + ".\n"
	if err := os.WriteFile("testdata/sysfs/"+prefix+".txt", []byte(head+r.Capture), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, p := range r.Pages {
		for suffix, b := range map[string][]byte{"data": p.ATAData, "thresholds": p.ATAThresholds, "status": p.ATAStatus, "log": p.NVMeLog} {
			if b == nil {
				continue
			}
			kind := "ata"
			if suffix == "log" {
				kind = "nvme"
			}
			if err := os.WriteFile(fmt.Sprintf("testdata/smart/%s-%s-%s.%s", prefix, kind, name, suffix), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// vmConsole reads the lines a guest appended to its serial log.
type vmConsole struct {
	path string
	off  int64
	part string
}

func (c *vmConsole) newLines() []string {
	f, err := os.Open(c.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b := make([]byte, 1<<20)
	n, _ := f.ReadAt(b, c.off)
	c.off += int64(n)
	text := c.part + strings.ReplaceAll(string(b[:n]), "\r", "")
	lines := strings.Split(text, "\n")
	c.part = lines[len(lines)-1]
	return lines[:len(lines)-1]
}

// qmpConn is a connection to qemu's machine protocol (QMP): JSON commands
// and answers, one per line, with events in between.
type qmpConn struct {
	c  net.Conn
	r  *bufio.Reader
	mu sync.Mutex
	ev []string // events read while waiting for answers
}

func dialQMP(path string) (*qmpConn, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	q := &qmpConn{c: c, r: bufio.NewReader(c)}
	if _, err := q.r.ReadString('\n'); err != nil { // greeting
		c.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if err := q.Do("qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmpConn) Close() error { return q.c.Close() }

// Do runs a command and returns its error answer as an error.
func (q *qmpConn) Do(cmd string, args map[string]any) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	q.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := q.c.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		line, err := q.r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		var m struct {
			Return json.RawMessage `json:"return"`
			Error  *struct{ Desc string }
			Event  string
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return fmt.Errorf("qmp %s: %q: %w", cmd, line, err)
		}
		switch {
		case m.Event != "":
			q.ev = append(q.ev, m.Event)
		case m.Error != nil:
			return fmt.Errorf("qmp %s: %s", cmd, m.Error.Desc)
		case m.Return != nil:
			return nil
		}
	}
}

// WaitEvent waits for an event of that name (one already read counts).
func (q *qmpConn) WaitEvent(name string, limit time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, e := range q.ev {
		if e == name {
			q.ev = append(q.ev[:i], q.ev[i+1:]...)
			return nil
		}
	}
	q.c.SetDeadline(time.Now().Add(limit))
	for {
		line, err := q.r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("qmp: waiting for %s: %w", name, err)
		}
		var m struct{ Event string }
		if json.Unmarshal([]byte(line), &m) == nil && m.Event == name {
			return nil
		}
	}
}
