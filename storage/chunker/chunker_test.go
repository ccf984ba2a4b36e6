package chunker

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// randBytes returns n pseudo-random bytes from seed.
func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

// shortReader returns reads of pseudo-random length between 1 and max.
type shortReader struct {
	r   io.Reader
	rng *rand.Rand
	max int
}

func (s *shortReader) Read(p []byte) (int, error) {
	if n := 1 + s.rng.IntN(s.max); len(p) > n {
		p = p[:n]
	}
	return s.r.Read(p)
}

func newShort(data []byte, max int) io.Reader {
	return &shortReader{r: bytes.NewReader(data), rng: rand.New(rand.NewPCG(1, 2)), max: max}
}

// chunkAll returns copies of all chunks of c.
func chunkAll(t testing.TB, c *Chunker) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		b, err := c.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, bytes.Clone(b))
	}
}

// ends returns the end offsets of chunks.
func ends(chunks [][]byte) []int {
	var e []int
	off := 0
	for _, c := range chunks {
		off += len(c)
		e = append(e, off)
	}
	return e
}

var testSecret = [32]byte{1, 2, 3}

// refEnds is a direct transcription of the algorithm in doc/crypto.md on
// a whole slice. For each chunk it tests every length from Min to Max,
// with the gear hash restarted at Min−64; with window set, it instead
// hashes the 64-byte window that ends at each length from scratch.
func refEnds(data []byte, secret [32]byte, p Params, window bool) []int {
	g := Gear(secret)
	maskS, maskL := p.masks()
	var e []int
	for s := 0; s < len(data); {
		n := len(data) - s
		cut := min(p.Max, n)
		var fp uint64
		for _, b := range data[s+min(n, p.Min-64) : s+min(n, p.Min-1)] {
			fp = fp<<1 + g[b]
		}
		for l := p.Min; l <= min(p.Max, n); l++ {
			if window {
				fp = 0
				for _, b := range data[s+l-64 : s+l] {
					fp = fp<<1 + g[b]
				}
			} else {
				fp = fp<<1 + g[data[s+l-1]]
			}
			mask := maskL
			if l < p.Avg {
				mask = maskS
			}
			if fp&mask == 0 {
				cut = l
				break
			}
		}
		s += cut
		e = append(e, s)
	}
	return e
}

func TestMatchesReference(t *testing.T) {
	small := Params{Min: 256, Avg: 1024, Max: 4096}
	for _, tc := range []struct {
		name   string
		p      Params
		n      int
		window bool
	}{
		{"small", small, 128 << 10, true},
		{"min64", Params{Min: 64, Avg: 200, Max: 300}, 64 << 10, true},
		{"odd", Params{Min: 1000, Avg: 3000, Max: 5000}, 128 << 10, true},
		{"tiny-input", small, 100, true},
		{"paired-search", Params{Min: 4 << 10, Avg: 64 << 10, Max: 256 << 10}, 4 << 20, false},
		{"paired-search-max", Params{Min: 4 << 10, Avg: 36 << 10, Max: 40 << 10}, 4 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randBytes(7, tc.n)
			want := refEnds(data, testSecret, tc.p, tc.window)
			readers := []struct {
				name string
				r    io.Reader
			}{
				{"whole", bytes.NewReader(data)},
				{"short", newShort(data, 7777)},
				{"dataerr", iotest.DataErrReader(bytes.NewReader(data))},
			}
			if tc.n <= 128<<10 {
				readers = append(readers, struct {
					name string
					r    io.Reader
				}{"onebyte", iotest.OneByteReader(bytes.NewReader(data))})
			}
			for _, r := range readers {
				got := ends(chunkAll(t, New(r.r, testSecret, tc.p)))
				if !equalInts(got, want) {
					t.Errorf("%s: chunk ends differ from the reference:\n got %v\nwant %v", r.name, head(got), head(want))
				}
			}
			t.Logf("%d chunks", len(want))
		})
	}
}

func head(e []int) []int { return e[:min(len(e), 10)] }

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDefaultMasks(t *testing.T) {
	s, l := DefaultParams().masks()
	ones := ^uint64(0)
	if s != ones<<(64-21) || l != ones<<(64-17) {
		t.Fatalf("masks = %#x, %#x; want top 21 and top 17 bits", s, l)
	}
}

func TestRoundTrip(t *testing.T) {
	p := DefaultParams()
	for _, n := range []int{0, 1, p.Min - 1, p.Min, p.Max, p.Max + 1, 20 << 20} {
		data := randBytes(uint64(n), n)
		for _, r := range []struct {
			name string
			r    io.Reader
		}{
			{"whole", bytes.NewReader(data)},
			{"short", newShort(data, 100<<10)},
			{"half", iotest.HalfReader(bytes.NewReader(data))},
		} {
			chunks := chunkAll(t, New(r.r, testSecret, p))
			checkChunks(t, data, chunks, p.Min, p.Max)
			if n > 0 && t.Failed() {
				t.Fatalf("size %d reader %s", n, r.name)
			}
		}
	}
}

