package hw

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		mustMkdir(t, filepath.Dir(full))
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadThermal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		zones int
		max   float64
	}{
		{name: "none", files: map[string]string{}, zones: 0},
		{name: "pi4", files: map[string]string{
			"class/thermal/thermal_zone0/type": "cpu-thermal\n",
			"class/thermal/thermal_zone0/temp": "48686\n",
		}, zones: 1, max: 48.686},
		{name: "pc with an unreadable zone", files: map[string]string{
			"class/thermal/thermal_zone0/type":   "acpitz\n",
			"class/thermal/thermal_zone0/temp":   "27800\n",
			"class/thermal/thermal_zone1/type":   "x86_pkg_temp\n",
			"class/thermal/thermal_zone1/temp":   "61000\n",
			"class/thermal/thermal_zone2/type":   "iwlwifi_1\n",
			"class/thermal/thermal_zone2/temp":   "",
			"class/thermal/cooling_device0/type": "Processor\n",
		}, zones: 2, max: 61},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tc.files)
			zones, err := ReadThermal(root)
			if err != nil {
				t.Fatal(err)
			}
			if len(zones) != tc.zones {
				t.Fatalf("zones %+v", zones)
			}
			if m, ok := MaxCelsius(zones); ok != (tc.zones > 0) || m != tc.max {
				t.Errorf("max %v %v, want %v", m, ok, tc.max)
			}
		})
	}
}

func TestActivityLED(t *testing.T) {
	if _, err := FindActivityLED(t.TempDir()); !errors.Is(err, ErrNoLED) {
		t.Errorf("no LED: %v", err)
	}
	for _, name := range []string{"ACT", "led0"} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, map[string]string{
				"class/leds/" + name + "/trigger":        "none rc-feedback kbd-scrolllock timer oneshot heartbeat [mmc0] default-on\n",
				"class/leds/" + name + "/brightness":     "0\n",
				"class/leds/" + name + "/max_brightness": "255\n",
				"class/leds/" + name + "/delay_on":       "",
				"class/leds/" + name + "/delay_off":      "",
			})
			led, err := FindActivityLED(root)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for _, tc := range []struct {
				state                      LEDState
				trigger, brightness, delay string
			}{
				{LEDOK, "none", "255", ""},
				{LEDDegraded, "timer", "255", "500"},
				{LEDFailed, "timer", "255", "100"},
				{LEDOff, "none", "0", "100"},
			} {
				if err := led.Set(ctx, tc.state); err != nil {
					t.Fatal(err)
				}
				if got := led.read("trigger"); got != tc.trigger {
					t.Errorf("%s: trigger %q, want %q", tc.state, got, tc.trigger)
				}
				if got := led.read("brightness"); got != tc.brightness {
					t.Errorf("%s: brightness %q, want %q", tc.state, got, tc.brightness)
				}
				if got := led.read("delay_on"); got != tc.delay {
					t.Errorf("%s: delay_on %q, want %q", tc.state, got, tc.delay)
				}
				if got := led.State(); got != tc.state {
					t.Errorf("State() = %q after Set(%q)", got, tc.state)
				}
			}
			if err := led.Set(ctx, "disco"); err == nil {
				t.Error("unknown state accepted")
			}
		})
	}
}

func TestInventory(t *testing.T) {
	root := fakeSysfs(t, "sata", "nvme")
	writeFiles(t, root, map[string]string{"class/thermal/thermal_zone0/temp": "45000\n"})
	dev := t.TempDir()
	// Device nodes are image files here: sdb is blank, nvme0n1 adopted.
	os.WriteFile(filepath.Join(dev, "sdb"), make([]byte, 1<<20), 0o644)
	f, _ := os.Create(filepath.Join(dev, "nvme0n1"))
	f.Truncate(64 << 20)
	f.Close()
	if _, err := Adopt(context.Background(), Disk{Path: filepath.Join(dev, "nvme0n1")}, AdoptOptions{}); err != nil {
		t.Fatal(err)
	}
	pages := syntheticSmart()
	r, err := Inventory(context.Background(), InventoryOptions{SysRoot: root, DevRoot: dev, MountInfo: "-", SMART: true,
		ReadSMART: func(_ context.Context, d Disk) (*Health, error) {
			if d.Transport == TransportNVMe {
				return ParseNVMeSmart(pages["nvme-worn.log"])
			}
			return nil, errors.New("bridge does not pass SMART through")
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Disks) != 2 || r.MaxCelsius == nil || *r.MaxCelsius != 45 {
		t.Fatalf("report %+v", r)
	}
	nv, sd := r.Disks[0], r.Disks[1]
	if nv.Content == nil || nv.Content.Origin != OriginArkbox || nv.Health == nil || len(nv.Health.Warnings) != 5 {
		t.Errorf("nvme %+v", nv)
	}
	if sd.Content == nil || sd.Content.Origin != OriginBlank || sd.HealthError == "" {
		t.Errorf("sata %+v", sd)
	}
	// 5 SMART warnings and the write-protected NVMe disk.
	if len(r.Warnings) != 6 {
		t.Errorf("warnings %q", r.Warnings)
	}
}
