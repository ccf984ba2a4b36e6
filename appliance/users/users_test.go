package users

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// cheap are fast parameters for tests.
var cheap = Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func hashFor(t testing.TB, pw string) string {
	t.Helper()
	h, err := HashPasswordParams([]byte(pw), cheap)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashAndVerify(t *testing.T) {
	h := hashFor(t, "correct horse")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash %q", h)
	}
	if h2 := hashFor(t, "correct horse"); h2 == h {
		t.Error("two hashes of one password are equal: salt not random")
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{{"correct horse", true}, {"correct hors", false}, {"", false}, {"Correct horse", false}} {
		ok, err := VerifyPassword(h, []byte(tc.pw))
		if err != nil || ok != tc.want {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", tc.pw, ok, err, tc.want)
		}
	}
	if _, err := HashPasswordParams([]byte("x"), Params{MemoryKiB: 64, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32}); err == nil {
		t.Error("t=0 accepted")
	}
}

func TestDefaultParams(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB argon2id")
	}
	h, err := HashPassword([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Errorf("hash %q", h)
	}
	if NeedsRehash(h, DefaultParams()) || !NeedsRehash(h, cheap) || !NeedsRehash("garbage", cheap) {
		t.Error("NeedsRehash")
	}
	if ok, err := VerifyPassword(h, []byte("pw")); !ok || err != nil {
		t.Errorf("VerifyPassword = %v, %v", ok, err)
	}
}

func TestParseHash(t *testing.T) {
	salt := "c2FsdHNhbHRzYWx0c2FsdA"                     // 16 bytes
	key := "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE" // 32 bytes
	good := "$argon2id$v=19$m=65536,t=3,p=2$" + salt + "$" + key
	if h, err := ParseHash(good); err != nil || h.String() != good || h.Params.MemoryKiB != 65536 || h.Params.Threads != 2 {
		t.Fatalf("ParseHash(good) = %+v, %v", h, err)
	}
	tests := []struct{ in, err string }{
		{"", "want $argon2id"},
		{"argon2id$v=19$m=65536,t=3,p=2$" + salt + "$" + key + "$", "want $argon2id"},
		{"$argon2i$v=19$m=65536,t=3,p=2$" + salt + "$" + key, "want argon2id"},
		{"$argon2id$v=16$m=65536,t=3,p=2$" + salt + "$" + key, "want v=19"},
		{"$argon2id$m=65536,t=3,p=2$" + salt + "$" + key, "want $argon2id"},
		{"$argon2id$v=19$t=3,m=65536,p=2$" + salt + "$" + key, "m=…,t=…,p=…"},
		{"$argon2id$v=19$m=65536,t=3$" + salt + "$" + key, "m=…,t=…,p=…"},
		{"$argon2id$v=19$m=065536,t=3,p=2$" + salt + "$" + key, "decimal"},
		{"$argon2id$v=19$m=+65536,t=3,p=2$" + salt + "$" + key, "decimal"},
		{"$argon2id$v=19$m=65536,t=3,p=256$" + salt + "$" + key, "at most 255"},
		{"$argon2id$v=19$m=65536,t=0,p=2$" + salt + "$" + key, "t=0"},
		{"$argon2id$v=19$m=65536,t=65,p=2$" + salt + "$" + key, "t=65"},
		{"$argon2id$v=19$m=65536,t=3,p=0$" + salt + "$" + key, "p=0"},
		{"$argon2id$v=19$m=8,t=3,p=2$" + salt + "$" + key, "m=8"},
		{"$argon2id$v=19$m=2097152,t=3,p=2$" + salt + "$" + key, "m=2097152"},
		{"$argon2id$v=19$m=65536,t=3,p=2$" + salt + "=$" + key, "salt"},
		{"$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$" + key, "salt of 4 bytes"},
		{"$argon2id$v=19$m=65536,t=3,p=2$" + salt + "$YWFh", "hash of 3 bytes"},
		{"$argon2id$v=19$m=65536,t=3,p=2$" + salt + "$" + key + "!", "hash"},
		{"$argon2id$v=19$m=65536,t=3,p=2$" + salt + "$" + key[:len(key)-1] + "F", "hash"}, // non-canonical trailing bits
	}
	for _, tc := range tests {
		_, err := ParseHash(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseHash(%q) = %v; want error containing %q", tc.in, err, tc.err)
		}
		if ok, err := VerifyPassword(tc.in, []byte("pw")); ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %v, %v", tc.in, ok, err)
		}
	}
}

