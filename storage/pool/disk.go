package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/arkbox/arkbox/storage/objstore"
)

// DiskState is the health of one member disk as the pool sees it.
type DiskState string

// Disk states.
const (
	// DiskOK: present and writable.
	DiskOK DiskState = "ok"
	// DiskMissing: a member of the layout that was not given to Open, or
	// whose folder vanished while the pool was open.
	DiskMissing DiskState = "missing"
	// DiskReadOnly: present, but its file system refuses writes.
	DiskReadOnly DiskState = "read-only"
	// DiskFailing: present, but reads or writes return I/O errors.
	DiskFailing DiskState = "failing"
	// DiskFull: present, but the last write found no space left.
	DiskFull DiskState = "full"
	// DiskResyncing: back after being missing, and being brought up to
	// date (Status only; reads and writes leave it alone until then).
	DiskResyncing DiskState = "resyncing"
)

// disk is one member of the current layout.
type disk struct {
	uuid string
	slot [16]byte // placement key (see member.Slot)
	root string   // the folder the disk is mounted at (last known, if missing)
	base string   // root/arkbox

	mu      sync.Mutex
	state   DiskState
	lastErr string
	// syncing: the disk returned and misses writes until its resync
	// ends; only the resync reads or writes it.
	syncing bool
}

func newDisk(mb member, root string, state DiskState) (*disk, error) {
	slot, err := parseUUID(mb.Slot)
	if err != nil {
		return nil, err
	}
	return &disk{uuid: mb.Disk, slot: slot, root: root, base: filepath.Join(root, poolDirName), state: state}, nil
}

func (d *disk) String() string { return fmt.Sprintf("disk %s at %s", d.uuid, d.root) }

func (d *disk) getState() DiskState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

func (d *disk) setState(s DiskState, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == DiskMissing {
		return // a vanished disk comes back only through Open or Reattach
	}
	d.state = s
	if err != nil {
		d.lastErr = err.Error()
	}
}

// present reports whether the disk can be read: it is attached and in
// sync.
func (d *disk) present() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state != DiskMissing && !d.syncing
}

// attached reports whether the disk is there, in sync or not.
func (d *disk) attached() bool { return d.getState() != DiskMissing }

func (d *disk) isSyncing() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.syncing
}

func (d *disk) setSyncing(b bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.syncing = b
}

// setMissing marks the disk as gone.
func (d *disk) setMissing(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state = DiskMissing
	if err != nil {
		d.lastErr = err.Error()
	}
}

// writable reports whether new shards may be written to the disk by
// reads and writes of the pool: it is in sync and writable.
func (d *disk) writable(need int64) bool {
	return !d.isSyncing() && d.canWrite(need)
}

// canWrite reports whether the disk takes writes, in sync or not; a full
// disk becomes writable again when statfs shows room for need bytes.
func (d *disk) canWrite(need int64) bool {
	switch d.getState() {
	case DiskOK:
		return true
	case DiskFull:
		_, free, _, err := statDisk(d.root)
		if err == nil && free > uint64(need)+freeMargin {
			d.mu.Lock()
			if d.state == DiskFull {
				d.state = DiskOK
			}
			d.mu.Unlock()
			return true
		}
	}
	return false
}

// freeMargin is the space a full disk must have regained before the pool
// writes to it again.
const freeMargin = 64 << 10

// fault classifies an I/O error on d, updates the disk's state and returns
// an error that names the disk.
func (d *disk) fault(op string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		d.setState(DiskFull, err)
		return fmt.Errorf("pool: %s: %s is full: %w", op, d, err)
	case errors.Is(err, syscall.EROFS):
		d.setState(DiskReadOnly, err)
		return fmt.Errorf("pool: %s: %s is read-only: %w", op, d, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("pool: %s: %s: %w", op, d, err)
	}
	if _, serr := os.Stat(filepath.Join(d.base, poolFileName)); serr != nil {
		d.setMissing(err)
		return fmt.Errorf("pool: %s: %s has vanished: %w", op, d, err)
	}
	if errors.Is(err, syscall.EIO) {
		d.setState(DiskFailing, err)
		return fmt.Errorf("pool: %s: %s is failing: %w", op, d, err)
	}
	return fmt.Errorf("pool: %s: %s: %w", op, d, err)
}

