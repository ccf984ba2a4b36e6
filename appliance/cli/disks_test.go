package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
