package retention

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "36h", want: 36 * time.Hour},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "2w", want: 14 * 24 * time.Hour},
		{in: "6m", want: 180 * 24 * time.Hour},
		{in: "1y", want: 365 * 24 * time.Hour},
		{in: "1y6m", want: 545 * 24 * time.Hour},
		{in: "1w3d12h", want: (10*24 + 12) * time.Hour},
		{in: "1Y6M", want: 545 * 24 * time.Hour},
		{in: " 0d ", want: 0},
		{in: "007d", want: 7 * 24 * time.Hour},
		{in: "292y", want: 292 * 365 * 24 * time.Hour},
		{in: "", err: "empty"},
		{in: "7", err: "want <number><unit>"},
		{in: "d", err: "want <number><unit>"},
		{in: "7x", err: "unit 'x' unknown"},
		{in: "6m1y", err: "out of order"},
		{in: "1d1d", err: "repeated"},
		{in: "1.5d", err: "unit '.'"},
		{in: "-1d", err: "want <number><unit>"},
		{in: "1d 2h", err: "want <number><unit>"},
		{in: "293y", err: "too long"},
		{in: "292y6m", err: "too long"},
		{in: "2562047h", want: 2562047 * time.Hour},
		{in: "2562048h", err: "too long"},
		{in: "99999999999999999999d", err: "out of range"},
	}
	for _, tc := range tests {
		got, err := ParseDuration(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDuration(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0h"},
		{36 * time.Hour, "1d12h"},
		{7 * Day, "7d"},
		{14 * Day, "14d"},
		{30 * Day, "1m"},
		{31 * Day, "1m1d"},
		{Year + 6*Month, "1y6m"},
		{Year + 2*Day + 3*time.Hour, "1y2d3h"},
		{90 * time.Minute, "1h30m0s"},
		{-time.Hour, "-1h0m0s"},
	}
	for _, tc := range tests {
		if got := FormatDuration(tc.in); got != tc.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseWeekday(t *testing.T) {
	tests := []struct {
		in   string
		want time.Weekday
		ok   bool
	}{
		{"sat", time.Saturday, true},
		{"saturday", time.Saturday, true},
		{"SAT", time.Saturday, true},
		{" Sunday ", time.Sunday, true},
		{"mon", time.Monday, true},
		{"tue", time.Tuesday, true},
		{"wednesday", time.Wednesday, true},
		{"thu", time.Thursday, true},
		{"fri", time.Friday, true},
		{"sa", 0, false},
		{"satur", 0, false},
		{"6", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseWeekday(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseWeekday(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseMonthDay(t *testing.T) {
	tests := []struct {
		in   string
		want MonthDay
		ok   bool
	}{
		{"01-01", MonthDay{time.January, 1}, true},
		{"12-31", MonthDay{time.December, 31}, true},
		{"2-29", MonthDay{time.February, 29}, true},
		{"04-30", MonthDay{time.April, 30}, true},
		{"02-30", MonthDay{}, false},
		{"04-31", MonthDay{}, false},
		{"13-01", MonthDay{}, false},
		{"00-10", MonthDay{}, false},
		{"01-00", MonthDay{}, false},
		{"0101", MonthDay{}, false},
		{"001-01", MonthDay{}, false},
		{"01-1a", MonthDay{}, false},
		{"-01", MonthDay{}, false},
		{"", MonthDay{}, false},
	}
	for _, tc := range tests {
		got, err := ParseMonthDay(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseMonthDay(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err == nil {
			if s := got.String(); len(s) != 5 || s[2] != '-' {
				t.Errorf("MonthDay(%q).String() = %q, want MM-DD", tc.in, s)
			} else if back, err := ParseMonthDay(s); err != nil || back != got {
				t.Errorf("ParseMonthDay(%q) = %v, %v; want %v", s, back, err, got)
			}
		}
	}
}

func TestParseMonthlyOn(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"1", 1, true},
		{"15", 15, true},
		{"31", 31, true},
		{"01", 1, true},
		{"last", -1, true},
		{"LAST", -1, true},
		{"0", 0, false},
		{"32", 0, false},
		{"-1", 0, false},
		{"first", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseMonthlyOn(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseMonthlyOn(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// FuzzParseDuration checks that ParseDuration never panics, never returns a
// negative duration, and that FormatDuration gives back what it parsed.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"36h", "7d", "2w", "6m", "1y", "1y6m", "1w3d12h", "292y", "0d", "9223372036854775807h", "1y1y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 || d > math.MaxInt64 {
			t.Fatalf("ParseDuration(%q) = %v", s, d)
		}
		back, err := ParseDuration(FormatDuration(d))
		if err != nil || back != d {
			t.Fatalf("ParseDuration(FormatDuration(%v) = %q) = %v, %v", d, FormatDuration(d), back, err)
		}
	})
}
