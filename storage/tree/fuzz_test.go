package tree

import (
	"bytes"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// maxAllocFactor bounds the bytes Decode may allocate per input byte: at most
// one Node (well under 256 bytes) per 4 input bytes, plus one copy of the
// input.
const maxAllocFactor = 80

// allocSlack absorbs allocations that are not Decode's: the fuzzing engine
// allocates concurrently in the same process. It is far below what a count
// trusted without checking would allocate.
const allocSlack = 1 << 20

// decodeAlloc returns the bytes allocated while decoding in, and Decode's result.
func decodeAlloc(in []byte) (uint64, *Tree, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	tr, err := Decode(in)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, tr, err
}

// TestDecodeAllocBound feeds Decode the inputs that make it allocate the
// most per input byte: as many minimal nodes, xattrs or chunks as the
// input can hold, with a count that claims more or exactly enough.
func TestDecodeAllocBound(t *testing.T) {
	const n = 1 << 14
	minimalNodes := []byte{Version}
	minimalNodes = appendUvarint(minimalNodes, n)
	for i := range n {
		name := []byte{'a' + byte(i>>10), 'a' + byte(i>>5&31), 'a' + byte(i&31)}
		minimalNodes = appendUvarint(minimalNodes, uint64(len(name)))
		minimalNodes = append(minimalNodes, name...)
		minimalNodes = append(minimalNodes, byte(File), tagEnd)
	}
	xattrs := append([]byte{Version, 1, 1, 'a', byte(File), tagXattrs}, appendUvarint(nil, n)...)
	for i := range n {
		xattrs = append(xattrs, 3, 'a'+byte(i>>10), 'a'+byte(i>>5&31), 'a'+byte(i&31), 0)
	}
	xattrs = append(xattrs, tagEnd)
	chunks := append([]byte{Version, 1, 1, 'a', byte(File), tagContent}, appendUvarint(nil, n)...)
	chunks = append(chunks, bytes.Repeat(append(bytes.Repeat([]byte{1}, 32), 1), n)...)
	chunks = append(chunks, tagEnd)
	lying := append([]byte{Version}, appendUvarint(nil, 1<<40)...)
	lying = append(lying, minimalNodes[4:]...)
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"minimal nodes", minimalNodes, true},
		{"xattrs", xattrs, true},
		{"chunks", chunks, false}, // size mismatch, found after allocating
		{"lying node count", lying, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alloc, _, err := decodeAlloc(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("Decode error = %v, want ok=%v", err, tc.ok)
			}
			if limit := uint64(maxAllocFactor*len(tc.in) + 4096); alloc > limit {
				t.Errorf("Decode of %d bytes allocated %d bytes, limit %d", len(tc.in), alloc, limit)
			}
			t.Logf("%d bytes in, %d bytes allocated (%.1fx)", len(tc.in), alloc, float64(alloc)/float64(len(tc.in)))
		})
	}
}

// FuzzDecode checks that Decode never panics, allocates at most a bounded
// multiple of its input, and that every accepted input round-trips exactly.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		"",
		"01",
		"01 00",
		"02 00",
		"01 01 01 61 01 00",
		"01 01 01 61 01 12 01 00",
		"01 01 01 61 01 01 a480 00",
		"01 02 01 61 01 00 01 62 02 01 ed03 00",
		"01 ffffffff0f 01 61 01 00",
		"01 01 01 61 01 0f 02 01 61 00 01 62 01 76 00",
		"01 01 01 61 01 09 02 10 01 " + strings.Repeat("01", 32) + " 02 00",
		"01 01 01 61 02 11 " + strings.Repeat("cd", 32) + " 00",
		"01 01 01 61 04 0d 8108 00",
		"01 01 01 61 03 0e 02 2e2e 00",
		"01 01 01 61 01 06 ffffffffffffffffff01 00",
	}
	for _, s := range seeds {
		f.Add(enc(s))
	}
	for _, tr := range []*Tree{bigTree(30), {Nodes: []Node{fullNode("full")}}} {
		b, err := tr.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		alloc, tr, err := decodeAlloc(in)
		if alloc > uint64(maxAllocFactor*len(in)+allocSlack) {
			t.Fatalf("Decode of %d bytes allocated %d bytes", len(in), alloc)
		}
		if err != nil {
			return
		}
		out, err := tr.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded tree failed: %v", err)
		}
		if !bytes.Equal(in, out) {
			t.Fatalf("Encode(Decode(b)) != b:\n in %x\nout %x", in, out)
		}
		tr2, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode of re-encoded tree: %v", err)
		}
		if !reflect.DeepEqual(tr, tr2) {
			t.Fatalf("Decode(Encode(t)) != t")
		}
	})
}
