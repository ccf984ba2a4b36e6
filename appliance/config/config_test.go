package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/arkbox/arkbox/appliance/schedule"
	"github.com/arkbox/arkbox/appliance/users"
	"github.com/arkbox/arkbox/storage/retention"
	"golang.org/x/crypto/ssh"
)

var cheap = users.Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func testHash(t testing.TB) string {
	t.Helper()
	h, err := users.HashPasswordParams([]byte("secret"), cheap)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func testKey(t testing.TB) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " anna@laptop"
}

// full returns a configuration that sets every field.
func full(t testing.TB, dataDir string) Config {
	c := Default(dataDir)
	c.TimeZone = "Europe/Berlin"
	c.Pool = Pool{Disks: []string{"/mnt/usb1/arkbox", "/mnt/usb2/arkbox", "/mnt/sata1/arkbox", "/mnt/sata2/arkbox"}, Parity: 2}
	c.Shares = append(c.Shares, Share{
		Name: "finance.2026", Comment: "Buchhaltung – ledgers",
		Snapshots: []SnapshotSchedule{
			{Name: "workday", Schedule: "weekly mon-fri 12:00,18:00", Retention: Retention{KeepLast: 3, KeepWithin: "14d", KeepDaily: 10}},
			{Name: "month-end", Schedule: "monthly last 23:00", Retention: Retention{
				KeepMonthly: 12, KeepQuarterly: 8, KeepYearly: 10, KeepWeekly: 2, KeepHourly: 1,
				WeeklyOn: "sat", MonthlyOn: "last", QuarterlyOn: 15, YearlyOn: "12-31", RemoveOverlap: true}},
		},
	}, Share{Name: "scratch", Snapshots: []SnapshotSchedule{}})
	c.Users = []User{
		{Name: "admin", PasswordHash: testHash(t), Admin: true},
		{Name: "anna", PasswordHash: testHash(t), AuthorizedKeys: []string{testKey(t)},
			Grants: map[string]string{"backups": "rw", "finance.2026": "ro"}},
		{Name: "backup_bot", AuthorizedKeys: []string{testKey(t)}, Grants: map[string]string{"scratch": "rw"}},
	}
	c.Services = Services{
		SFTP:  Service{Enabled: true, Addr: ":22"},
		SMB:   Service{Enabled: true, Addr: "0.0.0.0:445"},
		NFS:   Service{Enabled: true, Addr: "[::]:2049"},
		Rsync: Service{Enabled: false, Addr: "localhost:873"},
		Web:   Service{Enabled: true, Addr: "192.168.1.10:80"},
	}
	c.Prune = Task{Schedule: "daily 02:15"}
	c.Scrub = Task{Schedule: "monthly first-sun 01:00"}
	c.Verify = Verify{Schedule: "never", ReadDataPercent: 2.5}
	return c
}

