package sftp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestUploadsSharePacks: small files uploaded over SFTP share packs and
// index objects in the repository once committed (sharefs used to flush
// the repository after every file, leaving one pack and one index object
// per file).
func TestUploadsSharePacks(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.client(f.alice)
	const files = 50
	for i := 0; i < files; i++ {
		fh, err := c.Create(fmt.Sprintf("/docs/f%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(fh, "small file %d\n", i)
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.share("docs").Snapshot(context.Background(), time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	count := func(kind string) int {
		n := 0
		filepath.WalkDir(filepath.Join(f.dir, "objects", kind), func(_ string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	if packs, indexes := count("packs"), count("index"); packs > 3 || indexes > 3 {
		t.Errorf("%d files of a few bytes each were stored in %d packs and %d index objects; want a few of each", files, packs, indexes)
	}
}
