package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/arkbox/arkbox/storage/repo"
	"github.com/arkbox/arkbox/storage/retention"
)

type forgetDecision struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Source  string    `json:"source"`
	Keep    bool      `json:"keep"`
	Reasons []string  `json:"reasons"`
}

func cmdForget(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags("forget", e, &c, true)
	var p retention.Policy
	fs.IntVar(&p.Last, "keep-last", 0, "keep the N newest snapshots")
	within := fs.String("keep-within", "", "keep every snapshot newer than this (e.g. 36h, 14d, 2w, 6m, 1y)")
	fs.IntVar(&p.Hourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours")
	fs.IntVar(&p.Daily, "keep-daily", 0, "… of each of the last N days")
	fs.IntVar(&p.Weekly, "keep-weekly", 0, "… of each of the last N weeks (or anchor days with --weekly-on)")
	fs.IntVar(&p.Monthly, "keep-monthly", 0, "… of each of the last N months (or anchor days with --monthly-on)")
	fs.IntVar(&p.Quarterly, "keep-quarterly", 0, "… for each of the last N quarter starts (1 Jan/Apr/Jul/Oct, or --quarterly-on)")
	fs.IntVar(&p.Yearly, "keep-yearly", 0, "… of each of the last N years (or anchor days with --yearly-on)")
	weeklyOn := fs.String("weekly-on", "", "anchor the weekly rule on this weekday (mon … sun)")
	monthlyOn := fs.String("monthly-on", "", "anchor the monthly rule on this day of the month (1–31 or last)")
	quarterlyOn := fs.Int("quarterly-on", 0, "anchor the quarterly rule on this day of the quarter's first month")
	yearlyOn := fs.String("yearly-on", "", "anchor the yearly rule on this day (MM-DD)")
	fs.BoolVar(&p.RemoveOverlap, "remove-overlap", false, "each finer rule keeps only snapshots newer than the newest one the next coarser rule keeps")
	nowFlag := fs.String("now", "", "evaluate the policy as of this time (RFC 3339; default: now)")
	dry := fs.Bool("dry-run", false, "only show what would be removed")
	prune := fs.Bool("prune", false, "prune unreferenced data afterwards")
	source := fs.String("source", "", "only snapshots of this source")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var err error
	if *within != "" {
		if p.Within, err = retention.ParseDuration(*within); err != nil {
			return usagef("--keep-within: %v", err)
		}
	}
	if *weeklyOn != "" {
		d, err := retention.ParseWeekday(*weeklyOn)
		if err != nil {
			return usagef("--weekly-on: %v", err)
		}
		p.WeeklyOn = &d
	}
	if *monthlyOn != "" {
		if p.MonthlyOn, err = retention.ParseMonthlyOn(*monthlyOn); err != nil {
			return usagef("--monthly-on: %v", err)
		}
	}
	if *quarterlyOn != 0 {
		p.QuarterlyOn = &retention.MonthDay{Month: time.January, Day: *quarterlyOn}
	}
	if *yearlyOn != "" {
		md, err := retention.ParseMonthDay(*yearlyOn)
		if err != nil {
			return usagef("--yearly-on: %v", err)
		}
		p.YearlyOn = &md
	}
	if p.Empty() {
		return usagef("give at least one --keep-… rule (forget never removes everything)")
	}
	now := time.Now()
	if *nowFlag != "" {
		if now, err = time.Parse(time.RFC3339, *nowFlag); err != nil {
			return usagef("--now: %v", err)
		}
	}
	r, err := c.open(ctx, e)
	if err != nil {
		return err
	}
	defer r.Close()
	snaps, err := r.Snapshots()
	if err != nil {
		return err
	}
	groups := map[string][]*repo.Snapshot{}
	for _, sn := range snaps {
		if *source == "" || sn.Source == *source {
			groups[sn.Source] = append(groups[sn.Source], sn)
		}
	}
	var all []forgetDecision
	var remove []*repo.Snapshot
	for _, src := range sortedKeys(groups) {
		byID := map[string]*repo.Snapshot{}
		var in []retention.Snapshot
		for _, sn := range groups[src] {
			byID[sn.ID.String()] = sn
			in = append(in, retention.Snapshot{ID: sn.ID.String(), Time: sn.Time, Archived: sn.Archived})
		}
		ds, err := retention.Apply(in, p, now, time.Local)
		if err != nil {
			return err
		}
		for _, d := range ds {
			sn := byID[d.Snapshot.ID]
			reasons := d.Reasons
			if reasons == nil {
				reasons = []string{}
			}
			all = append(all, forgetDecision{ID: d.Snapshot.ID, Time: sn.Time, Source: src, Keep: d.Keep, Reasons: reasons})
			if !d.Keep {
				remove = append(remove, sn)
			}
		}
	}
	if !c.json {
		fmt.Fprintf(e.stdout, "policy: %s\n", p.String())
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTIME\tSOURCE\tDECISION\tREASONS")
		for _, d := range all {
			dec := "keep"
			if !d.Keep {
				dec = "remove"
				if *dry {
					dec = "would remove"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID[:8], d.Time.Local().Format("2006-01-02 15:04:05"), d.Source, dec, strings.Join(d.Reasons, ", "))
		}
		tw.Flush()
	}
	if !*dry {
		for _, sn := range remove {
			if err := r.DeleteSnapshot(ctx, sn.ID); err != nil {
				return err
			}
		}
	}
	if c.json {
		if all == nil {
			all = []forgetDecision{}
		}
		if err := printJSON(e.stdout, all); err != nil {
			return err
		}
	} else {
		verb := "removed"
		if *dry {
			verb = "would remove"
		}
		fmt.Fprintf(e.stdout, "%s %d of %d snapshots\n", verb, len(remove), len(all))
	}
	if *prune && !*dry && len(remove) > 0 {
		return runPrune(ctx, e, r.Repository, false, c.json)
	}
	return nil
}
