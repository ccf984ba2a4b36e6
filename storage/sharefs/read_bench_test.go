package sharefs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/arkbox/arkbox/storage/pool"
)

// BenchmarkReadClean reads a committed file (ARKBOX_BENCH_FILE_MIB, default
// 256 MiB, compressible about 2:1) sequentially from a 2+1 pool of three
// folders, as a protocol would: by 32 KiB (SFTP's reads) and by 1 MiB.
func BenchmarkReadClean(b *testing.B) {
	mib := 256
	if n, err := strconv.Atoi(os.Getenv("ARKBOX_BENCH_FILE_MIB")); err == nil && n > 0 {
		mib = n
	}
	size := int64(mib) << 20
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
	benchWrite(b, sh, in.Ino, true, size, func(p []byte) {
		for i := range p {
			p[i] = byte(rng.IntN(16)) // about 4 bits of entropy a byte
		}
	})
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
					if _, err := f.ReadAt(p, off); err != nil {
						b.Fatal(err)
					}
				}
				f.Close()
			}
		})
	}
}
