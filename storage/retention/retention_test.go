package retention

import (
	"reflect"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin on machines without a zoneinfo database
)

const (
	idLayout  = "2006-01-02 15:04"     // snapshot ids and times in most cases
	idLayoutZ = "2006-01-02 15:04 MST" // where a local time repeats (DST)
)

// parseLocal parses "2006-01-02 15:04" or "2006-01-02 15:04 MST" in loc.
func parseLocal(t testing.TB, loc *time.Location, s string) time.Time {
	t.Helper()
	layout := idLayout
	if len(s) > len(idLayout) {
		layout = idLayoutZ
	}
	tm, err := time.ParseInLocation(layout, s, loc)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return tm
}

// gen builds the snapshots of a case in its time zone.
type gen func(t testing.TB, loc *time.Location) []Snapshot

// days returns one snapshot a day at the same local time, from..to inclusive.
func days(from, to string) gen {
	return func(t testing.TB, loc *time.Location) []Snapshot {
		var out []Snapshot
		end := parseLocal(t, loc, to)
		for tm := parseLocal(t, loc, from); !tm.After(end); tm = tm.AddDate(0, 0, 1) {
			out = append(out, Snapshot{ID: tm.Format(idLayout), Time: tm})
		}
		return out
	}
}

// every returns a snapshot every step of elapsed time, from..to inclusive,
// with ids that name the zone.
func every(from, to string, step time.Duration) gen {
	return func(t testing.TB, loc *time.Location) []Snapshot {
		var out []Snapshot
		end := parseLocal(t, loc, to)
		for tm := parseLocal(t, loc, from); !tm.After(end); tm = tm.Add(step) {
			out = append(out, Snapshot{ID: tm.Format(idLayoutZ), Time: tm})
		}
		return out
	}
}

// at returns snapshots at the given local times; a leading "A " marks an
// archived one. The id is the time as written.
func at(times ...string) gen {
	return func(t testing.TB, loc *time.Location) []Snapshot {
		var out []Snapshot
		for _, s := range times {
			archived := strings.HasPrefix(s, "A ")
			s = strings.TrimPrefix(s, "A ")
			out = append(out, Snapshot{ID: s, Time: parseLocal(t, loc, s), Archived: archived})
		}
		return out
	}
}

func join(gens ...gen) gen {
	return func(t testing.TB, loc *time.Location) []Snapshot {
		var out []Snapshot
		for _, g := range gens {
			out = append(out, g(t, loc)...)
		}
		return out
	}
}

func wd(d time.Weekday) *time.Weekday { return &d }

type applyCase struct {
	name    string
	zone    string // "" = UTC
	now     string
	snaps   gen
	policy  Policy
	keep    []string            // ids kept, newest first
	reasons map[string][]string // reasons of some kept snapshots
}

