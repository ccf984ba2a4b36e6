package tree

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/arkbox/arkbox/storage/blob"
)

func id(b byte) blob.ID {
	var x blob.ID
	for i := range x {
		x[i] = b
	}
	return x
}

// fullNode has every field set to a non-zero value.
func fullNode(name string) Node {
	return Node{
		Name: name, Type: File, Mode: 0o4755, UID: 1000, GID: math.MaxUint32,
		User: "alice", Group: "staff",
		MTime: 1700000000123456789, ATime: -1, CTime: math.MinInt64,
		Size: 3 + math.MaxUint32, Inode: math.MaxUint64, Device: 0x803, Links: 2,
		Xattrs: []Xattr{
			{Name: "system.posix_acl_access", Value: []byte{2, 0, 0, 0}},
			{Name: "user.empty"},
		},
		Content: []Chunk{{ID: id(1), Size: math.MaxUint32}, {ID: id(2), Size: 3}},
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		tree Tree
	}{
		{"empty", Tree{}},
		{"one minimal file", Tree{Nodes: []Node{{Name: "a", Type: File}}}},
		{"all types", Tree{Nodes: []Node{
			{Name: "blk", Type: BlockDev, Rdev: 0x0801, Mode: 0o660},
			{Name: "chr", Type: CharDev, Rdev: 1<<40 | 3},
			{Name: "dir", Type: Dir, Mode: 0o755, Size: 4096, Subtree: id(9)},
			{Name: "fifo", Type: FIFO},
			{Name: "file", Type: File, Size: 10, Content: []Chunk{{ID: id(7), Size: 10}}},
			{Name: "link", Type: Symlink, LinkTarget: "../x/\xff", Size: 6},
			{Name: "sock", Type: Socket, Mode: 0o777},
		}}},
		{"every field", Tree{Nodes: []Node{fullNode("full")}}},
		{"raw names", Tree{Nodes: []Node{
			{Name: "\x01", Type: File},
			{Name: "A", Type: File},
			{Name: "a", Type: File},
			{Name: "\xc3\xa9t\xc3\xa9", Type: File},
			{Name: "\xff\xfe", Type: File},
		}}},
		{"negative and extreme times", Tree{Nodes: []Node{
			{Name: "x", Type: File, MTime: math.MaxInt64, ATime: math.MinInt64, CTime: -1_000_000_000},
		}}},
		{"empty dir without subtree", Tree{Nodes: []Node{{Name: "d", Type: Dir}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.tree.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := tc.tree
			if want.Nodes == nil {
				want.Nodes = []Node{}
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("round trip:\n got %+v\nwant %+v", *got, want)
			}
			b2, err := got.Encode()
			if err != nil || !bytes.Equal(b, b2) {
				t.Errorf("re-encode = %x, %v; want %x", b2, err, b)
			}
			b3, err := tc.tree.AppendEncode([]byte("prefix"))
			if err != nil || string(b3[:6]) != "prefix" || !bytes.Equal(b3[6:], b) {
				t.Errorf("AppendEncode = %x, %v", b3, err)
			}
		})
	}
}

// TestGolden pins the byte layout documented in doc/tree.md.
func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		tree Tree
		hex  string
	}{
		{"empty", Tree{}, "01 00"},
		{"minimal file", Tree{Nodes: []Node{{Name: "a", Type: File}}}, "01 01  01 61 01 00"},
		{"doc example", Tree{Nodes: []Node{
			{
				Name: "notes.txt", Type: File, Mode: 0o644, UID: 1000, GID: 1000,
				User: "alice", MTime: 1700000000000000000, Size: 5, Links: 1,
				Xattrs:  []Xattr{{Name: "user.k", Value: []byte("v")}},
				Content: []Chunk{{ID: id(0xab), Size: 5}},
			},
			{Name: "src", Type: Dir, Mode: 0o755, MTime: -1, Subtree: id(0xcd)},
		}},
			"01 02" +
				" 09 6e6f7465732e747874 01" + // name "notes.txt", type file
				" 01 a403" + // mode 0644 = 420
				" 02 e807 03 e807" + // uid 1000, gid 1000
				" 04 05 616c696365" + // user "alice"
				" 06 8080d0e2c6bfce972f" + // mtime 1700000000000000000, zigzag = 3400000000000000000
				" 09 05" + // size 5
				" 0c 01" + // links 1
				" 0f 01 06 757365722e6b 01 76" + // xattrs: 1, "user.k" = "v"
				" 10 01 " + strings.Repeat("ab", 32) + " 05" + // content: 1 chunk of 5 bytes
				" 00" +
				" 03 737263 02" + // name "src", type dir
				" 01 ed03" + // mode 0755 = 493
				" 06 01" + // mtime -1, zigzag = 1
				" 11 " + strings.Repeat("cd", 32) + // subtree
				" 00",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.tree.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Encode =\n%x\nwant\n%x", got, want)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	file := func(name string) Node { return Node{Name: name, Type: File} }
	tests := []struct {
		name string
		node []Node
		want string
	}{
		{"empty name", []Node{file("")}, "empty name"},
		{"dot", []Node{file(".")}, "reserved name"},
		{"dotdot", []Node{file("..")}, "reserved name"},
		{"slash", []Node{file("a/b")}, "contains '/'"},
		{"nul", []Node{file("a\x00b")}, "contains NUL"},
		{"unsorted", []Node{file("b"), file("a")}, "not sorted"},
		{"duplicate", []Node{file("a"), file("a")}, "duplicate name"},
		{"type 0", []Node{{Name: "a"}}, "invalid type 0"},
		{"type 8", []Node{{Name: "a", Type: 8}}, "invalid type 8"},
		{"mode bits", []Node{{Name: "a", Type: File, Mode: 0o10644}}, "bits outside"},
		{"rdev on file", []Node{{Name: "a", Type: File, Rdev: 1}}, "rdev set on a file"},
		{"target on file", []Node{{Name: "a", Type: File, LinkTarget: "x"}}, "link target set on a file"},
		{"content on dir", []Node{{Name: "a", Type: Dir, Content: []Chunk{{ID: id(1), Size: 1}}}}, "content set on a dir"},
		{"subtree on file", []Node{{Name: "a", Type: File, Subtree: id(1)}}, "subtree set on a file"},
		{"xattr empty name", []Node{{Name: "a", Type: File, Xattrs: []Xattr{{Value: []byte("v")}}}}, "xattr with empty name"},
		{"xattr nul", []Node{{Name: "a", Type: File, Xattrs: []Xattr{{Name: "u\x00"}}}}, "name contains NUL"},
		{"xattr unsorted", []Node{{Name: "a", Type: File, Xattrs: []Xattr{{Name: "b"}, {Name: "a"}}}}, "not sorted or duplicate"},
		{"xattr duplicate", []Node{{Name: "a", Type: File, Xattrs: []Xattr{{Name: "b"}, {Name: "b"}}}}, "not sorted or duplicate"},
		{"size mismatch", []Node{{Name: "a", Type: File, Size: 4, Content: []Chunk{{ID: id(1), Size: 3}}}}, "sum to 3 bytes, size is 4"},
		{"size without content", []Node{{Name: "a", Type: File, Size: 4}}, "sum to 0 bytes, size is 4"},
		{"empty chunk", []Node{{Name: "a", Type: File, Content: []Chunk{{ID: id(1)}}}}, "has size 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := Tree{Nodes: tc.node}
			b, err := tr.AppendEncode([]byte("x"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AppendEncode error = %v, want it to contain %q", err, tc.want)
			}
			if string(b) != "x" {
				t.Errorf("AppendEncode returned %q on error, want the input", b)
			}
		})
	}
}

// enc builds test input from hex with spaces.
func enc(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  string
		newer bool
	}{
		{"empty", "", "empty input", false},
		{"version 0", "00 00", "invalid format version 0", false},
		{"version 2", "02 00", "format version 2", true},
		{"no count", "01", "truncated", false},
		{"count too large", "01 02 01 61 01 00", "exceeds", false},
		{"huge count", "01 ffffffffffffffffff02", "overflows", false},
		{"count 2^63-1", "01 ffffffffffffffff7f", "exceeds", false},
		{"count beyond input", "01 ffffffff0f 0161 0100", "exceeds", false},
		{"trailing bytes", "01 00 00", "1 trailing bytes", false},
		{"trailing after node", "01 01 01 61 01 00 00", "trailing", false},
		{"name truncated", "01 01 05 61 01 00 00", "truncated", false},
		{"empty name", "01 01 00 01 00 00", "empty name", false},
		{"name dot", "01 01 01 2e 01 00", "reserved name", false},
		{"name slash", "01 01 01 2f 01 00", "contains '/'", false},
		{"type 0", "01 01 01 61 00 00", "invalid type 0", false},
		{"type 8", "01 01 01 61 08 00", "type 8", true},
		{"unknown tag", "01 01 01 61 01 12 01 00", "field tag 18", true},
		{"big unknown tag", "01 01 01 61 01 8001 01 00", "field tag 128", true},
		{"tags descending", "01 01 01 61 01 02 01 01 01 00", "not ascending", false},
		{"tag repeated", "01 01 01 61 01 01 01 01 02 00", "not ascending", false},
		{"zero mode present", "01 01 01 61 01 01 00 00", "zero value present", false},
		{"zero mtime present", "01 01 01 61 01 06 00 00", "zero value present", false},
		{"empty user present", "01 01 01 61 01 04 00 00", "zero value present", false},
		{"non-minimal varint", "01 01 01 61 01 01 a480 00", "not minimally encoded", false},
		{"non-minimal count", "01 8100 01 61 01 00", "not minimally encoded", false},
		{"uid over 32 bits", "01 01 01 61 01 02 8080808010 00", "exceeds 32 bits", false},
		{"mode over 07777", "01 01 01 61 01 01 8040 00", "bits outside", false},
		{"unsorted", "01 02 01 62 01 00 01 61 01 00", "not sorted", false},
		{"duplicate", "01 02 01 61 01 00 01 61 01 00", "not sorted", false},
		{"zero xattr count", "01 01 01 61 01 0f 00 00", "zero value present", false},
		{"xattr unsorted", "01 01 01 61 01 0f 02 0162 00 0161 00 00", "not sorted", false},
		{"zero content count", "01 01 01 61 01 10 00 00", "zero value present", false},
		{"content size mismatch", "01 01 01 61 01 09 02 10 01 " + strings.Repeat("01", 32) + " 01 00", "sum to 1 bytes, size is 2", false},
		{"zero subtree", "01 01 01 61 02 11 " + strings.Repeat("00", 32) + " 00", "zero value present", false},
		{"subtree truncated", "01 01 01 61 02 11 0101 00", "truncated", false},
		{"subtree on file", "01 01 01 61 01 11 " + strings.Repeat("01", 32) + " 00", "subtree set on a file", false},
		{"missing end", "01 01 01 61 01 01 01", "truncated", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Decode(enc(tc.in))
			if err == nil {
				t.Fatalf("Decode = %+v, want error containing %q", tr, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode error = %v, want it to contain %q", err, tc.want)
			}
			if got := errors.Is(err, ErrNewerFormat); got != tc.newer {
				t.Errorf("errors.Is(%v, ErrNewerFormat) = %v, want %v", err, got, tc.newer)
			}
		})
	}
}

