package users

import (
	"net/netip"
	"sync"
	"time"
)

// LimiterOptions tune a Limiter. Zero fields take the defaults shown.
type LimiterOptions struct {
	MaxFailures  int              // failures within Window that lock an address out (5)
	Window       time.Duration    // (15m)
	Backoff      time.Duration    // length of the first lockout (1m); each further one doubles
	MaxBackoff   time.Duration    // longest lockout (1h)
	Forget       time.Duration    // an address without failures for this long starts afresh (24h)
	MaxAddresses int              // addresses remembered at most (10000)
	Now          func() time.Time // clock (time.Now)
}

// Limiter slows down password guessing, per client address. After
// MaxFailures failed logins within Window an address is locked out for
// Backoff; after that, every further failure locks it out again for twice
// as long as the time before, up to MaxBackoff, until a login succeeds or
// the address stays quiet for Forget. IPv6 addresses count per /64 (one
// client usually owns a whole /64). It is safe for concurrent use.
type Limiter struct {
	opt LimiterOptions

	mu    sync.Mutex
	addrs map[string]*limitEntry
}

type limitEntry struct {
	failures    []time.Time // within the window, before the first lockout
	lockouts    int         // lockouts so far
	lockedUntil time.Time
	last        time.Time // last failure
}

// NewLimiter returns a Limiter.
func NewLimiter(opt LimiterOptions) *Limiter {
	if opt.MaxFailures <= 0 {
		opt.MaxFailures = 5
	}
	if opt.Window <= 0 {
		opt.Window = 15 * time.Minute
	}
	if opt.Backoff <= 0 {
		opt.Backoff = time.Minute
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = time.Hour
	}
	opt.MaxBackoff = max(opt.MaxBackoff, opt.Backoff)
	if opt.Forget <= 0 {
		opt.Forget = 24 * time.Hour
	}
	if opt.MaxAddresses <= 0 {
		opt.MaxAddresses = 10000
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Limiter{opt: opt, addrs: map[string]*limitEntry{}}
}

// AddrKey returns the key addr is counted under: the IP address without
// port (IPv4-mapped addresses as IPv4), IPv6 addresses as their /64, and
// anything that does not parse as itself.
func AddrKey(addr string) string {
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		ip = ap.Addr()
	} else if a, err := netip.ParseAddr(addr); err == nil {
		ip = a
	} else {
		return addr
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// Allow reports whether a login from addr may be tried now, and if not,
// how long the lockout still lasts.
func (l *Limiter) Allow(addr string) (ok bool, retryAfter time.Duration) {
	now := l.opt.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.addrs[AddrKey(addr)]
	if e == nil || !now.Before(e.lockedUntil) {
		return true, 0
	}
	return false, e.lockedUntil.Sub(now)
}

// Fail records a failed login from addr. It returns the lockout it starts
// (0 if none).
func (l *Limiter) Fail(addr string) time.Duration {
	now := l.opt.Now()
	key := AddrKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.addrs[key]
	if e != nil && now.Sub(e.last) >= l.opt.Forget && !now.Before(e.lockedUntil) {
		e = nil // quiet long enough: start afresh
	}
	if e == nil {
		if len(l.addrs) >= l.opt.MaxAddresses {
			l.evictLocked(now)
		}
		e = &limitEntry{}
		l.addrs[key] = e
	}
	e.last = now
	if e.lockouts == 0 {
		kept := e.failures[:0]
		for _, t := range e.failures {
			if now.Sub(t) < l.opt.Window {
				kept = append(kept, t)
			}
		}
		e.failures = append(kept, now)
		if len(e.failures) < l.opt.MaxFailures {
			return 0
		}
		e.failures = nil
	}
	e.lockouts++
	d := l.opt.Backoff
	for i := 1; i < e.lockouts && d < l.opt.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, l.opt.MaxBackoff)
	e.lockedUntil = now.Add(d)
	return d
}

// Succeed records a successful login from addr: its failures are
// forgotten.
func (l *Limiter) Succeed(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.addrs, AddrKey(addr))
}

// evictLocked makes room: it drops the entries that have expired, and if
// none has, the address with the oldest failure that is not locked out
// (or, if all are, the lockout that ends first).
func (l *Limiter) evictLocked(now time.Time) {
	var victim string
	var victimLocked bool
	var victimTime time.Time
	for k, e := range l.addrs {
		locked := now.Before(e.lockedUntil)
		expired := now.Sub(e.last) >= l.opt.Forget || (e.lockouts == 0 && now.Sub(e.last) >= l.opt.Window)
		if expired && !locked {
			delete(l.addrs, k)
			continue
		}
		t := e.last
		if locked {
			t = e.lockedUntil
		}
		better := victim == "" || (victimLocked && !locked) || (victimLocked == locked && t.Before(victimTime))
		if better {
			victim, victimLocked, victimTime = k, locked, t
		}
	}
	if len(l.addrs) >= l.opt.MaxAddresses {
		delete(l.addrs, victim)
	}
}

// Len returns the number of addresses remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.addrs)
}
