package pool

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestMarkReadOnly: a member the caller found read-only in the mount
// table is marked so at once — Status shows it and the pool degraded,
// with the caller's reason, logged once naming the disk — and, on a
// three-disk pool (2+1), later writes go around it onto the other two
// disks while everything stays readable. Missing and failing disks, and
// UUIDs that are no member, are left alone.
func TestMarkReadOnly(t *testing.T) {
	ctx := context.Background()
	reason := errors.New("the kernel remounted its file system read-only after errors")
	for _, tc := range []struct {
		name      string
		setup     func(t *testing.T, p *Pool, d *disk)
		uuid      func(d *disk) string // whom to mark; nil: the disk
		reason    error
		changed   bool
		state     DiskState
		errSubstr string
	}{
		{name: "ok disk", reason: reason, changed: true, state: DiskReadOnly, errSubstr: reason.Error()},
		{name: "no reason given", changed: true, state: DiskReadOnly, errSubstr: "mounted read-only"},
		{name: "read-only already", reason: reason, state: DiskReadOnly, errSubstr: "first reason",
			setup: func(t *testing.T, p *Pool, d *disk) {
				if !p.MarkReadOnly(d.uuid, errors.New("first reason")) {
					t.Fatal("first MarkReadOnly changed nothing")
				}
			}},
		{name: "missing disk", reason: reason, state: DiskMissing, errSubstr: "unplugged",
			setup: func(t *testing.T, p *Pool, d *disk) {
				if err := p.Detach(d.uuid, errors.New("unplugged")); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "failing disk", reason: reason, state: DiskFailing, errSubstr: "input/output error",
			setup: func(t *testing.T, p *Pool, d *disk) { d.setState(DiskFailing, errors.New("input/output error")) }},
		{name: "not a member", reason: reason, state: DiskOK,
			uuid: func(*disk) string { return "00000000-0000-0000-0000-000000000000" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dirs := diskDirs(t, 3)
			var logs bytes.Buffer
			p, err := Create(ctx, dirs, CreateOptions{Parity: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			before := putObjs(t, p, 1, 4)
			d := p.st.Load().members[2]
			if tc.setup != nil {
				tc.setup(t, p, d)
			}
			logged := strings.Count(logs.String(), "pool: disk became read-only")
			who := d.uuid
			if tc.uuid != nil {
				who = tc.uuid(d)
			}
			if got := p.MarkReadOnly(who, tc.reason); got != tc.changed {
				t.Fatalf("MarkReadOnly = %v, want %v", got, tc.changed)
			}
			if p.MarkReadOnly(who, tc.reason) {
				t.Fatal("a second MarkReadOnly changed the state again")
			}
			if n := strings.Count(logs.String(), "pool: disk became read-only") - logged; tc.changed && (n != 1 || !strings.Contains(logs.String(), d.uuid)) || !tc.changed && n != 0 {
				t.Fatalf("logged %d times (changed %v), want once naming %s only if changed:\n%s", n, tc.changed, d.uuid, logs.String())
			}
			st := p.Status(ctx)
			ds := diskStatus(p, dirs[2])
			if ds.State != tc.state || !strings.Contains(ds.Error, tc.errSubstr) || st.Degraded != (tc.state != DiskOK) {
				t.Fatalf("status: degraded %v, disk %+v; want state %s, error with %q", st.Degraded, ds, tc.state, tc.errSubstr)
			}
			after := putObjs(t, p, 2, 4)
			checkObjs(t, p, append(before, after...))
			if tc.state == DiskOK {
				return
			}
			for _, o := range after {
				for _, f := range shardFiles(t, dirs, o.kind, o.id()) {
					if f.disk == 2 {
						t.Errorf("object %s written to the %s disk: %s", o.id().Short(), tc.state, f.path)
					}
				}
			}
		})
	}
}
