package retention

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// byteReader hands out bytes of fuzz input, then zeros.
type byteReader []byte

func (r *byteReader) next() int {
	if len(*r) == 0 {
		return 0
	}
	b := (*r)[0]
	*r = (*r)[1:]
	return int(b)
}

// fuzzPolicy builds a policy from fuzz bytes, valid or not.
func fuzzPolicy(r *byteReader) Policy {
	p := Policy{
		Last: r.next() % 5, Within: time.Duration(r.next()%100) * time.Hour,
		Hourly: r.next() % 6, Daily: r.next() % 6, Weekly: r.next() % 6,
		Monthly: r.next() % 6, Quarterly: r.next() % 6, Yearly: r.next() % 6,
		MonthlyOn:     r.next()%34 - 1,
		RemoveOverlap: r.next()%2 == 1,
	}
	if b := r.next(); b%2 == 1 {
		d := time.Weekday(b / 2 % 8)
		p.WeeklyOn = &d
	}
	if b := r.next(); b%2 == 1 {
		p.QuarterlyOn = &MonthDay{time.Month(b / 2 % 3), r.next() % 33}
	}
	if b := r.next(); b%2 == 1 {
		p.YearlyOn = &MonthDay{time.Month(b / 2 % 14), r.next() % 33}
	}
	return p
}

// FuzzApply checks invariants of Apply on arbitrary snapshot lists and
// policies: no panic; one decision per snapshot, newest first; archived and
// future snapshots kept; the newest Last eligible snapshots kept; and
// applying the policy again to the kept snapshots keeps all of them for the
// same reasons.
func FuzzApply(f *testing.F) {
	f.Add([]byte{2, 0, 3, 4, 2, 3, 1, 2, 32, 1, 13, 0, 31, 3, 4}, []byte{0, 0, 10, 0, 200, 1, 5, 7, 255, 255}, uint8(1))
	f.Add([]byte{0, 10, 0, 7, 0, 0, 0, 0, 0, 0}, []byte{1, 2, 3, 4, 5, 6, 7, 8}, uint8(0))
	f.Add([]byte{1, 0, 5, 5, 5, 5, 5, 5, 0, 1, 13, 1, 62, 1, 5, 58}, []byte{9, 9, 9, 9, 0, 0, 0, 0, 3, 3}, uint8(2))
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		f.Fatal(err)
	}
	locs := []*time.Location{time.UTC, berlin, time.FixedZone("+0530", 5*3600+1800)}
	now := time.Date(2025, 10, 26, 1, 30, 0, 0, time.UTC) // 02:30 CET, after clocks went back
	f.Fuzz(func(t *testing.T, policy, snapBytes []byte, zone uint8) {
		loc := locs[int(zone)%len(locs)]
		pr := byteReader(policy)
		p := fuzzPolicy(&pr)
		var snaps []Snapshot
		sr := byteReader(snapBytes)
		for i := 0; len(sr) > 0 && i < 200; i++ {
			// Steps back from now in units of 7 minutes to about 3 years,
			// a few into the future.
			off := sr.next()<<16 | sr.next()<<8 | sr.next()
			flags := sr.next()
			tm := now.Add(-time.Duration(off%225000-20) * 7 * time.Minute)
			snaps = append(snaps, Snapshot{ID: fmt.Sprint(i), Time: tm, Archived: flags%5 == 0})
		}
		dec, err := Apply(snaps, p, now, loc)
		if err != nil {
			if p.Validate() == nil && !p.Empty() {
				t.Fatalf("Apply(%+v) failed on a valid policy: %v", p, err)
			}
			return
		}
		if len(dec) != len(snaps) {
			t.Fatalf("%d decisions for %d snapshots", len(dec), len(snaps))
		}
		eligible := 0
		var kept []Snapshot
		reasons := map[string][]string{}
		for i, d := range dec {
			s := d.Snapshot
			if i > 0 && s.Time.After(dec[i-1].Snapshot.Time) {
				t.Fatalf("decision %d is newer than decision %d", i, i-1)
			}
			if (s.Archived || s.Time.After(now)) && !d.Keep {
				t.Fatalf("snapshot %s (archived %v, %v) removed", s.ID, s.Archived, s.Time)
			}
			if !s.Archived && !s.Time.After(now) {
				if eligible < p.Last && !d.Keep {
					t.Fatalf("snapshot %s is among the last %d but removed", s.ID, p.Last)
				}
				eligible++
			}
			if d.Keep != (len(d.Reasons) > 0) {
				t.Fatalf("snapshot %s: Keep %v with reasons %q", s.ID, d.Keep, d.Reasons)
			}
			if d.Keep {
				kept = append(kept, s)
				reasons[s.ID] = d.Reasons
			}
		}
		again, err := Apply(kept, p, now, loc)
		if err != nil {
			t.Fatalf("second Apply: %v", err)
		}
		for _, d := range again {
			if !reflect.DeepEqual(d.Reasons, reasons[d.Snapshot.ID]) {
				t.Fatalf("second Apply of %+v: snapshot %s (%v) reasons %q, first time %q",
					p, d.Snapshot.ID, d.Snapshot.Time.In(loc), d.Reasons, reasons[d.Snapshot.ID])
			}
		}
	})
}
