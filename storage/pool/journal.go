package pool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/arkbox/arkbox/storage/objstore"
)

// The missed-writes journal (doc/pool.md, "Disks that leave and return"):
// while a member is out of sync, every object written or deleted without
// it is recorded in <disk>/arkbox/missed/<member UUID> on every in-sync
// disk, fsynced before the write or delete takes effect.

const (
	missedDirName = "missed"
	journalMagic  = "ARKMISSD"
	// journalHeaderLen: magic, version (2), flags (2), member UUID (16),
	// CRC-32C of the first 28 bytes.
	journalHeaderLen = 32
	// journalRecordLen: op (1), kind code (1), reserved (2), object id
	// (32), CRC-32C of the first 36 bytes.
	journalRecordLen = 40
	// defaultJournalLimit is the number of records a journal holds; one
	// that is full has overflowed and a resync scrubs everything.
	defaultJournalLimit = 1 << 17
	// journalFull marks a journal whose member needs a full resync.
	journalFull = 1
)

// Journal record operations.
const (
	opPut    = 'P'
	opDelete = 'D'
)

// missedKey is one object a member missed.
type missedKey struct {
	kind objstore.Kind
	id   objstore.ID
}

// journalPath is the file on d that records what member uuid missed.
func (d *disk) journalPath(uuid string) string {
	return filepath.Join(d.base, missedDirName, uuid)
}

func encodeJournalHeader(member [16]byte, flags uint16) []byte {
	b := make([]byte, journalHeaderLen)
	copy(b, journalMagic)
	binary.LittleEndian.PutUint16(b[8:], 1)
	binary.LittleEndian.PutUint16(b[10:], flags)
	copy(b[12:28], member[:])
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], crcTable))
	return b
}

func encodeJournalRecord(op byte, kind objstore.Kind, id objstore.ID) []byte {
	b := make([]byte, journalRecordLen)
	b[0] = op
	b[1] = kindCode(kind)
	copy(b[4:36], id[:])
	binary.LittleEndian.PutUint32(b[36:], crc32.Checksum(b[:36], crcTable))
	return b
}

// decodeJournalRecord decodes a record and checks it.
func decodeJournalRecord(rec []byte) (missedKey, bool) {
	kind, ok := kindFromCode(rec[1])
	if !ok || binary.LittleEndian.Uint32(rec[36:]) != crc32.Checksum(rec[:36], crcTable) || (rec[0] != opPut && rec[0] != opDelete) {
		return missedKey{}, false
	}
	k := missedKey{kind: kind}
	copy(k.id[:], rec[4:36])
	return k, true
}

