package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/arkbox/arkbox/storage/objstore"
)

// MaxReportedProblems caps ScrubReport.Problems; ProblemCount counts all.
const MaxReportedProblems = 1000

// ScrubOptions tunes Scrub.
type ScrubOptions struct {
	// Repair rewrites missing, corrupt, truncated and misplaced shards.
	Repair bool
	// Progress, if set, is called after each shard directory prefix.
	Progress func(ScrubProgress)
}

// ScrubProgress reports how far a scrub has come.
type ScrubProgress struct {
	// Done and Total count shard directories (kinds × 256 prefixes).
	Done, Total int
	// Kind is the kind being scrubbed.
	Kind objstore.Kind
	// Objects, Shards and Bytes checked so far; Problems found so far.
	Objects, Shards, Bytes int64
	Problems               int
}

// Problem is one thing wrong with one shard of an object.
type Problem struct {
	Kind objstore.Kind
	ID   objstore.ID
	// Shard is the shard index (from the file name; -1 for a stray file).
	Shard int
	// Disk is the UUID of the disk holding the bad file; empty for a
	// shard missing everywhere.
	Disk string
	// What says what is wrong.
	What string
	// Repaired is set when the scrub fixed it.
	Repaired bool
}

// Unrepairable names an object that has fewer good shards than it needs.
type Unrepairable struct {
	Kind   objstore.Kind
	ID     objstore.ID
	Reason string
}

// ScrubReport is the result of Scrub.
type ScrubReport struct {
	// Objects, Shards (files) and Bytes checked.
	Objects, Shards, Bytes int64
	// Problems found (the first MaxReportedProblems); ProblemCount is
	// their total.
	Problems     []Problem
	ProblemCount int
	// Repaired counts shard files rewritten.
	Repaired int
	// Unrepairable lists objects that cannot be read back.
	Unrepairable []Unrepairable
	// MissingDisks lists members that were not present.
	MissingDisks []string
}

// scanned is one file seen by a scrub.
type scanned struct {
	d       *disk
	id      objstore.ID
	index   int
	hdr     *shardHeader
	problem string
	usable  bool
}

// Scrub reads every shard file of every present disk (one goroutine per
// disk, each reading its files one after another), verifies headers and
// payload checksums, and for every object with missing, corrupt,
// truncated, misplaced or stale shards reports the problems and, with
// Repair, reconstructs and rewrites them. It needs no key.
func (p *Pool) Scrub(ctx context.Context, opt ScrubOptions) (ScrubReport, error) {
	var rep ScrubReport
	if p.closed.Load() {
		return rep, errors.New("pool: scrub: pool is closed")
	}
	if opt.Repair && p.readOnly {
		return rep, fmt.Errorf("pool: scrub with repair: %w", objstore.ErrReadOnly)
	}
	st := p.st.Load()
	for _, d := range st.members {
		if !d.present() {
			rep.MissingDisks = append(rep.MissingDisks, d.uuid)
		}
	}
	disks := st.present()
	total := len(objstore.Kinds) * 256
	done := 0
	addProblem := func(pr Problem) {
		rep.ProblemCount++
		if len(rep.Problems) < MaxReportedProblems {
			rep.Problems = append(rep.Problems, pr)
		}
	}
	buf := make([][]byte, len(disks))
	for i := range buf {
		buf[i] = make([]byte, 16*blockSize)
	}
	for _, kind := range objstore.Kinds {
		for prefix := 0; prefix < 256; prefix++ {
			if err := ctx.Err(); err != nil {
				return rep, fmt.Errorf("pool: scrub: %w", err)
			}
			pre := fmt.Sprintf("%02x", prefix)
			perDisk := make([][]scanned, len(disks))
			bytesRead := make([]int64, len(disks))
			var wg sync.WaitGroup
			for i, d := range disks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					perDisk[i], bytesRead[i] = scanDir(ctx, d, kind, pre, buf[i])
				}()
			}
			wg.Wait()
			byID := map[objstore.ID][]scanned{}
			var ids []objstore.ID
			for i := range disks {
				rep.Bytes += bytesRead[i]
				for _, s := range perDisk[i] {
					rep.Shards++
					if s.index < 0 {
						addProblem(Problem{Kind: kind, Shard: -1, Disk: s.d.uuid, What: s.problem})
						continue
					}
					if byID[s.id] == nil {
						ids = append(ids, s.id)
					}
					byID[s.id] = append(byID[s.id], s)
				}
			}
			sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
			for _, id := range ids {
				rep.Objects++
				if !needsAttention(byID[id]) {
					continue
				}
				p.scrubObject(ctx, kind, id, opt.Repair, &rep, addProblem)
			}
			done++
			if opt.Progress != nil {
				opt.Progress(ScrubProgress{Done: done, Total: total, Kind: kind, Objects: rep.Objects,
					Shards: rep.Shards, Bytes: rep.Bytes, Problems: rep.ProblemCount})
			}
		}
	}
	return rep, nil
}

