package replicate

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/arkbox/arkbox/storage/objstore"
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// ReadData is the share of packs (0–1) downloaded and checked against
	// their SHA-256; every other object is always read.
	ReadData float64
	// Repair uploads a damaged or missing object again from the local copy.
	Repair bool
	Name   string
	Now    func() time.Time
	// Progress is called after each object read.
	Progress func(done, total int64)
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Target    string    `json:"target"`
	Time      time.Time `json:"time"`
	Objects   int64     `json:"objects"`      // on the target
	Bytes     int64     `json:"bytes"`        // on the target
	Read      KindCount `json:"read"`         // downloaded and checked
	Missing   []string  `json:"missing"`      // inventory said present, listing disagrees
	BadSize   []string  `json:"bad_size"`     // size differs from the box's copy
	Corrupt   []string  `json:"corrupt"`      // content does not match the name
	Repaired  []string  `json:"repaired"`     // sent again from the box
	NotLocal  int64     `json:"not_on_box"`   // kept on the target only (pending deletion, append-only)
	Pending   int64     `json:"not_yet_sent"` // on the box, not on the target yet
	ReadError []string  `json:"read_errors,omitempty"`
}

// OK reports whether nothing is wrong on the target (repaired counts as ok).
func (r *VerifyReport) OK() bool {
	return len(r.Missing)+len(r.BadSize)+len(r.Corrupt)+len(r.ReadError) == len(r.Repaired)
}

// Verify lists the target (refreshing the inventory), compares it with
// the inventory and the box, and re-reads objects to check their content.
func Verify(ctx context.Context, local, remote objstore.Store, st *State, opt VerifyOptions) (*VerifyReport, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	rep := &VerifyReport{Target: opt.Name, Time: opt.Now()}
	known := listing{}
	for _, k := range objstore.Kinds {
		m, err := st.Inventory(k)
		if err != nil {
			return nil, err
		}
		known[k] = m
	}
	at := opt.Now()
	rem, err := list(ctx, remote)
	if err != nil {
		return nil, fmt.Errorf("verify %s: list the target: %w", opt.Name, err)
	}
	loc, err := list(ctx, local)
	if err != nil {
		return nil, fmt.Errorf("verify %s: list the local repository: %w", opt.Name, err)
	}
	type obj struct {
		kind objstore.Kind
		id   objstore.ID
		size int64
	}
	var toRead []obj
	var bad []obj
	for _, k := range objstore.Kinds {
		for id, size := range rem[k] {
			rep.Objects++
			rep.Bytes += size
			lsize, onBox := loc[k][id]
			if !onBox {
				rep.NotLocal++
			} else if lsize != size {
				rep.BadSize = append(rep.BadSize, fmt.Sprintf("%s/%s: %d bytes, the box has %d", k, id, size, lsize))
				bad = append(bad, obj{k, id, size})
				continue
			}
			if k != objstore.KindPack || (opt.ReadData > 0 && rand.Float64() < opt.ReadData) {
				toRead = append(toRead, obj{k, id, size})
			}
		}
		for id := range known[k] {
			if _, ok := rem[k][id]; !ok {
				rep.Missing = append(rep.Missing, fmt.Sprintf("%s/%s", k, id))
				if _, onBox := loc[k][id]; onBox {
					bad = append(bad, obj{k, id, 0})
				}
			}
		}
		for id := range loc[k] {
			if _, ok := rem[k][id]; !ok {
				rep.Pending++
			}
		}
	}
	for i, o := range toRead {
		_, err := remote.Get(ctx, o.kind, o.id)
		switch {
		case errors.Is(err, objstore.ErrCorrupt):
			rep.Corrupt = append(rep.Corrupt, fmt.Sprintf("%s/%s", o.kind, o.id))
			if _, onBox := loc[o.kind][o.id]; onBox {
				bad = append(bad, o)
			}
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rep.ReadError = append(rep.ReadError, fmt.Sprintf("%s/%s: %v", o.kind, o.id, err))
		default:
			rep.Read.Objects++
			rep.Read.Bytes += o.size
		}
		if opt.Progress != nil {
			opt.Progress(int64(i+1), int64(len(toRead)))
		}
	}
	// The inventory now follows the listing; damaged objects are dropped
	// from it so that the next sync sends them again.
	for _, o := range bad {
		delete(rem[o.kind], o.id)
	}
	if err := st.replaceInventory(rem, at); err != nil {
		return nil, err
	}
	if opt.Repair {
		for _, o := range bad {
			data, err := local.Get(ctx, o.kind, o.id)
			if err == nil {
				err = remote.Put(ctx, o.kind, o.id, data)
			}
			if err != nil {
				return rep, fmt.Errorf("verify %s: repair %s/%s: %w", opt.Name, o.kind, o.id, err)
			}
			if err := st.record([]objstore.Info{{Kind: o.kind, ID: o.id, Size: int64(len(data))}}, false); err != nil {
				return rep, err
			}
			rep.Repaired = append(rep.Repaired, fmt.Sprintf("%s/%s", o.kind, o.id))
		}
	}
	return rep, nil
}

// Status is where a target stands, from the state file and the box.
type Status struct {
	Target        string    `json:"target"`
	Remote        KindCount `json:"remote"`  // the inventory
	Pending       KindCount `json:"pending"` // on the box, not on the target
	LastEnd       time.Time `json:"last_end,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	LastOK        time.Time `json:"last_ok_end,omitzero"`
	LagSeconds    float64   `json:"lag_seconds"` // how old the newest data on the target is, at worst
	PendingDelete KindCount `json:"pending_delete"`
}

// GetStatus computes a target's status (lists the local side only).
func GetStatus(ctx context.Context, local objstore.Store, st *State, name string, now time.Time) (*Status, error) {
	s := &Status{Target: name}
	loc, err := list(ctx, local)
	if err != nil {
		return nil, fmt.Errorf("status %s: list the local repository: %w", name, err)
	}
	for _, k := range objstore.Kinds {
		inv, err := st.Inventory(k)
		if err != nil {
			return nil, err
		}
		for id, size := range inv {
			s.Remote.Objects++
			s.Remote.Bytes += size
			if _, ok := loc[k][id]; !ok {
				s.PendingDelete.Objects++
				s.PendingDelete.Bytes += size
			}
		}
		for id, size := range loc[k] {
			if _, ok := inv[id]; !ok {
				s.Pending.Objects++
				s.Pending.Bytes += size
			}
		}
	}
	last, ok, err := st.LastRuns()
	if err != nil {
		return nil, err
	}
	if last != nil {
		s.LastEnd, s.LastError = last.End, last.Error
	}
	if ok != nil {
		s.LastOK = ok.End
	}
	if s.Pending.Objects > 0 {
		since := time.Time{}
		if ok != nil {
			since = ok.Start
		}
		if !since.IsZero() {
			s.LagSeconds = now.Sub(since).Seconds()
		} else {
			s.LagSeconds = -1 // never synced
		}
	}
	return s, nil
}