func TestDefault(t *testing.T) {
	c := Default("var")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.DiskDirs(); !reflect.DeepEqual(got, []string{"var/disks/disk1", "var/disks/disk2", "var/disks/disk3"}) || c.Pool.Parity != 1 {
		t.Errorf("pool: %v parity %d", got, c.Pool.Parity)
	}
	if c.RepoDir() != "var/repo" || Path("var") != "var/arkbox.json" {
		t.Errorf("RepoDir %s, Path %s", c.RepoDir(), Path("var"))
	}
	if len(c.Shares) != 1 || c.Shares[0].Name != "backups" || len(c.Shares[0].Snapshots) != 1 {
		t.Fatalf("shares: %+v", c.Shares)
	}
	sn := c.Shares[0].Snapshots[0]
	p, err := sn.Policy()
	if err != nil || p.String() != "hourly 24, daily 7, weekly 4, monthly 12" {
		t.Errorf("default retention %q, %v", p, err)
	}
	for _, tc := range []struct{ field, got, want string }{
		{"snapshot schedule", sn.Schedule, "every 1h"},
		{"prune", c.Prune.Schedule, "daily 03:30"},
		{"scrub", c.Scrub.Schedule, "weekly sun 04:00"},
		{"verify", c.Verify.Schedule, "monthly 1 05:00"},
		{"sftp", c.Services.SFTP.Addr, "127.0.0.1:2222"},
		{"web", c.Services.Web.Addr, "127.0.0.1:8080"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.field, tc.got, tc.want)
		}
	}
	if c.Verify.ReadDataPercent != 10 || !c.Services.SFTP.Enabled || !c.Services.Web.Enabled ||
		c.Services.SMB.Enabled || c.Services.NFS.Enabled || c.Services.Rsync.Enabled || len(c.Users) != 0 {
		t.Errorf("defaults: %+v", c)
	}
	// Default hands out fresh slices.
	d := Default("var")
	d.Shares[0].Snapshots[0].KeepDaily = 1
	d.Pool.Disks[0] = "x"
	if c2 := Default("var"); c2.Shares[0].Snapshots[0].KeepDaily != 7 || c2.Pool.Disks[0] != "disks/disk1" {
		t.Error("Default shares state between calls")
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir)
	if _, err := Load(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file = %v; want fs.ErrNotExist", err)
	}
	for _, c := range []Config{Default(dir), full(t, dir), full(t, "/srv/arkbox")} {
		if err := Save(path, c); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("saved file: %v, %v", fi.Mode(), err)
		}
		got, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("Load(Save(c)) = %+v\nwant %+v", got, c)
		}
		data, _ := os.ReadFile(path)
		if strings.Contains(string(data), dir) {
			t.Errorf("saved file names its own folder:\n%s", data)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	bad := Default(dir)
	bad.Shares[0].Name = ".hidden"
	if err := Save(path, bad); err == nil || !strings.Contains(err.Error(), "shares[0].name") {
		t.Errorf("Save of an invalid config = %v", err)
	}
	if got, err := Load(path); err != nil || got.DataDir != "/srv/arkbox" {
		t.Errorf("a failed Save changed the file: %v %v", got.DataDir, err)
	}
}

func TestLoadDefaults(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		json string
		want func(c *Config)
	}{
		{"empty object", `{}`, func(c *Config) {}},
		{"no shares", `{"shares": []}`, func(c *Config) { c.Shares = []Share{} }},
		{"null shares", `{"shares": null}`, func(c *Config) {}},
		{"one service changed", `{"services": {"sftp": {"addr": "0.0.0.0:22"}}}`, func(c *Config) {
			c.Services.SFTP.Addr = "0.0.0.0:22"
		}},
		{"service disabled", `{"services": {"web": {"enabled": false}}}`, func(c *Config) {
			c.Services.Web.Enabled = false
		}},
		{"relative data dir", `{"data_dir": "data"}`, func(c *Config) { c.DataDir = filepath.Join(dir, "data") }},
		{"absolute data dir", `{"data_dir": "/perm/arkbox/"}`, func(c *Config) { c.DataDir = "/perm/arkbox" }},
		{"share without schedules", `{"shares": [{"name": "x"}]}`, func(c *Config) { c.Shares = []Share{{Name: "x", Snapshots: []SnapshotSchedule{}}} }},
		{"pool parity only", `{"pool": {"parity": -1}}`, func(c *Config) { c.Pool.Parity = -1 }},
		{"verify percent", `{"verify": {"read_data_percent": 100}}`, func(c *Config) { c.Verify.ReadDataPercent = 100 }},
	}
	for _, tc := range tests {
		path := filepath.Join(dir, "arkbox.json")
		if err := os.WriteFile(path, []byte(tc.json), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Load(path)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		want := Default(dir)
		tc.want(&want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v\nwant %+v", tc.name, got, want)
		}
	}
}

