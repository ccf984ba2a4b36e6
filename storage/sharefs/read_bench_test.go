package sharefs

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/arkbox/arkbox/storage/pool"
)

// BenchmarkReadClean reads a committed file sequentially from a 2+1 pool
// of three folders, as a protocol would: by 32 KiB (SFTP's reads) and by
// 1 MiB. The file is ARKBOX_BENCH_FILE (bench/sftp.sh passes its real-data
// file, to compare with restic restoring it), else ARKBOX_BENCH_FILE_MIB
// (default 256) MiB compressible about 2:1.
func BenchmarkReadClean(b *testing.B) {
	mib := 256
	if n, err := strconv.Atoi(os.Getenv("ARKBOX_BENCH_FILE_MIB")); err == nil && n > 0 {
		mib = n
	}
	size := int64(mib) << 20
	var src *os.File
	if name := os.Getenv("ARKBOX_BENCH_FILE"); name != "" {
		var err error
		if src, err = os.Open(name); err != nil {
			b.Fatal(err)
		}
		defer src.Close()
		fi, err := src.Stat()
		if err != nil {
			b.Fatal(err)
		}
		size = fi.Size()
	}
	ctx := context.Background()
	dir := b.TempDir()
	var disks []string
	for i := range 3 {
		d := filepath.Join(dir, fmt.Sprintf("disk%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		disks = append(disks, d)
	}
	p, err := pool.Create(ctx, disks, pool.CreateOptions{Parity: 1})
	if err != nil {
		b.Fatal(err)
	}
	sh := benchShare(b, p, dir, "files")
	in, err := sh.Create(RootIno, "big", 0o644, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var pos int64
	benchWrite(b, sh, in.Ino, true, size, func(p []byte) {
		if src != nil {
			n, _ := src.ReadAt(p, pos)
			clear(p[n:]) // past the end: cut by the size below
			pos += int64(len(p))
			return
		}
		for i := range p {
			p[i] = byte(rng.IntN(16)) // about 4 bits of entropy a byte
		}
	})
	if size%(1<<20) != 0 {
		f, err := sh.OpenFile(in.Ino, true, false)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			b.Fatal(err)
		}
		f.Close()
		if err := sh.CommitAll(ctx, true); err != nil {
			b.Fatal(err)
		}
	}
	for _, bs := range []int{32 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("read=%dKiB", bs>>10), func(b *testing.B) {
			b.SetBytes(size)
			p := make([]byte, bs)
			for b.Loop() {
				f, err := sh.OpenFile(in.Ino, false, false)
				if err != nil {
					b.Fatal(err)
				}
				for off := int64(0); off < size; off += int64(len(p)) {
					if _, err := f.ReadAt(p, off); err != nil && (err != io.EOF || off+int64(len(p)) < size) {
						b.Fatal(err)
					}
				}
				f.Close()
			}
		})
	}
}
