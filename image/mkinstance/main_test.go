package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRunVariants(t *testing.T) {
	repo := filepath.Join("..", "..")
	for _, tc := range []struct {
		arch, kernel, firmware, serial, goarch string
	}{
		{"rpi", "github.com/gokrazy/kernel.rpi", "github.com/gokrazy/firmware", "serial0,115200", "GOARCH=arm64"},
		{"amd64", "github.com/gokrazy/kernel.amd64", "", "ttyS0,115200", "GOARCH=amd64"},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, tc.arch, "arkbox")
			if err := run(tc.arch, filepath.Join(repo, "config.json"), filepath.Join(repo, "image", "versions.txt"), out, dir, repo); err != nil {
				t.Fatal(err)
			}
			var cfg map[string]any
			b, _ := os.ReadFile(filepath.Join(out, "config.json"))
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg["KernelPackage"] != tc.kernel || cfg["FirmwarePackage"] != tc.firmware || cfg["SerialConsole"] != tc.serial || cfg["Hostname"] != "arkbox" {
				t.Errorf("config %v", cfg)
			}
			if env := cfg["Environment"].([]any); !reflect.DeepEqual(env, []any{"GOOS=linux", tc.goarch}) {
				t.Errorf("environment %v", env)
			}
			upd := cfg["Update"].(map[string]any)
			pw, _ := os.ReadFile(filepath.Join(dir, "http-password.txt"))
			if upd["HTTPPort"] != "8080" || upd["HTTPPassword"] != strings.TrimSpace(string(pw)) || len(strings.TrimSpace(string(pw))) != 20 {
				t.Errorf("update %v", upd)
			}
			gm, _ := os.ReadFile(filepath.Join(out, "builddir", "github.com", "gokrazy", "go.mod"))
			if !strings.Contains(string(gm), "github.com/gokrazy/gokrazy v0.0.0-") {
				t.Errorf("gokrazy go.mod:\n%s", gm)
			}
			am, _ := os.ReadFile(filepath.Join(out, "builddir", "github.com", "arkbox", "arkbox", "go.mod"))
			if !strings.Contains(string(am), "replace github.com/arkbox/arkbox => /") {
				t.Errorf("arkbox go.mod:\n%s", am)
			}
		})
	}
	if err := run("sparc", filepath.Join(repo, "config.json"), "", t.TempDir(), t.TempDir(), repo); err == nil {
		t.Error("unknown arch accepted")
	}
}

func TestSecretIsKept(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s", "pw")
	a, err := secret(p, 20)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := secret(p, 20)
	if a != b || len(a) != 20 {
		t.Errorf("%q then %q", a, b)
	}
}
