package retention

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Lengths of the units of ParseDuration. Months and years have fixed
// lengths: a duration is a length of time, not a calendar step.
const (
	Day   = 24 * time.Hour
	Week  = 7 * Day
	Month = 30 * Day
	Year  = 365 * Day
)

// durationUnits in the order they must appear in a duration.
var durationUnits = [...]struct {
	suffix byte
	length time.Duration
}{
	{'y', Year}, {'m', Month}, {'w', Week}, {'d', Day}, {'h', time.Hour},
}

// ParseDuration parses a retention duration: one or more <count><unit>
// terms with units y (365 days), m (30 days), w (7 days), d (24 hours) and
// h (hour), largest unit first, each unit at most once, case-insensitive:
// "36h", "7d", "2w", "6m", "1y", "1y6m", "1w3d12h".
func ParseDuration(s string) (time.Duration, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	if in == "" {
		return 0, fmt.Errorf("retention: parse duration %q: empty", s)
	}
	var total time.Duration
	next := 0 // index of the first unit still allowed
	for in != "" {
		i := 0
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == 0 || i == len(in) {
			return 0, fmt.Errorf("retention: parse duration %q: want <number><unit> terms with units y, m, w, d, h", s)
		}
		n, err := strconv.ParseInt(in[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("retention: parse duration %q: %w", s, err)
		}
		u := next
		for u < len(durationUnits) && durationUnits[u].suffix != in[i] {
			u++
		}
		if u == len(durationUnits) {
			return 0, fmt.Errorf("retention: parse duration %q: unit %q unknown, repeated or out of order (use y, m, w, d, h, largest first)", s, in[i])
		}
		next = u + 1
		length := durationUnits[u].length
		if n > int64(math.MaxInt64-total)/int64(length) {
			return 0, fmt.Errorf("retention: parse duration %q: too long", s)
		}
		total += time.Duration(n) * length
		in = in[i+1:]
	}
	return total, nil
}

// FormatDuration formats d in the units of ParseDuration (years, months,
// days, hours; "0h" for zero), so that ParseDuration(FormatDuration(d)) == d
// for every whole number of hours. Other durations are formatted by
// time.Duration.String.
func FormatDuration(d time.Duration) string {
	if d < 0 || d%time.Hour != 0 {
		return d.String()
	}
	if d == 0 {
		return "0h"
	}
	var b strings.Builder
	for _, u := range durationUnits {
		if u.suffix == 'w' {
			continue // 14d reads better than 2w once months and years are involved
		}
		if n := d / u.length; n > 0 {
			fmt.Fprintf(&b, "%d%c", n, u.suffix)
			d -= n * u.length
		}
	}
	return b.String()
}

// ParseWeekday parses a weekday by its English name or three-letter
// abbreviation, case-insensitive: "sat", "Saturday".
func ParseWeekday(s string) (time.Weekday, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	for d := time.Sunday; d <= time.Saturday; d++ {
		if in == strings.ToLower(d.String()) || in == weekdayName(d) {
			return d, nil
		}
	}
	return 0, fmt.Errorf("retention: parse weekday %q: want a day name such as sat or saturday", s)
}

// ParseMonthDay parses a day of the year as MM-DD ("01-01", "12-31"; one
// digit is accepted too). The day must exist in some year: 02-29 is
// accepted (and means 02-28 in common years), 02-30 and 04-31 are not.
func ParseMonthDay(s string) (MonthDay, error) {
	ms, ds, ok := strings.Cut(strings.TrimSpace(s), "-")
	m, err1 := parseSmall(ms)
	d, err2 := parseSmall(ds)
	if !ok || err1 != nil || err2 != nil {
		return MonthDay{}, fmt.Errorf("retention: parse month-day %q: want MM-DD", s)
	}
	md := MonthDay{Month: time.Month(m), Day: d}
	if err := checkMonthDay(md); err != nil {
		return MonthDay{}, fmt.Errorf("retention: parse month-day %q: %w", s, err)
	}
	return md, nil
}

// parseSmall parses one or two decimal digits.
func parseSmall(s string) (int, error) {
	if len(s) < 1 || len(s) > 2 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a one- or two-digit number: %q", s)
	}
	return strconv.Atoi(s)
}

// ParseMonthlyOn parses a monthly anchor: a day of the month "1".."31"
// (clamped to each month's length), or "last" for the last day (-1).
func ParseMonthlyOn(s string) (int, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	if in == "last" {
		return -1, nil
	}
	d, err := parseSmall(in)
	if err != nil || d < 1 || d > 31 {
		return 0, fmt.Errorf("retention: parse monthly anchor %q: want a day 1..31 or \"last\"", s)
	}
	return d, nil
}