func TestFindAndSort(t *testing.T) {
	names := []string{"b", "\xff", "a", "B", "ab", "a\x01"}
	tr := Tree{}
	for _, n := range names {
		tr.Nodes = append(tr.Nodes, Node{Name: n, Type: File})
	}
	tr.Sort()
	var got []string
	for _, n := range tr.Nodes {
		got = append(got, n.Name)
	}
	want := []string{"B", "a", "a\x01", "ab", "b", "\xff"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Sort order = %q, want %q", got, want)
	}
	tests := []struct {
		name string
		ok   bool
	}{
		{"B", true}, {"a", true}, {"a\x01", true}, {"ab", true}, {"b", true}, {"\xff", true},
		{"", false}, {"A", false}, {"aa", false}, {"c", false}, {"\xff\xff", false},
	}
	for _, tc := range tests {
		n, ok := tr.Find(tc.name)
		if ok != tc.ok || (ok && n.Name != tc.name) {
			t.Errorf("Find(%q) = %v, %v; want ok=%v", tc.name, n, ok, tc.ok)
		}
	}
	n, _ := tr.Find("ab")
	n.Size = 42
	if tr.Nodes[3].Size != 42 {
		t.Error("Find does not return a pointer into the tree")
	}
	if _, ok := (&Tree{}).Find("a"); ok {
		t.Error("Find in an empty tree succeeded")
	}
}

