// Package bwlimit limits upload bandwidth by time windows, e.g.
//
//	2MB/s Mon-Fri 08:00-18:00; 10MB/s
//
// Rules are separated by ";" and the first whose window contains the
// current local time applies; a rule without days or hours always applies;
// when none applies the link is not limited. Rates take B, KB, MB, GB
// (powers of 1000) or KiB, MiB, GiB, per second ("/s"), or "unlimited".
package bwlimit

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rule is one rate with its window.
type Rule struct {
	Rate     float64       // bytes per second; 0 = unlimited
	Days     [7]bool       // by time.Weekday; all false = every day
	From, To time.Duration // since midnight; From == To = all day
}

// Schedule is a parsed limit.
type Schedule struct {
	Rules []Rule
	text  string
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// Parse reads a limit; "" means unlimited.
func Parse(s string) (Schedule, error) {
	sch := Schedule{text: strings.TrimSpace(s)}
	for _, part := range strings.Split(s, ";") {
		f := strings.Fields(part)
		if len(f) == 0 {
			continue
		}
		var r Rule
		rate, err := ParseRate(f[0])
		if err != nil {
			return Schedule{}, fmt.Errorf("bandwidth limit %q: %w", s, err)
		}
		r.Rate = rate
		for _, w := range f[1:] {
			switch {
			case strings.Contains(w, ":"):
				a, b, ok := strings.Cut(w, "-")
				if !ok {
					return Schedule{}, fmt.Errorf("bandwidth limit %q: hours %q: want HH:MM-HH:MM", s, w)
				}
				if r.From, err = clock(a); err == nil {
					r.To, err = clock(b)
				}
				if err != nil {
					return Schedule{}, fmt.Errorf("bandwidth limit %q: %w", s, err)
				}
			default:
				if err := days(&r, w); err != nil {
					return Schedule{}, fmt.Errorf("bandwidth limit %q: %w", s, err)
				}
			}
		}
		sch.Rules = append(sch.Rules, r)
	}
	return sch, nil
}

func (s Schedule) String() string { return s.text }

// ParseRate reads "2MB/s", "500KiB/s", "1.5MB" or "unlimited".
func ParseRate(s string) (float64, error) {
	l := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "/s"))
	if l == "unlimited" || l == "0" {
		return 0, nil
	}
	units := []struct {
		suf string
		m   float64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1}}
	m := 1.0
	for _, u := range units {
		if strings.HasSuffix(l, u.suf) {
			l, m = strings.TrimSuffix(l, u.suf), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(l, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("rate %q: want a number with a unit, like 2MB/s", s)
	}
	if v*m < 1024 {
		return 0, fmt.Errorf("rate %q: below 1 KiB/s", s)
	}
	return v * m, nil
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if s == "24:00" {
		return 24 * time.Hour, nil
	}
	if err != nil {
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

func day(s string) (int, error) {
	s = strings.ToLower(s)
	for i, d := range dayNames {
		if strings.HasPrefix(s, d) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("day %q: want Mon, Tue, …", s)
}

func days(r *Rule, w string) error {
	for _, item := range strings.Split(w, ",") {
		a, b, isRange := strings.Cut(item, "-")
		i, err := day(a)
		if err != nil {
			return err
		}
		j := i
		if isRange {
			if j, err = day(b); err != nil {
				return err
			}
		}
		for d := i; ; d = (d + 1) % 7 {
			r.Days[d] = true
			if d == j {
				break
			}
		}
	}
	return nil
}

func (r Rule) matches(t time.Time) bool {
	any := false
	for _, d := range r.Days {
		any = any || d
	}
	if any && !r.Days[t.Weekday()] {
		return false
	}
	if r.From == r.To {
		return true
	}
	since := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second
	if r.From < r.To {
		return since >= r.From && since < r.To
	}
	return since >= r.From || since < r.To // over midnight
}

// RateAt returns the limit in force at t (0 = unlimited).
func (s Schedule) RateAt(t time.Time) float64 {
	for _, r := range s.Rules {
		if r.matches(t) {
			return r.Rate
		}
	}
	return 0
}

// Limiter paces bytes to the schedule. It is safe for concurrent use: all
// connections of one target share it.
type Limiter struct {
	sch   Schedule
	now   func() time.Time
	mu    sync.Mutex
	ready time.Time // when the bytes handed out so far are "paid"
}

// New returns a limiter; now is the clock (nil = time.Now).
func New(s Schedule, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{sch: s, now: now}
}

// burst is how far the limiter lets a sender run ahead.
const burst = 100 * time.Millisecond

// WaitN blocks until n more bytes may be sent.
func (l *Limiter) WaitN(ctx context.Context, n int) error {
	if l == nil {
		return nil
	}
	now := l.now()
	rate := l.sch.RateAt(now)
	if rate == 0 {
		return nil
	}
	l.mu.Lock()
	if l.ready.Before(now.Add(-burst)) {
		l.ready = now.Add(-burst)
	}
	l.ready = l.ready.Add(time.Duration(float64(n) / rate * float64(time.Second)))
	wait := l.ready.Sub(now)
	l.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Dialer wraps a dial function so every connection's writes are paced.
func (l *Limiter) Dialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &conn{Conn: c, l: l}, nil
	}
}

type conn struct {
	net.Conn
	l *Limiter
}

func (c *conn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 16<<10)
		if err := c.l.WaitN(context.Background(), k); err != nil {
			return n, err
		}
		w, err := c.Conn.Write(p[:k])
		n += w
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}