var applyCases = []applyCase{
	{
		name:   "daily series over two years, calendar buckets",
		now:    "2025-11-20 12:00",
		snaps:  days("2024-01-01 03:00", "2025-11-20 03:00"),
		policy: Policy{Daily: 7, Weekly: 4, Monthly: 6, Yearly: 3},
		keep: []string{
			"2025-11-20 03:00", "2025-11-19 03:00", "2025-11-18 03:00", "2025-11-17 03:00",
			"2025-11-16 03:00", "2025-11-15 03:00", "2025-11-14 03:00", // daily 7
			"2025-11-09 03:00", "2025-11-02 03:00", // weekly: W47 (20th), W46 (16th), W45, W44
			"2025-10-31 03:00", "2025-09-30 03:00", "2025-08-31 03:00", "2025-07-31 03:00", "2025-06-30 03:00", // monthly
			"2024-12-31 03:00", // yearly: only two years exist
		},
		reasons: map[string][]string{
			"2025-11-20 03:00": {"daily 2025-11-20", "weekly 2025-W47", "monthly 2025-11", "yearly 2025"},
			"2025-11-16 03:00": {"daily 2025-11-16", "weekly 2025-W46"},
			"2025-11-14 03:00": {"daily 2025-11-14"},
			"2025-06-30 03:00": {"monthly 2025-06"},
			"2024-12-31 03:00": {"yearly 2024"},
		},
	},
	{
		name:  "daily series over two years, anchored buckets",
		now:   "2025-11-20 12:00", // a Thursday
		snaps: days("2024-01-01 03:00", "2025-11-20 03:00"),
		policy: Policy{
			Weekly: 3, WeeklyOn: wd(time.Saturday),
			Monthly: 4, MonthlyOn: 31,
			Quarterly: 3,
			Yearly:    2, YearlyOn: &MonthDay{time.January, 1},
		},
		keep: []string{
			"2025-11-15 03:00", "2025-11-08 03:00", "2025-11-01 03:00", // saturdays
			"2025-10-31 03:00", "2025-10-01 03:00", "2025-09-30 03:00", "2025-08-31 03:00",
			"2025-07-31 03:00", "2025-07-01 03:00", "2025-04-01 03:00",
			"2025-01-01 03:00", "2024-01-01 03:00",
		},
		reasons: map[string][]string{
			"2025-11-15 03:00": {"weekly anchor 2025-11-15 (sat)"},
			"2025-10-31 03:00": {"monthly anchor 2025-10-31 (fri)"},
			"2025-09-30 03:00": {"monthly anchor 2025-09-30 (tue)"},
			"2025-10-01 03:00": {"quarterly anchor 2025-10-01 (wed)"},
			"2025-01-01 03:00": {"yearly anchor 2025-01-01 (wed)"},
			"2024-01-01 03:00": {"yearly anchor 2024-01-01 (mon)"},
		},
	},
	{
		name: "gaps: anchors share a snapshot, calendar buckets skip empty days",
		now:  "2025-11-20 12:00",
		snaps: at("2025-11-19 22:00", "2025-11-10 09:00", "2025-10-05 10:00",
			"2025-08-20 10:00", "2025-02-14 10:00"),
		policy: Policy{Daily: 3, Weekly: 4, WeeklyOn: wd(time.Sunday), Monthly: 2},
		keep:   []string{"2025-11-19 22:00", "2025-11-10 09:00", "2025-10-05 10:00"},
		reasons: map[string][]string{
			"2025-11-19 22:00": {"daily 2025-11-19", "monthly 2025-11"},
			"2025-11-10 09:00": {"daily 2025-11-10", "weekly anchor 2025-11-16 (sun)"},
			"2025-10-05 10:00": {"daily 2025-10-05", "weekly anchor 2025-11-09 (sun)",
				"weekly anchor 2025-11-02 (sun)", "weekly anchor 2025-10-26 (sun)", "monthly 2025-10"},
		},
	},
	{
		name:   "anchor day before the first snapshot keeps nothing",
		now:    "2025-11-20 12:00",
		snaps:  days("2024-06-01 03:00", "2025-11-20 03:00"),
		policy: Policy{Yearly: 5, YearlyOn: &MonthDay{time.January, 1}},
		keep:   []string{"2025-01-01 03:00"},
	},
	{
		name:   "yearly anchor on 02-29 clamps to 02-28 in common years",
		now:    "2025-11-20 12:00",
		snaps:  days("2024-01-01 03:00", "2025-11-20 03:00"),
		policy: Policy{Yearly: 3, YearlyOn: &MonthDay{time.February, 29}},
		keep:   []string{"2025-02-28 03:00", "2024-02-29 03:00"},
		reasons: map[string][]string{
			"2025-02-28 03:00": {"yearly anchor 2025-02-28 (fri)"},
			"2024-02-29 03:00": {"yearly anchor 2024-02-29 (thu)"},
		},
	},
	{
		name:   "monthly anchor on the 31st: February clamps (common year)",
		now:    "2025-03-20 12:00",
		snaps:  days("2024-12-01 20:00", "2025-03-20 08:00"),
		policy: Policy{Monthly: 3, MonthlyOn: 31},
		keep:   []string{"2025-02-28 20:00", "2025-01-31 20:00", "2024-12-31 20:00"},
	},
	{
		name:   "monthly anchor on the 31st: February clamps (leap year)",
		now:    "2024-03-20 12:00",
		snaps:  days("2023-12-01 20:00", "2024-03-20 08:00"),
		policy: Policy{Monthly: 3, MonthlyOn: 31},
		keep:   []string{"2024-02-29 20:00", "2024-01-31 20:00", "2023-12-31 20:00"},
	},
	{
		name:   "monthly anchor on the 30th skips nothing in February",
		now:    "2025-03-29 12:00",
		snaps:  days("2025-01-01 20:00", "2025-03-29 08:00"),
		policy: Policy{Monthly: 2, MonthlyOn: 30},
		keep:   []string{"2025-02-28 20:00", "2025-01-30 20:00"},
	},
	{
		name:   "last day of the month",
		now:    "2025-05-10 12:00",
		snaps:  days("2024-12-01 03:00", "2025-05-10 03:00"),
		policy: Policy{Monthly: 4, MonthlyOn: -1},
		keep:   []string{"2025-04-30 03:00", "2025-03-31 03:00", "2025-02-28 03:00", "2025-01-31 03:00"},
		reasons: map[string][]string{
			"2025-04-30 03:00": {"monthly anchor 2025-04-30 (wed)"},
		},
	},
	{
		name:   "last day of the month is today",
		now:    "2025-04-30 12:00",
		snaps:  days("2025-01-01 03:00", "2025-04-30 03:00"),
		policy: Policy{Monthly: 2, MonthlyOn: -1},
		keep:   []string{"2025-04-30 03:00", "2025-03-31 03:00"},
	},
	{
		name: "weekly anchor equal to today; future snapshot kept, not counted",
		now:  "2025-11-20 12:00", // a Thursday
		snaps: join(days("2025-11-01 03:00", "2025-11-20 03:00"),
			at("2025-11-20 11:00", "2025-11-20 18:00")),
		policy: Policy{Weekly: 2, WeeklyOn: wd(time.Thursday)},
		keep:   []string{"2025-11-20 18:00", "2025-11-20 11:00", "2025-11-13 03:00"},
		reasons: map[string][]string{
			"2025-11-20 18:00": {ReasonFuture},
			"2025-11-20 11:00": {"weekly anchor 2025-11-20 (thu)"},
			"2025-11-13 03:00": {"weekly anchor 2025-11-13 (thu)"},
		},
	},
	{
		name:   "quarterly, default anchor",
		now:    "2025-11-20 12:00",
		snaps:  days("2024-06-01 03:00", "2025-11-20 03:00"),
		policy: Policy{Quarterly: 4},
		keep:   []string{"2025-10-01 03:00", "2025-07-01 03:00", "2025-04-01 03:00", "2025-01-01 03:00"},
	},
	{
		name:   "quarterly on day 31 clamps in April; anchor not yet reached this quarter",
		now:    "2025-10-15 12:00",
		snaps:  days("2024-06-01 03:00", "2025-10-15 03:00"),
		policy: Policy{Quarterly: 4, QuarterlyOn: &MonthDay{time.January, 31}},
		keep:   []string{"2025-07-31 03:00", "2025-04-30 03:00", "2025-01-31 03:00", "2024-10-31 03:00"},
		reasons: map[string][]string{
			"2025-04-30 03:00": {"quarterly anchor 2025-04-30 (wed)"},
		},
	},
	{
		name:   "ISO weeks across the new year",
		now:    "2026-01-03 12:00",
		snaps:  days("2025-12-20 03:00", "2026-01-03 03:00"),
		policy: Policy{Weekly: 3, Yearly: 2},
		keep:   []string{"2026-01-03 03:00", "2025-12-31 03:00", "2025-12-28 03:00", "2025-12-21 03:00"},
		reasons: map[string][]string{
			"2026-01-03 03:00": {"weekly 2026-W01", "yearly 2026"},
			"2025-12-31 03:00": {"yearly 2025"},
			"2025-12-28 03:00": {"weekly 2025-W52"},
			"2025-12-21 03:00": {"weekly 2025-W51"},
		},
	},
	{
		name:   "hourly over a week, clocks go back in Europe/Berlin",
		zone:   "Europe/Berlin",
		now:    "2025-10-26 04:30 CET",
		snaps:  every("2025-10-20 00:00 CEST", "2025-10-26 04:00 CET", time.Hour),
		policy: Policy{Hourly: 5, Daily: 3},
		keep: []string{
			"2025-10-26 04:00 CET", "2025-10-26 03:00 CET", "2025-10-26 02:00 CET",
			"2025-10-26 02:00 CEST", "2025-10-26 01:00 CEST",
			"2025-10-25 23:00 CEST", "2025-10-24 23:00 CEST",
		},
		reasons: map[string][]string{
			"2025-10-26 04:00 CET":  {"hourly 2025-10-26 04:00 CET", "daily 2025-10-26"},
			"2025-10-26 02:00 CET":  {"hourly 2025-10-26 02:00 CET"},
			"2025-10-26 02:00 CEST": {"hourly 2025-10-26 02:00 CEST"},
			"2025-10-25 23:00 CEST": {"daily 2025-10-25"},
		},
	},
	{
		name:   "half-hourly, clocks go forward in Europe/Berlin: the skipped hour is no bucket",
		zone:   "Europe/Berlin",
		now:    "2025-03-30 04:00 CEST",
		snaps:  every("2025-03-30 00:00 CET", "2025-03-30 04:00 CEST", 30*time.Minute),
		policy: Policy{Hourly: 3},
		keep:   []string{"2025-03-30 04:00 CEST", "2025-03-30 03:30 CEST", "2025-03-30 01:30 CET"},
	},
	{
		name:   "days are local days in Europe/Berlin",
		zone:   "Europe/Berlin",
		now:    "2025-03-31 12:00",
		snaps:  at("2025-03-31 00:30", "2025-03-30 23:30", "2025-03-29 23:30"),
		policy: Policy{Daily: 2},
		keep:   []string{"2025-03-31 00:30", "2025-03-30 23:30"},
	},
	{
		name:   "anchor day is the 25-hour day in Europe/Berlin",
		zone:   "Europe/Berlin",
		now:    "2025-10-27 12:00",
		snaps:  at("2025-10-27 00:10", "2025-10-26 23:30"),
		policy: Policy{Weekly: 1, WeeklyOn: wd(time.Sunday)},
		keep:   []string{"2025-10-26 23:30"},
	},
	{
		name: "archived snapshots are kept and count for nothing",
		now:  "2025-11-20 12:00",
		snaps: at("A 2025-11-20 03:00", "2025-11-19 03:00", "2025-11-18 03:00", "2025-11-17 03:00",
			"A 2020-01-01 00:00"),
		policy: Policy{Last: 2, Daily: 1},
		keep:   []string{"2025-11-20 03:00", "2025-11-19 03:00", "2025-11-18 03:00", "2020-01-01 00:00"},
		reasons: map[string][]string{
			"2025-11-20 03:00": {ReasonArchived},
			"2025-11-19 03:00": {"last 2", "daily 2025-11-19"},
			"2025-11-18 03:00": {"last 2"},
			"2020-01-01 00:00": {ReasonArchived},
		},
	},
	{
		name:   "archived in the future",
		now:    "2025-11-20 12:00",
		snaps:  at("A 2025-11-21 03:00", "2025-11-20 03:00", "2025-11-19 03:00"),
		policy: Policy{Last: 1},
		keep:   []string{"2025-11-21 03:00", "2025-11-20 03:00"},
		reasons: map[string][]string{
			"2025-11-21 03:00": {ReasonArchived, ReasonFuture},
		},
	},
	{
		name:   "within: the boundary is inclusive",
		now:    "2025-11-20 12:00",
		snaps:  join(days("2025-11-10 03:00", "2025-11-20 03:00"), at("2025-11-18 12:00")),
		policy: Policy{Within: 2 * Day},
		keep:   []string{"2025-11-20 03:00", "2025-11-19 03:00", "2025-11-18 12:00"},
		reasons: map[string][]string{
			"2025-11-18 12:00": {"within 2d"},
		},
	},
	{
		name:   "last N larger than the list",
		now:    "2025-11-20 12:00",
		snaps:  at("2025-11-20 03:00", "2025-11-19 03:00"),
		policy: Policy{Last: 10},
		keep:   []string{"2025-11-20 03:00", "2025-11-19 03:00"},
	},
	{
		name:   "no snapshots",
		now:    "2025-11-20 12:00",
		snaps:  at(),
		policy: Policy{Daily: 7, Weekly: 4, WeeklyOn: wd(time.Saturday), Quarterly: 2},
		keep:   []string{},
	},
	{
		name:   "without remove overlap",
		now:    "2025-11-20 12:00",
		snaps:  days("2025-09-01 03:00", "2025-11-20 03:00"),
		policy: Policy{Daily: 7, Weekly: 4, WeeklyOn: wd(time.Saturday)},
		keep: []string{
			"2025-11-20 03:00", "2025-11-19 03:00", "2025-11-18 03:00", "2025-11-17 03:00",
			"2025-11-16 03:00", "2025-11-15 03:00", "2025-11-14 03:00",
			"2025-11-08 03:00", "2025-11-01 03:00", "2025-10-25 03:00",
		},
	},
	{
		name:   "remove overlap: daily only after the newest weekly",
		now:    "2025-11-20 12:00",
		snaps:  days("2025-09-01 03:00", "2025-11-20 03:00"),
		policy: Policy{Daily: 7, Weekly: 4, WeeklyOn: wd(time.Saturday), RemoveOverlap: true},
		keep: []string{
			"2025-11-20 03:00", "2025-11-19 03:00", "2025-11-18 03:00", "2025-11-17 03:00",
			"2025-11-16 03:00", // daily: only five days after the 15th
			"2025-11-15 03:00", "2025-11-08 03:00", "2025-11-01 03:00", "2025-10-25 03:00",
		},
		reasons: map[string][]string{
			"2025-11-16 03:00": {"daily 2025-11-16"},
			"2025-11-15 03:00": {"weekly anchor 2025-11-15 (sat)"},
		},
	},
	{
		name:  "remove overlap: quarterly, monthly, daily; inactive weekly is skipped",
		now:   "2025-11-20 12:00",
		snaps: days("2025-01-01 03:00", "2025-11-20 03:00"),
		policy: Policy{Last: 1, Daily: 3, Monthly: 2, MonthlyOn: 15, Quarterly: 2,
			WeeklyOn: wd(time.Saturday), RemoveOverlap: true},
		keep: []string{
			"2025-11-20 03:00", "2025-11-19 03:00", "2025-11-18 03:00",
			"2025-11-15 03:00", "2025-10-15 03:00",
			"2025-10-01 03:00", "2025-07-01 03:00",
		},
		reasons: map[string][]string{
			"2025-11-20 03:00": {"last 1", "daily 2025-11-20"},
			"2025-11-15 03:00": {"monthly anchor 2025-11-15 (sat)"},
			"2025-10-01 03:00": {"quarterly anchor 2025-10-01 (wed)"},
		},
	},
	{
		name:   "remove overlap: calendar yearly takes the newest, leaving nothing finer",
		now:    "2025-11-20 12:00",
		snaps:  days("2024-01-01 03:00", "2025-11-20 03:00"),
		policy: Policy{Last: 2, Yearly: 2, Monthly: 3, MonthlyOn: 1, Daily: 3, RemoveOverlap: true},
		keep:   []string{"2025-11-20 03:00", "2025-11-19 03:00", "2024-12-31 03:00"},
		reasons: map[string][]string{
			"2025-11-20 03:00": {"last 2", "yearly 2025"},
			"2025-11-19 03:00": {"last 2"},
			"2024-12-31 03:00": {"yearly 2024"},
		},
	},
	{
		name: "remove overlap: a coarser rule that keeps nothing leaves the limit as it was",
		now:  "2025-11-20 12:00",
		// Quarterly keeps 10-01. Monthly on the 15th finds nothing newer
		// than 10-01 on or before 11-15, so daily is still limited to
		// what is newer than 10-01: 09-01 goes although daily is 5.
		snaps:  at("2025-11-20 03:00", "2025-11-19 03:00", "2025-11-18 03:00", "2025-10-01 03:00", "2025-09-01 03:00"),
		policy: Policy{Quarterly: 1, Monthly: 1, MonthlyOn: 15, Daily: 5, RemoveOverlap: true},
		keep:   []string{"2025-11-20 03:00", "2025-11-19 03:00", "2025-11-18 03:00", "2025-10-01 03:00"},
		reasons: map[string][]string{
			"2025-10-01 03:00": {"quarterly anchor 2025-10-01 (wed)"},
		},
	},
	{
		name:   "remove overlap: anchors older than the limit select nothing",
		now:    "2025-11-20 12:00",
		snaps:  at("2025-11-20 03:00", "2025-11-03 03:00", "2025-10-20 03:00", "2025-10-01 03:00"),
		policy: Policy{Monthly: 2, MonthlyOn: 1, Weekly: 3, WeeklyOn: wd(time.Saturday), Daily: 5, RemoveOverlap: true},
		// monthly: 11-01 -> 10-20, 10-01 -> 10-01. Weekly considers only
		// snapshots after 10-20: 11-15 -> 11-03, 11-08 -> 11-03, 11-01 ->
		// none. Daily considers only 11-20.
		keep: []string{"2025-11-20 03:00", "2025-11-03 03:00", "2025-10-20 03:00", "2025-10-01 03:00"},
		reasons: map[string][]string{
			"2025-11-20 03:00": {"daily 2025-11-20"},
			"2025-11-03 03:00": {"weekly anchor 2025-11-15 (sat)", "weekly anchor 2025-11-08 (sat)"},
			"2025-10-20 03:00": {"monthly anchor 2025-11-01 (sat)"},
			"2025-10-01 03:00": {"monthly anchor 2025-10-01 (wed)"},
		},
	},
}

