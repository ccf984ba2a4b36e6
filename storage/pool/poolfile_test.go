package pool

import (
	"strings"
	"testing"
	"time"
)

func samplePoolFile() *poolFile {
	a, b, c := newUUID(), newUUID(), newUUID()
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	return &poolFile{
		Format:  poolFileFormat,
		Pool:    newUUID(),
		Disk:    b,
		Created: now,
		Layouts: []layout{
			{Generation: 1, Created: now, K: 1, M: 1, Parity: -1, Members: []member{{a, a}, {b, b}}},
			{Generation: 2, Created: now, K: 2, M: 1, Parity: -1, Members: []member{{a, a}, {b, b}, {c, c}}},
		},
		Paths: map[string]string{a: "/mnt/a", b: "/mnt/b", c: "/mnt/c"},
	}
}

func TestPoolFileRoundTrip(t *testing.T) {
	f := samplePoolFile()
	b, err := encodePoolFile(f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := decodePoolFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if g.Pool != f.Pool || g.Disk != f.Disk || len(g.Layouts) != 2 || !g.Layouts[1].equal(&f.Layouts[1]) || g.Paths[f.Disk] != "/mnt/b" {
		t.Fatalf("round trip: %+v", g)
	}
}

func TestPoolFileRejects(t *testing.T) {
	cases := []struct {
		name string
		mod  func(f *poolFile)
		want string
	}{
		{"format", func(f *poolFile) { f.Format = 2 }, "format"},
		{"pool-uuid", func(f *poolFile) { f.Pool = "nope" }, "uuid"},
		{"disk-uuid", func(f *poolFile) { f.Disk = strings.ToUpper(f.Disk) }, "uuid"},
		{"no-layout", func(f *poolFile) { f.Layouts = nil }, "no layout"},
		{"generation", func(f *poolFile) { f.Layouts[1].Generation = 3 }, "generation"},
		{"k-zero", func(f *poolFile) { f.Layouts[0].K = 0 }, "bad k"},
		{"too-wide", func(f *poolFile) { f.Layouts[1].K = 3 }, "exceeds"},
		{"dup-member", func(f *poolFile) { f.Layouts[1].Members[2] = f.Layouts[1].Members[0] }, "twice"},
		{"no-members", func(f *poolFile) { f.Layouts[0].Members = nil }, "members"},
		{"parity", func(f *poolFile) { f.Layouts[0].Parity = -5 }, "parity"},
		{"foreign-disk", func(f *poolFile) { f.Disk = newUUID() }, "in no layout"},
		{"path-key", func(f *poolFile) { f.Paths["x"] = "/y" }, "paths"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := samplePoolFile()
			c.mod(f)
			b, err := encodePoolFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = decodePoolFile(b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want error containing %q", err, c.want)
			}
		})
	}
	for _, raw := range []string{"", "{", "[]", `{"format":1} {}`, strings.Repeat(" ", maxPoolFileSize+1)} {
		if _, err := decodePoolFile([]byte(raw)); err == nil {
			t.Errorf("decodePoolFile(%.20q) accepted", raw)
		}
	}
}

func FuzzDecodePoolFile(f *testing.F) {
	b, _ := encodePoolFile(samplePoolFile())
	f.Add(b)
	f.Add([]byte(`{"format":1,"pool":"x"}`))
	f.Add([]byte(`{"format":1,"layouts":[{"generation":1,"k":1,"m":0,"members":[]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		pf, err := decodePoolFile(b)
		if err != nil {
			return
		}
		// A file that decodes re-encodes to one that decodes the same.
		b2, err := encodePoolFile(pf)
		if err != nil {
			t.Fatal(err)
		}
		pf2, err := decodePoolFile(b2)
		if err != nil {
			t.Fatalf("re-encoded file rejected: %v", err)
		}
		if len(pf2.Layouts) != len(pf.Layouts) || pf2.Disk != pf.Disk {
			t.Fatal("re-encoding changed the file")
		}
		for i := range pf.Layouts {
			l := &pf.Layouts[i]
			if l.K < 1 || l.M < 0 || l.K+l.M > maxShards || len(l.Members) == 0 {
				t.Fatalf("accepted bad layout %+v", l)
			}
		}
	})
}
