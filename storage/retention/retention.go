// Package retention decides which snapshots a retention policy keeps: the
// newest N, those within a duration, and grandfather-father-son buckets
// (hourly … yearly, calendar buckets or anchored on a chosen day), with
// archived snapshots always kept. It only decides; forgetting is the
// repository's job.
//
// The semantics, with worked examples, are in doc/retention.md.
package retention

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Snapshot is what retention needs to know about a snapshot.
type Snapshot struct {
	ID       string
	Time     time.Time
	Archived bool // archived snapshots are always kept
}

// MonthDay is a day of the year, or (for quarterly anchors) a day of the
// first month of a quarter.
type MonthDay struct {
	Month time.Month
	Day   int
}

// String returns the day as MM-DD.
func (md MonthDay) String() string { return fmt.Sprintf("%02d-%02d", int(md.Month), md.Day) }

// Policy says which snapshots to keep. A snapshot is kept if any rule keeps
// it. Counts of 0 disable a rule.
type Policy struct {
	Last   int           // keep the N newest
	Within time.Duration // keep all taken within this duration before now

	// Keep N buckets of each. Hourly and Daily are always calendar buckets;
	// Weekly, Monthly and Yearly are calendar buckets unless anchored
	// below; Quarterly is always anchored.
	Hourly, Daily, Weekly, Monthly, Quarterly, Yearly int

	WeeklyOn    *time.Weekday // anchor day for weekly (nil = ISO calendar weeks)
	MonthlyOn   int           // 0 = calendar months; 1..31 = anchor day (clamped to the month's length); -1 = last day of the month
	QuarterlyOn *MonthDay     // nil = the first day of Jan/Apr/Jul/Oct; set = that day of the first month of each quarter (Month 0 or 1)
	YearlyOn    *MonthDay     // nil = calendar years; set = anchor day of the year (clamped: 02-29 is 02-28 in common years)

	// RemoveOverlap makes each bucket rule consider only snapshots newer
	// than the newest one kept by the next coarser active bucket rule.
	RemoveOverlap bool
}

// Decision is the verdict on one snapshot.
type Decision struct {
	Snapshot Snapshot
	Keep     bool
	Reasons  []string // why it is kept; empty when it is removed
}

// Reason texts that do not depend on a bucket.
const (
	ReasonArchived = "archived"
	ReasonFuture   = "in the future"
)

// Empty reports whether p keeps nothing at all (no rule has a positive count
// or duration).
func (p Policy) Empty() bool {
	return p.Last <= 0 && p.Within <= 0 && p.Hourly <= 0 && p.Daily <= 0 && p.Weekly <= 0 &&
		p.Monthly <= 0 && p.Quarterly <= 0 && p.Yearly <= 0
}

// Validate reports the first invalid field of p. An empty policy is valid
// here; Apply refuses it.
func (p Policy) Validate() error {
	counts := []struct {
		name string
		n    int
	}{
		{"last", p.Last}, {"hourly", p.Hourly}, {"daily", p.Daily}, {"weekly", p.Weekly},
		{"monthly", p.Monthly}, {"quarterly", p.Quarterly}, {"yearly", p.Yearly},
	}
	for _, c := range counts {
		if c.n < 0 {
			return fmt.Errorf("retention: policy: %s %d: must not be negative", c.name, c.n)
		}
	}
	if p.Within < 0 {
		return fmt.Errorf("retention: policy: within %v: must not be negative", p.Within)
	}
	if p.WeeklyOn != nil && (*p.WeeklyOn < time.Sunday || *p.WeeklyOn > time.Saturday) {
		return fmt.Errorf("retention: policy: weekly anchor %d: not a weekday", int(*p.WeeklyOn))
	}
	if p.MonthlyOn < -1 || p.MonthlyOn > 31 {
		return fmt.Errorf("retention: policy: monthly anchor %d: want 1..31, -1 (last day) or 0 (calendar months)", p.MonthlyOn)
	}
	if q := p.QuarterlyOn; q != nil {
		if q.Month != 0 && q.Month != time.January {
			return fmt.Errorf("retention: policy: quarterly anchor %v: month must be 1 (the first month of the quarter)", *q)
		}
		if q.Day < 1 || q.Day > 31 {
			return fmt.Errorf("retention: policy: quarterly anchor %v: day must be 1..31", *q)
		}
	}
	if y := p.YearlyOn; y != nil {
		if err := checkMonthDay(*y); err != nil {
			return fmt.Errorf("retention: policy: yearly anchor: %w", err)
		}
	}
	return nil
}

