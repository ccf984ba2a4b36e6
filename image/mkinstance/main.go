// Command mkinstance turns the repository's config.json (the Raspberry Pi
// instance, in gok's format) into a gok instance directory for one target:
//
//	mkinstance -arch rpi|amd64 -out DIR/arkbox [-config config.json] [-overlay FILE] [-versions image/versions.txt] [-state DIR]
//
// It writes DIR/arkbox/config.json — for amd64 with only what must differ
// changed: GOARCH, the kernel, no firmware or EEPROM, the serial console on
// ttyS0; then the overlay, if given, is applied as a JSON merge patch
// (RFC 7386: objects merge, null removes, anything else replaces), which is
// how the boot test's image differs from the product — plus the web interface password and machine id kept in the state
// folder (created on first use, so that `gok update` keeps working), and
// the go.mod files of gok's builddir: arkbox itself from this working tree
// (a replace directive) and the gokrazy modules at versions.txt's versions.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

const (
	module     = "github.com/arkbox/arkbox"
	randomdPkg = "github.com/gokrazy/gokrazy/cmd/randomd"
)

// variant holds what differs between the targets.
type variant struct {
	goarch, kernel, firmware, eeprom, serial string
}

var variants = map[string]variant{
	"rpi":   {"arm64", "github.com/gokrazy/kernel.rpi", "github.com/gokrazy/firmware", "github.com/gokrazy/rpi-eeprom", "serial0,115200"},
	"amd64": {"amd64", "github.com/gokrazy/kernel.amd64", "", "", "ttyS0,115200"},
}

func main() {
	arch := flag.String("arch", "rpi", "target: rpi or amd64")
	cfgPath := flag.String("config", "config.json", "base instance configuration (gok format)")
	overlay := flag.String("overlay", "", "a JSON merge patch applied to the configuration (e.g. image/vmtest/overlay.json)")
	versions := flag.String("versions", "image/versions.txt", "gokrazy module versions")
	out := flag.String("out", "", "instance directory to write (gok's PARENT_DIR/INSTANCE)")
	state := flag.String("state", "", "folder keeping the web interface password and machine id (default: OUT/..)")
	repo := flag.String("repo", ".", "the arkbox working tree to build from")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mkinstance: -out is required")
		os.Exit(2)
	}
	if *state == "" {
		*state = filepath.Dir(*out)
	}
	if err := run(*arch, *cfgPath, *overlay, *versions, *out, *state, *repo); err != nil {
		fmt.Fprintln(os.Stderr, "mkinstance:", err)
		os.Exit(1)
	}
}

func run(arch, cfgPath, overlayPath, versionsPath, out, state, repo string) error {
	v, ok := variants[arch]
	if !ok {
		return fmt.Errorf("unknown -arch %q (rpi or amd64)", arch)
	}
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("decode %s: %w", cfgPath, err)
	}
	pw, err := secret(filepath.Join(state, "http-password.txt"), 20)
	if err != nil {
		return err
	}
	machineID, err := secret(filepath.Join(state, "machine-id"), 16)
	if err != nil {
		return err
	}
	if err := apply(cfg, v, pw, machineID); err != nil {
		return err
	}
	if overlayPath != "" {
		b, err := os.ReadFile(overlayPath)
		if err != nil {
			return fmt.Errorf("read overlay: %w", err)
		}
		var patch any
		if err := json.Unmarshal(b, &patch); err != nil {
			return fmt.Errorf("decode %s: %w", overlayPath, err)
		}
		merged, ok := mergePatch(cfg, patch).(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not a JSON object", overlayPath)
		}
		cfg = merged
	}
	pins, err := readVersions(versionsPath)
	if err != nil {
		return err
	}
	absRepo, err := filepath.Abs(repo)
	if err != nil {
		return err
	}
	goLine, err := goDirective(filepath.Join(absRepo, "go.mod"))
	if err != nil {
		return err
	}
	enc, err := json.MarshalIndent(cfg, "", "    ")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"config.json": append(enc, '\n'),
		filepath.Join("builddir", module, "go.mod"): []byte(fmt.Sprintf(
			"module gokrazy/build/arkbox\n\n%s\n\nrequire %s v0.0.0-00010101000000-000000000000\n\nreplace %s => %s\n",
			goLine, module, module, absRepo)),
		filepath.Join("builddir", "github.com", "gokrazy", "go.mod"): gokrazyGoMod(goLine, pins),
	}
	if sum, err := os.ReadFile(filepath.Join(absRepo, "go.sum")); err == nil {
		files[filepath.Join("builddir", module, "go.sum")] = sum
	}
	for name, content := range files {
		p := filepath.Join(out, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// apply changes the base configuration for the variant and adds the
// instance's secrets.
func apply(cfg map[string]any, v variant, password, machineID string) error {
	env := []any{}
	if e, ok := cfg["Environment"].([]any); ok {
		for _, kv := range e {
			if s, ok := kv.(string); ok && !strings.HasPrefix(s, "GOARCH=") {
				env = append(env, s)
			}
		}
	}
	cfg["Environment"] = append(env, "GOARCH="+v.goarch)
	cfg["KernelPackage"] = v.kernel
	cfg["FirmwarePackage"] = v.firmware
	cfg["EEPROMPackage"] = v.eeprom
	cfg["SerialConsole"] = v.serial

	update, _ := cfg["Update"].(map[string]any)
	if update == nil {
		update = map[string]any{}
	}
	if _, set := update["HTTPPassword"]; !set {
		update["HTTPPassword"] = password
	}
	cfg["Update"] = update

	pc, _ := cfg["PackageConfig"].(map[string]any)
	if pc == nil {
		pc = map[string]any{}
	}
	rc, _ := pc[randomdPkg].(map[string]any)
	if rc == nil {
		rc = map[string]any{}
	}
	extra, _ := rc["ExtraFileContents"].(map[string]any)
	if extra == nil {
		extra = map[string]any{}
	}
	extra["/etc/machine-id"] = machineID + "\n"
	rc["ExtraFileContents"] = extra
	pc[randomdPkg] = rc
	cfg["PackageConfig"] = pc
	return nil
}

// mergePatch applies a JSON merge patch (RFC 7386) to target and returns
// the result: a patch object merges into a target object key by key (null
// removes the key), anything else replaces the target.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

// secret returns the content of path, creating it with n random bytes in
// hex (as gok new does for passwords and machine ids) if it does not exist.
func secret(path string, n int) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	r := make([]byte, n)
	if _, err := rand.Read(r); err != nil {
		return "", err
	}
	s := hex.EncodeToString(r)
	if n > 16 {
		s = s[:n] // a password of n characters
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return s, nil
}

// readVersions reads "module version" lines; # starts a comment.
func readVersions(path string) ([][2]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read versions: %w", err)
	}
	defer f.Close()
	var pins [][2]string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 || !strings.HasPrefix(fields[1], "v") {
			return nil, fmt.Errorf("%s:%d: want \"module version\"", path, n)
		}
		pins = append(pins, [2]string{fields[0], fields[1]})
	}
	return pins, sc.Err()
}

func gokrazyGoMod(goLine string, pins [][2]string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "module gokrazy/build/gokrazy\n\n%s\n\nrequire (\n", goLine)
	for _, p := range pins {
		fmt.Fprintf(&b, "\t%s %s\n", p[0], p[1])
	}
	b.WriteString(")\n")
	return []byte(b.String())
}

// goDirective returns the "go 1.x" line of a go.mod.
func goDirective(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "go ") {
			return strings.TrimSpace(l), nil
		}
	}
	return "", fmt.Errorf("%s: no go directive", path)
}
