package board

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arkbox/arkbox/hw"
	"github.com/arkbox/arkbox/hw/hwtest"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// waitLED waits until the LED shows want.
func waitLED(t *testing.T, led *hw.LED, want hw.LEDState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for led.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("LED shows %q, want %q", led.State(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMonitor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		celsius float64
		warn    bool
	}{
		{"cool", 48.5, false},
		{"hot", 84, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := hwtest.Board(t, tc.celsius)
			led, err := hw.FindActivityLED(root)
			if err != nil {
				t.Fatal(err)
			}
			var state atomic.Value
			state.Store(hw.LEDOK)
			logs := &logBuf{}
			m := New(Options{SysRoot: root, Interval: time.Hour, Logger: slog.New(slog.NewTextHandler(logs, nil)),
				Health: func(context.Context) hw.LEDState { return state.Load().(hw.LEDState) }})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { m.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			waitLED(t, led, hw.LEDOK)
			for _, s := range []hw.LEDState{hw.LEDDegraded, hw.LEDFailed, hw.LEDOK} {
				state.Store(s)
				m.Kick()
				waitLED(t, led, s)
			}
			out := logs.String()
			if got := strings.Contains(out, "running hot"); got != tc.warn {
				t.Errorf("warning logged: %v, want %v:\n%s", got, tc.warn, out)
			}
			if !strings.Contains(out, "celsius=") {
				t.Errorf("no temperature logged:\n%s", out)
			}
		})
	}
}

// TestMonitorWithoutLED: a board without the LED or thermal zones (a PC,
// a VM) is skipped silently.
func TestMonitorWithoutLED(t *testing.T) {
	logs := &logBuf{}
	asked := make(chan struct{}, 1)
	m := New(Options{SysRoot: t.TempDir(), Interval: time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Health: func(context.Context) hw.LEDState { asked <- struct{}{}; return hw.LEDFailed }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	m.Run(ctx)
	if logs.String() != "" {
		t.Errorf("logged on a board without LED or sensors:\n%s", logs)
	}
	select {
	case <-asked:
		t.Error("asked for the health without an LED to show it on")
	default:
	}
}
