package hw

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LEDState is what the activity LED shows.
type LEDState string

// LED states: steady on means all is well, a slow blink that the pool is
// degraded (a disk missing or failing), a fast blink that it is failed or
// needs attention now.
const (
	LEDOff      LEDState = "off"
	LEDOK       LEDState = "ok"
	LEDDegraded LEDState = "degraded"
	LEDFailed   LEDState = "failed"
)

// LED is a kernel LED class device, e.g. /sys/class/leds/ACT.
type LED struct {
	Dir string
}

// ErrNoLED is returned by FindActivityLED on boards without one (PCs, VMs).
var ErrNoLED = errors.New("no activity LED")

// FindActivityLED returns the Raspberry Pi's green activity LED: "ACT" on
// current kernels, "led0" on older ones.
func FindActivityLED(sysRoot string) (*LED, error) {
	for _, name := range []string{"ACT", "led0"} {
		dir := filepath.Join(sysRoot, "class", "leds", name)
		if _, err := os.Stat(filepath.Join(dir, "brightness")); err == nil {
			return &LED{Dir: dir}, nil
		}
	}
	return nil, fmt.Errorf("hw: find activity led under %s: %w", sysRoot, ErrNoLED)
}

// Set shows state: the kernel blinks the LED (timer trigger), so nothing
// needs to run in arkbox to keep it blinking.
func (l *LED) Set(ctx context.Context, state LEDState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch state {
	case LEDOff:
		return l.steady(false)
	case LEDOK:
		return l.steady(true)
	case LEDDegraded:
		return l.blink(500, 500)
	case LEDFailed:
		return l.blink(100, 100)
	}
	return fmt.Errorf("hw: set led %s: unknown state %q", l.Dir, state)
}

func (l *LED) steady(on bool) error {
	if err := l.write("trigger", "none"); err != nil {
		return err
	}
	b := "0"
	if on {
		b = l.read("max_brightness")
		if b == "" || b == "0" {
			b = "1"
		}
	}
	return l.write("brightness", b)
}

func (l *LED) blink(onMs, offMs int) error {
	if err := l.write("trigger", "timer"); err != nil {
		// A kernel without the timer trigger (EINVAL): the heartbeat
		// trigger still says "not steady".
		if err2 := l.write("trigger", "heartbeat"); err2 != nil {
			return err
		}
		return nil
	}
	// The timer trigger creates delay_on and delay_off.
	if err := l.write("delay_on", fmt.Sprint(onMs)); err != nil {
		return err
	}
	return l.write("delay_off", fmt.Sprint(offMs))
}

// State reports what the LED does now, read back from sysfs.
func (l *LED) State() LEDState {
	trig := l.read("trigger")
	active := trig
	if i := strings.Index(trig, "["); i >= 0 {
		if j := strings.Index(trig[i:], "]"); j > 0 {
			active = trig[i+1 : i+j]
		}
	}
	switch active {
	case "none":
		if b := l.read("brightness"); b != "" && b != "0" {
			return LEDOK
		}
		return LEDOff
	case "timer":
		if l.read("delay_on") == "100" {
			return LEDFailed
		}
		return LEDDegraded
	case "heartbeat":
		return LEDDegraded
	}
	return LEDState("trigger " + active)
}

func (l *LED) read(name string) string { return readAttr(l.Dir, name) }

func (l *LED) write(name, value string) error {
	p := filepath.Join(l.Dir, name)
	// sysfs attributes are written in one write(2), without truncation.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("hw: set led %s: %w", p, err)
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return fmt.Errorf("hw: set led %s to %q: %w", p, value, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("hw: set led %s to %q: %w", p, value, err)
	}
	return nil
}
