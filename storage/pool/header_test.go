package pool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/klauspost/reedsolomon"
)

func TestHeaderRoundTrip(t *testing.T) {
	cases := []struct {
		name        string
		kind        objstore.Kind
		k, m, index int
		objLen      int
	}{
		{"empty", objstore.KindConfig, 1, 0, 0, 0},
		{"small-replica", objstore.KindKey, 1, 2, 2, 1000},
		{"one-block", objstore.KindIndex, 2, 1, 1, 2 * blockSize},
		{"partial-block", objstore.KindSnapshot, 3, 1, 3, 3*blockSize + 7},
		{"many-blocks", objstore.KindPack, 4, 2, 5, 40*blockSize + 12345},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := randBytes(uint64(c.objLen), c.objLen)
			id := objstore.Sum(data)
			payload := make([]byte, ceilDiv(int64(c.objLen), int64(c.k)))
			copy(payload, data)
			h := newHeader(c.kind, id, c.k, c.m, c.index, int64(c.objLen), payload)
			b := h.encode()
			if int64(len(b)) != h.headerLen() {
				t.Fatalf("encoded %d bytes, headerLen %d", len(b), h.headerLen())
			}
			got, err := decodeHeader(append(b, payload...))
			if err != nil {
				t.Fatal(err)
			}
			if got.kind != c.kind || got.k != c.k || got.m != c.m || got.index != c.index || got.id != id ||
				got.objLen != int64(c.objLen) || got.payloadLen != int64(len(payload)) || len(got.sums) != len(h.sums) {
				t.Fatalf("decoded %+v", got)
			}
			if bad := got.verifyBlocks(payload, 0); bad != -1 {
				t.Fatalf("block %d does not verify", bad)
			}
			if len(payload) > 0 {
				payload[len(payload)-1] ^= 1
				if bad := got.verifyBlocks(payload, 0); bad != len(got.sums)-1 {
					t.Fatalf("flipped last byte: bad block %d, want %d", bad, len(got.sums)-1)
				}
			}
			// Every single bit flip in the header is detected.
			for i := range b {
				for bit := 0; bit < 8; bit++ {
					c := bytes.Clone(b)
					c[i] ^= 1 << bit
					if _, err := decodeHeader(c); err == nil {
						t.Fatalf("bit %d of byte %d flipped: header still decodes", bit, i)
					}
				}
			}
		})
	}
}

// reseal recomputes the header checksum so a test can probe the field
// checks behind it.
func reseal(b []byte) []byte {
	end := len(b) - 4
	binary.LittleEndian.PutUint32(b[end:], crc32.Checksum(b[:end], crcTable))
	return b
}

func TestHeaderRejects(t *testing.T) {
	id := objstore.Sum([]byte("x"))
	good := newHeader(objstore.KindPack, id, 2, 1, 0, 100, make([]byte, 50)).encode()
	cases := []struct {
		name string
		mod  func(b []byte) []byte
	}{
		{"short", func(b []byte) []byte { return b[:40] }},
		{"truncated-table", func(b []byte) []byte { return b[:len(b)-1] }},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return reseal(b) }},
		{"version", func(b []byte) []byte { b[8] = 2; return reseal(b) }},
		{"kind", func(b []byte) []byte { b[10] = 9; return reseal(b) }},
		{"block-shift-small", func(b []byte) []byte { b[11] = 4; return reseal(b) }},
		{"block-shift-large", func(b []byte) []byte { b[11] = 40; return reseal(b) }},
		{"k-zero", func(b []byte) []byte { b[12] = 0; return reseal(b) }},
		{"k+m", func(b []byte) []byte { b[12], b[13] = 200, 100; return reseal(b) }},
		{"index", func(b []byte) []byte { b[14] = 3; return reseal(b) }},
		{"reserved", func(b []byte) []byte { b[15] = 1; return reseal(b) }},
		{"huge-object", func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[48:], 1<<62)
			return reseal(b)
		}},
		{"payload-length", func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[56:], 51)
			return reseal(b)
		}},
		{"checksum", func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeHeader(c.mod(bytes.Clone(good)))
			if !errors.Is(err, errBadHeader) {
				t.Fatalf("got %v, want errBadHeader", err)
			}
		})
	}
}

func TestShardNames(t *testing.T) {
	id := objstore.Sum([]byte("y"))
	cases := []struct {
		name string
		idx  int
		ok   bool
	}{
		{id.String() + ".0", 0, true},
		{id.String() + ".17", 17, true},
		{id.String() + ".254", 254, true},
		{id.String() + ".255", 0, false},
		{id.String() + ".01", 0, false},
		{id.String() + ".-1", 0, false},
		{id.String() + ".", 0, false},
		{id.String(), 0, false},
		{id.String()[:63] + "G.1", 0, false},
		{"AB" + id.String()[2:] + ".1", 0, false},
		{id.String() + ".1.x", 0, false},
	}
	for _, c := range cases {
		gid, idx, ok := parseShardName(c.name)
		if ok != c.ok || ok && (gid != id || idx != c.idx) {
			t.Errorf("parseShardName(%q) = %v %d %v", c.name, gid, idx, ok)
		}
	}
	k, tid, idx, ok := parseTempName("packs." + id.String() + ".3.12345")
	if !ok || k != objstore.KindPack || tid != id || idx != 3 {
		t.Errorf("parseTempName: %v %v %d %v", k, tid, idx, ok)
	}
	for _, bad := range []string{"bogus." + id.String() + ".3.1", "packs." + id.String() + ".3", "x"} {
		if _, _, _, ok := parseTempName(bad); ok {
			t.Errorf("parseTempName(%q) accepted", bad)
		}
	}
}

