package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/arkbox/arkbox/appliance/schedule"
	"github.com/arkbox/arkbox/appliance/users"
)

// FieldError is a problem with one field of the configuration.
type FieldError struct {
	File  string // the configuration file, when loading
	Field string // e.g. shares[1].snapshots[0].schedule
	Err   error
}

func (e *FieldError) Error() string {
	if e.File != "" {
		return fmt.Sprintf("config: %s: %s: %v", e.File, e.Field, e.Err)
	}
	return fmt.Sprintf("config: %s: %v", e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// subFieldError is an error about a field below the one being checked.
type subFieldError struct {
	field string
	err   error
}

func (e *subFieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *subFieldError) Unwrap() error { return e.err }

func fieldErr(field string, err error) error { return &subFieldError{field, err} }

// Limits on names and texts.
const (
	maxNameLen    = 64
	maxUserLen    = 32
	maxCommentLen = 256
)

// validator collects the problems of a configuration.
type validator struct{ errs []*FieldError }

func (v *validator) add(field string, err error) {
	var sub *subFieldError
	for errors.As(err, &sub) {
		field, err = field+"."+sub.field, sub.err
	}
	v.errs = append(v.errs, &FieldError{Field: field, Err: err})
}

func (v *validator) addf(field, format string, args ...any) {
	v.add(field, fmt.Errorf(format, args...))
}

// Validate checks the whole configuration and returns every problem, each
// a *FieldError naming its field, joined with errors.Join; nil if there is
// none.
func (c Config) Validate() error {
	errs := c.problems()
	if len(errs) == 0 {
		return nil
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

func (c Config) problems() []*FieldError {
	var v validator
	if c.Version != Version {
		v.addf("version", "%d: this arkbox reads version %d", c.Version, Version)
	}
	if c.DataDir == "" {
		v.addf("data_dir", "empty")
	}
	if c.TimeZone != "" {
		if _, err := time.LoadLocation(c.TimeZone); err != nil {
			v.addf("time_zone", "%q: unknown time zone (want an IANA name such as Europe/Berlin)", c.TimeZone)
		}
	}
	c.checkPool(&v)
	shares := c.checkShares(&v)
	c.checkUsers(&v, shares)
	c.checkServices(&v)
	checkSchedule(&v, "prune.schedule", c.Prune.Schedule)
	checkSchedule(&v, "scrub.schedule", c.Scrub.Schedule)
	checkSchedule(&v, "verify.schedule", c.Verify.Schedule)
	if p := c.Verify.ReadDataPercent; math.IsNaN(p) || p < 0 || p > 100 {
		v.addf("verify.read_data_percent", "%v: want 0 (structure only) to 100", p)
	}
	return v.errs
}

func (c Config) checkPool(v *validator) {
	n := len(c.Pool.Disks)
	switch {
	case n == 0:
		v.addf("pool.disks", "no disk folders")
	case n > 255:
		v.addf("pool.disks", "%d disk folders: at most 255", n)
	}
	seen := map[string]int{}
	for i, d := range c.Pool.Disks {
		field := fmt.Sprintf("pool.disks[%d]", i)
		if strings.TrimSpace(d) == "" {
			v.addf(field, "empty")
			continue
		}
		r := c.resolve(d)
		if j, dup := seen[r]; dup {
			v.addf(field, "%q: the same folder as pool.disks[%d]", d, j)
		}
		seen[r] = i
		if c.DataDir != "" && r == filepath.Clean(c.RepoDir()) {
			v.addf(field, "%q: is the repository folder", d)
		}
	}
	p := c.Pool.Parity
	switch {
	case p < -1:
		v.addf("pool.parity", "%d: want -1 (by disk count) or more", p)
	case n == 1 && p > 4:
		v.addf("pool.parity", "%d: a single disk keeps at most 4 parity files per object", p)
	case n > 1 && p >= n:
		v.addf("pool.parity", "%d: needs more than %d disks", p, n)
	}
}

// checkShares checks the shares and returns their names.
func (c Config) checkShares(v *validator) map[string]bool {
	names := map[string]bool{}
	byFold := map[string]int{}
	for i, s := range c.Shares {
		field := fmt.Sprintf("shares[%d]", i)
		if err := checkName(s.Name, maxNameLen); err != nil {
			v.add(field+".name", err)
		} else if j, dup := byFold[strings.ToLower(s.Name)]; dup {
			v.addf(field+".name", "%q: shares[%d] has that name (names are compared ignoring case)", s.Name, j)
		} else {
			byFold[strings.ToLower(s.Name)] = i
			names[s.Name] = true
		}
		if err := checkText(s.Comment, maxCommentLen); err != nil {
			v.add(field+".comment", err)
		}
		labels := map[string]int{}
		for j, sn := range s.Snapshots {
			sf := fmt.Sprintf("%s.snapshots[%d]", field, j)
			switch {
			case sn.Name == "" && len(s.Snapshots) > 1:
				v.addf(sf+".name", "required when a share has several schedules (it tags the snapshots each one keeps)")
			case sn.Name != "":
				if err := checkName(sn.Name, maxNameLen); err != nil {
					v.add(sf+".name", err)
				} else if k, dup := labels[strings.ToLower(sn.Name)]; dup {
					v.addf(sf+".name", "%q: %s.snapshots[%d] has that name", sn.Name, field, k)
				} else {
					labels[strings.ToLower(sn.Name)] = j
				}
			}
			checkSchedule(v, sf+".schedule", sn.Schedule)
			if _, err := sn.Policy(); err != nil {
				v.add(sf, err)
			}
		}
	}
	return names
}

func (c Config) checkUsers(v *validator, shares map[string]bool) {
	byFold := map[string]int{}
	for i, u := range c.Users {
		field := fmt.Sprintf("users[%d]", i)
		if err := checkName(u.Name, maxUserLen); err != nil {
			v.add(field+".name", err)
		} else if j, dup := byFold[strings.ToLower(u.Name)]; dup {
			v.addf(field+".name", "%q: users[%d] has that name (names are compared ignoring case)", u.Name, j)
		} else {
			byFold[strings.ToLower(u.Name)] = i
		}
		if u.PasswordHash != "" {
			if _, err := users.ParseHash(u.PasswordHash); err != nil {
				v.add(field+".password_hash", err)
			}
		}
		for j, k := range u.AuthorizedKeys {
			if _, _, err := users.ParseAuthorizedKey(k); err != nil {
				v.add(fmt.Sprintf("%s.authorized_keys[%d]", field, j), err)
			}
		}
		for share, g := range u.Grants {
			gf := fmt.Sprintf("%s.grants[%s]", field, strconv.Quote(share))
			if !shares[share] {
				v.addf(gf, "no share named %q", share)
			}
			if _, err := users.ParseAccess(g); err != nil {
				v.add(gf, err)
			}
		}
	}
}

func (c Config) checkServices(v *validator) {
	svcs := []struct {
		name string
		s    Service
	}{
		{"sftp", c.Services.SFTP}, {"smb", c.Services.SMB}, {"nfs", c.Services.NFS},
		{"rsync", c.Services.Rsync}, {"web", c.Services.Web},
	}
	type listener struct {
		name, host string
		port       int
	}
	var bound []listener
	for _, svc := range svcs {
		field := "services." + svc.name + ".addr"
		if svc.s.Addr == "" {
			if svc.s.Enabled {
				v.addf(field, "empty (want host:port, e.g. 127.0.0.1:2222 or :22)")
			}
			continue
		}
		host, port, err := checkAddr(svc.s.Addr)
		if err != nil {
			v.add(field, err)
			continue
		}
		if !svc.s.Enabled || port == 0 {
			continue
		}
		for _, b := range bound {
			if b.port == port && (b.host == host || wildcard(b.host) || wildcard(host)) {
				v.addf(field, "%q: services.%s listens there too", svc.s.Addr, b.name)
				break
			}
		}
		bound = append(bound, listener{svc.name, host, port})
	}
}

// wildcard reports whether host listens on every address.
func wildcard(host string) bool { return host == "" || host == "0.0.0.0" || host == "::" }

// checkAddr parses host:port: host empty, an IP address or a host name;
// port 0..65535.
func checkAddr(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: want host:port, e.g. 127.0.0.1:2222 or :22", addr)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 || ps != strconv.Itoa(port) {
		return "", 0, fmt.Errorf("%q: port %q: want 0..65535", addr, ps)
	}
	if host != "" {
		if ip, err := netip.ParseAddr(host); err == nil {
			host = ip.String()
		} else if !validHostname(host) {
			return "", 0, fmt.Errorf("%q: host %q: want an IP address or a host name", addr, host)
		}
	}
	return host, port, nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func checkSchedule(v *validator, field, s string) {
	if strings.TrimSpace(s) == "" {
		v.addf(field, "empty (use \"never\" to turn it off)")
		return
	}
	if _, err := schedule.Parse(s); err != nil {
		v.add(field, err)
	}
}

// checkName accepts names safe as folder names and in every protocol:
// ASCII letters, digits, '-', '_' and '.', not starting with '.' or '-'.
func checkName(s string, maxLen int) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > maxLen:
		return fmt.Errorf("%q: longer than %d characters", s, maxLen)
	case s[0] == '.' || s[0] == '-':
		return fmt.Errorf("%q: must not start with %q", s, s[0])
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%q: %q not allowed (use letters, digits, '-', '_' and '.')", s, r)
		}
	}
	return nil
}

// checkText accepts printable text without control characters.
func checkText(s string, maxLen int) error {
	if len(s) > maxLen {
		return fmt.Errorf("longer than %d bytes", maxLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("%q: control characters and invalid UTF-8 are not allowed", s)
		}
	}
	return nil
}
