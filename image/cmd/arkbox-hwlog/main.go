// Command arkbox-hwlog logs the disks the appliance sees, what is on them,
// and every disk plugged in or out, with the board temperature once a
// minute. It runs on the gokrazy image until `arkbox serve` takes over
// watching the hardware, so that a booted image shows (in gokrazy's web
// interface and on the serial console) which disks it detected.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/arkbox/arkbox/hw"
)

func main() {
	sys := flag.String("sysfs", "/sys", "sysfs root")
	dev := flag.String("dev", "/dev", "device directory")
	interval := flag.Duration("interval", 2*time.Second, "how often to look for disks")
	console := flag.String("console", "", "also write the log to this file (e.g. /dev/console)")
	flag.Parse()

	out := []*os.File{os.Stdout}
	if *console != "" {
		if f, err := os.OpenFile(*console, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			out = append(out, f)
		}
	}
	log := slog.New(slog.NewTextHandler(multiWriter(out), nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	opts := hw.DiscoverOptions{SysRoot: *sys, DevRoot: *dev}
	w := &hw.Watcher{Options: opts, Interval: *interval, Logger: log}
	events := w.Watch(ctx)
	temp := time.NewTicker(time.Minute)
	defer temp.Stop()
	logTemp := func() {
		if zones, err := hw.ReadThermal(*sys); err == nil {
			for _, z := range zones {
				log.Info("arkbox-hwlog: temperature", "zone", z.Name, "type", z.Type, "celsius", z.Celsius)
			}
		}
	}
	logTemp()
	for {
		select {
		case <-ctx.Done():
			return
		case <-temp.C:
			logTemp()
		case e, ok := <-events:
			if !ok {
				return
			}
			d := e.Disk
			attrs := []any{"event", e.Kind, "disk", d.Name, "transport", d.Transport,
				"model", d.Model, "serial", d.Serial, "size_bytes", d.SizeBytes}
			if e.Kind != hw.DiskRemoved {
				if c, err := hw.ProbeFile(ctx, d.Path); err == nil {
					attrs = append(attrs, "content", c.Origin, "table", c.Table)
					if m := c.PoolMember(); m != nil {
						attrs = append(attrs, "pool", m.Pool)
					}
				} else {
					attrs = append(attrs, "probe_error", err)
				}
			}
			log.Info("arkbox-hwlog: disk", attrs...)
		}
	}
}

type multiWriter []*os.File

func (m multiWriter) Write(p []byte) (int, error) {
	for _, f := range m {
		f.Write(p)
	}
	return len(p), nil
}
