package sharefs

import (
	"fmt"
	"io"
	"os"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// stagingFile holds a staged file's content: a file in the staging
// folder, or, for a small file staged whole, memory that each Sync
// records in the catalog (inline staging; see doc/sharefs.md).
type stagingFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Close() error
}

var (
	_ stagingFile = (*os.File)(nil)
	_ stagingFile = (*memStaging)(nil)
)

// memStaging is an in-memory staging file. It is safe for concurrent use.
type memStaging struct {
	mu   sync.RWMutex
	data []byte
}

// ReadAt implements io.ReaderAt like a file: io.EOF past the end.
func (m *memStaging) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt implements io.WriterAt; a hole it leaves reads as zeros.
func (m *memStaging) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(m.data)) {
		m.resize(end)
	}
	return copy(m.data[off:], p), nil
}

// Truncate sets the length; bytes added read as zeros.
func (m *memStaging) Truncate(size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resize(size)
	return nil
}

func (m *memStaging) resize(size int64) {
	old := int64(len(m.data))
	switch {
	case size <= old:
		m.data = m.data[:size]
	case size <= int64(cap(m.data)):
		m.data = m.data[:size]
		clear(m.data[old:])
	default:
		d := make([]byte, size, max(size, 2*old))
		copy(d, m.data)
		m.data = d
	}
}

// stagingSize returns the length of st.
func stagingSize(st stagingFile) (int64, error) {
	if m, ok := st.(*memStaging); ok {
		m.mu.RLock()
		defer m.mu.RUnlock()
		return int64(len(m.data)), nil
	}
	fi, err := st.(*os.File).Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Close implements stagingFile.
func (m *memStaging) Close() error { return nil }

// bytes returns a copy of the first n bytes (fewer if shorter), never nil.
func (m *memStaging) bytes(n uint64) []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d := make([]byte, min(n, uint64(len(m.data))))
	copy(d, m.data)
	return d
}

// inlineOf returns the first size bytes of st when it is in memory, for
// the catalog; nil when st is a staging file.
func inlineOf(st stagingFile, size uint64) []byte {
	if m, ok := st.(*memStaging); ok {
		return m.bytes(size)
	}
	return nil
}

// fitInline spills a file staged in memory to a staging file when its
// content is about to reach end, past the inline limit.
func (sh *Share) fitInline(of *openFile, end uint64) error {
	if end <= uint64(max(sh.store.opt.InlineMax, 0)) {
		return nil
	}
	of.mu.Lock()
	_, inMem := of.staging.(*memStaging)
	of.mu.Unlock()
	if !inMem {
		return nil
	}
	return sh.spill(of)
}

// inlineData returns the content recorded inline for inode ino, if any.
func inlineData(b *bolt.Bucket, ino uint64) ([]byte, bool) {
	ib := b.Bucket(bInline)
	if ib == nil {
		return nil, false
	}
	v := ib.Get(inoKey(ino))
	if v == nil {
		return nil, false
	}
	return append([]byte(nil), v...), true
}

// putInline records data as the inline content of inode ino; nil removes it.
func putInline(b *bolt.Bucket, ino uint64, data []byte) error {
	ib := b.Bucket(bInline)
	if data == nil {
		if ib == nil {
			return nil
		}
		return ib.Delete(inoKey(ino))
	}
	return ib.Put(inoKey(ino), data)
}

// loadInline reads the inline content of inode ino in its own transaction.
func (sh *Share) loadInline(ino uint64) (data []byte, ok bool, err error) {
	err = sh.view(func(b *bolt.Bucket) error {
		data, ok = inlineData(b, ino)
		return nil
	})
	return data, ok, err
}

// spill moves a file's in-memory staging into a staging file, before a
// write or truncation takes it past the inline limit (called without io).
func (sh *Share) spill(of *openFile) error {
	of.io.Lock()
	defer of.io.Unlock()
	of.mu.Lock()
	m, ok := of.staging.(*memStaging)
	of.mu.Unlock()
	if !ok {
		return nil // spilled meanwhile, or closed
	}
	st, err := sh.createStaging(of.ino)
	if err != nil {
		return err
	}
	m.mu.RLock()
	_, err = st.WriteAt(m.data, 0)
	m.mu.RUnlock()
	if err != nil {
		st.Close()
		return fmt.Errorf("sharefs: stage inode %d: %w", of.ino, err)
	}
	of.mu.Lock()
	of.staging = st
	of.dirUnsynced = true
	of.mu.Unlock()
	return nil
}
