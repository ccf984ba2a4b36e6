package users

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Access is what a user may do in a share.
type Access int

// Access levels, each including the ones before.
const (
	NoAccess  Access = iota
	ReadOnly         // "ro": list, read, browse snapshots
	ReadWrite        // "rw": also create, change and delete files
)

// ParseAccess parses a grant: "ro" or "rw".
func ParseAccess(s string) (Access, error) {
	switch s {
	case "ro":
		return ReadOnly, nil
	case "rw":
		return ReadWrite, nil
	}
	return NoAccess, fmt.Errorf("users: access %q: want ro or rw", s)
}

// String returns "none", "ro" or "rw".
func (a Access) String() string {
	switch a {
	case ReadOnly:
		return "ro"
	case ReadWrite:
		return "rw"
	}
	return "none"
}

// CanRead reports whether a allows reading.
func (a Access) CanRead() bool { return a >= ReadOnly }

// CanWrite reports whether a allows writing.
func (a Access) CanWrite() bool { return a >= ReadWrite }

// Account is one user as the configuration describes it.
type Account struct {
	Name           string
	PasswordHash   string   // PHC string; "" means no password login
	AuthorizedKeys []string // OpenSSH authorized_keys lines
	Grants         map[string]Access
	Admin          bool // administers the box; reads and writes every share
}

// ParseAuthorizedKey parses one line of an OpenSSH authorized_keys file
// ("ssh-ed25519 AAAA… comment"). Options before the key (from=…,
// command=…) are refused: arkbox would not honour them.
func ParseAuthorizedKey(line string) (ssh.PublicKey, string, error) {
	key, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, "", fmt.Errorf("users: authorized key: %w", err)
	}
	if len(options) > 0 {
		return nil, "", fmt.Errorf("users: authorized key %s: options (%s) are not supported",
			ssh.FingerprintSHA256(key), strings.Join(options, ","))
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, "", errors.New("users: authorized key: one key per line")
	}
	return key, comment, nil
}

// ParseAuthorizedKeys parses OpenSSH authorized_keys lines; blank lines and
// # comments are skipped. An error names the line (counted from 1).
func ParseAuthorizedKeys(lines []string) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for i, line := range lines {
		if l := strings.TrimSpace(line); l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		key, _, err := ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// Authorizer answers what a user may do in a share, from the accounts'
// grants. User and share names match case-insensitively (SMB clients
// change case); the configuration keeps them unique that way. It is
// immutable and safe for concurrent use: build a new one when the
// configuration changes.
type Authorizer struct {
	users  map[string]authUser // by lower-case name
	shares []string
}

type authUser struct {
	admin  bool
	grants map[string]Access // by lower-case share name
}

// NewAuthorizer returns an Authorizer for the accounts and the shares that
// exist. Grants to shares not in shares are ignored.
func NewAuthorizer(accounts []Account, shares []string) *Authorizer {
	a := &Authorizer{users: map[string]authUser{}, shares: slices.Clone(shares)}
	slices.Sort(a.shares)
	exists := map[string]bool{}
	for _, s := range shares {
		exists[strings.ToLower(s)] = true
	}
	for _, acc := range accounts {
		u := authUser{admin: acc.Admin, grants: map[string]Access{}}
		for share, access := range acc.Grants {
			if k := strings.ToLower(share); exists[k] {
				u.grants[k] = max(u.grants[k], access)
			}
		}
		a.users[strings.ToLower(acc.Name)] = u
	}
	return a
}

// Access returns what user may do in share: the grant, ReadWrite for an
// admin, NoAccess for unknown users and shares.
func (a *Authorizer) Access(user, share string) Access {
	u, ok := a.users[strings.ToLower(user)]
	if !ok {
		return NoAccess
	}
	k := strings.ToLower(share)
	if u.admin && slices.ContainsFunc(a.shares, func(s string) bool { return strings.ToLower(s) == k }) {
		return ReadWrite
	}
	return u.grants[k]
}

// CanRead reports whether user may read share.
func (a *Authorizer) CanRead(user, share string) bool { return a.Access(user, share).CanRead() }

// CanWrite reports whether user may write share.
func (a *Authorizer) CanWrite(user, share string) bool { return a.Access(user, share).CanWrite() }

// IsAdmin reports whether user administers the box.
func (a *Authorizer) IsAdmin(user string) bool { return a.users[strings.ToLower(user)].admin }

// Shares returns the shares user may read, sorted: what a protocol lists
// at its root.
func (a *Authorizer) Shares(user string) []string {
	var out []string
	for _, s := range a.shares {
		if a.CanRead(user, s) {
			out = append(out, s)
		}
	}
	return out
}
