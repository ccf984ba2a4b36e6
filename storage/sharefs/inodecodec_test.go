package sharefs

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/tree"
)

func codecInodes() []*Inode {
	id := func(b byte) (x blob.ID) {
		for i := range x {
			x[i] = b + byte(i)
		}
		return x
	}
	return []*Inode{
		{Ino: 1, Type: tree.Dir, Mode: 0o755, Nlink: 2, MTime: 1, CTime: 2},
		{Ino: 1 << 40, Type: tree.File, Mode: 0o644, UID: 1000, GID: 1000, Size: 1 << 33, MTime: -5, CTime: 1 << 62,
			ATime: 7, Nlink: 3, Xattrs: map[string][]byte{"user.b": {}, "user.a": {0, 1, 2}},
			Content: []tree.Chunk{{ID: id(1), Size: 1 << 20}, {ID: id(9), Size: 1}}, Staged: true,
			BlockSize: 4 << 20, CleanSize: 99, Parents: []uint64{1, 1 << 50}},
		{Ino: 3, Type: tree.Symlink, Mode: 0o777, Target: "../ü/x", Nlink: 1, Parents: []uint64{1}},
		{Ino: 4, Type: tree.Dir, Mode: 0o700, Nlink: 2, Parents: []uint64{1}, Tree: id(3), TreeValid: true,
			TreeTotals: &TreeTotals{Files: 10, Dirs: 2, Others: 1, Bytes: 12345}},
		{Ino: 5, Type: tree.Dir, Tree: id(4), TreeTotals: &TreeTotals{}},
	}
}

func TestInodeCodec(t *testing.T) {
	for _, in := range codecInodes() {
		b, err := encodeInode(in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeInode(b)
		if err != nil {
			t.Fatalf("inode %d: %v", in.Ino, err)
		}
		if !reflect.DeepEqual(got, in) {
			t.Fatalf("inode %d: round trip\n got %+v\nwant %+v", in.Ino, got, in)
		}
		again, _ := encodeInode(got)
		if !bytes.Equal(again, b) {
			t.Fatalf("inode %d: encoding not deterministic", in.Ino)
		}
		// Records written as JSON (before the binary form) still read.
		j, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := decodeInode(j); err != nil || !reflect.DeepEqual(got, in) {
			t.Fatalf("inode %d from JSON: %+v, %v", in.Ino, got, err)
		}
		// Every cut of the record is refused, never misread.
		for n := range len(b) {
			if _, err := decodeInode(b[:n]); err == nil {
				t.Fatalf("inode %d: a record cut to %d of %d bytes decoded", in.Ino, n, len(b))
			}
		}
	}
}

func FuzzDecodeInode(f *testing.F) {
	for _, in := range codecInodes() {
		b, _ := encodeInode(in)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := decodeInode(b)
		if err != nil || (len(b) > 0 && b[0] == '{') {
			return
		}
		again, err := encodeInode(in)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeInode(again)
		if err != nil || !reflect.DeepEqual(back, in) {
			t.Fatalf("re-encoded record decodes to %+v, %v; want %+v", back, err, in)
		}
	})
}

// BenchmarkDecodeInode: a file of two chunks in one folder, binary and
// JSON (start-up recovery and prune's live roots decode every inode).
func BenchmarkDecodeInode(b *testing.B) {
	in := codecInodes()[1]
	bin, _ := encodeInode(in)
	js, _ := json.Marshal(in)
	for name, rec := range map[string][]byte{"binary": bin, "json": js} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := decodeInode(rec); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(rec)), "bytes")
		})
	}
}