// checkMonthDay accepts days that exist in some year (02-29 included).
func checkMonthDay(md MonthDay) error {
	if md.Month < time.January || md.Month > time.December {
		return fmt.Errorf("%v: month must be 1..12", md)
	}
	if md.Day < 1 || md.Day > daysIn(2000, md.Month) {
		return fmt.Errorf("%v: no such day", md)
	}
	return nil
}

// daysIn returns the number of days of month m of year y.
func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// String summarizes p, e.g. "last 3, daily 7, weekly 4 on sat, remove overlap".
func (p Policy) String() string {
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	if p.Last > 0 {
		add("last %d", p.Last)
	}
	if p.Within > 0 {
		add("within %s", FormatDuration(p.Within))
	}
	if p.Hourly > 0 {
		add("hourly %d", p.Hourly)
	}
	if p.Daily > 0 {
		add("daily %d", p.Daily)
	}
	if p.Weekly > 0 {
		if p.WeeklyOn != nil {
			add("weekly %d on %s", p.Weekly, weekdayName(*p.WeeklyOn))
		} else {
			add("weekly %d", p.Weekly)
		}
	}
	if p.Monthly > 0 {
		switch {
		case p.MonthlyOn == -1:
			add("monthly %d on the last day", p.Monthly)
		case p.MonthlyOn > 0:
			add("monthly %d on day %d", p.Monthly, p.MonthlyOn)
		default:
			add("monthly %d", p.Monthly)
		}
	}
	if p.Quarterly > 0 {
		day := 1
		if p.QuarterlyOn != nil {
			day = p.QuarterlyOn.Day
		}
		add("quarterly %d on day %d", p.Quarterly, day)
	}
	if p.Yearly > 0 {
		if p.YearlyOn != nil {
			add("yearly %d on %v", p.Yearly, *p.YearlyOn)
		} else {
			add("yearly %d", p.Yearly)
		}
	}
	if len(parts) == 0 {
		return "keep nothing"
	}
	if p.RemoveOverlap {
		add("remove overlap")
	}
	return strings.Join(parts, ", ")
}

func weekdayName(d time.Weekday) string { return strings.ToLower(d.String()[:3]) }

// The bucket rules, coarsest first: the order RemoveOverlap evaluates them in.
const (
	ruleYearly = iota
	ruleQuarterly
	ruleMonthly
	ruleWeekly
	ruleDaily
	ruleHourly
	numRules
)

// keep is one rule's verdict on one snapshot.
type keep struct {
	pos    int // position in the newest-first list of eligible snapshots
	reason string
}