func TestApply(t *testing.T) {
	for _, tc := range applyCases {
		t.Run(tc.name, func(t *testing.T) {
			loc := time.UTC
			if tc.zone != "" {
				var err error
				if loc, err = time.LoadLocation(tc.zone); err != nil {
					t.Fatal(err)
				}
			}
			snaps := tc.snaps(t, loc)
			// Feed them oldest first: Apply must sort.
			for i, j := 0, len(snaps)-1; i < j; i, j = i+1, j-1 {
				snaps[i], snaps[j] = snaps[j], snaps[i]
			}
			dec, err := Apply(snaps, tc.policy, parseLocal(t, loc, tc.now), loc)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if len(dec) != len(snaps) {
				t.Fatalf("got %d decisions for %d snapshots", len(dec), len(snaps))
			}
			kept := []string{}
			byID := map[string]Decision{}
			for i, d := range dec {
				if i > 0 && d.Snapshot.Time.After(dec[i-1].Snapshot.Time) {
					t.Errorf("decision %d (%s) is newer than the one before it", i, d.Snapshot.ID)
				}
				if d.Keep != (len(d.Reasons) > 0) {
					t.Errorf("%s: Keep=%v with reasons %q", d.Snapshot.ID, d.Keep, d.Reasons)
				}
				if d.Keep {
					kept = append(kept, d.Snapshot.ID)
				}
				byID[d.Snapshot.ID] = d
			}
			if !reflect.DeepEqual(kept, tc.keep) {
				t.Errorf("kept %d:\n  %q\nwant %d:\n  %q", len(kept), kept, len(tc.keep), tc.keep)
				for _, d := range dec {
					if d.Keep {
						t.Logf("  %s: %q", d.Snapshot.ID, d.Reasons)
					}
				}
			}
			for id, want := range tc.reasons {
				if got := byID[id].Reasons; !reflect.DeepEqual(got, want) {
					t.Errorf("%s: reasons %q, want %q", id, got, want)
				}
			}
		})
	}
}