// checkChunks checks that chunks concatenate to data and that all but the
// last are within [lo, hi] (and none is empty).
func checkChunks(t *testing.T, data []byte, chunks [][]byte, lo, hi int) {
	t.Helper()
	if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
		t.Errorf("%d bytes in: chunks concatenate to %d different bytes", len(data), len(got))
	}
	for i, c := range chunks {
		if len(c) == 0 || len(c) > hi || (i < len(chunks)-1 && len(c) < lo) {
			t.Errorf("%d bytes in: chunk %d of %d has %d bytes, want %d..%d", len(data), i, len(chunks), len(c), lo, hi)
		}
	}
}

func TestSecret(t *testing.T) {
	p := Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}
	data := randBytes(3, 1<<20)
	a := ends(chunkAll(t, New(bytes.NewReader(data), testSecret, p)))
	b := ends(chunkAll(t, New(bytes.NewReader(data), testSecret, p)))
	c := ends(chunkAll(t, New(bytes.NewReader(data), [32]byte{9}, p)))
	if !equalInts(a, b) {
		t.Error("same secret and data gave different boundaries")
	}
	shared := 0
	set := map[int]bool{}
	for _, e := range a {
		set[e] = true
	}
	for _, e := range c[:len(c)-1] {
		if set[e] {
			shared++
		}
	}
	if shared > len(c)/10 {
		t.Errorf("different secrets share %d of %d boundaries", shared, len(c))
	}
}

func TestShiftResistance(t *testing.T) {
	p := DefaultParams()
	orig := randBytes(11, 32<<20)
	const at, ins = 1000, 100
	mod := make([]byte, 0, len(orig)+ins)
	mod = append(mod, orig[:at]...)
	mod = append(mod, randBytes(12, ins)...)
	mod = append(mod, orig[at:]...)

	sums := map[[32]byte]bool{}
	a := chunkAll(t, New(bytes.NewReader(orig), testSecret, p))
	for _, c := range a {
		sums[sha256.Sum256(c)] = true
	}
	b := chunkAll(t, New(bytes.NewReader(mod), testSecret, p))
	off, changed := 0, 0
	for _, c := range b {
		if !sums[sha256.Sum256(c)] {
			changed++
			if off > at+ins {
				t.Errorf("chunk at %d (after the first boundary past the insertion) is not shared", off)
			}
		}
		off += len(c)
	}
	if changed == 0 || len(a) < 16 {
		t.Errorf("%d chunks changed of %d; want at least 1 of many", changed, len(b))
	}
	t.Logf("%d chunks, %d changed by inserting %d bytes at %d", len(b), changed, ins, at)
}

func TestMeanSize(t *testing.T) {
	const n = 64 << 20
	data := randBytes(5, n)
	chunks := chunkAll(t, New(bytes.NewReader(data), testSecret, DefaultParams()))
	mean := float64(n) / float64(len(chunks)) / (1 << 20)
	t.Logf("%d chunks, mean %.3f MiB", len(chunks), mean)
	if mean < 0.8 || mean > 1.25 {
		t.Errorf("mean chunk size %.3f MiB, want 0.8..1.25", mean)
	}
}

func TestFixed(t *testing.T) {
	for _, tc := range []struct{ size, n int }{
		{ImageBlockSize, 0},
		{ImageBlockSize, 1},
		{ImageBlockSize, ImageBlockSize - 1},
		{ImageBlockSize, ImageBlockSize},
		{ImageBlockSize, 3*ImageBlockSize + 12345},
		{1, 10},
		{4096, 1 << 20},
	} {
		data := randBytes(1, tc.n)
		for _, r := range []io.Reader{bytes.NewReader(data), newShort(data, 70000)} {
			chunks := chunkAll(t, NewFixed(r, tc.size))
			if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
				t.Errorf("size %d, %d bytes: chunks do not concatenate to the input", tc.size, tc.n)
			}
			if want := (tc.n + tc.size - 1) / tc.size; len(chunks) != want {
				t.Errorf("size %d, %d bytes: %d chunks, want %d", tc.size, tc.n, len(chunks), want)
			}
			for i, c := range chunks {
				want := tc.size
				if i == len(chunks)-1 {
					want = tc.n - i*tc.size
				}
				if len(c) != want {
					t.Errorf("size %d, %d bytes: chunk %d has %d bytes, want %d", tc.size, tc.n, i, len(c), want)
				}
			}
		}
	}
}

func TestReset(t *testing.T) {
	p := Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}
	c := New(bytes.NewReader(nil), testSecret, p)
	for i, n := range []int{100 << 10, 0, 10, 300 << 10, 50 << 10} {
		data := randBytes(uint64(i), n)
		want := refEnds(data, testSecret, p, false)
		c.Reset(newShort(data, 5000))
		if got := ends(chunkAll(t, c)); !equalInts(got, want) {
			t.Errorf("stream %d after Reset: ends %v, want %v", i, head(got), head(want))
		}
	}
	// Reset in the middle of a stream.
	c.Reset(bytes.NewReader(randBytes(1, 100<<10)))
	if _, err := c.Next(); err != nil {
		t.Fatal(err)
	}
	data := randBytes(2, 50<<10)
	c.Reset(bytes.NewReader(data))
	if got, want := ends(chunkAll(t, c)), refEnds(data, testSecret, p, false); !equalInts(got, want) {
		t.Errorf("after Reset mid-stream: ends %v, want %v", head(got), head(want))
	}
}

func TestErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		c    *Chunker
		want error
	}{
		{"read error", New(iotest.ErrReader(boom), testSecret, DefaultParams()), boom},
		{"fixed read error", NewFixed(io.MultiReader(bytes.NewReader(make([]byte, 10)), iotest.ErrReader(boom)), 4), boom},
		{"no progress", New(zeroReader{}, testSecret, DefaultParams()), io.ErrNoProgress},
		{"bad params", New(bytes.NewReader(nil), testSecret, Params{Min: 10, Avg: 5, Max: 20}), nil},
		{"bad fixed size", NewFixed(bytes.NewReader(nil), 0), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			for range 10 {
				if _, err = tc.c.Next(); err != nil {
					break
				}
			}
			if err == nil || err == io.EOF || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Next: %v, want %v", err, tc.want)
			}
			if _, err2 := tc.c.Next(); err2 == nil || err2 == io.EOF {
				t.Errorf("second Next: %v, want the error again", err2)
			}
		})
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		p  Params
		ok bool
	}{
		{DefaultParams(), true},
		{Params{64, 65, 66}, true},
		{Params{63, 100, 200}, false},
		{Params{100, 100, 200}, false},
		{Params{100, 200, 200}, false},
		{Params{100, 200, MaxSize + 1}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v.Validate() = %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}

func BenchmarkChunker(b *testing.B) {
	data := randBytes(1, 64<<20)
	for _, bc := range []struct {
		name string
		c    *Chunker
	}{
		{"cdc", New(nil, testSecret, DefaultParams())},
		{"fixed", NewFixed(nil, ImageBlockSize)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				bc.c.Reset(bytes.NewReader(data))
				for {
					if _, err := bc.c.Next(); err != nil {
						break
					}
				}
			}
		})
	}
}

// BenchmarkSearch measures the boundary search alone, over data that
// holds no boundary.
func BenchmarkSearch(b *testing.B) {
	g := Gear(testSecret)
	data := randBytes(1, 1<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		search(g, data, 0, ^uint64(0))
	}
}

func BenchmarkSearchSerial(b *testing.B) {
	g := Gear(testSecret)
	data := randBytes(1, 1<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		searchSerial(g, data, 0, ^uint64(0))
	}
}

// TestVector pins the gear table and the boundaries of a small,
// easily reproduced input, as given in doc/crypto.md.
func TestVector(t *testing.T) {
	var secret [32]byte
	for i := range secret {
		secret[i] = byte(i)
	}
	for _, tc := range []struct {
		secret [32]byte
		want   [3]uint64 // g[0], g[1], g[255]
	}{
		{[32]byte{}, [3]uint64{0x3a97de2de9e7ed41, 0xe175277416f3e28a, 0x5c8997453693caec}},
		{secret, [3]uint64{0x942a75fd07ea053a, 0x61088301027922ca, 0x23ccd4cb08e8c1a4}},
	} {
		g := Gear(tc.secret)
		if got := [3]uint64{g[0], g[1], g[255]}; got != tc.want {
			t.Errorf("Gear(%x…): %#x, want %#x", tc.secret[:4], got, tc.want)
		}
	}
	data := make([]byte, 1<<20)
	x := uint32(1)
	for i := range data {
		x = x*1664525 + 1013904223
		data[i] = byte(x >> 24)
	}
	p := Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}
	got := ends(chunkAll(t, New(bytes.NewReader(data), secret, p)))
	want := []int{22078, 41446, 66626, 84769, 105554, 121161, 137913, 159604}
	if len(got) != 57 || !equalInts(got[:len(want)], want) || got[len(got)-1] != len(data) {
		t.Errorf("%d chunks ending %v…, want 57 ending %v…", len(got), head(got), want)
	}
}

func FuzzChunker(f *testing.F) {
	f.Add([]byte("hello, world"), uint16(64), uint16(100), uint16(200), uint16(7))
	f.Add(randBytes(1, 5000), uint16(64), uint16(65), uint16(66), uint16(1))
	f.Add(randBytes(2, 20000), uint16(100), uint16(1000), uint16(3000), uint16(999))
	f.Fuzz(func(t *testing.T, data []byte, lo, avg, hi, maxRead uint16) {
		p := Params{Min: int(lo), Avg: int(avg), Max: int(hi)}
		r := newShort(data, int(maxRead)+1)
		if p.Validate() != nil {
			// Fixed blocks of size lo instead.
			if lo == 0 {
				return
			}
			chunks := chunkAll(t, NewFixed(r, int(lo)))
			checkChunks(t, data, chunks, int(lo), int(lo))
			return
		}
		chunks := chunkAll(t, New(r, testSecret, p))
		checkChunks(t, data, chunks, p.Min, p.Max)
		if want := refEnds(data, testSecret, p, false); !equalInts(ends(chunks), want) {
			t.Fatalf("ends %v, want %v", head(ends(chunks)), head(want))
		}
	})
}
