// Package hwtest helps tests of packages that use hw: fake sysfs trees,
// and loop devices where the test runs as root.
package hwtest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// RequireRoot skips the test unless it runs as root with each of the
// programs on $PATH. When ARKBOX_REQUIRE_PEERS=1 (make test sets it) it
// fails instead, so that a test of what the real kernel does cannot pass
// by not running.
func RequireRoot(t testing.TB, programs ...string) {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("ARKBOX_REQUIRE_PEERS") == "1" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("needs root: loop devices and mounts")
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			skip("%s not installed", p)
		}
	}
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

// SysfsFixture materializes a fake sysfs tree recorded in the format of
// hw/testdata/sysfs (see its README; `arkbox disks --capture` writes it)
// under root.
func SysfsFixture(t testing.TB, root, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "L":
			p, target, ok := strings.Cut(rest, " -> ")
			if !ok {
				t.Fatalf("%s: bad link line %q", path, line)
			}
			full := filepath.Join(root, p)
			mkdirAll(t, filepath.Dir(full))
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
		case "F":
			p, content, _ := strings.Cut(rest, " ")
			data := content + "\n"
			if strings.HasPrefix(content, `"`) {
				s, err := strconv.Unquote(content)
				if err != nil {
					t.Fatalf("%s: %q: %v", path, line, err)
				}
				data = s
			}
			full := filepath.Join(root, p)
			mkdirAll(t, filepath.Dir(full))
			if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		case "D":
			mkdirAll(t, filepath.Join(root, rest))
		default:
			t.Fatalf("%s: bad line %q", path, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func mkdirAll(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}