func FuzzDecodeShardHeader(f *testing.F) {
	id := objstore.Sum([]byte("seed"))
	for _, c := range []struct{ k, m, idx, n int }{{1, 0, 0, 0}, {1, 2, 1, 100}, {2, 1, 2, 3 * blockSize}, {4, 2, 0, 9*blockSize + 5}} {
		payload := make([]byte, ceilDiv(int64(c.n), int64(c.k)))
		b := newHeader(objstore.KindPack, id, c.k, c.m, c.idx, int64(c.n), payload).encode()
		f.Add(b)
		f.Add(append(b, payload...))
	}
	f.Add([]byte(shardMagic))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			if !errors.Is(err, errBadHeader) {
				t.Fatalf("error does not wrap errBadHeader: %v", err)
			}
			return
		}
		enc := h.encode()
		if !bytes.Equal(enc, b[:len(enc)]) {
			t.Fatalf("re-encoding differs")
		}
		if h.index >= h.k+h.m || h.objLen > MaxObjectSize || h.payloadLen != ceilDiv(h.objLen, int64(h.k)) {
			t.Fatalf("accepted inconsistent header %+v", h)
		}
	})
}

// gf256 is an independent implementation of the field doc/pool.md
// specifies: polynomial 0x11D, generator 2.
type gf256 struct{ exp, log [512]int }

func newGF256() *gf256 {
	g := &gf256{}
	x := 1
	for i := 0; i < 255; i++ {
		g.exp[i], g.exp[i+255] = x, x
		g.log[x] = i
		x <<= 1
		if x&0x100 != 0 {
			x ^= 0x11d
		}
	}
	return g
}

func (g *gf256) mul(a, b int) int {
	if a == 0 || b == 0 {
		return 0
	}
	return g.exp[g.log[a]+g.log[b]]
}

func (g *gf256) inv(a int) int { return g.exp[255-g.log[a]] }

func (g *gf256) pow(a, n int) int {
	r := 1
	for i := 0; i < n; i++ {
		r = g.mul(r, a)
	}
	return r
}

// TestParityMatchesSpec recomputes parity from the formula in
// doc/pool.md and compares it with what the pool writes.
func TestParityMatchesSpec(t *testing.T) {
	g := newGF256()
	p := &Pool{encs: map[[2]int]reedsolomon.Encoder{}}
	for _, km := range [][2]int{{2, 1}, {3, 2}, {4, 2}, {5, 3}} {
		k, m := km[0], km[1]
		// V[r][c] = r^c; E = V · inverse(top k×k of V).
		v := make([][]int, k+m)
		for r := range v {
			v[r] = make([]int, k)
			for c := range v[r] {
				v[r][c] = g.pow(r, c)
			}
		}
		// Gauss-Jordan inverse of the top square.
		a := make([][]int, k)
		for r := range a {
			a[r] = make([]int, 2*k)
			copy(a[r], v[r])
			a[r][k+r] = 1
		}
		for c := 0; c < k; c++ {
			piv := c
			for a[piv][c] == 0 {
				piv++
			}
			a[c], a[piv] = a[piv], a[c]
			iv := g.inv(a[c][c])
			for j := range a[c] {
				a[c][j] = g.mul(a[c][j], iv)
			}
			for r := 0; r < k; r++ {
				if r != c && a[r][c] != 0 {
					f := a[r][c]
					for j := range a[r] {
						a[r][j] ^= g.mul(f, a[c][j])
					}
				}
			}
		}
		e := make([][]int, k+m)
		for r := range e {
			e[r] = make([]int, k)
			for c := 0; c < k; c++ {
				for i := 0; i < k; i++ {
					e[r][c] ^= g.mul(v[r][i], a[i][k+c])
				}
			}
		}
		data := randBytes(uint64(k*10+m), 1000*k+3)
		shards, err := p.encode(data, k, m)
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < m; j++ {
			for b := range shards[k+j] {
				want := 0
				for i := 0; i < k; i++ {
					want ^= g.mul(e[k+j][i], int(shards[i][b]))
				}
				if int(shards[k+j][b]) != want {
					t.Fatalf("k=%d m=%d: parity %d byte %d = %d, spec says %d", k, m, j, b, shards[k+j][b], want)
				}
			}
		}
	}
}
