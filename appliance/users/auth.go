package users

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrDenied is returned for a wrong user name, password or key. It does
// not say which, so that user names cannot be probed.
var ErrDenied = errors.New("users: access denied")

// LockedOutError is returned while the client's address is locked out
// after too many failed logins.
type LockedOutError struct {
	RetryAfter time.Duration
}

func (e *LockedOutError) Error() string {
	return fmt.Sprintf("users: too many failed logins from this address: retry in %v", e.RetryAfter.Round(time.Second))
}

// AuthOptions tune an Authenticator.
type AuthOptions struct {
	Limiter *Limiter // shared by every protocol; nil: a Limiter with defaults
	// MaxConcurrent bounds the password hashes computed at once (each
	// takes the hash's memory, 64 MiB by default). 0 means 2.
	MaxConcurrent int
	Logger        *slog.Logger // nil: discard
}

// Authenticator checks logins against the accounts: passwords (through the
// Limiter, a bounded number at a time) and SSH public keys. It is
// immutable apart from the Limiter and safe for concurrent use; build a
// new one (with the same Limiter) when the configuration changes.
type Authenticator struct {
	users   map[string]*authAccount // by lower-case name
	limiter *Limiter
	sem     chan struct{}
	log     *slog.Logger

	dummyOnce sync.Once
	dummy     Hash // checked for unknown users, so they take as long
	dummyP    Params
}

type authAccount struct {
	name string
	hash *Hash
	keys [][]byte // wire format of the authorized keys
}

// NewAuthenticator returns an Authenticator for accounts. It fails if a
// password hash or an authorized key does not parse (the configuration's
// validation catches these first).
func NewAuthenticator(accounts []Account, opt AuthOptions) (*Authenticator, error) {
	a := &Authenticator{users: map[string]*authAccount{}, limiter: opt.Limiter, log: opt.Logger,
		dummyP: DefaultParams()}
	if a.limiter == nil {
		a.limiter = NewLimiter(LimiterOptions{})
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	n := opt.MaxConcurrent
	if n <= 0 {
		n = 2
	}
	a.sem = make(chan struct{}, n)
	first := true
	for _, acc := range accounts {
		u := &authAccount{name: acc.Name}
		if acc.PasswordHash != "" {
			h, err := ParseHash(acc.PasswordHash)
			if err != nil {
				return nil, fmt.Errorf("users: user %s: %w", acc.Name, err)
			}
			u.hash = &h
			if first {
				a.dummyP, first = h.Params, false
			}
		}
		keys, err := ParseAuthorizedKeys(acc.AuthorizedKeys)
		if err != nil {
			return nil, fmt.Errorf("users: user %s: authorized_keys %w", acc.Name, err)
		}
		for _, k := range keys {
			u.keys = append(u.keys, k.Marshal())
		}
		k := strings.ToLower(acc.Name)
		if _, dup := a.users[k]; dup {
			return nil, fmt.Errorf("users: user %s: listed twice", acc.Name)
		}
		a.users[k] = u
	}
	return a, nil
}

// Limiter returns the Limiter the Authenticator uses.
func (a *Authenticator) Limiter() *Limiter { return a.limiter }

// Password checks a password login from addr (the client's "ip:port") and
// returns the user's name as configured. Errors: *LockedOutError while the
// address is locked out (the password is not checked), ErrDenied for a
// wrong user or password (counted against the address), or ctx's error
// while waiting for a turn to compute the hash.
func (a *Authenticator) Password(ctx context.Context, addr, user string, pw []byte) (string, error) {
	if ok, wait := a.limiter.Allow(addr); !ok {
		a.log.Warn("login refused: address locked out", "addr", addr, "user", user, "retry_after", wait)
		return "", &LockedOutError{RetryAfter: wait}
	}
	u := a.users[strings.ToLower(user)]
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	var ok bool
	if u != nil && u.hash != nil {
		ok = u.hash.Verify(pw)
	} else {
		a.dummyHash().Verify(pw) // take as long as a real check
	}
	<-a.sem
	if !ok {
		if lock := a.limiter.Fail(addr); lock > 0 {
			a.log.Warn("login failed: address locked out", "addr", addr, "user", user, "lockout", lock)
		} else {
			a.log.Info("login failed", "addr", addr, "user", user, "method", "password")
		}
		return "", ErrDenied
	}
	a.limiter.Succeed(addr)
	a.log.Info("login", "addr", addr, "user", u.name, "method", "password")
	return u.name, nil
}

func (a *Authenticator) dummyHash() Hash {
	a.dummyOnce.Do(func() {
		p := a.dummyP
		s, err := HashPasswordParams([]byte("not a password anybody has"), p)
		if err == nil {
			a.dummy, err = ParseHash(s)
		}
		if err != nil { // parameters came from a parsed hash: cannot happen
			panic(err)
		}
	})
	return a.dummy
}

// PublicKey checks that key is one of user's authorized keys and returns
// the user's name as configured. It does not count failures: SSH clients
// offer several keys in turn, and the signature check that makes a key
// login is the SSH server's. It still refuses locked-out addresses.
func (a *Authenticator) PublicKey(addr, user string, key ssh.PublicKey) (string, error) {
	if ok, wait := a.limiter.Allow(addr); !ok {
		return "", &LockedOutError{RetryAfter: wait}
	}
	u := a.users[strings.ToLower(user)]
	if u != nil && key != nil {
		wire := key.Marshal()
		for _, k := range u.keys {
			if bytes.Equal(k, wire) {
				return u.name, nil
			}
		}
	}
	return "", ErrDenied
}