// Apply decides, for each snapshot, whether p keeps it, and why. Times are
// bucketed in loc. It returns one decision per input snapshot, newest first
// (snapshots taken at the same time are ordered by ID, greater first). It
// fails on an invalid or empty policy (an empty policy would remove
// everything) and on a nil loc.
func Apply(snaps []Snapshot, p Policy, now time.Time, loc *time.Location) ([]Decision, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.Empty() {
		return nil, errors.New("retention: empty policy: refusing to remove every snapshot")
	}
	if loc == nil {
		return nil, errors.New("retention: no time zone given")
	}
	order := make([]int, len(snaps))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		a, b := &snaps[i], &snaps[j]
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		if c := strings.Compare(b.ID, a.ID); c != 0 {
			return c
		}
		return cmp.Compare(i, j) // identical time and id: keep input order
	})
	dec := make([]Decision, len(snaps))
	for k, i := range order {
		dec[k].Snapshot = snaps[i]
	}

	// Archived and future snapshots are kept and take part in no rule.
	var elig []int // indexes into dec, newest first
	for i := range dec {
		s := &dec[i].Snapshot
		if s.Archived {
			dec[i].Reasons = append(dec[i].Reasons, ReasonArchived)
		}
		if s.Time.After(now) {
			dec[i].Reasons = append(dec[i].Reasons, ReasonFuture)
		}
		if len(dec[i].Reasons) == 0 {
			elig = append(elig, i)
		}
	}

	for pos := range min(p.Last, len(elig)) {
		d := &dec[elig[pos]]
		d.Reasons = append(d.Reasons, fmt.Sprintf("last %d", p.Last))
	}
	if p.Within > 0 {
		from := now.Add(-p.Within)
		reason := "within " + FormatDuration(p.Within)
		for _, i := range elig {
			if dec[i].Snapshot.Time.Before(from) {
				break
			}
			dec[i].Reasons = append(dec[i].Reasons, reason)
		}
	}

	// Bucket rules, coarsest first. With RemoveOverlap, limit shrinks to the
	// snapshots newer than the newest one the previous active rule kept.
	e := evaluator{dec: dec, elig: elig, loc: loc, today: civil(now.In(loc))}
	var kept [numRules][]keep
	limit := len(elig)
	for r := range numRules {
		kept[r] = e.rule(p, r, limit)
		if p.RemoveOverlap && p.count(r) > 0 && len(kept[r]) > 0 {
			newest := kept[r][0].pos
			for _, k := range kept[r] {
				newest = min(newest, k.pos)
			}
			t := dec[elig[newest]].Snapshot.Time
			limit = sort.Search(newest, func(pos int) bool { return !dec[elig[pos]].Snapshot.Time.After(t) })
		}
	}
	// Reasons read from the finest bucket to the coarsest.
	for r := numRules - 1; r >= 0; r-- {
		for _, k := range kept[r] {
			d := &dec[elig[k.pos]]
			d.Reasons = append(d.Reasons, k.reason)
		}
	}
	for i := range dec {
		dec[i].Keep = len(dec[i].Reasons) > 0
	}
	return dec, nil
}

func (p Policy) count(rule int) int {
	switch rule {
	case ruleYearly:
		return p.Yearly
	case ruleQuarterly:
		return p.Quarterly
	case ruleMonthly:
		return p.Monthly
	case ruleWeekly:
		return p.Weekly
	case ruleDaily:
		return p.Daily
	case ruleHourly:
		return p.Hourly
	}
	return 0
}

type evaluator struct {
	dec   []Decision
	elig  []int
	loc   *time.Location
	today time.Time // midnight UTC of today's date in loc: a calendar date
}

func (e *evaluator) time(pos int) time.Time { return e.dec[e.elig[pos]].Snapshot.Time }

