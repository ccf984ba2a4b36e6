package hwtest

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// InitramfsFile is one entry of an initramfs: a regular file (Data), or a
// folder when Dir is set.
type InitramfsFile struct {
	Path string // relative, slash-separated, e.g. "init" or "bin/tool"
	Mode uint32 // permission bits, e.g. 0o755
	Dir  bool
	Data []byte
}

// WriteInitramfs writes files as an uncompressed cpio archive in the "newc"
// format the Linux kernel unpacks as its initial root filesystem: each
// entry is a 110-byte ASCII header, the NUL-terminated name and the data,
// both padded to 4 bytes, ending with the entry named "TRAILER!!!". The
// folders above every file are added when missing.
func WriteInitramfs(w io.Writer, files []InitramfsFile) error {
	all := map[string]InitramfsFile{}
	for _, f := range files {
		p := strings.Trim(path.Clean("/"+f.Path), "/")
		if p == "" {
			return fmt.Errorf("hwtest: initramfs: empty path")
		}
		f.Path = p
		all[p] = f
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = InitramfsFile{Path: d, Mode: 0o755, Dir: true}
			}
		}
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names) // a folder sorts before what it holds
	ino := 1
	for _, p := range names {
		f := all[p]
		mode := f.Mode & 0o7777
		if f.Dir {
			mode |= 0o040000
			f.Data = nil
		} else {
			mode |= 0o100000
		}
		if err := writeCpioEntry(w, ino, mode, p, f.Data); err != nil {
			return err
		}
		ino++
	}
	return writeCpioEntry(w, 0, 0, "TRAILER!!!", nil)
}

func writeCpioEntry(w io.Writer, ino int, mode uint32, name string, data []byte) error {
	nlink := 1
	if mode&0o040000 != 0 {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+8+len(data)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("hwtest: initramfs: write %s: %w", name, err)
	}
	return nil
}

// pad4 pads b with NULs to a multiple of 4 bytes; every entry starts
// aligned, so padding the entry's own bytes keeps the archive aligned.
func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
