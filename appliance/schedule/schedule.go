// Package schedule parses schedule expressions ("every 15m", "daily 02:00",
// "weekly sat,sun 03:00", "monthly last-fri 22:00", "once 2026-12-24T18:00",
// "never"), computes their run times in a time zone, daylight saving time
// included, and runs jobs on them (Scheduler) against an injectable Clock.
//
// The forms and their rules are documented in doc/operations.md.
package schedule

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxLen bounds the length of a schedule expression.
const maxLen = 1024

type form int

const (
	formNever form = iota
	formEvery
	formDaily
	formWeekly
	formMonthly
	formOnce
)

var formNames = [...]string{"never", "every", "daily", "weekly", "monthly", "once"}

// Schedule is a parsed schedule expression. The zero Schedule is "never".
// Schedules are values: safe to copy and to use from several goroutines.
type Schedule struct {
	form     form
	every    time.Duration
	times    []int      // minutes after midnight, ascending, unique
	weekdays uint8      // bit d set: time.Weekday(d) is included
	mdays    []monthDay // ascending, unique
	once     civil
}

// civil is a local date and time of day.
type civil struct {
	year   int
	month  time.Month
	day    int
	minute int // after midnight
}

// monthDay is one day of the month a monthly schedule runs on.
type monthDay struct {
	nth int          // 0: day number; 1..4: nth weekday; -1: last weekday
	day int          // 1..31 (clamped to the month), or -1 for the last day
	wd  time.Weekday // with nth != 0
}

func (m monthDay) sortKey() int {
	switch {
	case m.nth == 0 && m.day > 0:
		return m.day
	case m.nth == 0:
		return 100
	case m.nth > 0:
		return 200 + 10*m.nth + int(m.wd)
	default:
		return 300 + int(m.wd)
	}
}

// nthNames are the ordinals of "<nth>-<weekday>", indexed by nth+1.
var nthNames = [...]string{"last", "", "first", "second", "third", "fourth"}

func nthName(n int) string { return nthNames[n+1] }

func parseNth(s string) (int, bool) {
	for i, name := range nthNames {
		if name != "" && name == s {
			return i - 1, true
		}
	}
	return 0, false
}

func (m monthDay) String() string {
	switch {
	case m.nth != 0:
		return nthName(m.nth) + "-" + dayName(m.wd)
	case m.day == -1:
		return "last"
	default:
		return strconv.Itoa(m.day)
	}
}

// matches reports whether day d of a month with n days and whose first
// day is weekday first is one of m's days.
func (m monthDay) matches(d, n int, first time.Weekday) bool {
	switch {
	case m.nth == 0 && m.day == -1:
		return d == n
	case m.nth == 0:
		return d == min(m.day, n)
	}
	if time.Weekday((int(first)+d-1)%7) != m.wd {
		return false
	}
	if m.nth > 0 {
		return (d-1)/7 == m.nth-1
	}
	return d > n-7
}

// Parse parses a schedule expression. Keywords and day names are
// case-insensitive; words are separated by blanks, list items by commas:
//
//	never
//	every 15m                  (1m to 24h, whole minutes: 90m, 1h30m, 2h)
//	daily 02:00,14:00
//	weekly sat,sun 03:00       (mon-fri ranges; full day names too)
//	monthly 1,15 04:00         (a day past the month's end means its last day)
//	monthly last 04:00         (the last day of the month)
//	monthly last-fri 22:00     (first-, second-, third-, fourth-, last-<day>)
//	once 2026-12-24T18:00      (local time; "once 2026-12-24 18:00" too)
func Parse(s string) (Schedule, error) {
	sc, err := parse(s)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: %w", s, err)
	}
	return sc, nil
}

// MustParse is Parse for expressions known to be valid; it panics on an
// error.
func MustParse(s string) Schedule {
	sc, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return sc
}

