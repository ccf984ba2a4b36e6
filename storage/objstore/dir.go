package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Dir is a Store in a plain directory: object (kind, id) is the file
// <root>/<kind>/<id[0:2]>/<id>. It serves seed disks, USB disks and tests.
type Dir struct {
	root     string
	readOnly bool
}

// DirOptions tunes OpenDir.
type DirOptions struct {
	// Create makes the directory if it does not exist.
	Create bool
	// ReadOnly refuses Put and Delete.
	ReadOnly bool
}

// OpenDir opens the directory store at root.
func OpenDir(root string, opt DirOptions) (*Dir, error) {
	if opt.Create && !opt.ReadOnly {
		if err := os.MkdirAll(root, 0o700); err != nil {
			return nil, fmt.Errorf("objstore: create %s: %w", root, err)
		}
	}
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("objstore: open %s: %w", root, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("objstore: open %s: not a directory", root)
	}
	return &Dir{root: root, readOnly: opt.ReadOnly}, nil
}

// Root returns the directory the store lives in.
func (d *Dir) Root() string { return d.root }

func (d *Dir) path(kind Kind, id ID) string {
	s := id.String()
	return filepath.Join(d.root, string(kind), s[:2], s)
}

func checkKind(op string, kind Kind) error {
	if !kind.Valid() {
		return fmt.Errorf("objstore: %s: unknown kind %q", op, kind)
	}
	return nil
}

// Put implements Store.
func (d *Dir) Put(ctx context.Context, kind Kind, id ID, data []byte) error {
	if err := checkKind("put", kind); err != nil {
		return err
	}
	if d.readOnly {
		return fmt.Errorf("objstore: put %s/%s: %w", kind, id, ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if Sum(data) != id {
		return fmt.Errorf("objstore: put %s/%s: %w", kind, id, ErrIDMismatch)
	}
	p := d.path(kind, id)
	if st, err := os.Stat(p); err == nil && st.Size() == int64(len(data)) {
		return nil
	}
	if err := WriteFileAtomic(p, data); err != nil {
		return fmt.Errorf("objstore: put %s/%s: %w", kind, id, err)
	}
	return nil
}

// WriteFileAtomic writes data to path so that a crash leaves either the old
// file or the complete new one: temp file in the same directory, fsync,
// rename, fsync of the directory. Missing parent directories are created
// (and fsynced into their parents).
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := MkdirAllSync(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return SyncDir(dir)
}

// MkdirAllSync is os.MkdirAll that also fsyncs each parent whose entries
// it changed, so the new directories survive a power cut.
func MkdirAllSync(dir string) error {
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return SyncDir(parent)
}

// SyncDir fsyncs a directory so that renames and creations in it are durable.
func SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

func notFound(op string, kind Kind, id ID, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("objstore: %s %s/%s: %w", op, kind, id, ErrNotFound)
	}
	return fmt.Errorf("objstore: %s %s/%s: %w", op, kind, id, err)
}

// Get implements Store.
func (d *Dir) Get(ctx context.Context, kind Kind, id ID) ([]byte, error) {
	if err := checkKind("get", kind); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(d.path(kind, id))
	if err != nil {
		return nil, notFound("get", kind, id, err)
	}
	if Sum(data) != id {
		return nil, fmt.Errorf("objstore: get %s/%s from %s: %w", kind, id, d.root, ErrCorrupt)
	}
	return data, nil
}

// GetRange implements Store.
func (d *Dir) GetRange(ctx context.Context, kind Kind, id ID, off, n int64) ([]byte, error) {
	if err := checkKind("get range", kind); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(d.path(kind, id))
	if err != nil {
		return nil, notFound("get range", kind, id, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, notFound("get range", kind, id, err)
	}
	if off < 0 || n < 0 || off+n > st.Size() {
		return nil, fmt.Errorf("objstore: get range %s/%s [%d,+%d) of %d bytes: %w", kind, id, off, n, st.Size(), ErrRange)
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, fmt.Errorf("objstore: get range %s/%s: %w", kind, id, err)
	}
	return buf, nil
}

// Stat implements Store.
func (d *Dir) Stat(ctx context.Context, kind Kind, id ID) (Info, error) {
	if err := checkKind("stat", kind); err != nil {
		return Info{}, err
	}
	st, err := os.Stat(d.path(kind, id))
	if err != nil {
		return Info{}, notFound("stat", kind, id, err)
	}
	return Info{Kind: kind, ID: id, Size: st.Size()}, nil
}

// List implements Store.
func (d *Dir) List(ctx context.Context, kind Kind, fn func(Info) error) error {
	if err := checkKind("list", kind); err != nil {
		return err
	}
	base := filepath.Join(d.root, string(kind))
	subs, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("objstore: list %s: %w", kind, err)
	}
	for _, sub := range subs {
		if !sub.IsDir() || len(sub.Name()) != 2 {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(base, sub.Name()))
		if err != nil {
			return fmt.Errorf("objstore: list %s: %w", kind, err)
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return err
			}
			name := e.Name()
			if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
				continue
			}
			id, err := ParseID(name)
			if err != nil {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("objstore: list %s: %w", kind, err)
			}
			if err := fn(Info{Kind: kind, ID: id, Size: fi.Size()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements Store.
func (d *Dir) Delete(ctx context.Context, kind Kind, id ID) error {
	if err := checkKind("delete", kind); err != nil {
		return err
	}
	if d.readOnly {
		return fmt.Errorf("objstore: delete %s/%s: %w", kind, id, ErrReadOnly)
	}
	p := d.path(kind, id)
	if err := os.Remove(p); err != nil {
		return notFound("delete", kind, id, err)
	}
	return SyncDir(filepath.Dir(p))
}

// Close implements Store.
func (d *Dir) Close() error { return nil }