// shardName is the file name of shard index of object id.
func shardName(id objstore.ID, index int) string {
	return id.String() + "." + strconv.Itoa(index)
}

// parseShardName parses "<id>.<index>".
func parseShardName(name string) (objstore.ID, int, bool) {
	if len(name) < 66 || name[64] != '.' {
		return objstore.ID{}, 0, false
	}
	id, err := objstore.ParseID(name[:64])
	if err != nil || strings.ToLower(name[:64]) != name[:64] {
		return objstore.ID{}, 0, false
	}
	s := name[65:]
	if len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return objstore.ID{}, 0, false
	}
	idx, err := strconv.Atoi(s)
	if err != nil || idx < 0 || idx >= maxShards {
		return objstore.ID{}, 0, false
	}
	return id, idx, true
}

func (d *disk) objDir(kind objstore.Kind, id objstore.ID) string {
	return filepath.Join(d.base, string(kind), id.String()[:2])
}

func (d *disk) shardPath(kind objstore.Kind, id objstore.ID, index int) string {
	return filepath.Join(d.objDir(kind, id), shardName(id, index))
}

// tempPattern is the name pattern of a temp shard file in
// <disk>/arkbox/tmp: "<kind>.<id>.<index>.<random>".
func tempPattern(kind objstore.Kind, id objstore.ID, index int) string {
	return fmt.Sprintf("%s.%s.%d.*", kind, id, index)
}

// parseTempName parses the name of a temp shard file.
func parseTempName(name string) (objstore.Kind, objstore.ID, int, bool) {
	parts := strings.Split(name, ".")
	if len(parts) != 4 {
		return "", objstore.ID{}, 0, false
	}
	kind := objstore.Kind(parts[0])
	id, idx, ok := parseShardName(parts[1] + "." + parts[2])
	if !ok || !kind.Valid() {
		return "", objstore.ID{}, 0, false
	}
	return kind, id, idx, true
}

// writeTemp writes a complete shard file to a temp file in
// <disk>/arkbox/tmp and fsyncs it. commitTemp moves it into place.
func (d *disk) writeTemp(ctx context.Context, kind objstore.Kind, id objstore.ID, index int, hdr, payload []byte) (string, error) {
	op := fmt.Sprintf("write shard %d of %s/%s", index, kind, id)
	if err := ctx.Err(); err != nil {
		return "", err
	}
	tmpDir := filepath.Join(d.base, tmpDirName)
	f, err := os.CreateTemp(tmpDir, tempPattern(kind, id, index))
	if errors.Is(err, fs.ErrNotExist) {
		if err = objstore.MkdirAllSync(tmpDir); err == nil {
			f, err = os.CreateTemp(tmpDir, tempPattern(kind, id, index))
		}
	}
	if err != nil {
		return "", d.fault(op, err)
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", d.fault(op, err)
	}
	if _, err := f.Write(hdr); err != nil {
		return fail(err)
	}
	if _, err := f.Write(payload); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", d.fault(op, err)
	}
	return tmp, nil
}

// commitTemp renames a temp shard file into place and fsyncs the
// directory.
func (d *disk) commitTemp(kind objstore.Kind, id objstore.ID, index int, tmp string) error {
	op := fmt.Sprintf("commit shard %d of %s/%s", index, kind, id)
	dir := d.objDir(kind, id)
	if err := objstore.MkdirAllSync(dir); err != nil {
		return d.fault(op, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, shardName(id, index))); err != nil {
		return d.fault(op, err)
	}
	if err := objstore.SyncDir(dir); err != nil {
		return d.fault(op, err)
	}
	return nil
}

