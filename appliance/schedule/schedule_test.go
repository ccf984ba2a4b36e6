package schedule

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zones on machines without a zoneinfo database
)

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want string // canonical form
		err  string
	}{
		{in: "never", want: "never"},
		{in: "every 15m", want: "every 15m"},
		{in: "every 2h", want: "every 2h"},
		{in: "EVERY 90m", want: "every 1h30m"},
		{in: "every 1h30m", want: "every 1h30m"},
		{in: "every 24h", want: "every 24h"},
		{in: "every 1m", want: "every 1m"},
		{in: "  daily   02:00,14:00 ", want: "daily 02:00,14:00"},
		{in: "daily 14:00,2:00,02:00", want: "daily 02:00,14:00"},
		{in: "weekly sat,sun 03:00", want: "weekly sat,sun 03:00"},
		{in: "weekly Sunday,Saturday 03:00", want: "weekly sat,sun 03:00"},
		{in: "weekly mon-fri 18:30", want: "weekly mon,tue,wed,thu,fri 18:30"},
		{in: "weekly fri-mon 01:00", want: "weekly mon,fri,sat,sun 01:00"},
		{in: "weekly sun 00:00,23:59", want: "weekly sun 00:00,23:59"},
		{in: "monthly 1 04:00", want: "monthly 1 04:00"},
		{in: "monthly 15,1,last 04:00", want: "monthly 1,15,last 04:00"},
		{in: "monthly last 04:00", want: "monthly last 04:00"},
		{in: "monthly last-fri 22:00", want: "monthly last-fri 22:00"},
		{in: "monthly first-mon,third-wed 22:00", want: "monthly first-mon,third-wed 22:00"},
		{in: "monthly 31 04:00", want: "monthly 31 04:00"},
		{in: "once 2026-12-24T18:00", want: "once 2026-12-24T18:00"},
		{in: "once 2026-12-24 18:00", want: "once 2026-12-24T18:00"},
		{in: "once 2028-02-29T00:00", want: "once 2028-02-29T00:00"},

		{in: "", err: "empty"},
		{in: "   ", err: "empty"},
		{in: "evry 5m", err: `unknown form "evry"`},
		{in: "never again", err: "want"},
		{in: "every", err: "want"},
		{in: "every 5", err: "interval"},
		{in: "every 30s", err: "whole minutes"},
		{in: "every 90s", err: "whole minutes"},
		{in: "every 0m", err: "whole minutes"},
		{in: "every -5m", err: "interval"},
		{in: "every +5m", err: "interval"},
		{in: "every 25h", err: "whole minutes from 1m to 24h"},
		{in: "every 5m 10m", err: "want"},
		{in: "daily", err: "want"},
		{in: "daily 24:00", err: "00:00 to 23:59"},
		{in: "daily 12:60", err: "00:00 to 23:59"},
		{in: "daily 12", err: "HH:MM"},
		{in: "daily 12:0", err: "HH:MM"},
		{in: "daily 123:00", err: "HH:MM"},
		{in: "daily 02:00,", err: "HH:MM"},
		{in: "daily 02:00 14:00", err: "want"},
		{in: "weekly 03:00", err: "want"},
		{in: "weekly sat,sunday,xyz 03:00", err: `day "xyz"`},
		{in: "weekly sat-xyz 03:00", err: `day "xyz"`},
		{in: "monthly 0 04:00", err: "want 1 to 31"},
		{in: "monthly 32 04:00", err: "want 1 to 31"},
		{in: "monthly fifth-fri 04:00", err: "first-, second-"},
		{in: "monthly last-xyz 04:00", err: `day "xyz"`},
		{in: "monthly 04:00", err: "want"},
		{in: "once 2026-02-30T18:00", err: "no such day"},
		{in: "once 2026-12-24", err: "YYYY-MM-DDTHH:MM"},
		{in: "once 26-12-24T18:00", err: "YYYY-MM-DDTHH:MM"},
		{in: "once 2026-12-24T25:00", err: "00:00 to 23:59"},
		{in: "once 2026-12-24 18:00 x", err: "want"},
		{in: "daily " + strings.Repeat("01:00,", 200) + "01:00", err: "longer than"},
	}
	for _, tc := range tests {
		s, err := Parse(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) = %v, %v; want error containing %q", tc.in, s, err, tc.err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "schedule \"") {
				t.Errorf("Parse(%q) error %q does not name the expression", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got := s.String(); got != tc.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
		again, err := Parse(s.String())
		if err != nil || again.String() != s.String() {
			t.Errorf("Parse(%q) does not round-trip: %v, %v", s.String(), again, err)
		}
	}
}