func TestLoadStrict(t *testing.T) {
	tests := []struct{ json, err string }{
		{`{"sharez": []}`, `config: FILE: sharez: unknown field (did you mean "shares"?)`},
		{`{"Shares": []}`, `Shares: unknown field (did you mean "shares"?)`},
		{`{"shares": [{"name": "a", "snapshots": [{"schedule": "every 1h", "keep_dayly": 7}]}]}`,
			`shares[0].snapshots[0].keep_dayly: unknown field (did you mean "keep_daily"?)`},
		{`{"services": {"ftp": {}}}`, `services.ftp: unknown field`},
		{`{"users": [{"name": "a", "grants": {"x": "rw", "x": "ro"}}]}`, `users[0].grants["x"]: given twice`},
		{`{"prune": {"schedule": "daily 01:00"}, "prune": {"schedule": "daily 02:00"}}`, `prune: given twice`},
		{`{"shares": [{"name": "a", "snapshots": [{"schedule": "every 1h", "keep_daily": "7"}]}]}`,
			`shares[0].snapshots[0].keep_daily: want a whole number, not a string`},
		{`{"shares": [{"name": "a", "snapshots": [{"schedule": "every 1h", "keep_daily": 7.5}]}]}`,
			`shares[0].snapshots[0].keep_daily: 7.5: want a whole number`},
		{`{"shares": [{"name": "a", "snapshots": [{"schedule": "every 1h", "keep_daily": 1e40}]}]}`,
			`keep_daily: 1e40: want a whole number within range`},
		{`{"shares": {"name": "a"}}`, `shares: want a list, not an object`},
		{`{"users": [{"name": "a", "admin": "yes"}]}`, `users[0].admin: want true or false, not a string`},
		{`{"services": {"sftp": null}}`, `services.sftp: want an object, not null`},
		{`{"version": null}`, `version: want a whole number, not null`},
		{`{"verify": {"read_data_percent": "10%"}}`, `verify.read_data_percent: want a number, not a string`},
		{`[]`, `(top level): want an object, not a list`},
		{`{"shares": [}`, `line 1, column 13: invalid character '}'`},
		{"{\n  \"shares\": [\n    {\"name\": \"a\",}\n  ]\n}", `line 3, column 18: invalid character '}'`},
		{`{"shares": []`, `unexpected end of file`},
		{`{} {}`, `data after the configuration object`},
		{``, `unexpected end of file`},
		{`{"version": 2}`, `version: 2: this arkbox reads version 1`},
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "arkbox.json")
	for _, tc := range tests {
		if err := os.WriteFile(path, []byte(tc.json), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		want := strings.ReplaceAll(tc.err, "FILE", path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s) = %v; want error containing %q", tc.json, err, want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "config: "+path+": ") {
			t.Errorf("Load(%s) = %q: does not start with config: and the file", tc.json, err)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		errs   []string // each must appear
	}{
		{"bad schedule", func(c *Config) { c.Shares[0].Snapshots[0].Schedule = "evry 5m" },
			[]string{`config: shares[0].snapshots[0].schedule: schedule "evry 5m": unknown form "evry"`}},
		{"empty schedule", func(c *Config) { c.Prune.Schedule = " " }, []string{`prune.schedule: empty (use "never"`}},
		{"scrub and verify", func(c *Config) { c.Scrub.Schedule = "weekly funday 04:00"; c.Verify.Schedule = "monthly 32 01:00" },
			[]string{`scrub.schedule: schedule "weekly funday 04:00": day "funday"`, `verify.schedule: schedule "monthly 32 01:00"`}},
		{"verify percent", func(c *Config) { c.Verify.ReadDataPercent = 101 }, []string{"verify.read_data_percent: 101: want 0"}},
		{"version", func(c *Config) { c.Version = 0 }, []string{"version: 0"}},
		{"no data dir", func(c *Config) { c.DataDir = "" }, []string{"data_dir: empty"}},
		{"time zone", func(c *Config) { c.TimeZone = "Mars/Olympus" }, []string{`time_zone: "Mars/Olympus": unknown time zone`}},
		{"share names", func(c *Config) {
			c.Shares = append(c.Shares, Share{Name: "Backups"}, Share{Name: ".snapshots"}, Share{Name: "a/b"},
				Share{Name: ""}, Share{Name: strings.Repeat("x", 65)}, Share{Name: "-x"}, Share{Name: "ä"})
		}, []string{`shares[1].name: "Backups": shares[0] has that name`, `shares[2].name: ".snapshots": must not start with '.'`,
			`shares[3].name: "a/b": '/' not allowed`, `shares[4].name: empty`, `shares[5].name: "xxx`, `shares[6].name: "-x"`,
			`shares[7].name: "ä": 'ä' not allowed`}},
		{"comment", func(c *Config) { c.Shares[0].Comment = "line\nbreak" }, []string{"shares[0].comment:"}},
		{"several schedules need names", func(c *Config) {
			s := &c.Shares[0]
			s.Snapshots = append(s.Snapshots, SnapshotSchedule{Schedule: "daily 23:00", Retention: Retention{KeepDaily: 30}},
				SnapshotSchedule{Name: "HOURLY", Schedule: "daily 23:00", Retention: Retention{KeepDaily: 30}})
		}, []string{"shares[0].snapshots[1].name: required when a share has several schedules",
			`shares[0].snapshots[2].name: "HOURLY": shares[0].snapshots[0] has that name`}},
		{"retention", func(c *Config) {
			s := &c.Shares[0]
			s.Snapshots = []SnapshotSchedule{
				{Name: "a", Schedule: "every 1h"},
				{Name: "b", Schedule: "every 1h", Retention: Retention{KeepDaily: -1}},
				{Name: "c", Schedule: "every 1h", Retention: Retention{KeepDaily: 1, KeepWithin: "2 weeks"}},
				{Name: "d", Schedule: "every 1h", Retention: Retention{KeepWeekly: 1, WeeklyOn: "caturday"}},
				{Name: "e", Schedule: "every 1h", Retention: Retention{KeepMonthly: 1, MonthlyOn: "32"}},
				{Name: "f", Schedule: "every 1h", Retention: Retention{KeepQuarterly: 1, QuarterlyOn: 40}},
				{Name: "g", Schedule: "every 1h", Retention: Retention{KeepYearly: 1, YearlyOn: "02-30"}},
				{Name: "h", Schedule: "every 1h", Retention: Retention{WeeklyOn: "sat", RemoveOverlap: true}},
			}
		}, []string{"shares[0].snapshots[0]: keeps nothing", "shares[0].snapshots[1].keep_daily: -1: must not be negative",
			`shares[0].snapshots[2].keep_within: retention: parse duration "2 weeks"`, `shares[0].snapshots[3].weekly_on:`,
			`shares[0].snapshots[4].monthly_on:`, `shares[0].snapshots[5].quarterly_on: 40`,
			`shares[0].snapshots[6].yearly_on: retention: parse month-day "02-30"`, "shares[0].snapshots[7]: keeps nothing"}},
		{"users", func(c *Config) {
			c.Users = []User{
				{Name: "anna", Grants: map[string]string{"backups": "rw", "nope": "ro", "Backups": "ro"}},
				{Name: "ANNA"},
				{Name: "bob", PasswordHash: "secret", AuthorizedKeys: []string{"ssh-rsa AAAA", testKey(t), `from="*" ` + testKey(t)}},
				{Name: "carol", Grants: map[string]string{"backups": "write"}},
				{Name: "x y"},
				{Name: strings.Repeat("u", 33)},
			}
		}, []string{`users[0].grants["nope"]: no share named "nope"`, `users[0].grants["Backups"]: no share named "Backups"`,
			`users[1].name: "ANNA": users[0] has that name`, "users[2].password_hash: users: password hash:",
			"users[2].authorized_keys[0]: users: authorized key:", "users[2].authorized_keys[2]: users: authorized key SHA256:",
			`users[3].grants["backups"]: users: access "write": want ro or rw`, `users[4].name: "x y": ' ' not allowed`,
			"users[5].name: \"uuu"}},
		{"services", func(c *Config) {
			c.Services.SFTP.Addr = "127.0.0.1"
			c.Services.SMB = Service{Enabled: true, Addr: "127.0.0.1:8080"} // the web UI's
			c.Services.NFS = Service{Enabled: true, Addr: ""}
			c.Services.Rsync = Service{Enabled: false, Addr: "host_name:873"}
		}, []string{`services.sftp.addr: "127.0.0.1": want host:port`, `services.web.addr: "127.0.0.1:8080": services.smb listens there too`,
			"services.nfs.addr: empty", `services.rsync.addr: "host_name:873": host "host_name"`}},
		{"ports", func(c *Config) {
			c.Services.SFTP.Addr = ":65536"
			c.Services.Web.Addr = ":http"
			c.Services.SMB = Service{Enabled: true, Addr: "[::1]:0"}
			c.Services.NFS = Service{Enabled: true, Addr: "[::1]:0"} // port 0 twice is fine
		}, []string{`services.sftp.addr: ":65536": port "65536"`, `services.web.addr: ":http": port "http"`}},
		{"wildcard clash", func(c *Config) {
			c.Services.SMB = Service{Enabled: true, Addr: ":2222"}
			c.Services.NFS = Service{Enabled: true, Addr: "[::]:8080"}
		}, []string{`services.smb.addr: ":2222": services.sftp listens there too`,
			`services.web.addr: "127.0.0.1:8080": services.nfs listens there too`}},
		{"pool", func(c *Config) { c.Pool.Disks = nil }, []string{"pool.disks: no disk folders"}},
		{"pool folders", func(c *Config) { c.Pool.Disks = []string{"a", "", "./a", "repo"} }, []string{
			"pool.disks[1]: empty", `pool.disks[2]: "./a": the same folder as pool.disks[0]`,
			`pool.disks[3]: "repo": is the repository folder`}},
		{"parity", func(c *Config) { c.Pool.Parity = 3 }, []string{"pool.parity: 3: needs more than 3 disks"}},
		{"parity -2", func(c *Config) { c.Pool.Parity = -2 }, []string{"pool.parity: -2"}},
		{"one disk", func(c *Config) { c.Pool = Pool{Disks: []string{"d"}, Parity: 5} }, []string{"pool.parity: 5: a single disk"}},
	}
	for _, tc := range tests {
		c := Default("/data")
		tc.change(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: valid", tc.name)
			continue
		}
		for _, want := range tc.errs {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error\n%v\nlacks %q", tc.name, err, want)
			}
		}
		if n := len(unjoin(err)); n != len(tc.errs) {
			t.Errorf("%s: %d problems, want %d:\n%v", tc.name, n, len(tc.errs), err)
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field == "" {
			t.Errorf("%s: not a *FieldError: %v", tc.name, err)
		}
	}
	// Valid variations.
	for _, change := range []func(c *Config){
		func(c *Config) { c.Pool = Pool{Disks: []string{"d"}, Parity: 0} },
		func(c *Config) { c.Pool = Pool{Disks: []string{"d"}, Parity: 4} },
		func(c *Config) { c.Pool = Pool{Disks: []string{"a", "b"}, Parity: -1} },
		func(c *Config) { c.Services.SMB = Service{Enabled: false, Addr: "127.0.0.1:8080"} }, // disabled: no clash
		func(c *Config) { c.Services.SMB = Service{Enabled: true, Addr: "[::1]:8080"} },      // other host
		func(c *Config) { c.Scrub.Schedule = "never" },
		func(c *Config) { c.Shares = nil },
		func(c *Config) { c.Users = []User{{Name: "nologin"}} },
		func(c *Config) { c.TimeZone = "UTC" },
	} {
		c := Default("/data")
		change(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestRetentionRoundTrip(t *testing.T) {
	sat, fri := time.Saturday, time.Friday
	policies := []retention.Policy{
		{Hourly: 24, Daily: 7, Weekly: 4, Monthly: 12},
		{Last: 3, Within: 14 * retention.Day, Weekly: 2, WeeklyOn: &sat, Monthly: 6, MonthlyOn: -1, RemoveOverlap: true},
		{Quarterly: 4, QuarterlyOn: &retention.MonthDay{Month: time.January, Day: 15}, Yearly: 3,
			YearlyOn: &retention.MonthDay{Month: 2, Day: 29}, MonthlyOn: 31, Monthly: 1, WeeklyOn: &fri, Weekly: 1},
	}
	for _, p := range policies {
		r := RetentionOf(p)
		got, err := r.Policy()
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("RetentionOf(%v) = %+v → %v, %v", p, r, got, err)
		}
	}
}

func TestAccounts(t *testing.T) {
	c := full(t, "/data")
	acc := c.Accounts()
	if len(acc) != 3 || !acc[0].Admin || acc[1].Grants["backups"] != users.ReadWrite ||
		acc[1].Grants["finance.2026"] != users.ReadOnly || len(acc[2].AuthorizedKeys) != 1 {
		t.Fatalf("Accounts = %+v", acc)
	}
	az := users.NewAuthorizer(acc, c.ShareNames())
	if !az.CanWrite("anna", "backups") || az.CanWrite("anna", "finance.2026") || !az.CanRead("admin", "scratch") {
		t.Error("authorizer from the config")
	}
	if _, err := users.NewAuthenticator(acc, users.AuthOptions{}); err != nil {
		t.Error(err)
	}
	if u, ok := c.User("ANNA"); !ok || u.Name != "anna" {
		t.Error("User(ANNA)")
	}
	if s, ok := c.Share("Scratch"); !ok || s.Name != "scratch" {
		t.Error("Share(Scratch)")
	}
	if _, ok := c.Share("nope"); ok {
		t.Error("Share(nope)")
	}
	// Schedules of a valid configuration parse.
	for _, s := range c.Shares {
		for _, sn := range s.Snapshots {
			if _, err := schedule.Parse(sn.Schedule); err != nil {
				t.Error(err)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	// Small seeds: the fuzzer spends long minimizing large inputs.
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"shares": [{"name": "a", "snapshots": [{"schedule": "every 1h", "keep_daily": 7, "weekly_on": "sat"}]}]}`))
	f.Add([]byte(`{"users": [{"name": "a", "grants": {"backups": "rw"}}], "services": {"web": {"addr": ":0"}}}`))
	f.Add([]byte(`{"pool": {"disks": ["a", "b"], "parity": -1}, "time_zone": "UTC"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "/data")
		if err != nil {
			return
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out, "/data")
		if err != nil {
			t.Fatalf("re-parse of\n%s\n%v", out, err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip changed\n%+v\nto\n%+v", c, again)
		}
	})
}

// TestDocumentedExample parses the example in doc/operations.md (with real
// hashes and keys in place of the elided ones) and checks the documented
// defaults.
func TestDocumentedExample(t *testing.T) {
	doc, err := os.ReadFile("../../doc/operations.md")
	if err != nil {
		t.Skip("doc/operations.md not found:", err)
	}
	text := string(doc)
	_, after, ok := strings.Cut(text, "### Example\n\n```json\n")
	example, _, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatal("no example in doc/operations.md")
	}
	example = strings.ReplaceAll(example, "$argon2id$v=19$m=65536,t=3,p=2$…$…", testHash(t))
	key := testKey(t)
	example = strings.ReplaceAll(example, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA… anna@laptop", key)
	c, err := Parse([]byte(example), "/perm/arkbox")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Shares) != 2 || len(c.Users) != 2 || c.Pool.Parity != 2 || c.DataDir != "/perm/arkbox" {
		t.Errorf("example parsed as %+v", c)
	}
	// The defaults the document states.
	def, err := Marshal(Default("/data"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{"schedule": "daily 03:30"}`, `{"schedule": "weekly sun 04:00"}`,
		`{"schedule": "monthly 1 05:00", "read_data_percent": 10}`, `"disks/disk1", "disks/disk2", "disks/disk3"`,
		"`127.0.0.1:2222`", "`127.0.0.1:4450`", "`127.0.0.1:2049`", "`127.0.0.1:8730`", "`127.0.0.1:8080`"} {
		if !strings.Contains(text, want) {
			t.Errorf("doc/operations.md does not state %s", want)
		}
	}
	for _, want := range []string{`"daily 03:30"`, `"weekly sun 04:00"`, `"monthly 1 05:00"`, `"read_data_percent": 10`,
		`"127.0.0.1:2222"`, `"127.0.0.1:4450"`, `"127.0.0.1:2049"`, `"127.0.0.1:8730"`, `"127.0.0.1:8080"`} {
		if !strings.Contains(string(def), want) {
			t.Errorf("defaults lack %s", want)
		}
	}
}

func TestInitFrom(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir)
	tmpl := `{"services": {"sftp": {"enabled": true, "addr": ":22"}},
	  "shares": [{"name": "backups", "snapshots": [{"schedule": "every 1m", "keep_last": 100}]}]}`
	c, pw, err := InitFrom(path, []byte(tmpl), cheap)
	if err != nil {
		t.Fatal(err)
	}
	if c.Services.SFTP.Addr != ":22" || c.Shares[0].Snapshots[0].Schedule != "every 1m" || c.DataDir != dir {
		t.Errorf("template not applied: %+v", c)
	}
	if c.Prune != Default(dir).Prune || !reflect.DeepEqual(c.Pool, Default(dir).Pool) {
		t.Errorf("defaults not kept: prune %+v pool %+v", c.Prune, c.Pool)
	}
	admin, ok := c.User("admin")
	if !ok || len(c.Users) != 1 || pw == "" {
		t.Fatalf("users %+v, password %q", c.Users, pw)
	}
	if ok, _ := users.VerifyPassword(admin.PasswordHash, []byte(pw)); !ok {
		t.Error("the returned password does not match the hash")
	}
	if loaded, err := Load(path); err != nil || !reflect.DeepEqual(loaded, c) {
		t.Fatalf("Load after InitFrom = %+v, %v", loaded, err)
	}

	// A template with an admin keeps it and generates no password.
	path2 := Path(t.TempDir())
	_, pw, err = InitFrom(path2, []byte(`{"users": [{"name": "admin", "admin": true, "authorized_keys": ["`+testKey(t)+`"]}]}`), cheap)
	if err != nil || pw != "" {
		t.Errorf("template with admin: password %q, %v", pw, err)
	}

	// A bad template is an error naming the field, and writes nothing.
	path3 := Path(t.TempDir())
	if _, _, err := InitFrom(path3, []byte(`{"services": {"sftp": {"adr": ":22"}}}`), cheap); err == nil ||
		!strings.Contains(err.Error(), "services.sftp.adr") {
		t.Errorf("bad template: %v", err)
	}
	if _, err := os.Stat(path3); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed InitFrom wrote %s", path3)
	}
}

func TestInit(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir)
	c, pw, err := Init(path, cheap)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path)
	if err != nil || !reflect.DeepEqual(loaded, c) {
		t.Fatalf("Load after Init = %+v, %v\nwant %+v", loaded, err, c)
	}
	admin, ok := c.User("admin")
	if !ok || !admin.Admin || len(c.Users) != 1 || len(pw) != 23 {
		t.Fatalf("users %+v, password %q", c.Users, pw)
	}
	if ok, err := users.VerifyPassword(admin.PasswordHash, []byte(pw)); !ok || err != nil {
		t.Errorf("the returned password does not match the hash: %v %v", ok, err)
	}
	if data, _ := os.ReadFile(path); strings.Contains(string(data), pw) {
		t.Error("the password is in the file")
	}
	if _, _, err := Init(path, cheap); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Init = %v; want fs.ErrExist", err)
	}
	if got, _ := Load(path); !reflect.DeepEqual(got, c) {
		t.Error("a failed Init changed the file")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if loc, err := c.Location(); err != nil || loc != time.Local {
		t.Errorf("Location = %v, %v", loc, err)
	}
	c.TimeZone = "Europe/Berlin"
	if loc, err := c.Location(); err != nil || loc.String() != "Europe/Berlin" {
		t.Errorf("Location = %v, %v", loc, err)
	}
}