func parse(s string) (Schedule, error) {
	if len(s) > maxLen {
		return Schedule{}, fmt.Errorf("longer than %d bytes", maxLen)
	}
	w := strings.Fields(strings.ToLower(s))
	if len(w) == 0 {
		return Schedule{}, fmt.Errorf("empty (want every, daily, weekly, monthly, once or never)")
	}
	args := w[1:]
	want := func(n int, usage string) error {
		if len(args) != n {
			return fmt.Errorf("want %q", usage)
		}
		return nil
	}
	var sc Schedule
	var err error
	switch w[0] {
	case "never":
		if err := want(0, "never"); err != nil {
			return sc, err
		}
		sc.form = formNever
	case "every":
		if err := want(1, "every <interval>, e.g. every 15m"); err != nil {
			return sc, err
		}
		sc.form = formEvery
		sc.every, err = parseInterval(args[0])
	case "daily":
		if err := want(1, "daily <HH:MM>[,<HH:MM>…]"); err != nil {
			return sc, err
		}
		sc.form = formDaily
		sc.times, err = parseTimes(args[0])
	case "weekly":
		if err := want(2, "weekly <day>[,<day>…] <HH:MM>[,<HH:MM>…]"); err != nil {
			return sc, err
		}
		sc.form = formWeekly
		if sc.weekdays, err = parseWeekdays(args[0]); err == nil {
			sc.times, err = parseTimes(args[1])
		}
	case "monthly":
		if err := want(2, "monthly <day>[,<day>…] <HH:MM>[,<HH:MM>…]"); err != nil {
			return sc, err
		}
		sc.form = formMonthly
		if sc.mdays, err = parseMonthDays(args[0]); err == nil {
			sc.times, err = parseTimes(args[1])
		}
	case "once":
		var dt string
		switch len(args) {
		case 1:
			dt = args[0]
		case 2:
			dt = args[0] + "t" + args[1]
		default:
			return sc, fmt.Errorf("want %q", "once YYYY-MM-DDTHH:MM")
		}
		sc.form = formOnce
		sc.once, err = parseCivil(dt)
	default:
		return sc, fmt.Errorf("unknown form %q (want every, daily, weekly, monthly, once or never)", w[0])
	}
	if err != nil {
		return Schedule{}, err
	}
	return sc, nil
}

// parseInterval parses an interval of whole minutes from 1m to 24h in Go's
// duration syntax (15m, 2h, 1h30m, 90m).
func parseInterval(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || strings.ContainsAny(s, "+-") {
		return 0, fmt.Errorf("interval %q: want a duration such as 15m, 2h or 1h30m", s)
	}
	if d%time.Minute != 0 || d < time.Minute || d > 24*time.Hour {
		return 0, fmt.Errorf("interval %q: want whole minutes from 1m to 24h", s)
	}
	return d, nil
}

