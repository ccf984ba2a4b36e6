//go:build linux

// Command vmguest is the init process of hw's virtual machine test
// (hw/vm_linux_test.go). The test boots a Linux kernel under qemu with this
// program as its whole initramfs and disks on emulated SATA (AHCI), NVMe
// and USB (xHCI + usb-storage) controllers, so that the kernel's own
// drivers present them in sysfs and answer SMART commands. vmguest then
// does, on those disks, what the appliance does on real ones:
//
//   - lists them (hw.Inventory, SMART included) and records what the
//     listing read of sysfs (hw.CaptureSysfs) and each disk's raw SMART
//     pages (hw.ReadSMARTPages);
//   - adopts the disks named by ARKBOX_ADOPT (partition, format, mount by
//     UUID, write and read back a file, unmount);
//   - watches the disk named by ARKBOX_HOTPLUG while the host unplugs and
//     plugs it again, printing "vmguest: unplug SERIAL" and "vmguest: plug
//     SERIAL" on the console for the host to act on;
//   - finds the board's activity LED and thermal zones, and shows each LED
//     state through the kernel's LED class;
//
// and writes a JSON result into the last 16 MiB of the disk whose serial
// or kernel name is ARKBOX_OUT (8-byte big-endian length, then the JSON),
// then powers the machine off.
// Parameters arrive as environment variables from the kernel command line.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/arkbox/arkbox/hw"
	"golang.org/x/sys/unix"
)

// Result is what vmguest writes to the output disk.
type Result struct {
	Kernel     string                    `json:"kernel"`
	Inventory  *hw.Report                `json:"inventory,omitempty"`
	Capture    string                    `json:"capture"`
	Pages      map[string]*hw.SMARTPages `json:"pages"`       // by disk name
	PageErrors map[string]string         `json:"page_errors"` // by disk name
	Adopted    map[string]*AdoptResult   `json:"adopted"`     // by serial
	HotPlug    *HotPlugResult            `json:"hotplug,omitempty"`
	LED        *LEDResult                `json:"led,omitempty"`
	Thermal    []hw.ThermalZone          `json:"thermal"`
	Steps      []string                  `json:"steps"`
	Errors     []string                  `json:"errors"`
}

// AdoptResult is what adopting one disk did.
type AdoptResult struct {
	Adopted      *hw.Adopted `json:"adopted"`
	Listed       *hw.Disk    `json:"listed"` // the disk as Discover lists it afterwards
	MountPoint   string      `json:"mount_point"`
	MountOptions []string    `json:"mount_options"`
	SuperOptions []string    `json:"super_options"`
	WroteBytes   int         `json:"wrote_bytes"`
	ReadBack     bool        `json:"read_back"` // the file read after a remount equals what was written
}

// LEDResult is what the kernel's LED class showed for each state set.
type LEDResult struct {
	Dir    string            `json:"dir"`
	States map[string]string `json:"states"` // state set → State() read back
	Files  map[string]string `json:"files"`  // state set → the trigger chosen, delay_on, delay_off, brightness
}

// HotPlugResult is what the watcher saw while the host unplugged and
// plugged the disk again.
type HotPlugResult struct {
	Serial  string     `json:"serial"`
	Removed *hw.Event  `json:"removed"`
	Added   *hw.Event  `json:"added"`
	Others  []hw.Event `json:"others"` // events of other disks: there must be none
}

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "vmguest: runs as the init process of a test virtual machine only")
		os.Exit(2)
	}
	setup()
	r := run()
	if err := writeResult(r); err != nil {
		fmt.Fprintf(os.Stderr, "vmguest: %v\n", err)
	}
	fmt.Println("vmguest: done")
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