// writeShard writes one shard file atomically and durably: a temp file
// in <disk>/arkbox/tmp, fsync, rename into place, fsync of the directory.
func (d *disk) writeShard(ctx context.Context, kind objstore.Kind, id objstore.ID, index int, hdr, payload []byte) error {
	tmp, err := d.writeTemp(ctx, kind, id, index, hdr, payload)
	if err != nil {
		return err
	}
	if err := d.commitTemp(kind, id, index, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// removeShard deletes one shard file; a file already gone is not an error.
func (d *disk) removeShard(kind objstore.Kind, id objstore.ID, index int) error {
	err := os.Remove(d.shardPath(kind, id, index))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return d.fault(fmt.Sprintf("delete shard %d of %s/%s", index, kind, id), err)
	}
	return nil
}

// shardFile is one opened shard file with its verified header.
type shardFile struct {
	d     *disk
	index int // index from the file name
	f     *os.File
	size  int64
	hdr   *shardHeader
}

func (s *shardFile) close() {
	if s.f != nil {
		s.f.Close()
	}
}

// openFile opens the file of shard index of (kind, id) on d and reads
// its header. It returns (nil, nil) when there is no such file, and an
// error wrapping errBadHeader when the header is bad or the file is
// truncated.
func (d *disk) openFile(kind objstore.Kind, id objstore.ID, index int) (*shardFile, error) {
	return d.openPath(d.shardPath(kind, id, index), index)
}

func (d *disk) openPath(path string, index int) (*shardFile, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, d.fault("open "+filepath.Base(path), err)
	}
	s := &shardFile{d: d, index: index, f: f}
	if err := s.readHeader(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// openShard is openFile that also rejects a file whose header names
// another shard (errMisplaced).
func (d *disk) openShard(kind objstore.Kind, id objstore.ID, index int) (*shardFile, error) {
	s, err := d.openFile(kind, id, index)
	if s == nil || err != nil {
		return nil, err
	}
	if err := s.checkName(kind, id); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// readHeader reads and verifies the header and checks the file size.
func (s *shardFile) readHeader() error {
	st, err := s.f.Stat()
	if err != nil {
		return s.d.fault("stat shard", err)
	}
	s.size = st.Size()
	buf := make([]byte, min(s.size, headerProbeSize))
	if _, err := io.ReadFull(io.NewSectionReader(s.f, 0, int64(len(buf))), buf); err != nil {
		return s.d.fault("read shard header", err)
	}
	_, hlen, err := parseFixed(buf)
	if err != nil {
		return err
	}
	if hlen > s.size {
		return fmt.Errorf("%w: truncated: file has %d bytes, header needs %d", errBadHeader, s.size, hlen)
	}
	if hlen > int64(len(buf)) {
		buf = make([]byte, hlen)
		if _, err := s.f.ReadAt(buf, 0); err != nil {
			return s.d.fault("read shard header", err)
		}
	}
	h, err := decodeHeader(buf)
	if err != nil {
		return err
	}
	if h.fileSize() != s.size {
		return fmt.Errorf("%w: file has %d bytes, want %d (truncated or extended)", errBadHeader, s.size, h.fileSize())
	}
	s.hdr = h
	return nil
}

// errMisplaced marks a file whose header names another shard.
var errMisplaced = errors.New("misplaced shard")

// checkName checks that the header belongs to the file's name.
func (s *shardFile) checkName(kind objstore.Kind, id objstore.ID) error {
	h := s.hdr
	if h.kind != kind || h.id != id || h.index != s.index {
		return fmt.Errorf("%w: file %s holds shard %d of %s/%s", errMisplaced, shardName(id, s.index), h.index, h.kind, h.id)
	}
	return nil
}

// readPayload reads payload bytes [off, off+len(buf)) of the shard. off
// must be block aligned; the read must end on a block boundary or at the
// end of the payload. It verifies the blocks it reads.
func (s *shardFile) readPayload(buf []byte, off int64) error {
	if len(buf) == 0 {
		return nil
	}
	if _, err := s.f.ReadAt(buf, s.hdr.headerLen()+off); err != nil {
		return s.d.fault("read shard payload", err)
	}
	if b := s.hdr.verifyBlocks(buf, int(off/s.hdr.blockSize())); b >= 0 {
		return fmt.Errorf("%w: payload block %d checksum mismatch", errCorruptPayload, b)
	}
	return nil
}

var errCorruptPayload = errors.New("corrupt shard payload")

// verifyPayload reads the whole payload in chunks of about len(buf)
// bytes and verifies every block.
func (s *shardFile) verifyPayload(buf []byte) error {
	bs := s.hdr.blockSize()
	chunk := max(int64(len(buf))/bs, 1) * bs
	if int64(len(buf)) < chunk {
		buf = make([]byte, chunk)
	}
	for off := int64(0); off < s.hdr.payloadLen; off += chunk {
		n := min(chunk, s.hdr.payloadLen-off)
		if err := s.readPayload(buf[:n], off); err != nil {
			return err
		}
	}
	return nil
}