func FuzzVerifyPassword(f *testing.F) {
	f.Add(hashFor(f, "pw"), []byte("pw"))
	f.Add("$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0c2FsdA$YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE", []byte("x"))
	f.Add("$argon2id$v=19$m=64,t=1,p=1$$", []byte{})
	f.Fuzz(func(t *testing.T, hash string, pw []byte) {
		h, err := ParseHash(hash)
		if err != nil {
			return
		}
		if s := h.String(); s != hash {
			t.Fatalf("ParseHash(%q).String() = %q", hash, s)
		}
		if h.Params.MemoryKiB > 1024 || h.Params.Time > 2 {
			return // valid but too slow to compute in a fuzz loop
		}
		ok, err := VerifyPassword(hash, pw)
		if err != nil {
			t.Fatal(err)
		}
		if ok && !h.Verify(pw) {
			t.Fatal("Verify and VerifyPassword disagree")
		}
	})
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	for i := 0; i < 1000; i++ {
		pw := GeneratePassword()
		if len(pw) != 23 || strings.Count(pw, "-") != 3 || pw[5] != '-' || pw[11] != '-' || pw[17] != '-' {
			t.Fatalf("password %q: want 4 groups of 5", pw)
		}
		for _, c := range strings.ReplaceAll(pw, "-", "") {
			if !strings.ContainsRune(passwordAlphabet, c) {
				t.Fatalf("password %q has %q", pw, c)
			}
			counts[c]++
		}
		if seen[pw] {
			t.Fatalf("password %q generated twice", pw)
		}
		seen[pw] = true
	}
	if len(counts) != len(passwordAlphabet) {
		t.Errorf("%d of %d characters used", len(counts), len(passwordAlphabet))
	}
	for _, c := range "0o1li" {
		if strings.ContainsRune(passwordAlphabet, c) {
			t.Errorf("alphabet has ambiguous %q", c)
		}
	}
}

func newKey(t testing.TB, comment string) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment
}

func TestAuthorizedKeys(t *testing.T) {
	k1, line1 := newKey(t, "anna@laptop")
	k2, line2 := newKey(t, "")
	keys, err := ParseAuthorizedKeys([]string{line1, "", "  # a comment", line2})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || string(keys[0].Marshal()) != string(k1.Marshal()) || string(keys[1].Marshal()) != string(k2.Marshal()) {
		t.Errorf("keys = %v", keys)
	}
	if _, c, err := ParseAuthorizedKey(line1); err != nil || c != "anna@laptop" {
		t.Errorf("comment %q, %v", c, err)
	}
	bad := []struct{ line, err string }{
		{"ssh-ed25519 AAAAnotbase64!", "line 2"},
		{`from="10.0.0.0/8" ` + line1, "options (from=\"10.0.0.0/8\") are not supported"},
		{"command=\"/bin/true\" " + line1, "not supported"},
		{"hello", "line 2"},
	}
	for _, tc := range bad {
		_, err := ParseAuthorizedKeys([]string{line1, tc.line})
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseAuthorizedKeys(%q) = %v; want error containing %q", tc.line, err, tc.err)
		}
	}
}

func TestAuthorizer(t *testing.T) {
	a := NewAuthorizer([]Account{
		{Name: "anna", Grants: map[string]Access{"backups": ReadWrite, "archive": ReadOnly, "gone": ReadWrite}},
		{Name: "Bob", Grants: map[string]Access{"Archive": ReadOnly}},
		{Name: "root", Admin: true},
		{Name: "nobody"},
	}, []string{"backups", "archive", "photos"})
	tests := []struct {
		user, share string
		want        Access
	}{
		{"anna", "backups", ReadWrite},
		{"anna", "archive", ReadOnly},
		{"anna", "photos", NoAccess},
		{"anna", "gone", NoAccess}, // no such share
		{"ANNA", "Backups", ReadWrite},
		{"bob", "archive", ReadOnly},
		{"bob", "backups", NoAccess},
		{"root", "photos", ReadWrite},
		{"root", "gone", NoAccess},
		{"nobody", "backups", NoAccess},
		{"eve", "backups", NoAccess},
	}
	for _, tc := range tests {
		got := a.Access(tc.user, tc.share)
		if got != tc.want || a.CanRead(tc.user, tc.share) != (tc.want >= ReadOnly) ||
			a.CanWrite(tc.user, tc.share) != (tc.want == ReadWrite) {
			t.Errorf("Access(%s, %s) = %v; want %v", tc.user, tc.share, got, tc.want)
		}
	}
	if got := strings.Join(a.Shares("anna"), ","); got != "archive,backups" {
		t.Errorf("Shares(anna) = %s", got)
	}
	if got := strings.Join(a.Shares("root"), ","); got != "archive,backups,photos" {
		t.Errorf("Shares(root) = %s", got)
	}
	if len(a.Shares("eve")) != 0 || !a.IsAdmin("Root") || a.IsAdmin("anna") || a.IsAdmin("eve") {
		t.Error("Shares(eve) or IsAdmin")
	}
	for _, s := range []string{"ro", "rw"} {
		if a, err := ParseAccess(s); err != nil || a.String() != s {
			t.Errorf("ParseAccess(%s) = %v, %v", s, a, err)
		}
	}
	if _, err := ParseAccess("RW"); err == nil {
		t.Error("ParseAccess(RW) succeeded")
	}
}

