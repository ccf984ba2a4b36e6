package crypto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/arkbox/arkbox/storage/blob"
)

var algs = []string{AlgAESGCM, AlgXChaCha}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0] = byte(seed)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCipher(t testing.TB, k *Key, alg string) *Cipher {
	t.Helper()
	c, err := NewCipher(k, alg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewKey(t *testing.T) {
	a, b := mustKey(t), mustKey(t)
	if *a == *b {
		t.Fatal("two new keys are equal")
	}
	if a.Enc == a.ID || a.ID == a.Chunker || a.Enc == a.Chunker {
		t.Fatal("parts of a key are equal")
	}
}

func TestSealOpen(t *testing.T) {
	k := mustKey(t)
	for _, alg := range algs {
		c := mustCipher(t, k, alg)
		if c.Algorithm() != alg {
			t.Errorf("Algorithm() = %q, want %q", c.Algorithm(), alg)
		}
		for _, n := range []int{0, 1, 15, 16, 17, 4095, 64 << 10, 1 << 20, 8 << 20} {
			pt := randBytes(uint64(n), n)
			for _, ad := range [][]byte{nil, []byte("pack 1234")} {
				prefix := []byte("prefix")
				sealed := c.Seal(bytes.Clone(prefix), pt, ad)
				if !bytes.Equal(sealed[:len(prefix)], prefix) {
					t.Fatalf("%s %d: Seal did not keep dst", alg, n)
				}
				sealed = sealed[len(prefix):]
				if len(sealed) != n+c.Overhead() {
					t.Fatalf("%s %d: sealed %d bytes, want %d", alg, n, len(sealed), n+c.Overhead())
				}
				got, err := c.Open([]byte("x"), sealed, ad)
				if err != nil {
					t.Fatalf("%s %d: Open: %v", alg, n, err)
				}
				if got[0] != 'x' || !bytes.Equal(got[1:], pt) {
					t.Fatalf("%s %d: Open returned different plaintext", alg, n)
				}
			}
		}
	}
}

func TestSealNonceFresh(t *testing.T) {
	k := mustKey(t)
	for _, alg := range algs {
		c := mustCipher(t, k, alg)
		a, b := c.Seal(nil, []byte("same"), nil), c.Seal(nil, []byte("same"), nil)
		if bytes.Equal(a, b) {
			t.Errorf("%s: two seals of the same message are equal", alg)
		}
	}
}

func TestOverhead(t *testing.T) {
	for _, tc := range []struct {
		alg  string
		want int
	}{{AlgAESGCM, 12 + 16}, {AlgXChaCha, 24 + 16}} {
		if got := mustCipher(t, mustKey(t), tc.alg).Overhead(); got != tc.want {
			t.Errorf("%s: Overhead() = %d, want %d", tc.alg, got, tc.want)
		}
	}
}

func TestUnknownAlgorithm(t *testing.T) {
	if _, err := NewCipher(mustKey(t), "rot13"); err == nil {
		t.Fatal("NewCipher accepted an unknown algorithm")
	}
	if a := DefaultAlgorithm(); a != AlgAESGCM && a != AlgXChaCha {
		t.Fatalf("DefaultAlgorithm() = %q", a)
	}
}

func TestTamper(t *testing.T) {
	k := mustKey(t)
	ad := []byte("associated")
	for _, alg := range algs {
		c := mustCipher(t, k, alg)
		for _, n := range []int{0, 1, 100} {
			sealed := c.Seal(nil, randBytes(1, n), ad)
			// Every byte: nonce, ciphertext and tag.
			for i := range sealed {
				bad := bytes.Clone(sealed)
				bad[i] ^= 0x01 << (i % 8)
				if _, err := c.Open(nil, bad, ad); !errors.Is(err, ErrAuth) {
					t.Fatalf("%s %d: byte %d altered: Open error %v, want ErrAuth", alg, n, i, err)
				}
			}
			for i := range ad {
				badAD := bytes.Clone(ad)
				badAD[i] ^= 0x80
				if _, err := c.Open(nil, sealed, badAD); !errors.Is(err, ErrAuth) {
					t.Fatalf("%s %d: ad byte %d altered: Open error %v, want ErrAuth", alg, n, i, err)
				}
			}
			for _, badAD := range [][]byte{nil, ad[:len(ad)-1], append(bytes.Clone(ad), 0)} {
				if _, err := c.Open(nil, sealed, badAD); !errors.Is(err, ErrAuth) {
					t.Fatalf("%s %d: ad %q: Open error %v, want ErrAuth", alg, n, badAD, err)
				}
			}
			if _, err := c.Open(nil, append(bytes.Clone(sealed), 0), ad); !errors.Is(err, ErrAuth) {
				t.Fatalf("%s %d: byte appended: Open error %v, want ErrAuth", alg, n, err)
			}
		}
		// Large message: a sample of positions.
		sealed := c.Seal(nil, randBytes(2, 1<<20), ad)
		for _, i := range []int{0, 5, 11, 12, 23, 24, 1000, len(sealed) / 2, len(sealed) - 17, len(sealed) - 16, len(sealed) - 1} {
			bad := bytes.Clone(sealed)
			bad[i] ^= 0x40
			if _, err := c.Open(nil, bad, ad); !errors.Is(err, ErrAuth) {
				t.Fatalf("%s 1 MiB: byte %d altered: Open error %v, want ErrAuth", alg, i, err)
			}
		}
	}
}

func TestWrongKey(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	for _, alg := range algs {
		sealed := mustCipher(t, k1, alg).Seal(nil, []byte("secret"), nil)
		if _, err := mustCipher(t, k2, alg).Open(nil, sealed, nil); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: wrong key: Open error %v, want ErrAuth", alg, err)
		}
	}
	// The same key under the other algorithm does not open it either.
	sealed := mustCipher(t, k1, AlgXChaCha).Seal(nil, []byte("secret"), nil)
	if _, err := mustCipher(t, k1, AlgAESGCM).Open(nil, sealed, nil); !errors.Is(err, ErrAuth) {
		t.Errorf("other algorithm: Open error %v, want ErrAuth", err)
	}
}

func TestShortInput(t *testing.T) {
	k := mustKey(t)
	for _, alg := range algs {
		c := mustCipher(t, k, alg)
		for n := 0; n <= c.Overhead(); n++ {
			_, err := c.Open(nil, make([]byte, n), nil)
			if !errors.Is(err, ErrAuth) {
				t.Errorf("%s: %d bytes: Open error %v, want ErrAuth", alg, n, err)
			}
		}
	}
}

func TestBlobID(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	data := []byte("chunk of a file")
	h := k1.NewBlobHasher()
	for _, tc := range []struct {
		name  string
		a, b  blob.ID
		equal bool
	}{
		{"deterministic", k1.BlobID(data), k1.BlobID(data), true},
		{"hasher matches", k1.BlobID(data), h.Sum(data), true},
		{"hasher reusable", h.Sum(data), h.Sum(data), true},
		{"keyed", k1.BlobID(data), k2.BlobID(data), false},
		{"content", k1.BlobID(data), k1.BlobID(data[1:]), false},
		{"empty", k1.BlobID(nil), k1.BlobID([]byte{0}), false},
	} {
		if (tc.a == tc.b) != tc.equal {
			t.Errorf("%s: %s vs %s, want equal=%v", tc.name, tc.a.Short(), tc.b.Short(), tc.equal)
		}
	}
	// Large input crosses BLAKE3's 8 KiB internal buffer.
	big := randBytes(3, 1<<20)
	if k1.BlobID(big) != h.Sum(big) || h.Sum(big) != h.Sum(big) {
		t.Error("large input: ids differ")
	}
}

// TestBlobIDVector pins the definition: BLAKE3 keyed mode, 32-byte output.
// The expected value is the official BLAKE3 test vector for keyed_hash
// with key "whats the Elvish word for friend" and an empty input.
func TestBlobIDVector(t *testing.T) {
	var k Key
	copy(k.ID[:], "whats the Elvish word for friend")
	const want = "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"
	if got := k.BlobID(nil).String(); got != want {
		t.Fatalf("BlobID(empty) = %s, want %s", got, want)
	}
}

// fastKDF keeps tests quick.
var fastKDF = KDFParams{Time: 1, MemoryKiB: 8 << 10, Threads: 1}

var testMeta = KeyMeta{
	Created: time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC),
	Host:    "ark-01",
	User:    "admin",
	Label:   "initial key",
}

