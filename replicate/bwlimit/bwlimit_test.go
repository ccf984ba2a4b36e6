package bwlimit

import (
	"context"
	"testing"
	"time"
)

func TestParseAndRate(t *testing.T) {
	sch, err := Parse("2MB/s Mon-Fri 08:00-18:00; 500KiB/s Sat,Sun 22:00-06:00")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		when string
		want float64
	}{
		{"2026-11-23 09:00", 2e6},       // Monday in hours
		{"2026-11-23 18:00", 0},         // Monday, end excluded
		{"2026-11-23 07:59", 0},         // Monday before
		{"2026-11-27 17:59", 2e6},       // Friday
		{"2026-11-28 12:00", 0},         // Saturday noon
		{"2026-11-28 23:00", 500 << 10}, // Saturday night
		{"2026-11-29 05:00", 500 << 10}, // Sunday early, over midnight
	}
	for _, c := range cases {
		if got := sch.RateAt(at(c.when)); got != c.want {
			t.Errorf("%s: rate %v, want %v", c.when, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"fast", "2MB/s Funday", "2MB/s 8-18", "2MB/s 08:00-25:00", "10B/s"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
	for _, s := range []string{"", "unlimited", "2MB/s", "1.5MiB/s Mon 00:00-24:00"} {
		if _, err := Parse(s); err != nil {
			t.Errorf("Parse(%q): %v", s, err)
		}
	}
}

// The limiter paces to the rate within a few percent (the ±10% over 20 s
// end-to-end measurement is in the replicate tests).
func TestLimiterPaces(t *testing.T) {
	sch, _ := Parse("4MB/s")
	l := New(sch, nil)
	start := time.Now()
	const total = 2e6
	for sent := 0; sent < total; sent += 16 << 10 {
		if err := l.WaitN(context.Background(), 16<<10); err != nil {
			t.Fatal(err)
		}
	}
	el := time.Since(start).Seconds()
	if el < 0.4 || el > 1.5 {
		t.Fatalf("2 MB at 4 MB/s took %.2f s, want about 0.5", el)
	}
}