// createJournal makes an empty journal for member on d unless one exists;
// with reset it replaces any existing one. The header goes to a temp file
// that is fsynced and then linked (or, with reset, renamed) into place, so
// two writers racing to create it cannot drop each other's records.
func (d *disk) createJournal(member string, slot [16]byte, flags uint16, reset bool) error {
	op := "create the missed-writes journal of disk " + member
	path := d.journalPath(member)
	if !reset {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
	}
	dir := filepath.Dir(path)
	if err := objstore.MkdirAllSync(dir); err != nil {
		return d.fault(op, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-"+member+"-")
	if err != nil {
		return d.fault(op, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(encodeJournalHeader(slot, flags))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if reset {
			err = os.Rename(tmp, path)
		} else if err = os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
			return nil // made meanwhile by another writer
		}
	}
	if err == nil {
		err = objstore.SyncDir(dir)
	}
	if err != nil {
		return d.fault(op, err)
	}
	return nil
}

// appendJournal appends records to the journal of member on d and
// fsyncs it. A journal at its limit is left as it is: it has overflowed.
func (d *disk) appendJournal(member string, recs []byte, limit int) error {
	op := "record a missed write of disk " + member
	f, err := os.OpenFile(d.journalPath(member), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return d.fault(op, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return d.fault(op, err)
	}
	if st.Size() >= journalHeaderLen+int64(limit)*journalRecordLen {
		return nil
	}

	if _, err := f.Write(recs); err != nil {
		return d.fault(op, err)
	}
	if err := f.Sync(); err != nil {
		return d.fault(op, err)
	}
	return nil
}

// trimJournal drops a record cut short by a crash at the end of the
// journal of member on d, so that the records appended after it stay in
// step. It runs at Open, before anything appends.
func (d *disk) trimJournal(member string) error {
	path := d.journalPath(member)
	st, err := os.Stat(path)
	if err != nil {
		return d.fault("check the missed-writes journal of disk "+member, err)
	}
	if st.Size() <= journalHeaderLen {
		return nil
	}
	size := st.Size() - (st.Size()-journalHeaderLen)%journalRecordLen
	if size > journalHeaderLen {
		// A last record of full length may be torn too (written as
		// length, not yet as bytes).
		last := make([]byte, journalRecordLen)
		f, err := os.Open(path)
		if err != nil {
			return d.fault("check the missed-writes journal of disk "+member, err)
		}
		_, err = f.ReadAt(last, size-journalRecordLen)
		f.Close()
		if err != nil {
			return d.fault("check the missed-writes journal of disk "+member, err)
		}
		if _, ok := decodeJournalRecord(last); !ok {
			size -= journalRecordLen
		}
	}
	if size == st.Size() {
		return nil
	}
	if err := os.Truncate(path, size); err != nil {
		return d.fault("trim the missed-writes journal of disk "+member, err)
	}
	return nil
}

// journalRead is what readJournal found in one copy of a journal.
type journalRead struct {
	keys []missedKey
	end  int64 // offset after the last whole record read
	full bool  // the member needs a full resync (flagged or overflowed)
}

// readJournal reads the records of the journal of member on d from
// offset from (0: from the start, checking the header). A torn last
// record (a crash during an append) is ignored; a bad record before the
// end makes the copy unusable (errBadJournal). It returns fs.ErrNotExist
// when d holds no journal for member.
func (d *disk) readJournal(member string, slot [16]byte, from int64, limit int) (*journalRead, error) {
	f, err := os.Open(d.journalPath(member))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, d.fault("read the missed-writes journal of disk "+member, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, max(from, 0), int64(journalHeaderLen+limit*journalRecordLen+journalRecordLen)))
	if err != nil {
		return nil, d.fault("read the missed-writes journal of disk "+member, err)
	}
	r := &journalRead{end: from}
	if from <= 0 {
		if len(b) < journalHeaderLen || string(b[:8]) != journalMagic ||
			binary.LittleEndian.Uint32(b[28:]) != crc32.Checksum(b[:28], crcTable) ||
			binary.LittleEndian.Uint16(b[8:]) != 1 || string(b[12:28]) != string(slot[:]) {
			return nil, fmt.Errorf("%w: %s: bad header", errBadJournal, d.journalPath(member))
		}
		r.full = binary.LittleEndian.Uint16(b[10:])&journalFull != 0
		b = b[journalHeaderLen:]
		r.end = journalHeaderLen
	}
	for len(b) >= journalRecordLen {
		k, good := decodeJournalRecord(b[:journalRecordLen])
		b = b[journalRecordLen:]
		if !good {
			if len(b) < journalRecordLen {
				break // torn by a crash: the write it announced never happened
			}
			return nil, fmt.Errorf("%w: %s: bad record at offset %d", errBadJournal, d.journalPath(member), r.end)
		}
		r.keys = append(r.keys, k)
		r.end += journalRecordLen
	}
	if r.end >= journalHeaderLen+int64(limit)*journalRecordLen {
		r.full = true // overflowed
	}
	return r, nil
}

var errBadJournal = errors.New("bad missed-writes journal")

// removeJournal deletes the journal of member on d.
func (d *disk) removeJournal(member string) error {
	err := os.Remove(d.journalPath(member))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return d.fault("remove the missed-writes journal of disk "+member, err)
	}
	if err == nil {
		if err := objstore.SyncDir(filepath.Join(d.base, missedDirName)); err != nil {
			return d.fault("remove the missed-writes journal of disk "+member, err)
		}
	}
	return nil
}

// journals lists the members d holds a journal for.
func (d *disk) journals() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(d.base, missedDirName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, d.fault("list missed-writes journals", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			os.Remove(filepath.Join(d.base, missedDirName, e.Name())) // an interrupted create
			continue
		}
		if _, err := parseUUID(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// outOfSync returns the members that miss writes: missing ones and those
// being resynced.
func (st *state) outOfSync() []*disk {
	var out []*disk
	for _, d := range st.members {
		if !d.present() {
			out = append(out, d)
		}
	}
	return out
}

// inSync returns the members that hold journals: present, in sync and
// writable.
func (st *state) inSync() []*disk {
	var out []*disk
	for _, d := range st.members {
		if d.getState() == DiskOK && !d.isSyncing() {
			out = append(out, d)
		}
	}
	return out
}

// journalMissed records, before a write or delete of (kind, id) takes
// effect, that every member out of sync misses it: one record per member
// on every in-sync disk, in parallel, each fsynced. It fails only when
// some member's record reached no disk; the caller names the operation.
func (p *Pool) journalMissed(st *state, op byte, kind objstore.Kind, id objstore.ID) error {
	out := st.outOfSync()
	if len(out) == 0 || len(st.members) == 1 {
		return nil
	}
	rec := encodeJournalRecord(op, kind, id)
	work := map[*disk][]int{}
	for _, h := range st.inSync() {
		for i := range out {
			work[h] = append(work[h], i)
		}
	}
	done, errs := perDisk(work, func(h *disk, i int) error {
		if err := h.createJournal(out[i].uuid, out[i].slot, 0, false); err != nil {
			return err
		}
		return h.appendJournal(out[i].uuid, rec, p.journalLimit)
	})
	okFor := make([]bool, len(out))
	for _, r := range done {
		okFor[r.index] = true
	}
	for i, m := range out {
		if !okFor[i] {
			return fmt.Errorf("cannot record that %s misses it: %w", m, errors.Join(append(errs, errNoDisk)...))
		}
	}
	return nil
}