func mustWrap(t testing.TB, k *Key, pass string, p KDFParams, meta KeyMeta) []byte {
	t.Helper()
	f, err := WrapKey(k, []byte(pass), p, meta)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestKeyFileRoundTrip(t *testing.T) {
	k := mustKey(t)
	for _, pass := range []string{"correct horse battery staple", "", "ünïcødé 🔑"} {
		f := mustWrap(t, k, pass, fastKDF, testMeta)
		got, meta, err := UnwrapKey(f, []byte(pass))
		if err != nil {
			t.Fatalf("UnwrapKey: %v", err)
		}
		if *got != *k {
			t.Fatal("UnwrapKey returned a different key")
		}
		if !meta.Created.Equal(testMeta.Created) || meta.Host != testMeta.Host || meta.User != testMeta.User || meta.Label != testMeta.Label {
			t.Fatalf("meta = %+v, want %+v", meta, testMeta)
		}
		m2, p2, err := ReadKeyMeta(f)
		if err != nil {
			t.Fatalf("ReadKeyMeta: %v", err)
		}
		if !m2.Created.Equal(meta.Created) || m2.Label != meta.Label || p2 != fastKDF {
			t.Fatalf("ReadKeyMeta = %+v %+v", m2, p2)
		}
	}
}

func TestKeyFileCreatedDefault(t *testing.T) {
	before := time.Now()
	f := mustWrap(t, mustKey(t), "p", fastKDF, KeyMeta{})
	m, _, err := ReadKeyMeta(f)
	if err != nil {
		t.Fatal(err)
	}
	if m.Created.Before(before.Add(-time.Second)) || m.Created.After(time.Now().Add(time.Second)) {
		t.Fatalf("Created = %v, want about now", m.Created)
	}
}

func TestKeyFileTwoPassphrases(t *testing.T) {
	k := mustKey(t)
	f1 := mustWrap(t, k, "first", fastKDF, testMeta)
	f2 := mustWrap(t, k, "second", KDFParams{Time: 2, MemoryKiB: 16 << 10, Threads: 2}, testMeta)
	if bytes.Equal(f1, f2) {
		t.Fatal("two key files are equal")
	}
	k1, _, err1 := UnwrapKey(f1, []byte("first"))
	k2, _, err2 := UnwrapKey(f2, []byte("second"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if *k1 != *k2 || *k1 != *k {
		t.Fatal("two key files of one key open to different keys")
	}
	// Wrapping the same key with the same passphrase twice gives
	// different files (fresh salt and nonce).
	if bytes.Equal(f1, mustWrap(t, k, "first", fastKDF, testMeta)) {
		t.Fatal("salt or nonce reused")
	}
}

func TestKeyFileWrongPassphrase(t *testing.T) {
	f := mustWrap(t, mustKey(t), "right", fastKDF, testMeta)
	for _, pass := range []string{"wrong", "", "right ", "Right"} {
		_, _, err := UnwrapKey(f, []byte(pass))
		if !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("passphrase %q: error %v, want ErrWrongPassphrase", pass, err)
		}
	}
}

// editKeyFile decodes f, applies edit to the generic JSON object, and
// re-encodes it.
func editKeyFile(t *testing.T, f []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(f, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKeyFileTamper(t *testing.T) {
	const pass = "pass"
	f := mustWrap(t, mustKey(t), pass, fastKDF, testMeta)
	kdf := func(m map[string]any) map[string]any { return m["kdf"].(map[string]any) }
	flipB64 := func(s string) string {
		// Change the first base64 digit: the decoded length is unchanged.
		c := "A"
		if s[0] == 'A' {
			c = "B"
		}
		return c + s[1:]
	}
	for _, tc := range []struct {
		name      string
		edit      func(m map[string]any)
		wrongPass bool // fails authentication rather than parsing
	}{
		{"unchanged", func(map[string]any) {}, false},
		{"time", func(m map[string]any) { kdf(m)["time"] = 2 }, true},
		{"memory", func(m map[string]any) { kdf(m)["memory_kib"] = 9 << 10 }, true},
		{"threads", func(m map[string]any) { kdf(m)["threads"] = 2 }, true},
		{"salt", func(m map[string]any) { kdf(m)["salt"] = flipB64(kdf(m)["salt"].(string)) }, true},
		{"data", func(m map[string]any) { m["data"] = flipB64(m["data"].(string)) }, true},
		{"label", func(m map[string]any) { m["label"] = "other" }, true},
		{"host", func(m map[string]any) { m["host"] = "" }, true},
		{"user", func(m map[string]any) { m["user"] = "root" }, true},
		{"created", func(m map[string]any) { m["created"] = "2025-03-04T05:06:08Z" }, true},
		{"version", func(m map[string]any) { m["version"] = 2 }, false},
		{"kdf alg", func(m map[string]any) { kdf(m)["alg"] = "scrypt" }, false},
		{"cipher", func(m map[string]any) { m["cipher"] = AlgAESGCM }, false},
		{"salt short", func(m map[string]any) { kdf(m)["salt"] = "AAAA" }, false},
		{"data short", func(m map[string]any) { m["data"] = m["data"].(string)[4:] }, false},
		{"data not base64", func(m map[string]any) { m["data"] = "!" + m["data"].(string)[1:] }, false},
		{"memory huge", func(m map[string]any) { kdf(m)["memory_kib"] = 4<<20 + 1 }, false},
		{"memory tiny", func(m map[string]any) { kdf(m)["memory_kib"] = 7 }, false},
		{"time zero", func(m map[string]any) { kdf(m)["time"] = 0 }, false},
		{"time huge", func(m map[string]any) { kdf(m)["time"] = 1000 }, false},
		{"threads zero", func(m map[string]any) { kdf(m)["threads"] = 0 }, false},
		{"threads overflow", func(m map[string]any) { kdf(m)["threads"] = 256 }, false},
		{"unknown field", func(m map[string]any) { m["extra"] = 1 }, false},
		{"missing kdf", func(m map[string]any) { delete(m, "kdf") }, false},
		{"created bad", func(m map[string]any) { m["created"] = "yesterday" }, false},
		{"label long", func(m map[string]any) { m["label"] = strings.Repeat("x", 1025) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := editKeyFile(t, f, tc.edit)
			_, _, err := UnwrapKey(bad, []byte(pass))
			if tc.name == "unchanged" {
				if err != nil {
					t.Fatalf("re-encoded file: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("UnwrapKey accepted an altered key file")
			}
			if errors.Is(err, ErrWrongPassphrase) != tc.wrongPass {
				t.Fatalf("error %v; want ErrWrongPassphrase: %v", err, tc.wrongPass)
			}
			_, _, merr := ReadKeyMeta(bad)
			if (merr == nil) != tc.wrongPass {
				t.Fatalf("ReadKeyMeta error %v; want an error: %v", merr, !tc.wrongPass)
			}
		})
	}
}

func TestKeyFileMalformed(t *testing.T) {
	f := mustWrap(t, mustKey(t), "p", fastKDF, testMeta)
	for _, tc := range []struct {
		name string
		file []byte
	}{
		{"empty", nil},
		{"null", []byte("null")},
		{"array", []byte("[]")},
		{"truncated", f[:len(f)/2]},
		{"trailing object", append(bytes.Clone(f), "{}"...)},
		{"trailing garbage", append(bytes.Clone(f), 'x')},
		{"huge", append(bytes.Clone(f), bytes.Repeat([]byte(" "), 64<<10)...)},
	} {
		if _, _, err := UnwrapKey(tc.file, []byte("p")); err == nil || errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("%s: UnwrapKey error %v, want a format error", tc.name, err)
		}
		if _, _, err := ReadKeyMeta(tc.file); err == nil {
			t.Errorf("%s: ReadKeyMeta accepted it", tc.name)
		}
	}
	// Trailing white space is fine.
	if _, _, err := UnwrapKey(append(bytes.Clone(f), " \n"...), []byte("p")); err != nil {
		t.Errorf("trailing space: %v", err)
	}
}

func TestWrapKeyRejects(t *testing.T) {
	k := mustKey(t)
	for _, tc := range []struct {
		name string
		p    KDFParams
		meta KeyMeta
	}{
		{"zero params", KDFParams{}, testMeta},
		{"memory below 8×threads", KDFParams{Time: 1, MemoryKiB: 15, Threads: 2}, testMeta},
		{"memory above 4 GiB", KDFParams{Time: 1, MemoryKiB: 4<<20 + 1, Threads: 1}, testMeta},
		{"label too long", fastKDF, KeyMeta{Label: strings.Repeat("x", 1025)}},
		{"host not UTF-8", fastKDF, KeyMeta{Host: "\xff"}},
	} {
		if _, err := WrapKey(k, []byte("p"), tc.p, tc.meta); err == nil {
			t.Errorf("%s: WrapKey accepted it", tc.name)
		}
	}
	if err := DefaultKDFParams().Validate(); err != nil {
		t.Errorf("DefaultKDFParams: %v", err)
	}
}

// TestKeyFileFormat checks the JSON field names doc/crypto.md promises.
func TestKeyFileFormat(t *testing.T) {
	f := mustWrap(t, mustKey(t), "p", fastKDF, testMeta)
	var m map[string]any
	if err := json.Unmarshal(f, &m); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintln(m["version"], m["created"], m["host"], m["user"], m["label"], m["cipher"], m["kdf"].(map[string]any)["alg"],
		m["kdf"].(map[string]any)["time"], m["kdf"].(map[string]any)["memory_kib"], m["kdf"].(map[string]any)["threads"])
	want := "1 2025-03-04T05:06:07.00000089Z ark-01 admin initial key xchacha20-poly1305 argon2id 1 8192 1\n"
	if got != want {
		t.Fatalf("fields: %s\nwant:   %s", got, want)
	}
}

func FuzzOpen(f *testing.F) {
	var k Key
	for i := range k.Enc {
		k.Enc[i] = byte(i)
	}
	ciphers := []*Cipher{mustCipher(f, &k, AlgAESGCM), mustCipher(f, &k, AlgXChaCha)}
	for _, c := range ciphers {
		f.Add(c.Seal(nil, []byte("hello"), []byte("ad")), []byte("ad"))
		f.Add(c.Seal(nil, nil, nil), []byte(nil))
	}
	f.Add([]byte{}, []byte{})
	f.Add(make([]byte, 28), []byte{1})
	f.Fuzz(func(t *testing.T, sealed, ad []byte) {
		for _, c := range ciphers {
			out, err := c.Open(nil, sealed, ad)
			if err != nil {
				if !errors.Is(err, ErrAuth) {
					t.Fatalf("%s: error %v does not wrap ErrAuth", c.Algorithm(), err)
				}
				continue
			}
			if len(out) != len(sealed)-c.Overhead() {
				t.Fatalf("%s: opened %d bytes from %d", c.Algorithm(), len(out), len(sealed))
			}
		}
	})
}

// fuzzKDF is cheap enough for the fuzzer to reach decryption.
var fuzzKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func FuzzUnwrapKey(f *testing.F) {
	var k Key
	k.ID[0] = 1
	file, err := WrapKey(&k, []byte("pass"), fuzzKDF, testMeta)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(file, []byte("pass"))
	f.Add(file, []byte("wrong"))
	f.Add([]byte(`{"version":1}`), []byte(""))
	f.Add([]byte(`{"version":1,"created":"2025-01-01T00:00:00Z","kdf":{"alg":"argon2id","time":1,"memory_kib":8,"threads":1,"salt":""},"cipher":"xchacha20-poly1305","data":""}`), []byte("p"))
	f.Add([]byte("null"), []byte(nil))
	f.Fuzz(func(t *testing.T, file, pass []byte) {
		meta, p, merr := ReadKeyMeta(file)
		if merr == nil {
			if err := p.Validate(); err != nil {
				t.Fatalf("ReadKeyMeta returned invalid params: %v", err)
			}
			// Valid but costly parameters are the KDF's business, not
			// the decoder's: skip them to keep the fuzzer fast.
			if uint64(p.MemoryKiB)*uint64(p.Time) > 1<<10 {
				return
			}
		}
		got, gmeta, err := UnwrapKey(file, pass)
		if (merr == nil) != (err == nil || errors.Is(err, ErrWrongPassphrase)) {
			t.Fatalf("ReadKeyMeta error %v but UnwrapKey error %v", merr, err)
		}
		if err != nil {
			return
		}
		if got == nil || !gmeta.Created.Equal(meta.Created) || gmeta.Label != meta.Label {
			t.Fatal("UnwrapKey and ReadKeyMeta disagree")
		}
		// An opened file re-wraps and opens to the same key.
		again, err := WrapKey(got, pass, fuzzKDF, gmeta)
		if err != nil {
			t.Fatalf("re-wrap: %v", err)
		}
		k2, _, err := UnwrapKey(again, pass)
		if err != nil || *k2 != *got {
			t.Fatalf("re-wrapped file: %v", err)
		}
	})
}

func BenchmarkCipher(b *testing.B) {
	k, _ := NewKey()
	for _, alg := range algs {
		c, _ := NewCipher(k, alg)
		for _, n := range []int{4 << 10, 1 << 20} {
			pt := randBytes(1, n)
			sealed := c.Seal(nil, pt, nil)
			buf := make([]byte, 0, n+c.Overhead())
			b.Run(fmt.Sprintf("seal/%s/%dKiB", alg, n>>10), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					buf = c.Seal(buf[:0], pt, nil)
				}
			})
			b.Run(fmt.Sprintf("open/%s/%dKiB", alg, n>>10), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					var err error
					if buf, err = c.Open(buf[:0], sealed, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkBlobID(b *testing.B) {
	k, _ := NewKey()
	h := k.NewBlobHasher()
	for _, n := range []int{4 << 10, 1 << 20} {
		data := randBytes(1, n)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				h.Sum(data)
			}
		})
	}
}

func BenchmarkKDF(b *testing.B) {
	k, _ := NewKey()
	f, err := WrapKey(k, []byte("p"), DefaultKDFParams(), KeyMeta{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := UnwrapKey(f, []byte("p")); err != nil {
			b.Fatal(err)
		}
	}
}
