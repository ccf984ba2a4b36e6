package repo

import (
	"bytes"
	"testing"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/catalog"
	"github.com/arkbox/arkbox/storage/objstore"
)

func TestPackHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		entries []PackEntry
	}{
		{"empty", nil},
		{"one", []PackEntry{{Type: blob.Data, ID: blob.ID{1}, Length: 100, RawLength: 300}}},
		{"mixed", []PackEntry{{Type: blob.Tree, ID: blob.ID{2}, Length: 1, RawLength: 0}, {Type: blob.Data, ID: blob.ID{3}, Length: 1 << 20, RawLength: 8 << 20}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var total int64
			for i := range tt.entries {
				tt.entries[i].Offset = uint32(total)
				total += int64(tt.entries[i].Length)
			}
			b := EncodePackHeader(tt.entries)
			got, err := DecodePackHeader(b, total)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.entries) {
				t.Fatalf("got %d entries", len(got))
			}
			for i := range got {
				if got[i] != tt.entries[i] {
					t.Errorf("entry %d: %+v, want %+v", i, got[i], tt.entries[i])
				}
			}
			if _, err := DecodePackHeader(b, total+1); err == nil && len(tt.entries) >= 0 {
				t.Errorf("header accepted with a gap after the blobs")
			}
		})
	}
}

func TestIndexRoundTrip(t *testing.T) {
	idx := &Index{
		Supersedes: []objstore.ID{{9}, {8}},
		Packs: []catalog.IndexedPack{
			{ID: objstore.ID{1}, Size: 1000, Blobs: []catalog.IndexedBlob{{Type: blob.Data, ID: blob.ID{1}, Offset: 0, Length: 10, RawLength: 20}, {Type: blob.Tree, ID: blob.ID{2}, Offset: 10, Length: 900, RawLength: 5}}},
			{ID: objstore.ID{2}, Size: 5, Blobs: []catalog.IndexedBlob{}},
		},
	}
	b := EncodeIndex(idx)
	got, err := DecodeIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(EncodeIndex(got), b) {
		t.Fatal("index did not round-trip")
	}
	bad := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version", append([]byte{2}, b[1:]...)},
		{"truncated", b[:len(b)-1]},
		{"trailing", append(append([]byte{}, b...), 0)},
		{"huge count", []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
	}
	for _, tt := range bad {
		if _, err := DecodeIndex(tt.b); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

func FuzzDecodePackHeader(f *testing.F) {
	f.Add(EncodePackHeader([]PackEntry{{Type: blob.Data, ID: blob.ID{1}, Length: 100, RawLength: 300}}), int64(100))
	f.Add([]byte{1, 0}, int64(0))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}, int64(1<<30))
	f.Fuzz(func(t *testing.T, b []byte, dataLen int64) {
		ents, err := DecodePackHeader(b, dataLen)
		if err != nil {
			return
		}
		// Accepted headers are canonical and cover the data exactly.
		if !bytes.Equal(EncodePackHeader(ents), b) {
			t.Fatalf("accepted a non-canonical header")
		}
		var end int64
		for _, e := range ents {
			if int64(e.Offset) != end {
				t.Fatalf("offset %d, want %d", e.Offset, end)
			}
			end += int64(e.Length)
		}
		if end != dataLen {
			t.Fatalf("entries cover %d of %d", end, dataLen)
		}
	})
}

func FuzzDecodeIndex(f *testing.F) {
	f.Add(EncodeIndex(&Index{Packs: []catalog.IndexedPack{{ID: objstore.ID{1}, Size: 50, Blobs: []catalog.IndexedBlob{{Type: blob.Data, ID: blob.ID{1}, Length: 10, RawLength: 20}}}}}))
	f.Add(EncodeIndex(&Index{Supersedes: []objstore.ID{{1}}}))
	f.Add([]byte{1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := DecodeIndex(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeIndex(idx), b) {
			t.Fatalf("accepted a non-canonical index")
		}
		for _, p := range idx.Packs {
			for _, e := range p.Blobs {
				if uint64(e.Offset)+uint64(e.Length) > uint64(p.Size) {
					t.Fatalf("blob outside its pack")
				}
			}
		}
	})
}