func TestTextMarshaling(t *testing.T) {
	var s Schedule
	if err := s.UnmarshalText([]byte("weekly SAT 3:00")); err != nil {
		t.Fatal(err)
	}
	b, _ := s.MarshalText()
	if string(b) != "weekly sat 03:00" {
		t.Errorf("MarshalText = %q", b)
	}
	if err := s.UnmarshalText([]byte("hourly")); err == nil {
		t.Error("UnmarshalText accepted hourly")
	}
	var zero Schedule
	if !zero.IsNever() || zero.String() != "never" {
		t.Errorf("zero Schedule is %q", zero)
	}
}

func TestNext(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	lordHowe := mustLoad(t, "Australia/Lord_Howe") // DST of 30 minutes
	at := func(loc *time.Location, s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	utc := func(s string) time.Time { return at(time.UTC, s) }
	b := func(s string) time.Time { return at(berlin, s) }
	none := time.Time{}
	tests := []struct {
		sched string
		loc   *time.Location
		after time.Time
		want  time.Time // zero: no next run
	}{
		// every: slots from local midnight
		{"every 15m", berlin, b("2026-01-10 10:07"), b("2026-01-10 10:15")},
		{"every 15m", berlin, b("2026-01-10 10:15"), b("2026-01-10 10:30")},
		{"every 2h", berlin, b("2026-01-10 23:30"), b("2026-01-11 00:00")},
		{"every 7h", berlin, b("2026-01-10 14:00"), b("2026-01-10 21:00")},
		{"every 7h", berlin, b("2026-01-10 21:00"), b("2026-01-11 00:00")},
		{"every 24h", berlin, b("2026-01-10 00:00"), b("2026-01-11 00:00")},
		{"every 1m", time.UTC, utc("2026-01-10 23:59"), utc("2026-01-11 00:00")},
		// daily, weekly
		{"daily 02:00,14:00", berlin, b("2026-01-10 02:00"), b("2026-01-10 14:00")},
		{"daily 02:00,14:00", berlin, b("2026-01-10 15:00"), b("2026-01-11 02:00")},
		{"daily 00:00", berlin, b("2026-12-31 23:59"), b("2027-01-01 00:00")},
		{"weekly sat,sun 03:00", berlin, b("2026-01-09 12:00"), b("2026-01-10 03:00")},
		{"weekly sat,sun 03:00", berlin, b("2026-01-10 03:00"), b("2026-01-11 03:00")},
		{"weekly sat,sun 03:00", berlin, b("2026-01-11 04:00"), b("2026-01-17 03:00")},
		{"weekly mon-fri 18:30", berlin, b("2026-01-09 19:00"), b("2026-01-12 18:30")},
		// monthly
		{"monthly 1 04:00", berlin, b("2026-01-01 04:00"), b("2026-02-01 04:00")},
		{"monthly 1 04:00", berlin, b("2026-12-15 00:00"), b("2027-01-01 04:00")},
		{"monthly last 04:00", berlin, b("2026-02-10 00:00"), b("2026-02-28 04:00")},
		{"monthly last 04:00", berlin, b("2028-02-10 00:00"), b("2028-02-29 04:00")},
		{"monthly last 04:00", berlin, b("2026-02-28 04:00"), b("2026-03-31 04:00")},
		// a day past the month's end runs on its last day
		{"monthly 31 04:00", berlin, b("2026-02-01 00:00"), b("2026-02-28 04:00")},
		{"monthly 31 04:00", berlin, b("2026-02-28 04:00"), b("2026-03-31 04:00")},
		{"monthly 31 04:00", berlin, b("2026-04-01 00:00"), b("2026-04-30 04:00")},
		{"monthly 29,30,31 04:00", berlin, b("2026-02-01 00:00"), b("2026-02-28 04:00")},
		{"monthly 29,30,31 04:00", berlin, b("2026-02-28 04:00"), b("2026-03-29 04:00")},
		{"monthly 30 04:00", berlin, b("2028-02-01 00:00"), b("2028-02-29 04:00")},
		// nth weekdays: January 2026 starts on a Thursday
		{"monthly last-fri 22:00", berlin, b("2026-01-01 00:00"), b("2026-01-30 22:00")},
		{"monthly last-fri 22:00", berlin, b("2026-01-30 22:00"), b("2026-02-27 22:00")},
		{"monthly first-mon 01:00", berlin, b("2026-01-01 00:00"), b("2026-01-05 01:00")},
		{"monthly first-thu 01:00", berlin, b("2026-01-01 00:00"), b("2026-01-01 01:00")},
		{"monthly fourth-thu 01:00", berlin, b("2026-01-01 02:00"), b("2026-01-22 01:00")},
		{"monthly second-sun 01:00", berlin, b("2026-01-01 00:00"), b("2026-01-11 01:00")},
		// once
		{"once 2026-12-24T18:00", berlin, b("2026-01-01 00:00"), b("2026-12-24 18:00")},
		{"once 2026-12-24T18:00", berlin, b("2026-12-24 18:00"), none},
		{"once 2026-12-24T18:00", berlin, b("2027-01-01 00:00"), none},
		{"never", berlin, b("2026-01-01 00:00"), none},

		// Spring forward in Berlin, 2026-03-29: 02:00 CET → 03:00 CEST
		// (01:00 UTC). Skipped times run at 03:00 CEST, once.
		{"daily 02:30", berlin, b("2026-03-29 00:00"), utc("2026-03-29 01:00")},
		{"daily 02:30", berlin, utc("2026-03-29 01:00"), b("2026-03-30 02:30")},
		{"daily 02:00,02:30,03:00", berlin, b("2026-03-29 00:00"), utc("2026-03-29 01:00")},
		{"daily 02:00,02:30,03:00", berlin, utc("2026-03-29 01:00"), b("2026-03-30 02:00")},
		{"daily 03:00", berlin, b("2026-03-29 00:00"), utc("2026-03-29 01:00")},
		{"every 15m", berlin, b("2026-03-29 01:50"), utc("2026-03-29 01:00")},
		{"every 15m", berlin, utc("2026-03-29 01:00"), b("2026-03-29 03:15")},
		{"once 2026-03-29T02:30", berlin, b("2026-03-29 00:00"), utc("2026-03-29 01:00")},
		{"weekly sun 02:30", berlin, b("2026-03-28 12:00"), utc("2026-03-29 01:00")},

		// Fall back in Berlin, 2026-10-25: 03:00 CEST → 02:00 CET (01:00
		// UTC). 02:30 happens twice: daily runs at the first only, every
		// at both.
		{"daily 02:30", berlin, b("2026-10-25 00:00"), utc("2026-10-25 00:30")},
		{"daily 02:30", berlin, utc("2026-10-25 00:30"), b("2026-10-26 02:30")},
		{"every 30m", berlin, utc("2026-10-25 00:30"), utc("2026-10-25 01:00")},
		{"every 30m", berlin, utc("2026-10-25 01:00"), utc("2026-10-25 01:30")},
		{"every 30m", berlin, utc("2026-10-25 01:30"), utc("2026-10-25 02:00")},
		{"every 2h", berlin, utc("2026-10-24 23:00"), utc("2026-10-25 00:00")}, // 02:00 CEST
		{"every 2h", berlin, utc("2026-10-25 00:00"), utc("2026-10-25 01:00")}, // 02:00 CET
		{"every 2h", berlin, utc("2026-10-25 01:00"), utc("2026-10-25 03:00")}, // 04:00 CET

		// Lord Howe goes from 02:00 to 02:30 on 2026-10-04.
		{"daily 02:15", lordHowe, at(lordHowe, "2026-10-04 00:00"), at(lordHowe, "2026-10-04 02:30")},
		{"daily 02:30", lordHowe, at(lordHowe, "2026-10-04 00:00"), at(lordHowe, "2026-10-04 02:30")},
		// nil location is time.Local
		{"every 1h", nil, time.Date(2026, 1, 1, 5, 30, 0, 0, time.Local), time.Date(2026, 1, 1, 6, 0, 0, 0, time.Local)},
	}
	for _, tc := range tests {
		s := MustParse(tc.sched)
		got, ok := s.Next(tc.after, tc.loc)
		if ok != !tc.want.IsZero() || !got.Equal(tc.want) {
			t.Errorf("%q.Next(%v) = %v, %v; want %v", tc.sched, tc.after, got, ok, tc.want)
			continue
		}
		if !ok {
			continue
		}
		// Prev of a run time is that run time; just before it, an earlier one.
		if p, ok := s.Prev(got, tc.loc); !ok || !p.Equal(got) {
			t.Errorf("%q.Prev(%v) = %v, %v; want itself", tc.sched, got, p, ok)
		}
		if p, ok := s.Prev(got.Add(-time.Second), tc.loc); ok && !p.Before(got) {
			t.Errorf("%q.Prev(%v - 1s) = %v", tc.sched, got, p)
		}
	}
}

// TestRunsPerDay counts runs over whole local days, DST days included.
func TestRunsPerDay(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	tests := []struct {
		sched string
		day   string
		want  int
	}{
		{"every 1h", "2026-01-10", 24},
		{"every 1h", "2026-03-29", 23}, // 02:00 does not exist
		{"every 1h", "2026-10-25", 25}, // 02:00 happens twice
		{"every 15m", "2026-03-29", 92},
		{"every 15m", "2026-10-25", 100},
		{"every 1m", "2026-01-10", 1440},
		{"every 5m", "2026-10-25", 300},
		{"every 7h", "2026-01-10", 4},
		{"daily 02:30", "2026-03-29", 1},
		{"daily 02:30", "2026-10-25", 1},
		{"daily 00:00,23:59", "2026-10-25", 2},
	}
	for _, tc := range tests {
		start, _ := time.ParseInLocation("2006-01-02", tc.day, berlin)
		end := start.AddDate(0, 0, 1)
		s := MustParse(tc.sched)
		n := 0
		for t0 := start.Add(-time.Nanosecond); ; n++ {
			next, ok := s.Next(t0, berlin)
			if !ok || !next.Before(end) {
				break
			}
			t0 = next
		}
		if n != tc.want {
			t.Errorf("%q on %s: %d runs, want %d", tc.sched, tc.day, n, tc.want)
		}
	}
}

// TestNextPrevConsistent walks a year and more of several schedules in
// several zones: Next is increasing, Prev finds the same run times walking
// back.
func TestNextPrevConsistent(t *testing.T) {
	locs := []*time.Location{time.UTC, mustLoad(t, "Europe/Berlin"), mustLoad(t, "America/Santiago"),
		mustLoad(t, "Australia/Lord_Howe"), time.FixedZone("+0530", 5*3600+1800)}
	scheds := []string{"every 5h", "daily 00:00,02:30,23:59", "weekly sun,wed 02:30", "monthly 31,last-sun 00:30",
		"monthly first-mon 23:00"}
	for _, loc := range locs {
		for _, src := range scheds {
			s := MustParse(src)
			t0 := time.Date(2025, 12, 1, 0, 0, 0, 0, loc)
			var runs []time.Time
			for cur := t0; cur.Before(t0.AddDate(1, 2, 0)); {
				next, ok := s.Next(cur, loc)
				if !ok || !next.After(cur) {
					t.Fatalf("%s %q: Next(%v) = %v, %v", loc, src, cur, next, ok)
				}
				runs = append(runs, next)
				cur = next
			}
			for i := len(runs) - 1; i > 0; i-- {
				p, ok := s.Prev(runs[i].Add(-time.Nanosecond), loc)
				if !ok || !p.Equal(runs[i-1]) {
					t.Fatalf("%s %q: Prev(%v - 1ns) = %v, %v; want %v", loc, src, runs[i], p, ok, runs[i-1])
				}
			}
		}
	}
}

func BenchmarkNextEveryMinute(b *testing.B) {
	berlin := mustLoad(b, "Europe/Berlin")
	s := MustParse("every 1m")
	for _, day := range []int{10, 25} { // an ordinary day, the day clocks go back
		t0 := time.Date(2026, 10, day, 1, 0, 0, 0, berlin)
		b.Run(t0.Format("2006-01-02"), func(b *testing.B) {
			for b.Loop() {
				s.Next(t0, berlin)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"never", "every 15m", "every 1h30m", "daily 02:00,14:00", "weekly sat,sun 03:00",
		"weekly fri-mon 1:00", "monthly 1,last 04:00", "monthly last-fri 22:00", "once 2026-12-24T18:00",
		"once 2026-03-29 02:30", "monthly 31 4:00"} {
		f.Add(s, int64(1774746000)) // 2026-03-29 01:00 UTC
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string, unix int64) {
		s, err := Parse(in)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "schedule ") {
				t.Fatalf("error %q does not start with the package's name", err)
			}
			return
		}
		again, err := Parse(s.String())
		if err != nil || again.String() != s.String() {
			t.Fatalf("%q: canonical %q does not round-trip: %q, %v", in, s, again, err)
		}
		after := time.Unix(unix%(200*365*86400), 0) // 1970 … 2170
		if next, ok := s.Next(after, berlin); ok {
			if !next.After(after) {
				t.Fatalf("%q.Next(%v) = %v", s, after, next)
			}
			if p, ok := s.Prev(next, berlin); !ok || !p.Equal(next) {
				t.Fatalf("%q.Prev(%v) = %v, %v", s, next, p, ok)
			}
		} else if !s.IsNever() && !s.IsOnce() {
			t.Fatalf("%q.Next(%v): none", s, after)
		}
		if prev, ok := s.Prev(after, berlin); ok && prev.After(after) {
			t.Fatalf("%q.Prev(%v) = %v", s, after, prev)
		}
	})
}
