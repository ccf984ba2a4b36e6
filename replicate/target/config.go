package target

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/arkbox/arkbox/replicate/bwlimit"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/retention"
)

// FileName is the replication configuration in a repository's home
// folder. Secret values live in files under secrets/ beside it, never in
// this file.
const FileName = "replicate.json"

// Target is one configured replication target.
type Target struct {
	Name string `json:"name"`
	Spec
	Parallel   int    `json:"parallel,omitempty"`    // 1–10 connections (default 4)
	BWLimit    string `json:"bwlimit,omitempty"`     // bandwidth windows (package bwlimit)
	Grace      string `json:"grace,omitempty"`       // delay before remote deletions (default 168h)
	AppendOnly bool   `json:"append_only,omitempty"` // never delete on the target
	// Schedule of syncs under `arkbox serve`: a snapshot schedule form or
	// "after each snapshot"; "" = only when run by hand.
	Schedule string `json:"schedule,omitempty"`
	// Keep, if set, is the target's own retention: snapshots the box has
	// forgotten that this policy keeps stay on the target, with their data.
	Keep *Keep `json:"keep,omitempty"`
}

// Keep is a target's retention policy (the engine's rules; see
// doc/retention.md). A snapshot is kept when any rule keeps it.
type Keep struct {
	Last    int    `json:"last,omitempty"`
	Within  string `json:"within,omitempty"` // e.g. "90d", "2y"
	Hourly  int    `json:"hourly,omitempty"`
	Daily   int    `json:"daily,omitempty"`
	Weekly  int    `json:"weekly,omitempty"`
	Monthly int    `json:"monthly,omitempty"`
	Yearly  int    `json:"yearly,omitempty"`
}

// Policy converts k to the engine's form.
func (k Keep) Policy() (retention.Policy, error) {
	p := retention.Policy{Last: k.Last, Hourly: k.Hourly, Daily: k.Daily, Weekly: k.Weekly, Monthly: k.Monthly, Yearly: k.Yearly}
	if k.Within != "" {
		d, err := retention.ParseDuration(k.Within)
		if err != nil {
			return p, fmt.Errorf("within: %w", err)
		}
		p.Within = d
	}
	if p.Empty() {
		return p, errors.New("the policy keeps nothing: give at least one rule")
	}
	return p, p.Validate()
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks a target, naming the field at fault.
func (t Target) Validate() error {
	if !nameRE.MatchString(t.Name) {
		return fmt.Errorf("target name %q: use letters, digits, '.', '_' or '-' (at most 64)", t.Name)
	}
	if _, err := Parse(t.URL); err != nil {
		return fmt.Errorf("target %s: url: %w", t.Name, err)
	}
	if t.Parallel < 0 || t.Parallel > 10 {
		return fmt.Errorf("target %s: parallel: %d is not between 1 and 10", t.Name, t.Parallel)
	}
	if _, err := bwlimit.Parse(t.BWLimit); err != nil {
		return fmt.Errorf("target %s: bwlimit: %w", t.Name, err)
	}
	if _, err := t.GraceDuration(); err != nil {
		return fmt.Errorf("target %s: grace: %w", t.Name, err)
	}
	if t.Keep != nil {
		if _, err := t.Keep.Policy(); err != nil {
			return fmt.Errorf("target %s: keep: %w", t.Name, err)
		}
	}
	return nil
}

// GraceDuration returns the deletion delay (default 7 days; negative =
// delete at once).
func (t Target) GraceDuration() (time.Duration, error) {
	if t.Grace == "" {
		return 7 * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(t.Grace)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return -1, nil
	}
	return d, nil
}

// Resolve makes the target's relative file names absolute against home.
func (t Target) Resolve(home string) Target {
	for _, p := range []*string{&t.SecretKeyFile, &t.CAFile, &t.KeyFile, &t.PasswordFile, &t.KnownHosts} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(home, *p)
		}
	}
	return t
}

// StatePath is the target's state file (inventory, runs) in home.
func StatePath(home, name string) string { return filepath.Join(home, "replicate", name+".db") }

// Load reads the targets of the home folder (none when the file is
// missing).
func Load(home string) ([]Target, error) {
	b, err := os.ReadFile(filepath.Join(home, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replication targets: %w", err)
	}
	var f struct {
		Targets []Target `json:"targets"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("replication targets: %s: %w", filepath.Join(home, FileName), err)
	}
	for _, t := range f.Targets {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("replication targets: %s: %w", filepath.Join(home, FileName), err)
		}
	}
	return f.Targets, nil
}

// Save writes the targets atomically.
func Save(home string, ts []Target) error {
	seen := map[string]bool{}
	for _, t := range ts {
		if err := t.Validate(); err != nil {
			return err
		}
		if seen[t.Name] {
			return fmt.Errorf("target %s is defined twice", t.Name)
		}
		seen[t.Name] = true
	}
	if ts == nil {
		ts = []Target{}
	}
	b, err := json.MarshalIndent(struct {
		Targets []Target `json:"targets"`
	}{ts}, "", "  ")
	if err != nil {
		return err
	}
	return objstore.WriteFileAtomic(filepath.Join(home, FileName), append(b, '\n'))
}

// Find returns the target called name.
func Find(ts []Target, name string) (Target, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return Target{}, false
}
