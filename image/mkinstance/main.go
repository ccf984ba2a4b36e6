// Command mkinstance turns the repository's config.json (the Raspberry Pi
// instance, in gok's format) into a gok instance directory for one target:
//
//	mkinstance -arch rpi|amd64 -out DIR/arkbox [-config config.json] [-overlay FILE] [-versions image/versions.txt] [-state DIR]
//	           [-build ID] [-update-url URL]
//
// It writes DIR/arkbox/config.json — for amd64 with only what must differ
// changed: GOARCH, the kernel, no firmware or EEPROM, the serial console on
// ttyS0; then the overlay, if given, is applied as a JSON merge patch
// (RFC 7386: objects merge, null removes, anything else replaces), which is
// how the boot test's image differs from the product — plus the web interface password and machine id kept in the state
// folder (created on first use, so that `gok update` keeps working), and
// the go.mod files of gok's builddir: arkbox itself from this working tree
// (a replace directive) and the gokrazy modules at versions.txt's versions.
//
// arkbox is linked with a build id (cli.Build, which `serve` logs when it
// starts): -build's, or the time of the build and the working tree's
// commit. -update-url sends `gok update` to that address instead of the
// instance's hostname and port (a box known by its address, or behind a
// forwarded port), with the instance's password.
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
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

const (
	module     = "github.com/arkbox/arkbox"
	arkboxPkg  = module + "/appliance/cmd/arkbox"
	buildVar   = module + "/appliance/cli.Build"
	randomdPkg = "github.com/gokrazy/gokrazy/cmd/randomd"
)

// options are mkinstance's flags.
type options struct {
	arch      string // rpi or amd64
	config    string // the base configuration (config.json)
	overlay   string // a JSON merge patch, or ""
	versions  string // image/versions.txt
	out       string // the instance folder to write
	state     string // where the password and machine id are kept
	repo      string // the arkbox working tree
	build     string // build id; "" makes one from the time and the commit
	updateURL string // where gok update goes; "" for the hostname and port
}

// validBuild is what a build id may hold: it goes into -ldflags.
var validBuild = regexp.MustCompile(`^[A-Za-z0-9._+-]+$`)

// variant holds what differs between the targets.
type variant struct {
	goarch, kernel, firmware, eeprom, serial string
}

var variants = map[string]variant{
	"rpi":   {"arm64", "github.com/gokrazy/kernel.rpi", "github.com/gokrazy/firmware", "github.com/gokrazy/rpi-eeprom", "serial0,115200"},
	"amd64": {"amd64", "github.com/gokrazy/kernel.amd64", "", "", "ttyS0,115200"},
}

func main() {
	var o options
	flag.StringVar(&o.arch, "arch", "rpi", "target: rpi or amd64")
	flag.StringVar(&o.config, "config", "config.json", "base instance configuration (gok format)")
	flag.StringVar(&o.overlay, "overlay", "", "a JSON merge patch applied to the configuration (e.g. image/vmtest/overlay.json)")
	flag.StringVar(&o.versions, "versions", "image/versions.txt", "gokrazy module versions")
	flag.StringVar(&o.out, "out", "", "instance directory to write (gok's PARENT_DIR/INSTANCE)")
	flag.StringVar(&o.state, "state", "", "folder keeping the web interface password and machine id (default: OUT/..)")
	flag.StringVar(&o.repo, "repo", ".", "the arkbox working tree to build from")
	flag.StringVar(&o.build, "build", "", "build id linked into arkbox, logged when serve starts (default: the UTC time and the commit, e.g. 20260101T120000Z-0123abc)")
	flag.StringVar(&o.updateURL, "update-url", "", "`URL` of the box's web interface for gok update, e.g. http://192.168.1.20:8080/ (default: the hostname and port of the configuration)")
	flag.Parse()
	if o.out == "" {
		fmt.Fprintln(os.Stderr, "mkinstance: -out is required")
		os.Exit(2)
	}
	if o.state == "" {
		o.state = filepath.Dir(o.out)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "mkinstance:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	v, ok := variants[o.arch]
	if !ok {
		return fmt.Errorf("unknown -arch %q (rpi or amd64)", o.arch)
	}
	b, err := os.ReadFile(o.config)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("decode %s: %w", o.config, err)
	}
	pw, err := secret(filepath.Join(o.state, "http-password.txt"), 20)
	if err != nil {
		return err
	}
	machineID, err := secret(filepath.Join(o.state, "machine-id"), 16)
	if err != nil {
		return err
	}
	if err := apply(cfg, v, pw, machineID); err != nil {
		return err
	}
	if o.overlay != "" {
		b, err := os.ReadFile(o.overlay)
		if err != nil {
			return fmt.Errorf("read overlay: %w", err)
		}
		var patch any
		if err := json.Unmarshal(b, &patch); err != nil {
			return fmt.Errorf("decode %s: %w", o.overlay, err)
		}
		merged, ok := mergePatch(cfg, patch).(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not a JSON object", o.overlay)
		}
		cfg = merged
	}
	pins, err := readVersions(o.versions)
	if err != nil {
		return err
	}
	absRepo, err := filepath.Abs(o.repo)
	if err != nil {
		return err
	}
	build := o.build
	if build == "" {
		build = defaultBuild(absRepo, time.Now())
	}
	if !validBuild.MatchString(build) {
		return fmt.Errorf("build id %q: use letters, digits and . _ + - only", build)
	}
	setBuild(cfg, build)
	if o.updateURL != "" {
		u, err := updateURL(o.updateURL, pw)
		if err != nil {
			return err
		}
		flags, _ := cfg["InternalCompatibilityFlags"].(map[string]any)
		if flags == nil {
			flags = map[string]any{}
		}
		flags["Update"] = u
		cfg["InternalCompatibilityFlags"] = flags
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
		p := filepath.Join(o.out, name)
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

// setBuild links arkbox with the build id: -X on its -ldflags (added to
// the configuration's own -ldflags, if any: go build keeps only the last).
func setBuild(cfg map[string]any, build string) {
	pc, _ := cfg["PackageConfig"].(map[string]any)
	if pc == nil {
		pc = map[string]any{}
	}
	ac, _ := pc[arkboxPkg].(map[string]any)
	if ac == nil {
		ac = map[string]any{}
	}
	x := "-X " + buildVar + "=" + build
	var flags []any
	added := false
	if fl, ok := ac["GoBuildFlags"].([]any); ok {
		for _, f := range fl {
			if s, ok := f.(string); ok && strings.HasPrefix(s, "-ldflags=") && !added {
				f = s + " " + x
				added = true
			}
			flags = append(flags, f)
		}
	}
	if !added {
		flags = append(flags, "-ldflags="+x)
	}
	ac["GoBuildFlags"] = flags
	pc[arkboxPkg] = ac
	cfg["PackageConfig"] = pc
}

// defaultBuild is the UTC time and, in a git working tree, the short
// commit (with -dirty when files changed since).
func defaultBuild(repo string, now time.Time) string {
	id := now.UTC().Format("20060102T150405Z")
	commit, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return id
	}
	id += "-" + strings.TrimSpace(string(commit))
	if st, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		id += "-dirty"
	}
	return id
}

// updateURL is the address gok update uses, with the instance's user and
// password when it names none (gok takes them from the URL).
func updateURL(s, password string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("-update-url %q: want http://HOST[:PORT]/", s)
	}
	if u.User == nil {
		u.User = url.UserPassword("gokrazy", password)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u.String(), nil
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
