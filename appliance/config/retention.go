package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/arkbox/arkbox/storage/retention"
)

// Retention is a retention policy in the configuration's JSON form; the
// fields mirror retention.Policy and the arkbox forget flags.
type Retention struct {
	KeepLast      int    `json:"keep_last,omitempty"`
	KeepWithin    string `json:"keep_within,omitempty"` // e.g. "36h", "14d", "1y6m"
	KeepHourly    int    `json:"keep_hourly,omitempty"`
	KeepDaily     int    `json:"keep_daily,omitempty"`
	KeepWeekly    int    `json:"keep_weekly,omitempty"`
	KeepMonthly   int    `json:"keep_monthly,omitempty"`
	KeepQuarterly int    `json:"keep_quarterly,omitempty"`
	KeepYearly    int    `json:"keep_yearly,omitempty"`
	WeeklyOn      string `json:"weekly_on,omitempty"`    // anchor weekday: "sat"
	MonthlyOn     string `json:"monthly_on,omitempty"`   // anchor day: "1".."31" or "last"
	QuarterlyOn   int    `json:"quarterly_on,omitempty"` // day of the quarter's first month
	YearlyOn      string `json:"yearly_on,omitempty"`    // "MM-DD"
	RemoveOverlap bool   `json:"remove_overlap,omitempty"`
}

// Policy converts r, checking every field. An empty policy (keeps
// nothing) is an error: applied, it would forget every snapshot.
func (r Retention) Policy() (retention.Policy, error) {
	p, err := r.policy()
	if err != nil {
		return retention.Policy{}, err
	}
	if p.Empty() {
		return retention.Policy{}, errors.New("keeps nothing: set at least one keep_… rule")
	}
	return p, nil
}

// policy converts r; errors carry the JSON field name.
func (r Retention) policy() (retention.Policy, error) {
	p := retention.Policy{
		Last: r.KeepLast, Hourly: r.KeepHourly, Daily: r.KeepDaily, Weekly: r.KeepWeekly,
		Monthly: r.KeepMonthly, Quarterly: r.KeepQuarterly, Yearly: r.KeepYearly,
		RemoveOverlap: r.RemoveOverlap,
	}
	counts := []struct {
		name string
		n    int
	}{
		{"keep_last", r.KeepLast}, {"keep_hourly", r.KeepHourly}, {"keep_daily", r.KeepDaily},
		{"keep_weekly", r.KeepWeekly}, {"keep_monthly", r.KeepMonthly},
		{"keep_quarterly", r.KeepQuarterly}, {"keep_yearly", r.KeepYearly},
	}
	for _, c := range counts {
		if c.n < 0 {
			return p, fieldErr(c.name, fmt.Errorf("%d: must not be negative", c.n))
		}
	}
	var err error
	if r.KeepWithin != "" {
		if p.Within, err = retention.ParseDuration(r.KeepWithin); err != nil {
			return p, fieldErr("keep_within", err)
		}
	}
	if r.WeeklyOn != "" {
		d, err := retention.ParseWeekday(r.WeeklyOn)
		if err != nil {
			return p, fieldErr("weekly_on", err)
		}
		p.WeeklyOn = &d
	}
	if r.MonthlyOn != "" {
		if p.MonthlyOn, err = retention.ParseMonthlyOn(r.MonthlyOn); err != nil {
			return p, fieldErr("monthly_on", err)
		}
	}
	if r.QuarterlyOn != 0 {
		if r.QuarterlyOn < 1 || r.QuarterlyOn > 31 {
			return p, fieldErr("quarterly_on", fmt.Errorf("%d: want a day 1..31", r.QuarterlyOn))
		}
		p.QuarterlyOn = &retention.MonthDay{Month: time.January, Day: r.QuarterlyOn}
	}
	if r.YearlyOn != "" {
		md, err := retention.ParseMonthDay(r.YearlyOn)
		if err != nil {
			return p, fieldErr("yearly_on", err)
		}
		p.YearlyOn = &md
	}
	if err := p.Validate(); err != nil {
		return p, err
	}
	return p, nil
}

// RetentionOf converts a policy into its configuration form (for the web
// UI and the CLI, which edit policies).
func RetentionOf(p retention.Policy) Retention {
	r := Retention{
		KeepLast: p.Last, KeepHourly: p.Hourly, KeepDaily: p.Daily, KeepWeekly: p.Weekly,
		KeepMonthly: p.Monthly, KeepQuarterly: p.Quarterly, KeepYearly: p.Yearly,
		RemoveOverlap: p.RemoveOverlap,
	}
	if p.Within > 0 {
		r.KeepWithin = retention.FormatDuration(p.Within)
	}
	if p.WeeklyOn != nil {
		r.WeeklyOn = strings.ToLower(p.WeeklyOn.String()[:3])
	}
	switch {
	case p.MonthlyOn == -1:
		r.MonthlyOn = "last"
	case p.MonthlyOn > 0:
		r.MonthlyOn = fmt.Sprint(p.MonthlyOn)
	}
	if p.QuarterlyOn != nil {
		r.QuarterlyOn = p.QuarterlyOn.Day
	}
	if p.YearlyOn != nil {
		r.YearlyOn = p.YearlyOn.String()
	}
	return r
}
