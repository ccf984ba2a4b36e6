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

var updateVM = flag.Bool("update-vm", false, "write the virtual machine's sysfs capture and SMART pages to testdata")

// The disks of the virtual machine: one per bus, serials set on qemu's
// command line.
const (
	vmSATASerial = "ARKSATA0001"
	vmSATAModel  = "ARKBOX TEST SATA DISK"
	vmNVMeSerial = "ARKNVME0001"
	vmUSBSerial  = "ARKUSB0001"
	vmOutSerial  = "arkbox-out"
	vmDiskBytes  = 256 << 20
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
	Steps  []string `json:"steps"`
	Errors []string `json:"errors"`
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
	qemu, kernel := vmPeers(t)
	dir := t.TempDir()
	initrd := buildVMGuest(t, dir)
	images := map[string]string{}
	for _, n := range []string{"sata", "nvme", "usb", "out"} {
		images[n] = filepath.Join(dir, n+".img")
		size := int64(vmDiskBytes)
		if n == "out" {
			size = 16 << 20
		}
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
		"console=ttyS0", "panic=-1", "rdinit=/init", "loglevel=6",
		"ARKBOX_DISKS=4", "ARKBOX_OUT=" + vmOutSerial,
		"ARKBOX_ADOPT=" + vmSATASerial + "," + vmNVMeSerial + "," + vmUSBSerial,
		"ARKBOX_HOTPLUG=" + vmUSBSerial,
	}, " ")
	blockdev := func(node, file string) string {
		return "driver=raw,node-name=" + node + ",file.driver=file,file.filename=" + file
	}
	args := []string{
		// Software emulation: fast enough for a kernel and one program
		// (seconds), and it works inside virtual machines whose nested
		// KVM does not.
		"-machine", "q35,accel=tcg", "-cpu", "max", "-m", "512", "-smp", "2",
		"-display", "none", "-no-reboot", "-monitor", "none",
		"-serial", "file:" + serial,
		"-qmp", "unix:" + qmpSock + ",server=on,wait=off",
		"-kernel", kernel, "-initrd", initrd, "-append", cmdline,
		"-blockdev", blockdev("sata", images["sata"]),
		"-device", "ide-hd,drive=sata,bus=ide.0,model=" + vmSATAModel + ",serial=" + vmSATASerial,
		"-blockdev", blockdev("nvme", images["nvme"]),
		"-device", "nvme,drive=nvme,serial=" + vmNVMeSerial,
		"-device", "qemu-xhci,id=xhci",
		"-blockdev", blockdev("usb", images["usb"]),
		"-device", "usb-storage,bus=xhci.0,drive=usb,id=usbdisk,serial=" + vmUSBSerial,
		"-blockdev", blockdev("out", images["out"]),
		"-device", "virtio-blk-pci,drive=out,serial=" + vmOutSerial,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
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
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(serial)
			t.Logf("serial console:\n%s\nqemu:\n%s", b, qemuOut.String())
		}
	}()

	con := &vmConsole{path: serial}
	var mon *qmpConn
	var unplugged, removedSeen, plugged, addedSeen time.Time
	for done := false; !done; {
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("qemu: %v", err)
			}
			done = true
			continue
		case <-time.After(100 * time.Millisecond):
		}
		lines := con.newLines()
		for _, l := range lines {
			switch {
			case strings.Contains(l, "vmguest: unplug "+vmUSBSerial) && unplugged.IsZero():
				if mon == nil {
					var err error
					if mon, err = dialQMP(qmpSock); err != nil {
						t.Fatal(err)
					}
					defer mon.Close()
				}
				unplugged = time.Now()
				if err := mon.Do("device_del", map[string]any{"id": "usbdisk"}); err != nil {
					t.Fatal(err)
				}
			case strings.Contains(l, "vmguest: removed "+vmUSBSerial) && removedSeen.IsZero():
				removedSeen = time.Now()
			case strings.Contains(l, "vmguest: plug "+vmUSBSerial) && plugged.IsZero():
				if mon == nil {
					t.Fatal("asked to plug before unplugging")
				}
				// qemu removes the device asynchronously; add it back
				// once it is gone.
				if err := mon.WaitEvent("DEVICE_DELETED", 30*time.Second); err != nil {
					t.Fatal(err)
				}
				plugged = time.Now()
				if err := mon.Do("device_add", map[string]any{"driver": "usb-storage", "bus": "xhci.0", "drive": "usb", "id": "usbdisk", "serial": vmUSBSerial}); err != nil {
					t.Fatal(err)
				}
			case strings.Contains(l, "vmguest: added "+vmUSBSerial) && addedSeen.IsZero():
				addedSeen = time.Now()
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the virtual machine did not finish in time")
		}
	}
	t.Logf("virtual machine ran %v; USB disk: unplug seen after %v, plug seen after %v",
		time.Since(start).Round(time.Millisecond), removedSeen.Sub(unplugged).Round(time.Millisecond), addedSeen.Sub(plugged).Round(time.Millisecond))
	res := readVMResult(t, images["out"])
	t.Logf("guest kernel: %s", res.Kernel)
	for _, e := range res.Errors {
		t.Errorf("guest: %s", e)
	}
	if t.Failed() {
		return
	}
	checkVMInventory(t, res)
	checkVMCapture(t, res)
	checkVMAdopted(t, res)

	h := res.HotPlug
	switch {
	case h == nil || h.Removed == nil || h.Added == nil:
		t.Errorf("hot-plug: %+v", h)
	case len(h.Others) != 0:
		t.Errorf("hot-plug of the USB disk changed other disks: %+v", h.Others)
	case h.Removed.Disk.Transport != TransportUSB || h.Added.Disk.Transport != TransportUSB || h.Added.Disk.SizeBytes != vmDiskBytes:
		t.Errorf("hot-plug events: removed %+v, added %+v", h.Removed.Disk, h.Added.Disk)
	}
	// The watcher polls every second: the guest must see each change
	// within a few seconds of qemu making it.
	for what, d := range map[string]time.Duration{"unplug": removedSeen.Sub(unplugged), "plug": addedSeen.Sub(plugged)} {
		if d <= 0 || d > 15*time.Second {
			t.Errorf("%s noticed after %v", what, d)
		}
	}
	if *updateVM {
		writeVMTestdata(t, res)
	}
}

