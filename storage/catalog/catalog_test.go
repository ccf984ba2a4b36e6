package catalog

import (
	"path/filepath"
	"testing"

	"github.com/arkbox/arkbox/storage/blob"
	"github.com/arkbox/arkbox/storage/objstore"
)

func bid(b byte) blob.ID     { var id blob.ID; id[0] = b; return id }
func oid(b byte) objstore.ID { var id objstore.ID; id[0] = b; return id }

func TestIndexRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	packs := []IndexedPack{
		{ID: oid(1), Size: 1000, Blobs: []IndexedBlob{{blob.Data, bid(1), 0, 100, 200}, {blob.Tree, bid(2), 100, 50, 70}}},
		{ID: oid(2), Size: 500, Blobs: []IndexedBlob{{blob.Data, bid(3), 0, 400, 400}}},
	}
	if err := c.AddIndex(oid(9), packs); err != nil {
		t.Fatal(err)
	}
	// Same index again is a no-op.
	if err := c.AddIndex(oid(9), packs); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct {
		typ  blob.Type
		id   blob.ID
		ok   bool
		want BlobLoc
	}{
		{blob.Data, bid(1), true, BlobLoc{oid(1), 0, 100, 200}},
		{blob.Tree, bid(2), true, BlobLoc{oid(1), 100, 50, 70}},
		{blob.Data, bid(2), false, BlobLoc{}},
		{blob.Data, bid(3), true, BlobLoc{oid(2), 0, 400, 400}},
	}
	for _, tt := range tests {
		got, ok, err := c.LookupBlob(tt.typ, tt.id)
		if err != nil || ok != tt.ok || got != tt.want {
			t.Errorf("lookup %v %x: %+v %v %v", tt.typ, tt.id[0], got, ok, err)
		}
	}
	b, p, i, err := c.Counts()
	if err != nil || b != 3 || p != 2 || i != 1 {
		t.Fatalf("counts %d %d %d %v", b, p, i, err)
	}
	pi, ok, err := c.LookupPack(oid(1))
	if err != nil || !ok || pi.Blobs != 2 || pi.Raw != 270 || pi.Index != oid(9) {
		t.Fatalf("pack info %+v %v %v", pi, ok, err)
	}
	if err := c.ReplaceIndex(nil); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := c.LookupBlob(blob.Data, bid(1)); ok {
		t.Fatal("blob survived ReplaceIndex(nil)")
	}
}

func TestMarkSet(t *testing.T) {
	c, err := Open(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := c.NewMarkSet("gc")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < markBatch+10; i++ {
		var id blob.ID
		id[0], id[1], id[2] = byte(i), byte(i>>8), byte(i>>16)
		had, err := m.Mark(blob.Data, id)
		if err != nil || had {
			t.Fatalf("mark %d: %v %v", i, had, err)
		}
	}
	if had, _ := m.Mark(blob.Data, blob.ID{}); !had {
		t.Fatal("id 0 not marked")
	}
	if ok, _ := m.Has(blob.Tree, blob.ID{}); ok {
		t.Fatal("type not part of the mark")
	}
	n, err := m.Len()
	if err != nil || n != markBatch+10 {
		t.Fatalf("len %d %v", n, err)
	}
	if err := m.Drop(); err != nil {
		t.Fatal(err)
	}
}