// fakeNow is a settable clock for the Limiter.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) add(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

func TestLimiter(t *testing.T) {
	clk := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewLimiter(LimiterOptions{MaxFailures: 3, Window: 10 * time.Minute, Backoff: time.Minute,
		MaxBackoff: 5 * time.Minute, Forget: time.Hour, Now: clk.now})
	const a = "192.0.2.1:40000"
	type step struct {
		wait     time.Duration // passes before the step
		op       string        // fail, succeed, allow
		addr     string
		wantLock time.Duration // fail: lockout started; allow: remaining lockout
	}
	steps := []step{
		{0, "fail", a, 0},
		{5 * time.Minute, "fail", a, 0},
		{6 * time.Minute, "fail", a, 0}, // the first failure left the window
		{0, "allow", a, 0},
		{time.Minute, "fail", "192.0.2.1:40001", time.Minute}, // other port, same address
		{0, "allow", a, time.Minute},
		{0, "allow", "192.0.2.2:1", 0}, // other addresses are not affected
		{30 * time.Second, "allow", "192.0.2.1", 30 * time.Second},
		{30 * time.Second, "allow", a, 0},
		{0, "fail", a, 2 * time.Minute}, // after a lockout, each failure locks out, twice as long
		{2 * time.Minute, "fail", a, 4 * time.Minute},
		{4 * time.Minute, "fail", a, 5 * time.Minute}, // MaxBackoff
		{5 * time.Minute, "fail", a, 5 * time.Minute},
		{5 * time.Minute, "succeed", a, 0}, // a success forgets
		{0, "fail", a, 0},
		{0, "fail", a, 0},
		{0, "fail", a, time.Minute},
		{2 * time.Hour, "fail", a, 0}, // quiet for Forget: afresh
		// IPv6 counts per /64; IPv4-mapped as IPv4
		{0, "fail", "[2001:db8::1]:22", 0},
		{0, "fail", "[2001:db8::2%eth0]:22", 0},
		{0, "fail", "2001:db8::ffff", time.Minute},
		{0, "allow", "[2001:db8:0:1::1]:22", 0},
		{0, "fail", "[::ffff:198.51.100.7]:22", 0},
		{0, "fail", "198.51.100.7:22", 0},
		{0, "fail", "198.51.100.7", time.Minute},
	}
	for i, s := range steps {
		clk.add(s.wait)
		switch s.op {
		case "fail":
			if got := l.Fail(s.addr); got != s.wantLock {
				t.Errorf("step %d: Fail(%s) = %v; want %v", i, s.addr, got, s.wantLock)
			}
		case "succeed":
			l.Succeed(s.addr)
		case "allow":
			ok, wait := l.Allow(s.addr)
			if ok != (s.wantLock == 0) || wait != s.wantLock {
				t.Errorf("step %d: Allow(%s) = %v, %v; want lockout %v", i, s.addr, ok, wait, s.wantLock)
			}
		}
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	clk := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewLimiter(LimiterOptions{MaxFailures: 2, MaxAddresses: 100, Now: clk.now})
	l.Fail("10.0.0.1:1")
	l.Fail("10.0.0.1:1") // locked out
	for i := 0; i < 1000; i++ {
		clk.add(time.Millisecond)
		l.Fail(fmt.Sprintf("10.1.%d.%d:1", i/256, i%256))
		l.Fail(fmt.Sprintf("[2001:db8:%x::1]:1", i))
	}
	if n := l.Len(); n > 100 {
		t.Errorf("%d addresses remembered", n)
	}
	if ok, _ := l.Allow("10.0.0.1"); ok {
		t.Error("the locked-out address was forgotten first")
	}
}

func TestAuthenticator(t *testing.T) {
	key, line := newKey(t, "anna")
	other, _ := newKey(t, "")
	clk := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	lim := NewLimiter(LimiterOptions{MaxFailures: 3, Now: clk.now})
	a, err := NewAuthenticator([]Account{
		{Name: "Anna", PasswordHash: hashFor(t, "secret"), AuthorizedKeys: []string{line}},
		{Name: "keyonly", AuthorizedKeys: []string{line}},
	}, AuthOptions{Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const addr = "192.0.2.9:5555"
	if name, err := a.Password(ctx, addr, "anna", []byte("secret")); err != nil || name != "Anna" {
		t.Errorf("Password(anna, secret) = %q, %v", name, err)
	}
	for _, tc := range []struct{ user, pw string }{{"anna", "wrong"}, {"eve", "secret"}, {"keyonly", ""}} {
		if _, err := a.Password(ctx, addr, tc.user, []byte(tc.pw)); !errors.Is(err, ErrDenied) {
			t.Errorf("Password(%s, %s) = %v; want ErrDenied", tc.user, tc.pw, err)
		}
	}
	// Three failures: locked out, even with the right password.
	_, err = a.Password(ctx, addr, "anna", []byte("secret"))
	var lock *LockedOutError
	if !errors.As(err, &lock) || lock.RetryAfter != time.Minute {
		t.Fatalf("Password after 3 failures = %v; want a lockout of 1m", err)
	}
	if _, err := a.PublicKey(addr, "anna", key); !errors.As(err, &lock) {
		t.Errorf("PublicKey from a locked-out address = %v", err)
	}
	if _, err := a.Password(ctx, "192.0.2.10:1", "anna", []byte("secret")); err != nil {
		t.Errorf("another address is locked out too: %v", err)
	}
	clk.add(time.Minute)
	if name, err := a.PublicKey(addr, "KEYONLY", key); err != nil || name != "keyonly" {
		t.Errorf("PublicKey(keyonly) = %q, %v", name, err)
	}
	for _, tc := range []struct {
		user string
		key  ssh.PublicKey
	}{{"anna", other}, {"eve", key}, {"anna", nil}} {
		if _, err := a.PublicKey(addr, tc.user, tc.key); !errors.Is(err, ErrDenied) {
			t.Errorf("PublicKey(%s) = %v; want ErrDenied", tc.user, err)
		}
	}
	// Key failures do not count: clients offer several keys.
	if ok, _ := lim.Allow(addr); !ok {
		t.Error("rejected keys locked the address out")
	}

	if _, err := NewAuthenticator([]Account{{Name: "x", PasswordHash: "$argon2id$"}}, AuthOptions{}); err == nil {
		t.Error("NewAuthenticator accepted a bad hash")
	}
	if _, err := NewAuthenticator([]Account{{Name: "x", AuthorizedKeys: []string{"nope"}}}, AuthOptions{}); err == nil {
		t.Error("NewAuthenticator accepted a bad key")
	}
	if _, err := NewAuthenticator([]Account{{Name: "x"}, {Name: "X"}}, AuthOptions{}); err == nil {
		t.Error("NewAuthenticator accepted a user twice")
	}
}

// TestAuthenticatorConcurrency checks that waiting for a turn to compute a
// hash ends with the context, and that concurrent logins all get a turn.
func TestAuthenticatorConcurrency(t *testing.T) {
	slow := Params{MemoryKiB: 4 << 10, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
	h, err := HashPasswordParams([]byte("pw"), slow)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticator([]Account{{Name: "u", PasswordHash: h}}, AuthOptions{MaxConcurrent: 1})
	if err != nil {
		t.Fatal(err)
	}
	a.sem <- struct{}{} // hold the only turn
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := a.Password(ctx, "192.0.2.1:1", "u", []byte("pw")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Password while busy = %v", err)
	}
	<-a.sem
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Password(context.Background(), "192.0.2.1:1", "u", []byte("pw")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(a.sem) != 0 {
		t.Error("turns not given back")
	}
}

// TestArgon2Tool checks hashes against the reference implementation's
// command-line tool (Debian package argon2), when it is installed.
func TestArgon2Tool(t *testing.T) {
	bin, err := exec.LookPath("argon2")
	if err != nil {
		t.Skip("argon2 tool not installed (apt-get install argon2)")
	}
	for _, tc := range []struct{ pw, salt, m, t, p string }{
		{"correct horse", "saltsaltsalt", "10", "3", "2"}, // m is log2 KiB for the tool
		{"x", "0123456789abcdef", "6", "1", "1"},
		{"pässwörd with spaces", "NaCl-NaCl", "12", "2", "4"},
	} {
		cmd := exec.Command(bin, tc.salt, "-id", "-t", tc.t, "-m", tc.m, "-p", tc.p, "-e")
		cmd.Stdin = strings.NewReader(tc.pw)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		phc := strings.TrimSpace(string(out))
		h, err := ParseHash(phc)
		if err != nil {
			t.Fatalf("ParseHash(%q): %v", phc, err)
		}
		if h.String() != phc || string(h.Salt) != tc.salt {
			t.Errorf("ParseHash(%q).String() = %q", phc, h)
		}
		for _, try := range []struct {
			pw   string
			want bool
		}{{tc.pw, true}, {tc.pw + "x", false}} {
			if ok, err := VerifyPassword(phc, []byte(try.pw)); err != nil || ok != try.want {
				t.Errorf("VerifyPassword(%q, %q) = %v, %v", phc, try.pw, ok, err)
			}
		}
	}
}