func TestApplyOrderAndTies(t *testing.T) {
	base := time.Date(2025, 11, 20, 3, 0, 0, 0, time.UTC)
	snaps := []Snapshot{
		{ID: "b", Time: base},
		{ID: "old", Time: base.Add(-time.Hour)},
		{ID: "c", Time: base},
		{ID: "a", Time: base},
	}
	dec, err := Apply(snaps, Policy{Last: 2}, base.Add(time.Hour), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range dec {
		got = append(got, d.Snapshot.ID)
		if d.Keep {
			got[len(got)-1] += "+"
		}
	}
	if want := []string{"c+", "b+", "a", "old"}; !reflect.DeepEqual(got, want) {
		t.Errorf("order = %q, want %q", got, want)
	}
	if snaps[0].ID != "b" {
		t.Error("Apply reordered its input")
	}
}

func TestApplyErrors(t *testing.T) {
	sat := time.Saturday
	bad := time.Weekday(7)
	tests := []struct {
		name   string
		policy Policy
		loc    *time.Location
		want   string
	}{
		{"empty policy", Policy{}, time.UTC, "empty policy"},
		{"only anchors set", Policy{WeeklyOn: &sat, MonthlyOn: 1, RemoveOverlap: true}, time.UTC, "empty policy"},
		{"negative last", Policy{Last: -1, Daily: 1}, time.UTC, "last -1"},
		{"negative daily", Policy{Daily: -3}, time.UTC, "daily -3"},
		{"negative within", Policy{Within: -time.Hour, Last: 1}, time.UTC, "within"},
		{"weekday 7", Policy{Weekly: 1, WeeklyOn: &bad}, time.UTC, "not a weekday"},
		{"monthly 32", Policy{Monthly: 1, MonthlyOn: 32}, time.UTC, "monthly anchor 32"},
		{"monthly -2", Policy{Monthly: 1, MonthlyOn: -2}, time.UTC, "monthly anchor -2"},
		{"quarterly month 2", Policy{Quarterly: 1, QuarterlyOn: &MonthDay{time.February, 1}}, time.UTC, "month must be 1"},
		{"quarterly day 0", Policy{Quarterly: 1, QuarterlyOn: &MonthDay{time.January, 0}}, time.UTC, "day must be 1..31"},
		{"quarterly day 32", Policy{Quarterly: 1, QuarterlyOn: &MonthDay{0, 32}}, time.UTC, "day must be 1..31"},
		{"yearly 02-30", Policy{Yearly: 1, YearlyOn: &MonthDay{time.February, 30}}, time.UTC, "no such day"},
		{"yearly month 13", Policy{Yearly: 1, YearlyOn: &MonthDay{13, 1}}, time.UTC, "month must be 1..12"},
		{"nil location", Policy{Last: 1}, nil, "time zone"},
	}
	snaps := []Snapshot{{ID: "a", Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dec, err := Apply(snaps, tc.policy, time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), tc.loc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply = %v, %v; want error containing %q", dec, err, tc.want)
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	sat := time.Saturday
	tests := []struct {
		p    Policy
		want bool
	}{
		{Policy{}, true},
		{Policy{WeeklyOn: &sat, MonthlyOn: -1, YearlyOn: &MonthDay{1, 1}, RemoveOverlap: true}, true},
		{Policy{Last: 1}, false},
		{Policy{Within: time.Hour}, false},
		{Policy{Hourly: 1}, false},
		{Policy{Daily: 1}, false},
		{Policy{Weekly: 1}, false},
		{Policy{Monthly: 1}, false},
		{Policy{Quarterly: 1}, false},
		{Policy{Yearly: 1}, false},
	}
	for _, tc := range tests {
		if got := tc.p.Empty(); got != tc.want {
			t.Errorf("%+v.Empty() = %v, want %v", tc.p, got, tc.want)
		}
	}
}

func TestPolicyString(t *testing.T) {
	sat := time.Saturday
	tests := []struct {
		p    Policy
		want string
	}{
		{Policy{}, "keep nothing"},
		{Policy{RemoveOverlap: true}, "keep nothing"},
		{Policy{Last: 3}, "last 3"},
		{Policy{Within: 7 * Day}, "within 7d"},
		{Policy{Within: Year + 6*Month}, "within 1y6m"},
		{Policy{Hourly: 24, Daily: 7, Weekly: 4, Monthly: 12, Quarterly: 4, Yearly: 3},
			"hourly 24, daily 7, weekly 4, monthly 12, quarterly 4 on day 1, yearly 3"},
		{Policy{Weekly: 4, WeeklyOn: &sat, Monthly: 12, MonthlyOn: 31, Quarterly: 4,
			QuarterlyOn: &MonthDay{1, 15}, Yearly: 3, YearlyOn: &MonthDay{12, 31}, RemoveOverlap: true},
			"weekly 4 on sat, monthly 12 on day 31, quarterly 4 on day 15, yearly 3 on 12-31, remove overlap"},
		{Policy{Monthly: 2, MonthlyOn: -1}, "monthly 2 on the last day"},
		{Policy{Daily: 1, WeeklyOn: &sat}, "daily 1"},
	}
	for _, tc := range tests {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

// BenchmarkApply applies a full anchored GFS policy to two years of hourly
// snapshots (17 520) in Europe/Berlin.
func BenchmarkApply(b *testing.B) {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		b.Fatal(err)
	}
	snaps := every("2024-01-01 00:00 CET", "2025-12-31 23:00 CET", time.Hour)(b, loc)
	now := parseLocal(b, loc, "2025-12-31 23:30")
	p := Policy{Last: 5, Within: 2 * Day, Hourly: 48, Daily: 14, Weekly: 8, WeeklyOn: wd(time.Saturday),
		Monthly: 12, MonthlyOn: -1, Quarterly: 8, Yearly: 5, RemoveOverlap: true}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Apply(snaps, p, now, loc); err != nil {
			b.Fatal(err)
		}
	}
}