// vmPeers returns qemu and the kernel of the PC image (the module pinned in
// image/versions.txt, from the Go module cache), skipping the test when
// either is missing unless the peers are required.
func vmPeers(t *testing.T) (qemu, kernel string) {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("ARKBOX_REQUIRE_PEERS") == "1" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		skip("qemu-system-x86_64 not installed (Debian package qemu-system-x86)")
	}
	if testing.Short() {
		t.Skip("boots a virtual machine")
	}
	b, err := os.ReadFile("../image/versions.txt")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^github.com/gokrazy/kernel.amd64 (\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("image/versions.txt names no kernel.amd64")
	}
	mod := "github.com/gokrazy/kernel.amd64@" + string(m[1])
	out, err := exec.Command("go", "mod", "download", "-json", mod).Output()
	if err != nil {
		skip("go mod download %s: %v", mod, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		t.Fatalf("go mod download %s: %s", mod, out)
	}
	return qemu, filepath.Join(info.Dir, "vmlinuz")
}

// buildVMGuest builds hw/hwtest/vmguest as a static binary and packs it as
// the only file of an initramfs.
func buildVMGuest(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "vmguest")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/arkbox/arkbox/hw/hwtest/vmguest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
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

func checkVMAdopted(t *testing.T, r *vmResult) {
	for _, serial := range []string{vmSATASerial, vmNVMeSerial, vmUSBSerial} {
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

// writeVMTestdata records the guest's sysfs and SMART pages as fixtures
// (go test -run TestVirtualMachineDisks -update-vm ./hw).
func writeVMTestdata(t *testing.T, r *vmResult) {
	head := "# Captured by TestVirtualMachineDisks (go test -run TestVirtualMachineDisks -update-vm ./hw):\n" +
		"# " + r.Kernel + "\n# under qemu with a SATA disk on AHCI, an NVMe disk, a USB disk on xHCI and a virtio disk.\n"
	if err := os.WriteFile("testdata/sysfs/qemu.txt", []byte(head+r.Capture), 0o644); err != nil {
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
			if err := os.WriteFile(fmt.Sprintf("testdata/smart/qemu-%s-%s.%s", kind, name, suffix), b, 0o644); err != nil {
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
