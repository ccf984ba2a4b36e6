package testpeer

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Fault is what the proxy does to one connection.
type Fault struct {
	CutAfter   int64         // close both sides after this many client bytes (0 = never)
	StallAfter int64         // stop forwarding after this many client bytes, keep the connection open
	FlipAt     int64         // flip one bit of the client byte at this offset (0 = never)
	Respond500 bool          // answer with an HTTP 500 instead of forwarding
	Delay      time.Duration // before forwarding anything
}

// Proxy is a TCP proxy on 127.0.0.1 that injects faults.
type Proxy struct {
	Addr  string
	Conns atomic.Int64
	mu    sync.Mutex
	plan  func(int, string) Fault
}

// SetPlan replaces the fault plan (safe while connections run): f gets
// the connection's number (from 0) and the first line the client sent
// (an HTTP request line), and says what to do.
func (p *Proxy) SetPlan(f func(conn int, head string) Fault) {
	p.mu.Lock()
	p.plan = f
	p.mu.Unlock()
	p.Conns.Store(0)
}

// NewProxy forwards to target until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().String()}
	var open sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close(); open.Wait() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := int(p.Conns.Add(1) - 1)
			p.mu.Lock()
			plan := p.plan
			p.mu.Unlock()
			open.Add(1)
			go func() {
				defer open.Done()
				p.serve(c, target, n, plan, done)
			}()
		}
	}()
	return p
}

func (p *Proxy) serve(c net.Conn, target string, n int, plan func(int, string) Fault, done <-chan struct{}) {
	defer c.Close()
	// The client speaks first (HTTP request, SSH banner): read its first
	// bytes to decide.
	first := make([]byte, 32<<10)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	k, _ := c.Read(first)
	c.SetReadDeadline(time.Time{})
	first = first[:k]
	var f Fault
	if plan != nil {
		head, _, _ := strings.Cut(string(first), "\r\n")
		f = plan(n, head)
	}
	if f.Respond500 {
		io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\ninjected fault")
		return
	}
	time.Sleep(f.Delay)
	s, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() {
		io.Copy(c, s)
		c.Close()
	}()
	buf := make([]byte, 32<<10)
	var off int64
	for i := 0; ; i++ {
		var n int
		var err error
		if i == 0 {
			n = copy(buf, first)
		} else {
			n, err = c.Read(buf)
		}
		if n > 0 {
			chunk := buf[:n]
			if f.FlipAt > 0 && off <= f.FlipAt && f.FlipAt < off+int64(n) {
				chunk[f.FlipAt-off] ^= 0x10
			}
			if f.CutAfter > 0 && off+int64(n) >= f.CutAfter {
				s.Write(chunk[:f.CutAfter-off])
				return
			}
			if f.StallAfter > 0 && off+int64(n) >= f.StallAfter {
				s.Write(chunk[:f.StallAfter-off])
				<-done // hold the connection open, forwarding nothing
				return
			}
			if _, err := s.Write(chunk); err != nil {
				return
			}
			off += int64(n)
		}
		if err != nil {
			return
		}
	}
}
