package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/config"
	"github.com/arkbox/arkbox/appliance/control"
	"github.com/arkbox/arkbox/appliance/jobs"
	"github.com/arkbox/arkbox/appliance/schedule"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

func controlClient(t *testing.T, dir string) *control.Client {
	t.Helper()
	c, err := control.Dial(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func adminPassword(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`user admin, password (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no admin password printed:\n%s", out)
	}
	return m[1]
}

func writeSFTP(c *sftp.Client, p, content string) error {
	f, err := c.Create(p)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(content)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readSFTP(c *sftp.Client, p string) (string, error) {
	f, err := c.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

func dialSFTPKey(t *testing.T, addr, user string, key ed25519.PrivateKey) (*sftp.Client, error) {
	t.Helper()
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	c, err := sftp.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c, nil
}

// waitJobs polls the job records until one matches ok, or fails.
func waitJobs(t *testing.T, c *control.Client, what string, ok func([]jobs.Record) bool) []jobs.Record {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		recs, err := c.Jobs(context.Background(), control.JobFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if ok(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not among the job records: %+v", what, recs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasJob(recs []jobs.Record, kind, target, trigger string, result jobs.Result) bool {
	for _, r := range recs {
		if r.Kind == kind && r.Target == target && (trigger == "" || r.Trigger == trigger) && r.Result == result {
			return true
		}
	}
	return false
}

// TestControlAppliesLive: what the control socket changes applies to the
// running server at once: a new user logs in, a grant opens a share, a
// revoked grant closes it (an open file included), a new share is served
// and snapshotted, a removed one is no longer served but keeps its data,
// a new password and a new key work. Every change is in the file.
func TestControlAppliesLive(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, dir)
	defer srv.stop(t)
	ctx := context.Background()
	c := controlClient(t, dir)
	admin := dialSFTP(t, srv.addr, "admin", adminPassword(t, srv.out.String()))
	// The first start's catch-up jobs (snapshot, prune, scrub, verify).
	waitJobs(t, c, "first snapshot", func(r []jobs.Record) bool { return hasJob(r, "snapshot", "backups", "catch-up", jobs.OK) })

	const carolPW = "carol's first password"
	var carol *sftp.Client
	var open *sftp.File
	// login logs in for the rest of the test.
	var login func(t *testing.T, user, pw string) *sftp.Client
	steps := []struct {
		name string
		do   func(t *testing.T)
	}{
		{"user added logs in at once", func(t *testing.T) {
			if err := c.AddUser(ctx, control.NewUser{Name: "carol", Password: carolPW}); err != nil {
				t.Fatal(err)
			}
			carol = login(t, "carol", carolPW)
			if names := list(t, carol, "/"); len(names) != 0 {
				t.Errorf("carol without grants sees %q", names)
			}
		}},
		{"grant opens a share to a logged-in user", func(t *testing.T) {
			if err := c.Grant(ctx, "carol", "BACKUPS", "rw"); err != nil {
				t.Fatal(err)
			}
			if err := writeSFTP(carol, "/backups/carol.txt", "from carol"); err != nil {
				t.Fatal(err)
			}
			var err error
			if open, err = carol.OpenFile("/backups/open.txt", os.O_WRONLY|os.O_CREATE); err != nil {
				t.Fatal(err)
			}
			if _, err := open.Write([]byte("written before the revoke")); err != nil {
				t.Fatal(err)
			}
		}},
		{"revoked grant loses access at the next request", func(t *testing.T) {
			if err := c.Revoke(ctx, "carol", "backups"); err != nil {
				t.Fatal(err)
			}
			if _, err := carol.Stat("/backups/carol.txt"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("stat after the revoke: %v", err)
			}
			if _, err := open.Write([]byte("after")); !errors.Is(err, os.ErrPermission) {
				t.Errorf("write to a file open since before the revoke: %v", err)
			}
			open.Close()
			if err := c.Revoke(ctx, "carol", "backups"); err == nil || err.Error() != "user carol has no grant to share backups" {
				t.Errorf("second revoke: %v", err)
			}
			if got, err := readSFTP(admin, "/backups/open.txt"); err != nil || got != "written before the revoke" {
				t.Errorf("what carol wrote before the revoke: %q, %v", got, err)
			}
		}},
		{"share added is served and snapshotted", func(t *testing.T) {
			if err := c.AddShare(ctx, control.NewShare{Name: "projects", Schedule: "every 1h"}); err != nil {
				t.Fatal(err)
			}
			if err := c.Grant(ctx, "carol", "projects", "rw"); err != nil {
				t.Fatal(err)
			}
			if err := writeSFTP(carol, "/projects/plan.txt", "the plan"); err != nil {
				t.Fatal(err)
			}
			// The new share's schedule never ran: it is caught up at once.
			waitJobs(t, c, "new share's first snapshot", func(r []jobs.Record) bool {
				return hasJob(r, "snapshot", "projects", "catch-up", jobs.OK)
			})
			sn, err := c.Snapshot(ctx, "projects")
			if err != nil {
				t.Fatal(err)
			}
			if sn.Source != "share:projects" || sn.Stats.Files != 1 || len(sn.Tags) != 1 || sn.Tags[0] != "manual" {
				t.Errorf("manual snapshot %+v", sn)
			}
			snaps, err := c.Snapshots(ctx, control.SnapshotFilter{Source: "share:projects"})
			if err != nil || len(snaps) == 0 || snaps[len(snaps)-1].ID != sn.ID {
				t.Errorf("snapshots of projects: %+v, %v; want the manual one last", snaps, err)
			}
			recs, err := c.Jobs(ctx, control.JobFilter{Kind: "snapshot", Limit: 1})
			if err != nil || len(recs) != 1 || recs[0].Target != "projects" || recs[0].Trigger != "manual" || recs[0].Result != jobs.OK ||
				recs[0].Stats.Files != 1 {
				t.Errorf("newest snapshot job: %+v, %v", recs, err)
			}
			if _, err := c.Snapshot(ctx, "nothing"); err == nil || err.Error() != "no share nothing" {
				t.Errorf("snapshot of no share: %v", err)
			}
		}},
		{"share removed is no longer served, its data stays", func(t *testing.T) {
			if err := c.RemoveShare(ctx, "projects"); err != nil {
				t.Fatal(err)
			}
			for who, cl := range map[string]*sftp.Client{"carol": carol, "admin": admin} {
				if _, err := cl.Stat("/projects/plan.txt"); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s reaches a removed share: %v", who, err)
				}
			}
			if _, err := c.Snapshot(ctx, "projects"); err == nil {
				t.Error("snapshot of a removed share")
			}
			snaps, err := c.Snapshots(ctx, control.SnapshotFilter{Source: "share:projects"})
			if err != nil || len(snaps) < 2 {
				t.Errorf("snapshots of the removed share: %d, %v", len(snaps), err)
			}
			users, _ := c.Users(ctx)
			for _, u := range users {
				if u.Name == "carol" && len(u.Grants) != 0 {
					t.Errorf("grants to a removed share stay: %v", u.Grants)
				}
			}
			// Added again, it serves what it held.
			if err := c.AddShare(ctx, control.NewShare{Name: "projects"}); err != nil {
				t.Fatal(err)
			}
			if got, err := readSFTP(admin, "/projects/plan.txt"); err != nil || got != "the plan" {
				t.Errorf("share added again: %q, %v", got, err)
			}
		}},
		{"new password and key log in", func(t *testing.T) {
			if err := c.SetPassword(ctx, "carol", "short"); err == nil || !strings.Contains(err.Error(), "shorter than 8") {
				t.Errorf("short password: %v", err)
			}
			if err := c.SetPassword(ctx, "Carol", "carol's second password"); err != nil {
				t.Fatal(err)
			}
			login(t, "carol", "carol's second password")
			if _, err := dialSFTPErr(srv.addr, "carol", carolPW); err == nil {
				t.Error("the old password still works")
			}
			pub, key, _ := ed25519.GenerateKey(rand.Reader)
			sp, _ := ssh.NewPublicKey(pub)
			if _, err := dialSFTPKey(t, srv.addr, "carol", key); err == nil {
				t.Fatal("a key not yet added logs in")
			}
			if err := c.AddKeys(ctx, "carol", []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))}); err != nil {
				t.Fatal(err)
			}
			if _, err := dialSFTPKey(t, srv.addr, "carol", key); err != nil {
				t.Errorf("key login after key add: %v", err)
			}
			if err := c.AddKeys(ctx, "carol", []string{"not a key"}); err == nil {
				t.Error("a bad key was accepted")
			}
		}},
		{"errors", func(t *testing.T) {
			for _, tc := range []struct {
				err  error
				want string
			}{
				{c.AddUser(ctx, control.NewUser{Name: "CAROL", Password: "whatever123"}), "user CAROL exists"},
				{c.AddUser(ctx, control.NewUser{Name: "bad name", Password: "whatever123"}), `users[2].name: "bad name"`},
				{c.Grant(ctx, "nobody", "backups", "ro"), "no user nobody"},
				{c.Grant(ctx, "carol", "backups", "rx"), `access "rx": want ro or rw`},
				{c.AddShare(ctx, control.NewShare{Name: "backups"}), "share backups exists"},
				{c.AddShare(ctx, control.NewShare{Name: "x", Schedule: "evry 5m"}), "schedule"},
				{c.AddShare(ctx, control.NewShare{Name: ".hidden"}), "share name"},
				{c.RemoveShare(ctx, "nothing"), "no share nothing"},
			} {
				if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
					t.Errorf("got %v, want an error with %q", tc.err, tc.want)
				}
			}
			var ce *control.Error
			if err := c.Grant(ctx, "carol", "backups", "rx"); !errors.As(err, &ce) || !ce.Usage {
				t.Errorf("a wrong access is a usage error: %#v", err)
			}
		}},
	}
	outer := t
	login = func(t *testing.T, user, pw string) *sftp.Client {
		t.Helper()
		conn, err := dialSFTPErr(srv.addr, user, pw)
		if err != nil {
			t.Fatalf("ssh login as %s: %v", user, err)
		}
		c, err := sftp.NewClient(conn)
		if err != nil {
			t.Fatal(err)
		}
		outer.Cleanup(func() { c.Close(); conn.Close() })
		return c
	}
	for _, s := range steps {
		if !t.Run(s.name, s.do) {
			t.FailNow()
		}
	}

	// Every change is in the file, valid, with no password in clear.
	raw, err := os.ReadFile(config.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "carol's") {
		t.Error("a password is in the configuration file")
	}
	cfg, err := config.Load(config.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	u, ok := cfg.User("carol")
	if _, shared := cfg.Share("projects"); !ok || !shared || len(u.AuthorizedKeys) != 1 || u.PasswordHash == "" {
		t.Errorf("configuration after the changes: %+v", cfg)
	}
	if strings.Contains(srv.logs(), "carol's") {
		t.Error("a password is in the log")
	}
}

func list(t *testing.T, c *sftp.Client, p string) []string {
	t.Helper()
	fis, err := c.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, fi := range fis {
		out = append(out, fi.Name())
	}
	return out
}

// TestServeScheduledSnapshots: under a fake clock, serve snapshots each
// share on its schedule (a share added while serving too), records each
// run, applies the schedule's retention, and keeps a snapshot asked for
// through the control socket apart from the schedule's.
func TestServeScheduledSnapshots(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default(dir)
	cfg.TimeZone = "UTC"
	cfg.Shares[0].Snapshots[0].Retention = config.Retention{KeepLast: 2}
	if err := config.Save(config.Path(dir), cfg); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)
	clk := schedule.NewFakeClock(t0)
	srv := startWith(t, Options{DataDir: dir, Clock: clk})
	defer srv.stop(t)
	c := controlClient(t, dir)
	ctx := context.Background()

	runs := func(share, trigger string) int {
		recs, err := c.Jobs(ctx, control.JobFilter{Kind: "snapshot"})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range recs {
			if r.Target == share && r.Trigger == trigger && r.Result == jobs.OK {
				n++
			}
		}
		return n
	}
	// advanceUntil moves the clock in steps of ten minutes until cond
	// holds.
	advanceUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not by %v", what, clk.Now())
			}
			clk.Advance(10 * time.Minute)
			for i := 0; i < 10 && !cond(); i++ {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	waitJobs(t, c, "catch-up at the start", func(r []jobs.Record) bool { return hasJob(r, "snapshot", "backups", "catch-up", jobs.OK) })
	advanceUntil("the 11:00 snapshot", func() bool { return runs("backups", "schedule") == 1 })

	if err := c.AddShare(ctx, control.NewShare{Name: "late", Schedule: "every 1h"}); err != nil {
		t.Fatal(err)
	}
	waitJobs(t, c, "a new share's catch-up", func(r []jobs.Record) bool { return hasJob(r, "snapshot", "late", "catch-up", jobs.OK) })
	manual, err := c.Snapshot(ctx, "backups")
	if err != nil {
		t.Fatal(err)
	}
	advanceUntil("the 12:00 snapshots", func() bool { return runs("backups", "schedule") == 2 && runs("late", "schedule") == 1 })
	advanceUntil("the 13:00 snapshot", func() bool { return runs("backups", "schedule") == 3 })

	snaps, err := c.Snapshots(ctx, control.SnapshotFilter{Source: "share:backups"})
	if err != nil {
		t.Fatal(err)
	}
	var hourly []control.Snapshot
	var keptManual bool
	for _, s := range snaps {
		if s.Time.Before(t0) || s.Time.After(clk.Now()) {
			t.Errorf("snapshot time %v is not the server's clock (%v … %v)", s.Time, t0, clk.Now())
		}
		switch {
		case s.ID == manual.ID:
			keptManual = true
		case len(s.Tags) == 1 && s.Tags[0] == "hourly":
			hourly = append(hourly, s)
		}
	}
	// Four hourly runs (10:30 catch-up, 11, 12, 13), keep_last 2.
	if len(hourly) != 2 || !keptManual {
		t.Errorf("snapshots of backups after four hourly runs with keep_last 2: %d hourly (%+v), manual kept %v", len(hourly), hourly, keptManual)
	}
	if len(hourly) == 2 && hourly[0].Time.Hour() != 12 {
		t.Errorf("oldest hourly snapshot kept from %v, want 12:00", hourly[0].Time)
	}
}