func parseTimes(s string) ([]int, error) {
	var out []int
	for _, item := range strings.Split(s, ",") {
		m, err := parseClock(item)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// parseClock parses H:MM or HH:MM (00:00 to 23:59) into minutes after
// midnight.
func parseClock(s string) (int, error) {
	hs, ms, ok := strings.Cut(s, ":")
	h, err1 := parseDigits(hs, 1, 2)
	m, err2 := parseDigits(ms, 2, 2)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	if h > 23 || m > 59 {
		return 0, fmt.Errorf("time %q: want 00:00 to 23:59", s)
	}
	return h*60 + m, nil
}

// parseDigits parses a decimal number of minLen to maxLen ASCII digits.
func parseDigits(s string, minLen, maxLen int) (int, error) {
	if len(s) < minLen || len(s) > maxLen || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q: want %d to %d digits", s, minLen, maxLen)
	}
	return strconv.Atoi(s)
}

func dayName(d time.Weekday) string { return strings.ToLower(d.String()[:3]) }

func parseWeekday(s string) (time.Weekday, error) {
	for d := time.Sunday; d <= time.Saturday; d++ {
		if s == dayName(d) || s == strings.ToLower(d.String()) {
			return d, nil
		}
	}
	return 0, fmt.Errorf("day %q: want mon, tue, wed, thu, fri, sat or sun", s)
}

// parseWeekdays parses a comma-separated list of days and ranges (mon-fri,
// fri-mon) into a bit set.
func parseWeekdays(s string) (uint8, error) {
	var set uint8
	for _, item := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(item, "-")
		a, err := parseWeekday(from)
		if err != nil {
			return 0, err
		}
		b := a
		if isRange {
			if b, err = parseWeekday(to); err != nil {
				return 0, err
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			set |= 1 << d
			if d == b {
				break
			}
		}
	}
	return set, nil
}

func parseMonthDays(s string) ([]monthDay, error) {
	var out []monthDay
	for _, item := range strings.Split(s, ",") {
		var md monthDay
		switch nth, wd, ok := strings.Cut(item, "-"); {
		case item == "last":
			md.day = -1
		case ok:
			n, known := parseNth(nth)
			if !known {
				return nil, fmt.Errorf("day %q: want first-, second-, third-, fourth- or last-<weekday>", item)
			}
			d, err := parseWeekday(wd)
			if err != nil {
				return nil, fmt.Errorf("day %q: %w", item, err)
			}
			md.nth, md.wd = n, d
		default:
			d, err := parseDigits(item, 1, 2)
			if err != nil || d < 1 || d > 31 {
				return nil, fmt.Errorf("day %q: want 1 to 31, last or <nth>-<weekday> such as last-fri", item)
			}
			md.day = d
		}
		out = append(out, md)
	}
	slices.SortFunc(out, func(a, b monthDay) int { return a.sortKey() - b.sortKey() })
	return slices.Compact(out), nil
}

// parseCivil parses YYYY-MM-DDTHH:MM (lower case t: the input is lowered).
func parseCivil(s string) (civil, error) {
	date, clock, ok := strings.Cut(s, "t")
	bad := fmt.Errorf("date and time %q: want YYYY-MM-DDTHH:MM", s)
	if !ok {
		return civil{}, bad
	}
	parts := strings.Split(date, "-")
	if len(parts) != 3 {
		return civil{}, bad
	}
	y, err1 := parseDigits(parts[0], 4, 4)
	mo, err2 := parseDigits(parts[1], 2, 2)
	d, err3 := parseDigits(parts[2], 2, 2)
	if err1 != nil || err2 != nil || err3 != nil {
		return civil{}, bad
	}
	if y < 1970 || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, time.Month(mo)) {
		return civil{}, fmt.Errorf("date %q: no such day", date)
	}
	m, err := parseClock(clock)
	if err != nil {
		return civil{}, err
	}
	return civil{y, time.Month(mo), d, m}, nil
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func formatClock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

func formatInterval(d time.Duration) string {
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case h == 0:
		return fmt.Sprintf("%dm", m)
	case m == 0:
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dh%dm", h, m)
}

// String returns the canonical form of the expression: lower case, days
// and times sorted, e.g. "weekly sat,sun 03:00". Parse(s.String()) equals s.
func (s Schedule) String() string {
	var b strings.Builder
	b.WriteString(formNames[s.form])
	times := func() {
		b.WriteByte(' ')
		for i, m := range s.times {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(formatClock(m))
		}
	}
	switch s.form {
	case formEvery:
		b.WriteString(" " + formatInterval(s.every))
	case formDaily:
		times()
	case formWeekly:
		b.WriteByte(' ')
		first := true
		for _, d := range []time.Weekday{1, 2, 3, 4, 5, 6, 0} { // monday first
			if s.weekdays&(1<<d) != 0 {
				if !first {
					b.WriteByte(',')
				}
				b.WriteString(dayName(d))
				first = false
			}
		}
		times()
	case formMonthly:
		b.WriteByte(' ')
		for i, md := range s.mdays {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(md.String())
		}
		times()
	case formOnce:
		o := s.once
		fmt.Fprintf(&b, " %04d-%02d-%02dT%s", o.year, int(o.month), o.day, formatClock(o.minute))
	}
	return b.String()
}

// MarshalText returns the canonical form.
func (s Schedule) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses an expression.
func (s *Schedule) UnmarshalText(b []byte) error {
	sc, err := Parse(string(b))
	if err != nil {
		return err
	}
	*s = sc
	return nil
}

// IsNever reports whether s never runs ("never").
func (s Schedule) IsNever() bool { return s.form == formNever }

// IsOnce reports whether s is a one-off ("once …").
func (s Schedule) IsOnce() bool { return s.form == formOnce }

// searchDays bounds the days Next and Prev look through: every recurring
// form runs at least once a month.
const searchDays = 64

// Next returns the first run time strictly after after, in loc (nil means
// time.Local); false if there is none (never, or a once in the past).
//
// Times of day are local wall-clock times in loc. A time that does not
// exist because clocks go forward (02:30 on the day Europe/Berlin skips
// from 02:00 to 03:00) runs at the moment the clocks change (03:00 CEST);
// several such times run once. A time that happens twice because clocks go
// back runs at its first occurrence only, except in "every" schedules,
// which run at both so that the repeated hour is not left out.
func (s Schedule) Next(after time.Time, loc *time.Location) (time.Time, bool) {
	if loc == nil {
		loc = time.Local
	}
	switch s.form {
	case formNever:
		return time.Time{}, false
	case formOnce:
		if t := s.onceTime(loc); t.After(after) {
			return t, true
		}
		return time.Time{}, false
	}
	a := after.In(loc)
	for k := -1; k <= searchDays; k++ {
		for _, t := range s.on(a.Year(), a.Month(), a.Day()+k, loc) {
			if t.After(after) {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// Prev returns the last run time at or before t, in loc (nil means
// time.Local); false if there is none (never, or a once still ahead).
func (s Schedule) Prev(t time.Time, loc *time.Location) (time.Time, bool) {
	if loc == nil {
		loc = time.Local
	}
	switch s.form {
	case formNever:
		return time.Time{}, false
	case formOnce:
		if o := s.onceTime(loc); !o.After(t) {
			return o, true
		}
		return time.Time{}, false
	}
	a := t.In(loc)
	for k := 1; k >= -searchDays; k-- {
		ts := s.on(a.Year(), a.Month(), a.Day()+k, loc)
		for i := len(ts) - 1; i >= 0; i-- {
			if !ts[i].After(t) {
				return ts[i], true
			}
		}
	}
	return time.Time{}, false
}

func (s Schedule) onceTime(loc *time.Location) time.Time {
	o := s.once
	ts := resolve(o.year, o.month, o.day, o.minute, loc, false)
	return ts[0]
}

// on returns the run times of the local date y-m-d (normalized, so d may
// be out of range) in ascending order.
func (s Schedule) on(y int, m time.Month, d int, loc *time.Location) []time.Time {
	date := time.Date(y, m, d, 12, 0, 0, 0, time.UTC)
	y, m, d = date.Date()
	switch s.form {
	case formWeekly:
		if s.weekdays&(1<<date.Weekday()) == 0 {
			return nil
		}
	case formMonthly:
		n := daysIn(y, m)
		first := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC).Weekday()
		if !slices.ContainsFunc(s.mdays, func(md monthDay) bool { return md.matches(d, n, first) }) {
			return nil
		}
	}
	minutes := s.times
	if s.form == formEvery {
		minutes = make([]int, 0, 24*60*time.Minute/s.every)
		for min := 0; min < 24*60; min += int(s.every / time.Minute) {
			minutes = append(minutes, min)
		}
	}
	out := make([]time.Time, 0, len(minutes))
	midnight := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()
	// Most days are far from a change of UTC offset: one offset for all.
	t0 := time.Unix(midnight-farOffset, 0).In(loc)
	if _, end := t0.ZoneBounds(); end.IsZero() || end.Unix() > midnight+86400+farOffset {
		_, off := t0.Zone()
		for _, min := range minutes {
			out = append(out, time.Unix(midnight+int64(min)*60-int64(off), 0).In(loc))
		}
		return out
	}
	for _, min := range minutes {
		out = append(out, resolve(y, m, d, min, loc, s.form == formEvery)...)
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return slices.CompactFunc(out, time.Time.Equal)
}

// farOffset is more than any UTC offset, in seconds.
const farOffset = 30 * 3600

// offsetAt returns loc's UTC offset in seconds at Unix time u.
func offsetAt(u int64, loc *time.Location) int64 {
	_, off := time.Unix(u, 0).In(loc).Zone()
	return int64(off)
}

// resolve returns the instants at which the wall clock in loc shows the
// given local date and minute of the day: one, or two when clocks go back
// and all is set (only the first otherwise). A wall time that clocks skip
// resolves to the instant the clocks change.
func resolve(y int, m time.Month, d, minute int, loc *time.Location, all bool) []time.Time {
	wall := time.Date(y, m, d, 0, minute, 0, 0, time.UTC).Unix()
	before, after := offsetAt(wall-farOffset, loc), offsetAt(wall+farOffset, loc)
	var out []time.Time
	for _, off := range []int64{before, offsetAt(wall, loc), after} {
		u := wall - off
		if offsetAt(u, loc) != off {
			continue
		}
		t := time.Unix(u, 0).In(loc)
		if !slices.ContainsFunc(out, t.Equal) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		// In a gap: find the first instant after it. The offset at
		// wall-after is before's, the offset at wall-before is after's.
		lo, hi := wall-after, wall-before
		if lo > hi {
			lo, hi = hi, lo
		}
		target := offsetAt(hi, loc)
		for lo+1 < hi {
			mid := lo + (hi-lo)/2
			if offsetAt(mid, loc) == target {
				hi = mid
			} else {
				lo = mid
			}
		}
		return []time.Time{time.Unix(hi, 0).In(loc)}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	if !all {
		out = out[:1]
	}
	return out
}
