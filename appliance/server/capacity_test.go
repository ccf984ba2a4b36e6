package server

import (
	"testing"

	"github.com/arkbox/arkbox/storage/pool"
)

func TestPoolCapacity(t *testing.T) {
	disk := func(s pool.DiskState, total, free uint64) pool.DiskStatus {
		return pool.DiskStatus{State: s, BytesTotal: total, BytesFree: free}
	}
	tests := []struct {
		name        string
		st          pool.Status
		total, free uint64
	}{
		{"one disk", pool.Status{K: 1, Disks: []pool.DiskStatus{disk(pool.DiskOK, 1000, 400)}}, 1000, 400},
		// A full disk is still the pool's size; its free space is what
		// statfs says (next to nothing).
		{"one full disk", pool.Status{K: 1, Disks: []pool.DiskStatus{disk(pool.DiskFull, 1000, 3)}}, 1000, 3},
		{"mirror", pool.Status{K: 1, M: 1, Disks: []pool.DiskStatus{disk(pool.DiskOK, 1000, 400), disk(pool.DiskOK, 1000, 400)}}, 1000, 400},
		{"2+1, one read-only", pool.Status{K: 2, M: 1, Disks: []pool.DiskStatus{
			disk(pool.DiskOK, 900, 300), disk(pool.DiskOK, 900, 300), disk(pool.DiskReadOnly, 900, 300)}}, 1800, 400},
		{"2+1, one missing", pool.Status{K: 2, M: 1, Disks: []pool.DiskStatus{
			disk(pool.DiskOK, 900, 300), disk(pool.DiskOK, 900, 300), disk(pool.DiskMissing, 0, 0)}}, 1200, 400},
		// A disk being resynced is part of the pool, but takes no new
		// writes yet.
		{"2+1, one resyncing", pool.Status{K: 2, M: 1, Disks: []pool.DiskStatus{
			disk(pool.DiskOK, 900, 300), disk(pool.DiskOK, 900, 300), disk(pool.DiskResyncing, 900, 300)}}, 1800, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			total, free := poolCapacity(tc.st)
			if total != tc.total || free != tc.free {
				t.Fatalf("got total %d free %d, want %d and %d", total, free, tc.total, tc.free)
			}
		})
	}
}
