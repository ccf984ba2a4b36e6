package hw

import (
	"context"
	"log/slog"
	"strconv"
	"time"
)

// EventKind says whether a disk appeared or vanished.
type EventKind string

// Event kinds.
const (
	DiskAdded   EventKind = "added"
	DiskRemoved EventKind = "removed"
	DiskChanged EventKind = "changed" // same name, different disk or size (e.g. media swapped)
)

// Event is one change that a Watcher noticed.
type Event struct {
	Kind EventKind `json:"kind"`
	Disk Disk      `json:"disk"` // for DiskRemoved, the disk as last seen
	Time time.Time `json:"time"`
}

// Watcher polls sysfs for disks appearing and vanishing. Polling a
// directory of a few entries every couple of seconds costs nothing
// measurable and needs neither netlink nor udev.
type Watcher struct {
	Options  DiscoverOptions // Probe is ignored: events carry sysfs facts only
	Interval time.Duration   // default 2 s
	Logger   *slog.Logger    // default slog.Default()
}

// key identifies a disk across polls: a disk swapped under the same name
// has a different serial, size or device number.
func (d Disk) key() string {
	return d.Dev + "|" + d.Serial + "|" + d.WWID + "|" + d.Model + "|" + strconv.FormatInt(d.SizeBytes, 10)
}

// Watch lists the disks present now and sends one DiskAdded event for each,
// then one event per change, until ctx ends; then it closes the channel.
// A poll that fails (sysfs unreadable) is logged and retried.
func (w *Watcher) Watch(ctx context.Context) <-chan Event {
	ch := make(chan Event, 16)
	go w.run(ctx, ch)
	return ch
}

func (w *Watcher) run(ctx context.Context, ch chan<- Event) {
	defer close(ch)
	interval := w.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	log := w.Logger
	if log == nil {
		log = slog.Default()
	}
	opts := w.Options
	opts.Probe = false
	opts.MountInfo = "-"
	known := map[string]Disk{}
	t := time.NewTicker(interval)
	defer t.Stop()
	send := func(e Event) bool {
		select {
		case ch <- e:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		disks, err := Discover(ctx, opts)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("hw: watch disks", "err", err)
		} else {
			now := time.Now()
			seen := map[string]bool{}
			for _, d := range disks {
				seen[d.Name] = true
				old, ok := known[d.Name]
				switch {
				case !ok:
					if !send(Event{Kind: DiskAdded, Disk: d, Time: now}) {
						return
					}
				case old.key() != d.key():
					if !send(Event{Kind: DiskChanged, Disk: d, Time: now}) {
						return
					}
				}
				known[d.Name] = d
			}
			for name, d := range known {
				if !seen[name] {
					delete(known, name)
					if !send(Event{Kind: DiskRemoved, Disk: d, Time: now}) {
						return
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
