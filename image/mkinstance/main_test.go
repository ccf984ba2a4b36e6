package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/arkbox/arkbox/appliance/config"
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
			if err := run(options{arch: tc.arch, config: filepath.Join(repo, "config.json"), versions: filepath.Join(repo, "image", "versions.txt"),
				out: out, state: dir, repo: repo}); err != nil {
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
	if err := run(options{arch: "sparc", config: filepath.Join(repo, "config.json"), out: t.TempDir(), state: t.TempDir(), repo: repo}); err == nil {
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

func TestMergePatch(t *testing.T) {
	for _, tc := range []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":["b"]}`, `{"a":["c","d"]}`, `{"a":["c","d"]}`},
		{`{"a":{"b":"c","d":"e"}}`, `{"a":{"d":null,"f":"g"}}`, `{"a":{"b":"c","f":"g"}}`},
		{`{"a":"b"}`, `{"a":{"c":1}}`, `{"a":{"c":1}}`},
		{`["a"]`, `{"a":"b"}`, `{"a":"b"}`},
	} {
		var target, patch, want any
		json.Unmarshal([]byte(tc.target), &target)
		json.Unmarshal([]byte(tc.patch), &patch)
		json.Unmarshal([]byte(tc.want), &want)
		if got := mergePatch(target, patch); !reflect.DeepEqual(got, want) {
			t.Errorf("mergePatch(%s, %s) = %v; want %s", tc.target, tc.patch, got, tc.want)
		}
	}
}

// TestVMTestOverlay: the boot test's image runs serve with the flags of
// the product plus adoption and the test's initial configuration, which
// serve's configuration reader accepts.
func TestVMTestOverlay(t *testing.T) {
	repo := filepath.Join("..", "..")
	dir := t.TempDir()
	out := filepath.Join(dir, "amd64", "arkbox")
	if err := run(options{arch: "amd64", config: filepath.Join(repo, "config.json"), overlay: filepath.Join(repo, "image", "vmtest", "overlay.json"),
		versions: filepath.Join(repo, "image", "versions.txt"), out: out, state: dir, repo: repo}); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		PackageConfig map[string]struct {
			CommandLineFlags  []string
			ExtraFileContents map[string]string
			DontStart         bool
		}
		SerialConsole string
	}
	b, _ := os.ReadFile(filepath.Join(out, "config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	pc := cfg.PackageConfig["github.com/arkbox/arkbox/appliance/cmd/arkbox"]
	flags := strings.Join(pc.CommandLineFlags, " ")
	for _, want := range []string{"serve", "--repo=/perm/arkbox", "--disk-mounts=/perm/arkbox/disks", "--adopt-blank-disks=3", "--init-config=/etc/arkbox/init.json"} {
		if !strings.Contains(flags, want) {
			t.Errorf("flags %q lack %s", flags, want)
		}
	}
	if pc.DontStart || cfg.SerialConsole != "ttyS0,115200" {
		t.Errorf("config %+v", cfg)
	}
	init := pc.ExtraFileContents["/etc/arkbox/init.json"]
	c, err := config.Parse([]byte(init), "/perm/arkbox")
	if err != nil {
		t.Fatalf("the initial configuration does not load: %v\n%s", err, init)
	}
	if c.Services.SFTP.Addr != ":22" || c.Shares[0].Snapshots[0].Schedule != "every 1m" {
		t.Errorf("initial configuration %+v", c)
	}
	if _, ok := cfg.PackageConfig["github.com/gokrazy/gokrazy/cmd/randomd"].ExtraFileContents["/etc/machine-id"]; !ok {
		t.Error("the overlay lost the machine id")
	}
}

// TestProductConfig: the product image starts serve with its data on
// /perm and its pool on mounted disks, and never adopts a disk by itself.
func TestProductConfig(t *testing.T) {
	var cfg struct {
		PackageConfig map[string]struct {
			CommandLineFlags  []string
			ExtraFileContents map[string]string
			DontStart         bool
		}
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	pc := cfg.PackageConfig["github.com/arkbox/arkbox/appliance/cmd/arkbox"]
	flags := strings.Join(pc.CommandLineFlags, " ")
	if pc.DontStart || !strings.HasPrefix(flags, "serve ") || !strings.Contains(flags, "--repo=/perm/") ||
		!strings.Contains(flags, "--disk-mounts=/perm/") || !strings.Contains(flags, "--init-config=/etc/arkbox/init.json") {
		t.Errorf("arkbox is not started as the appliance: DontStart %v, flags %q", pc.DontStart, flags)
	}
	c, err := config.Parse([]byte(pc.ExtraFileContents["/etc/arkbox/init.json"]), "/perm/arkbox")
	if err != nil {
		t.Fatalf("the initial configuration does not load: %v", err)
	}
	if c.Services.SFTP.Addr != ":22" || !c.Services.SFTP.Enabled {
		t.Errorf("SFTP does not listen on every address: %+v", c.Services.SFTP)
	}
	if strings.Contains(flags, "adopt") {
		t.Errorf("the product adopts disks without being asked: %q", flags)
	}
}

// TestBuildAndUpdateURL: arkbox is linked with the build id (added to the
// configuration's own -ldflags), and -update-url lands in gok's update
// flag with the instance's password.
func TestBuildAndUpdateURL(t *testing.T) {
	repo := filepath.Join("..", "..")
	read := func(out string) (cfg struct {
		PackageConfig              map[string]struct{ GoBuildFlags []string }
		InternalCompatibilityFlags struct{ Update string }
	}) {
		t.Helper()
		b, _ := os.ReadFile(filepath.Join(out, "config.json"))
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	dir := t.TempDir()
	base := options{arch: "amd64", config: filepath.Join(repo, "config.json"), versions: filepath.Join(repo, "image", "versions.txt"),
		out: filepath.Join(dir, "amd64", "arkbox"), state: dir, repo: repo}

	o := base
	o.build = "test-1"
	o.updateURL = "http://127.0.0.1:10080"
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	cfg := read(o.out)
	if got, want := cfg.PackageConfig[arkboxPkg].GoBuildFlags, []string{"-ldflags=-X github.com/arkbox/arkbox/appliance/cli.Build=test-1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("build flags %q; want %q", got, want)
	}
	pw, _ := os.ReadFile(filepath.Join(dir, "http-password.txt"))
	if got, want := cfg.InternalCompatibilityFlags.Update, "http://gokrazy:"+strings.TrimSpace(string(pw))+"@127.0.0.1:10080/"; got != want {
		t.Errorf("update %q; want %q", got, want)
	}

	// An overlay's own -ldflags keep their flags; no -update-url, no update flag.
	overlay := filepath.Join(dir, "overlay.json")
	os.WriteFile(overlay, []byte(`{"PackageConfig": {"`+arkboxPkg+`": {"GoBuildFlags": ["-trimpath", "-ldflags=-s -w"]}}}`), 0o644)
	o = base
	o.overlay = overlay
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	cfg = read(o.out)
	fl := cfg.PackageConfig[arkboxPkg].GoBuildFlags
	if len(fl) != 2 || fl[0] != "-trimpath" || !strings.HasPrefix(fl[1], "-ldflags=-s -w -X github.com/arkbox/arkbox/appliance/cli.Build=20") {
		t.Errorf("build flags %q", fl)
	}
	if cfg.InternalCompatibilityFlags.Update != "" {
		t.Errorf("update %q without -update-url", cfg.InternalCompatibilityFlags.Update)
	}

	for _, bad := range []options{{build: "a b"}, {build: "x", updateURL: "arkbox:8080"}} {
		o = base
		o.build, o.updateURL = bad.build, bad.updateURL
		if err := run(o); err == nil {
			t.Errorf("build %q, update URL %q accepted", bad.build, bad.updateURL)
		}
	}
}
