// Package board shows the appliance's state on the board: the Raspberry
// Pi's activity LED is steady while all is well and blinks while the pool
// is degraded or resyncing or the last run of a job failed (package hw
// drives it through the kernel's LED triggers, so nothing has to keep
// running to blink it), and the board's temperature is logged now and
// then, with a warning when it runs hot. A board without that LED (a PC,
// a VM) or without thermal zones is skipped silently.
package board

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/arkbox/arkbox/hw"
)

// Options configure a Monitor.
type Options struct {
	// SysRoot is where sysfs is; "" means "/sys".
	SysRoot string
	// Health says what the LED is to show: hw.LEDOK, hw.LEDDegraded or
	// hw.LEDFailed. Nil shows hw.LEDOK.
	Health func(ctx context.Context) hw.LEDState
	// Interval is how often Health is asked; default 2 s. Kick asks at
	// once.
	Interval time.Duration
	// TempInterval is how often the temperature is logged; default 10
	// min.
	TempInterval time.Duration
	// WarnCelsius is the temperature above which the log line is a
	// warning; default 80 (a Raspberry Pi throttles from 80 to 85 °C).
	WarnCelsius float64
	Logger      *slog.Logger
}

// Monitor keeps the LED in step with Health and logs the temperature.
type Monitor struct {
	o    Options
	log  *slog.Logger
	kick chan struct{}
}

// New returns a Monitor; Run runs it.
func New(o Options) *Monitor {
	if o.SysRoot == "" {
		o.SysRoot = "/sys"
	}
	if o.Interval <= 0 {
		o.Interval = 2 * time.Second
	}
	if o.TempInterval <= 0 {
		o.TempInterval = 10 * time.Minute
	}
	if o.WarnCelsius == 0 {
		o.WarnCelsius = 80
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Monitor{o: o, log: log, kick: make(chan struct{}, 1)}
}

// Kick makes Run look at Health now rather than at the next interval.
func (m *Monitor) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run shows Health on the LED and logs the temperature until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	led, err := hw.FindActivityLED(m.o.SysRoot)
	if err != nil {
		if !errors.Is(err, hw.ErrNoLED) {
			m.log.Warn("board: activity LED", "err", err)
		}
		led = nil
	}
	var shown hw.LEDState
	failedOnce := false
	showHealth := func() {
		if led == nil {
			return
		}
		want := hw.LEDOK
		if m.o.Health != nil {
			want = m.o.Health(ctx)
		}
		if want == shown || ctx.Err() != nil {
			return
		}
		if err := led.Set(ctx, want); err != nil {
			if !failedOnce {
				m.log.Warn("board: set the activity LED", "state", want, "err", err)
				failedOnce = true
			}
			return
		}
		m.log.Info("board: activity LED", "shows", want)
		shown = want
	}
	m.logTemperature()
	showHealth()
	tick := time.NewTicker(m.o.Interval)
	defer tick.Stop()
	temp := time.NewTicker(m.o.TempInterval)
	defer temp.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			showHealth()
		case <-m.kick:
			showHealth()
		case <-temp.C:
			m.logTemperature()
		}
	}
}

// logTemperature logs the hottest thermal zone.
func (m *Monitor) logTemperature() {
	zones, err := hw.ReadThermal(m.o.SysRoot)
	if err != nil {
		m.log.Warn("board: temperature", "err", err)
		return
	}
	c, ok := hw.MaxCelsius(zones)
	if !ok {
		return
	}
	zone := ""
	for _, z := range zones {
		if z.Celsius == c {
			zone = z.Type
		}
	}
	deg := fmt.Sprintf("%.1f", c)
	if c > m.o.WarnCelsius {
		m.log.Warn("board: running hot", "celsius", deg, "zone", zone, "warn_above", m.o.WarnCelsius)
		return
	}
	m.log.Info("board: temperature", "celsius", deg, "zone", zone)
}