// rule evaluates one bucket rule over the eligible snapshots at positions
// [0, limit), returning what it keeps, newest snapshot first for calendar
// buckets and newest anchor first for anchored rules.
func (e *evaluator) rule(p Policy, r int, limit int) []keep {
	n := p.count(r)
	if n == 0 {
		return nil
	}
	switch r {
	case ruleYearly:
		if p.YearlyOn != nil {
			md := *p.YearlyOn
			y := e.today.Year()
			if clampedDate(y, md.Month, md.Day).After(e.today) {
				y--
			}
			return e.anchored(n, limit, "yearly", func(k int) time.Time {
				return clampedDate(y-k, md.Month, md.Day)
			})
		}
		return e.buckets(n, limit, func(t time.Time) bucket {
			return bucket{a: int64(t.Year())}
		}, func(t time.Time) string {
			return fmt.Sprintf("yearly %d", t.Year())
		})
	case ruleQuarterly:
		day := 1
		if p.QuarterlyOn != nil {
			day = p.QuarterlyOn.Day
		}
		y, m := e.today.Year(), time.Month((int(e.today.Month())-1)/3*3+1)
		if clampedDate(y, m, day).After(e.today) {
			m -= 3
		}
		return e.anchored(n, limit, "quarterly", func(k int) time.Time {
			return clampedDate(y, m-time.Month(3*k), day)
		})
	case ruleMonthly:
		if p.MonthlyOn != 0 {
			day := p.MonthlyOn
			y, m := e.today.Year(), e.today.Month()
			if monthAnchor(y, m, day).After(e.today) {
				m--
			}
			return e.anchored(n, limit, "monthly", func(k int) time.Time {
				return monthAnchor(y, m-time.Month(k), day)
			})
		}
		return e.buckets(n, limit, func(t time.Time) bucket {
			return bucket{a: int64(t.Year()), b: int64(t.Month())}
		}, func(t time.Time) string {
			return fmt.Sprintf("monthly %d-%02d", t.Year(), int(t.Month()))
		})
	case ruleWeekly:
		if p.WeeklyOn != nil {
			back := (int(e.today.Weekday()) - int(*p.WeeklyOn) + 7) % 7
			return e.anchored(n, limit, "weekly", func(k int) time.Time {
				return e.today.AddDate(0, 0, -back-7*k)
			})
		}
		return e.buckets(n, limit, func(t time.Time) bucket {
			y, w := t.ISOWeek()
			return bucket{a: int64(y), b: int64(w)}
		}, func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("weekly %d-W%02d", y, w)
		})
	case ruleDaily:
		return e.buckets(n, limit, func(t time.Time) bucket {
			return bucket{a: int64(t.Year()), b: int64(t.YearDay())}
		}, func(t time.Time) string {
			return "daily " + t.Format(time.DateOnly)
		})
	case ruleHourly:
		// An hour is identified by the instant it began in loc: distinct
		// for the two 02:00 hours of a night when clocks go back.
		return e.buckets(n, limit, func(t time.Time) bucket {
			return bucket{a: hourStart(t).Unix()}
		}, func(t time.Time) string {
			return "hourly " + hourStart(t).Format("2006-01-02 15:04 MST")
		})
	}
	return nil
}

type bucket struct{ a, b int64 }

// hourStart returns the instant the local hour holding t began.
func hourStart(t time.Time) time.Time {
	return t.Add(-time.Duration(t.Minute())*time.Minute - time.Duration(t.Second())*time.Second -
		time.Duration(t.Nanosecond()))
}

// buckets keeps the newest snapshot of each distinct bucket, newest first,
// until n buckets are kept. key and label are given the snapshot's time in
// loc.
func (e *evaluator) buckets(n, limit int, key func(time.Time) bucket, label func(time.Time) string) []keep {
	var out []keep
	seen := make(map[bucket]bool)
	for pos := 0; pos < limit && len(out) < n; pos++ {
		t := e.time(pos).In(e.loc)
		k := key(t)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, keep{pos: pos, reason: label(t)})
	}
	return out
}

// anchored takes the n latest anchor days on or before today (anchor(0) is
// the latest, anchor(k) the k-th before it) and keeps, for each, the newest
// snapshot taken before the end of that day in loc. An anchor day with no
// snapshot at or before it keeps nothing, and neither does any older one.
func (e *evaluator) anchored(n, limit int, name string, anchor func(k int) time.Time) []keep {
	var out []keep
	for k := range n {
		a := anchor(k)
		end := time.Date(a.Year(), a.Month(), a.Day()+1, 0, 0, 0, 0, e.loc)
		pos := sort.Search(limit, func(pos int) bool { return e.time(pos).Before(end) })
		if pos == limit {
			break // older anchors find nothing either
		}
		out = append(out, keep{pos: pos, reason: fmt.Sprintf("%s anchor %s (%s)", name, a.Format(time.DateOnly), weekdayName(a.Weekday()))})
	}
	return out
}

// civil returns t's calendar date as midnight UTC, for date arithmetic free
// of time zone transitions.
func civil(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// clampedDate returns day d of month m of year y (m may be out of 1..12 and
// is normalized first), clamped to the month's length.
func clampedDate(y int, m time.Month, d int) time.Time {
	first := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	return first.AddDate(0, 0, min(d, daysIn(first.Year(), first.Month()))-1)
}

// monthAnchor returns the monthly anchor of month m of year y: day d clamped
// to the month's length, or the last day for d == -1.
func monthAnchor(y int, m time.Month, d int) time.Time {
	if d == -1 {
		d = 31
	}
	return clampedDate(y, m, d)
}
