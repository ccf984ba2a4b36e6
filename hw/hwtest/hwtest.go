// Package hwtest helps tests of packages that use hw: fake sysfs trees,
// and loop devices where the test runs as root.
package hwtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Board makes a sysfs tree in a temp folder with a Raspberry Pi's
// activity LED (class/leds/ACT, its trigger "mmc0" as the kernel leaves
// it) and one thermal zone at celsius, and returns its root.
func Board(t testing.TB, celsius float64) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range map[string]string{
		"class/leds/ACT/trigger":           "none timer oneshot heartbeat [mmc0] default-on\n",
		"class/leds/ACT/brightness":        "0\n",
		"class/leds/ACT/max_brightness":    "1\n",
		"class/leds/ACT/delay_on":          "",
		"class/leds/ACT/delay_off":         "",
		"class/thermal/thermal_zone0/type": "cpu-thermal\n",
		"class/thermal/thermal_zone0/temp": fmt.Sprintf("%d\n", int(celsius*1000)),
	} {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// Losetup attaches a loop device to a file (losetup -f --show ARGS…) and
// detaches it when the test ends. It skips the test unless it runs as
// root with losetup installed and a loop device free.
func Losetup(t testing.TB, args ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed")
	}
	out, err := exec.Command("losetup", append([]string{"-f", "--show"}, args...)...).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device available: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}