func TestTypeString(t *testing.T) {
	tests := []struct {
		t    Type
		want string
	}{
		{File, "file"}, {Dir, "dir"}, {Symlink, "symlink"}, {BlockDev, "blockdev"},
		{CharDev, "chardev"}, {FIFO, "fifo"}, {Socket, "socket"}, {0, "type(0)"}, {9, "type(9)"},
	}
	for _, tc := range tests {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("Type(%d).String() = %q, want %q", tc.t, got, tc.want)
		}
	}
}

// bigTree returns a directory of n realistic entries: mostly files with a
// few chunks, some subdirectories and symlinks, some with ACLs.
func bigTree(n int) *Tree {
	tr := &Tree{Nodes: make([]Node, 0, n)}
	for i := range n {
		nd := Node{
			Name: fmt.Sprintf("entry-%06d.dat", i), Mode: 0o644, UID: 1000, GID: 1000,
			User: "alice", Group: "staff",
			MTime: 1700000000000000000 + int64(i)*1e6, ATime: 1700000000000000000, CTime: 1700000000000000000 + int64(i),
			Inode: uint64(1000000 + i), Device: 0x803, Links: 1,
		}
		switch i % 10 {
		case 0:
			nd.Type, nd.Mode, nd.Subtree, nd.Size = Dir, 0o755, id(byte(i)), 4096
		case 1:
			nd.Type, nd.LinkTarget, nd.Size = Symlink, "../target/file", 14
		default:
			nd.Type = File
			for c := range i % 4 {
				var cid blob.ID
				cid[0], cid[1], cid[2] = byte(i), byte(i>>8), byte(c)
				nd.Content = append(nd.Content, Chunk{ID: cid, Size: 1 << 20})
				nd.Size += 1 << 20
			}
		}
		if i%7 == 0 {
			nd.Xattrs = []Xattr{{Name: "system.posix_acl_access", Value: make([]byte, 28)}}
		}
		tr.Nodes = append(tr.Nodes, nd)
	}
	return tr
}

func TestBigTree(t *testing.T) {
	tr := bigTree(10000)
	b, err := tr.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, tr) {
		t.Fatal("10k-entry tree does not round-trip")
	}
}

func BenchmarkEncode10k(b *testing.B) {
	tr := bigTree(10000)
	buf, _ := tr.Encode()
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = tr.AppendEncode(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode10kFresh(b *testing.B) {
	tr := bigTree(10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode10k(b *testing.B) {
	buf, err := bigTree(10000).Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}