// needsAttention reports whether the files of one object show any
// problem: a bad file, shards of more than one write, or a missing shard.
func needsAttention(files []scanned) bool {
	var g *groupKey
	named := map[int]bool{}
	for _, s := range files {
		if s.problem != "" || !s.usable {
			return true
		}
		k := s.hdr.group()
		if g == nil {
			g = &k
		} else if *g != k {
			return true
		}
		named[s.index] = true
	}
	return g == nil || len(named) != g.k+g.m
}

// scrubObject loads a suspicious object again (under its lock when
// repairing), records its problems and repairs it.
func (p *Pool) scrubObject(ctx context.Context, kind objstore.Kind, id objstore.ID, repair bool, rep *ScrubReport, add func(Problem)) {
	var (
		l                *loaded
		written, removed []repaired
		err              error
	)
	if repair {
		l, written, removed, err = p.repairObject(ctx, kind, id)
	} else {
		l, err = p.load(ctx, p.st.Load(), kind, id, true)
	}
	if l == nil {
		if err != nil && !errors.Is(err, objstore.ErrNotFound) {
			rep.Unrepairable = append(rep.Unrepairable, Unrepairable{Kind: kind, ID: id, Reason: err.Error()})
		}
		return
	}
	type at struct {
		disk  string
		index int
	}
	fixedIdx := map[int]bool{}
	fixedAt := map[at]bool{}
	for _, r := range written {
		fixedIdx[r.index] = true
		fixedAt[at{r.d.uuid, r.index}] = true
	}
	for _, r := range removed {
		fixedAt[at{r.d.uuid, r.index}] = true
	}
	rep.Repaired += len(written)
	for _, pr := range l.problems() {
		if pr.Disk == "" {
			pr.Repaired = fixedIdx[pr.Shard]
		} else {
			pr.Repaired = fixedAt[at{pr.Disk, pr.Shard}]
		}
		add(pr)
	}
	if err != nil && errors.Is(err, objstore.ErrCorrupt) {
		rep.Unrepairable = append(rep.Unrepairable, Unrepairable{Kind: kind, ID: id, Reason: err.Error()})
	} else if err != nil {
		p.log.Warn("pool: scrub repair", "kind", kind, "object", id.String(), "err", err)
	}
}

// scanDir verifies every file of one shard directory on one disk.
func scanDir(ctx context.Context, d *disk, kind objstore.Kind, pre string, buf []byte) ([]scanned, int64) {
	dir := filepath.Join(d.base, string(kind), pre)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			return []scanned{{d: d, index: -1, problem: d.fault("scrub "+dir, err).Error()}}, 0
		}
		return nil, 0
	}
	var out []scanned
	var n int64
	for _, e := range ents {
		if ctx.Err() != nil {
			break
		}
		id, idx, ok := parseShardName(e.Name())
		if !ok || id.String()[:2] != pre || !e.Type().IsRegular() {
			out = append(out, scanned{d: d, index: -1, problem: fmt.Sprintf("stray file %s/%s/%s", kind, pre, e.Name())})
			continue
		}
		s := scanned{d: d, id: id, index: idx}
		f, err := d.openFile(kind, id, idx)
		switch {
		case f == nil && err == nil:
			continue // removed meanwhile
		case err != nil:
			s.problem = "bad header: " + err.Error()
			out = append(out, s)
			continue
		}
		s.hdr = f.hdr
		n += f.size
		if err := f.checkName(kind, id); err != nil {
			s.problem = err.Error()
		}
		s.usable = f.hdr.kind == kind && f.hdr.id == id
		if s.usable {
			if err := f.verifyPayload(buf); err != nil {
				s.problem, s.usable = err.Error(), false
			}
		}
		f.close()
		out = append(out, s)
	}
	return out, n
}