// setup mounts what hw reads and sends output to the console.
func setup() {
	for _, m := range []struct{ fs, dir string }{{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}, {"tmpfs", "/mnt"}} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil {
			fmt.Fprintf(os.Stderr, "vmguest: mount %s: %v\n", m.dir, err)
		}
	}
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		unix.Dup2(int(c.Fd()), 1)
		unix.Dup2(int(c.Fd()), 2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

func run() *Result {
	ctx := context.Background()
	r := &Result{Pages: map[string]*hw.SMARTPages{}, PageErrors: map[string]string{}, Adopted: map[string]*AdoptResult{}, Steps: []string{}, Errors: []string{}}
	fail := func(step string, err error) {
		r.Errors = append(r.Errors, step+": "+err.Error())
		fmt.Printf("vmguest: %s: %v\n", step, err)
	}
	step := func(s string) {
		r.Steps = append(r.Steps, s)
		fmt.Printf("vmguest: %s\n", s)
	}
	if b, err := os.ReadFile("/proc/version"); err == nil {
		r.Kernel = strings.TrimSpace(string(b))
	}
	want, _ := strconv.Atoi(os.Getenv("ARKBOX_DISKS"))
	if err := waitForDisks(ctx, want, 60*time.Second); err != nil {
		fail("wait for disks", err)
		return r
	}
	step(fmt.Sprintf("%d disks present", want))

	inv, err := hw.Inventory(ctx, hw.InventoryOptions{SMART: true})
	if err != nil {
		fail("inventory", err)
	}
	r.Inventory = inv
	step("inventory")

	var capture bytes.Buffer
	if err := hw.CaptureSysfs(ctx, hw.DiscoverOptions{}, &capture); err != nil {
		fail("capture", err)
	}
	r.Capture = capture.String()
	disks, err := hw.Discover(ctx, hw.DiscoverOptions{MountInfo: "-"})
	if err != nil {
		fail("discover", err)
	}
	for _, d := range disks {
		p, err := hw.ReadSMARTPages(ctx, d)
		if err != nil {
			r.PageErrors[d.Name] = err.Error()
			continue
		}
		r.Pages[d.Name] = p
	}
	step("capture")

	for _, serial := range strings.Fields(strings.ReplaceAll(os.Getenv("ARKBOX_ADOPT"), ",", " ")) {
		a, err := adopt(ctx, serial)
		if err != nil {
			fail("adopt "+serial, err)
			continue
		}
		r.Adopted[serial] = a
		step("adopted " + serial)
	}

	if zones, err := hw.ReadThermal("/sys"); err != nil {
		fail("thermal", err)
	} else {
		r.Thermal = zones
	}
	if led, err := hw.FindActivityLED("/sys"); err != nil {
		if !errors.Is(err, hw.ErrNoLED) {
			fail("activity LED", err)
		}
	} else {
		res := &LEDResult{Dir: led.Dir, States: map[string]string{}, Files: map[string]string{}}
		for _, st := range []hw.LEDState{hw.LEDDegraded, hw.LEDFailed, hw.LEDOK, hw.LEDOff} {
			if err := led.Set(ctx, st); err != nil {
				fail("set the LED "+string(st), err)
				continue
			}
			res.States[string(st)] = string(led.State())
			var files []string
			for _, f := range []string{"trigger", "delay_on", "delay_off", "brightness"} {
				b, _ := os.ReadFile(filepath.Join(led.Dir, f))
				v := strings.TrimSpace(string(b))
				if f == "trigger" { // only the chosen one: "… [timer] …"
					if _, after, ok := strings.Cut(v, "["); ok {
						v, _, _ = strings.Cut(after, "]")
					}
				}
				files = append(files, f+"="+v)
			}
			res.Files[string(st)] = strings.Join(files, " ")
		}
		r.LED = res
		step("activity LED")
	}

	if serial := os.Getenv("ARKBOX_HOTPLUG"); serial != "" {
		h, err := hotPlug(ctx, serial)
		if err != nil {
			fail("hot-plug "+serial, err)
		}
		r.HotPlug = h
		step("hot-plug " + serial)
	}
	return r
}

// waitForDisks waits until Discover lists n disks with a size (USB disks
// appear a moment after the controller).
func waitForDisks(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ds, err := hw.Discover(ctx, hw.DiscoverOptions{MountInfo: "-"})
		ready := 0
		for _, d := range ds {
			if d.SizeBytes > 0 {
				ready++
			}
		}
		if err == nil && ready >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d disks after %v (%v)", ready, n, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// findSerial returns the disk with that serial, or that kernel name.
func findSerial(ctx context.Context, serial string) (hw.Disk, error) {
	ds, err := hw.Discover(ctx, hw.DiscoverOptions{})
	if err != nil {
		return hw.Disk{}, err
	}
	for _, d := range ds {
		if d.Serial == serial || d.Name == serial {
			return d, nil
		}
	}
	return hw.Disk{}, fmt.Errorf("no disk with serial %q", serial)
}

// adopt adopts the disk, mounts it by UUID, writes a file, remounts and
// reads it back.
func adopt(ctx context.Context, serial string) (*AdoptResult, error) {
	d, err := findSerial(ctx, serial)
	if err != nil {
		return nil, err
	}
	a, err := hw.Adopt(ctx, d, hw.AdoptOptions{})
	if err != nil {
		return nil, err
	}
	res := &AdoptResult{Adopted: a}
	if d, err = findSerial(ctx, serial); err != nil {
		return nil, err
	}
	res.Listed = &d
	mp, err := hw.Mount(ctx, hw.MountOptions{UUID: a.UUID, Dir: "/mnt"})
	if err != nil {
		return res, err
	}
	res.MountPoint = mp
	ms, err := hw.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		return res, err
	}
	for _, m := range ms {
		if m.MountPoint == mp {
			res.MountOptions, res.SuperOptions = m.Options, m.SuperOptions
		}
	}
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	f := filepath.Join(mp, "probe.bin")
	if err := writeSynced(f, data); err != nil {
		return res, err
	}
	res.WroteBytes = len(data)
	if err := hw.Unmount(ctx, mp); err != nil {
		return res, err
	}
	// Drop every cached page so that the read comes from the disk.
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
	if mp, err = hw.Mount(ctx, hw.MountOptions{UUID: a.UUID, Dir: "/mnt"}); err != nil {
		return res, err
	}
	got, err := os.ReadFile(f)
	if err != nil {
		return res, err
	}
	res.ReadBack = bytes.Equal(got, data)
	return res, hw.Unmount(ctx, mp)
}

func writeSynced(name string, data []byte) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// hotPlug asks the host to unplug the disk, waits for the watcher to see
// it vanish, asks the host to plug it in again and waits for it to
// appear.
func hotPlug(ctx context.Context, serial string) (*HotPlugResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	w := &hw.Watcher{Interval: time.Second}
	events := w.Watch(ctx)
	res := &HotPlugResult{Serial: serial, Others: []hw.Event{}}
	seen := false
	// The first events list the disks present now.
	for !seen {
		ev, ok := <-events
		if !ok {
			return res, errors.New("watcher stopped before listing the disk")
		}
		seen = ev.Kind == hw.DiskAdded && ev.Disk.Serial == serial
	}
	fmt.Printf("\nvmguest: unplug %s\n", serial)
	for res.Removed == nil || res.Added == nil {
		ev, ok := <-events
		if !ok {
			return res, fmt.Errorf("no event after %d of 2: %w", btoi(res.Removed != nil), ctx.Err())
		}
		switch {
		case ev.Disk.Serial != serial:
			if !(ev.Kind == hw.DiskAdded && res.Removed == nil) {
				res.Others = append(res.Others, ev)
			}
		case ev.Kind == hw.DiskRemoved && res.Removed == nil:
			res.Removed = &ev
			fmt.Printf("\nvmguest: removed %s\n", serial)
			fmt.Printf("\nvmguest: plug %s\n", serial)
		case ev.Kind == hw.DiskAdded && res.Removed != nil:
			res.Added = &ev
			fmt.Printf("\nvmguest: added %s\n", serial)
		}
	}
	return res, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// outBytes is the space at the end of the output disk that holds the
// result.
const outBytes = 16 << 20

// writeResult writes r into the last outBytes of the disk whose serial or
// name is ARKBOX_OUT.
func writeResult(r *Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx := context.Background()
	d, err := findSerial(ctx, os.Getenv("ARKBOX_OUT"))
	if err != nil {
		return fmt.Errorf("output disk: %w", err)
	}
	f, err := os.OpenFile(d.Path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("output disk: %w", err)
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	if len(b)+8 > outBytes || d.SizeBytes < outBytes {
		f.Close()
		return fmt.Errorf("output disk %s: %d bytes of result do not fit", d.Path, len(b))
	}
	if _, err := f.WriteAt(append(n[:], b...), d.SizeBytes-outBytes); err != nil {
		f.Close()
		return fmt.Errorf("output disk %s: %w", d.Path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("output disk %s: %w", d.Path, err)
	}
	return f.Close()
}
