package pool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arkbox/arkbox/storage/objstore"
)

// TestJournalFile: records survive as written; a torn last record is
// ignored (and trimmed); a bad record before the end, a bad header or
// another member's header make the copy unusable; a full journal has
// overflowed.
func TestJournalFile(t *testing.T) {
	missing := "5d1c2a8e-3f4b-4c6d-8e9f-0a1b2c3d4e5f"
	slot, _ := parseUUID(missing)
	ids := []objstore.ID{objstore.Sum([]byte("a")), objstore.Sum([]byte("b")), objstore.Sum([]byte("c"))}
	for _, tc := range []struct {
		name   string
		limit  int
		damage func(t *testing.T, path string)
		keys   int
		full   bool
		bad    bool
	}{
		{name: "intact", limit: 10, keys: 3},
		{name: "torn-tail", limit: 10, keys: 2, damage: func(t *testing.T, path string) {
			st, _ := os.Stat(path)
			os.Truncate(path, st.Size()-journalRecordLen/2)
		}},
		{name: "bad-last-record", limit: 10, keys: 2, damage: func(t *testing.T, path string) { flipAt(t, path, -5) }},
		{name: "bad-middle-record", limit: 10, bad: true, damage: func(t *testing.T, path string) { flipAt(t, path, journalHeaderLen+5) }},
		{name: "bad-header", limit: 10, bad: true, damage: func(t *testing.T, path string) { flipAt(t, path, 3) }},
		{name: "overflowed", limit: 2, keys: 2, full: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			d, err := newDisk(member{Slot: "0b7a3c52-0000-4000-8000-000000000001", Disk: "0b7a3c52-0000-4000-8000-000000000001"}, root, DiskOK)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.createJournal(missing, slot, 0, false); err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if err := d.appendJournal(missing, encodeJournalRecord(opPut, objstore.KindPack, id), tc.limit); err != nil {
					t.Fatal(err)
				}
			}
			if tc.damage != nil {
				tc.damage(t, d.journalPath(missing))
			}
			r, err := d.readJournal(missing, slot, 0, tc.limit)
			if tc.bad {
				if !errors.Is(err, errBadJournal) {
					t.Fatalf("read: %v, want a bad journal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r.keys) != tc.keys || r.full != tc.full || r.end != journalHeaderLen+int64(tc.keys)*journalRecordLen {
				t.Fatalf("read %d keys (full %v, end %d), want %d (full %v)", len(r.keys), r.full, r.end, tc.keys, tc.full)
			}
			for i, k := range r.keys {
				if k.id != ids[i] || k.kind != objstore.KindPack {
					t.Errorf("record %d: %+v", i, k)
				}
			}
			if err := d.trimJournal(missing); err != nil {
				t.Fatal(err)
			}
			if st, _ := os.Stat(d.journalPath(missing)); st.Size() != r.end {
				t.Errorf("journal of %d bytes after trimming, want %d", st.Size(), r.end)
			}
			if _, err := d.readJournal("0b7a3c52-0000-4000-8000-000000000009", slot, 0, tc.limit); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("journal of another member: %v", err)
			}
		})
	}
}

// flipAt flips a byte of the file at off (from the end when negative).
func flipAt(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += len(b)
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestJournalUnwritable: a write or delete whose record of what a missing
// disk misses reaches no disk fails, and changes nothing.
func TestJournalUnwritable(t *testing.T) {
	ctx := context.Background()
	a := goAway(t, layoutCases[3], 0, 30, 2, 0, nil)
	for _, d := range a.dirs[1:] {
		missed := filepath.Join(d, poolDirName, missedDirName)
		if err := os.RemoveAll(missed); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(missed, []byte("not a folder"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := sizedObj(31, 4)
	if err := a.p.Put(ctx, o.kind, o.id(), o.data); err == nil || !strings.Contains(err.Error(), "cannot record") {
		t.Fatalf("put without a journal: %v", err)
	}
	if files := shardFiles(t, a.dirs, o.kind, o.id()); len(files) > 0 {
		t.Fatalf("a failed put left %v", files)
	}
	old := a.before[1]
	if err := a.p.Delete(ctx, old.kind, old.id()); err == nil || !strings.Contains(err.Error(), "cannot record") {
		t.Fatalf("delete without a journal: %v", err)
	}
	if got, err := a.p.Get(ctx, old.kind, old.id()); err != nil || !bytes.Equal(got, old.data) {
		t.Fatalf("object after a failed delete: %v", err)
	}
}
