package sftp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// rawSFTP speaks the SFTP wire protocol directly, to pipeline requests
// the way sshfs does (without waiting for answers).
type rawSFTP struct {
	t       *testing.T
	w       io.Writer
	r       io.Reader
	id      uint32
	version []byte // the body of the VERSION answer
}

func (f *fixture) raw(lg login) *rawSFTP {
	f.t.Helper()
	cfg := &ssh.ClientConfig{User: lg.user, Auth: []ssh.AuthMethod{ssh.Password(lg.password)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()}
	sc, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.port)), cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { sc.Close() })
	sess, err := sc.NewSession()
	if err != nil {
		f.t.Fatal(err)
	}
	w, _ := sess.StdinPipe()
	r, _ := sess.StdoutPipe()
	if err := sess.RequestSubsystem("sftp"); err != nil {
		f.t.Fatal(err)
	}
	c := &rawSFTP{t: f.t, w: w, r: r}
	c.send(1, binary.BigEndian.AppendUint32(nil, 3)) // INIT, version 3
	typ, body := c.recv()
	if typ != 2 {
		f.t.Fatalf("no VERSION: %d", typ)
	}
	c.version = body
	return c
}

func str(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint32(b, uint32(len(s))), s...)
}

// send writes a packet of type typ; requests other than INIT get the next
// id in front of body.
func (c *rawSFTP) send(typ byte, body []byte) uint32 {
	c.t.Helper()
	var p []byte
	if typ != 1 {
		c.id++
		p = binary.BigEndian.AppendUint32(p, c.id)
	}
	p = append(p, body...)
	hdr := binary.BigEndian.AppendUint32(nil, uint32(len(p)+1))
	if _, err := c.w.Write(append(append(hdr, typ), p...)); err != nil {
		c.t.Fatal(err)
	}
	return c.id
}

func (c *rawSFTP) recv() (byte, []byte) {
	c.t.Helper()
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		c.t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
	if _, err := io.ReadFull(c.r, body); err != nil {
		c.t.Fatal(err)
	}
	return hdr[4], body
}

// TestSetstatAfterPipelinedWrites: a client that sends writes and then,
// without waiting for their answers, sets the file's times (sshfs under
// cp -a, rsync -t on a mount) gets the times it set — the setstat is
// applied after the writes the client sent before it, as OpenSSH's
// sftp-server does by handling requests in order.
func TestSetstatAfterPipelinedWrites(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.raw(f.alice)
	mtime := uint32(time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).Unix())
	const rounds, writes, chunk = 5, 64, 32 << 10
	for round := 0; round < rounds; round++ {
		name := fmt.Sprintf("/docs/f%d", round)
		// OPEN name WRITE|CREAT|TRUNC, no attributes.
		c.send(3, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(str(nil, name), 0x1a), 0))
		typ, body := c.recv()
		if typ != 102 {
			t.Fatalf("open: answer %d %x", typ, body)
		}
		handle := string(body[8 : 8+binary.BigEndian.Uint32(body[4:8])])
		data := make([]byte, chunk)
		for i := 0; i < writes; i++ {
			b := binary.BigEndian.AppendUint64(str(nil, handle), uint64(i*chunk))
			c.send(6, str(b, string(data)))
		}
		// FSETSTAT handle, ACMODTIME (and size: truncate to 1 byte).
		b := binary.BigEndian.AppendUint32(str(nil, handle), 0x1|0x8)
		b = binary.BigEndian.AppendUint64(b, 1)
		b = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(b, mtime), mtime)
		c.send(10, b)
		c.send(4, str(nil, handle)) // CLOSE
		for i := 0; i < writes+2; i++ {
			if typ, body := c.recv(); typ != 101 || binary.BigEndian.Uint32(body[4:8]) != 0 {
				t.Fatalf("answer %d: %d %x", i, typ, body)
			}
		}
		in, err := f.share("docs").Resolve(name[len("/docs"):])
		if err != nil {
			t.Fatal(err)
		}
		if got := time.Unix(0, in.MTime).Unix(); got != int64(mtime) || in.Size != 1 {
			t.Errorf("%s: mtime %d size %d, want %d and 1: the setstat overtook the writes sent before it", name, got, in.Size, mtime)
		}
	}
}

// TestMalformedRequests: requests whose attributes are cut short are
// refused, and the session goes on.
func TestMalformedRequests(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	if _, err := f.share("docs").Mkdir(1, "d", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	c := f.raw(f.alice)
	tests := []struct {
		name string
		typ  byte
		body []byte
	}{
		{"setstat: size flag, no size", 9, binary.BigEndian.AppendUint32(str(nil, "/docs/d"), 0x1)},
		{"setstat: times flag, one time", 9, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(str(nil, "/docs/d"), 0x8), 1)},
		{"setstat: extended count too large", 9, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(str(nil, "/docs/d"), 0x80000000), 1000)},
		{"fsetstat: unknown handle", 10, binary.BigEndian.AppendUint32(str(nil, "nope"), 0x1)},
		{"open: odd attributes", 3, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(str(nil, "/docs/f"), 0x1a), 0x1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.send(tc.typ, tc.body)
			typ, body := c.recv()
			if typ != 101 && typ != 102 {
				t.Errorf("answer %d %x", typ, body)
			}
		})
	}
	c.send(17, str(nil, "/docs/d")) // STAT still works
	if typ, _ := c.recv(); typ != 105 {
		t.Errorf("stat after the malformed requests: answer %d", typ)
	}
}

// TestLimits: the server announces limits@openssh.com and answers it at
// the start of a session (writes up to 255 KiB, reads 32 KiB), a write of
// that size is taken whole, and a limits request later in the session is
// refused like any unknown extension, without harm.
func TestLimits(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.raw(f.alice)
	if !bytes.Contains(c.version, str(nil, "limits@openssh.com")) {
		t.Fatalf("VERSION does not announce limits@openssh.com: %q", c.version)
	}
	id := c.send(200, str(nil, "limits@openssh.com"))
	typ, body := c.recv()
	if typ != 201 || len(body) != 4+32 || binary.BigEndian.Uint32(body) != id {
		t.Fatalf("limits answer: type %d, %x", typ, body)
	}
	var got [4]uint64
	for i := range got {
		got[i] = binary.BigEndian.Uint64(body[4+8*i:])
	}
	if got != [4]uint64{256 << 10, 32 << 10, 255 << 10, 0} {
		t.Fatalf("limits: %v", got)
	}
	// A write of the largest size: open, write, close, and the bytes are there.
	open := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(str(nil, "/docs/big"), 0x1a), 0) // WRITE|CREAT|TRUNC, no attrs
	c.send(3, open)
	typ, body = c.recv()
	if typ != 102 {
		t.Fatalf("open: answer %d %x", typ, body)
	}
	handle := body[4:]
	data := bytes.Repeat([]byte("arkbox!"), (255<<10)/7)
	w := append([]byte(nil), handle...)
	w = binary.BigEndian.AppendUint64(w, 0)
	w = binary.BigEndian.AppendUint32(w, uint32(len(data)))
	c.send(6, append(w, data...))
	if typ, body := c.recv(); typ != 101 || binary.BigEndian.Uint32(body[4:]) != 0 {
		t.Fatalf("write of %d bytes: answer %d %x", len(data), typ, body)
	}
	c.send(4, handle)
	if typ, body := c.recv(); typ != 101 || binary.BigEndian.Uint32(body[4:]) != 0 {
		t.Fatalf("close: answer %d %x", typ, body)
	}
	sh := f.share("docs")
	in, err := sh.Lookup(1, "big")
	if err != nil || in.Size != uint64(len(data)) {
		t.Fatalf("after the write: %+v %v", in, err)
	}
	// Past the start of the session the request goes to pkg/sftp, which
	// does not know it: an error status, and the session goes on.
	c.send(200, str(nil, "limits@openssh.com"))
	if typ, _ := c.recv(); typ != 101 {
		t.Fatalf("late limits request: answer %d", typ)
	}
	c.send(17, str(nil, "/docs/big"))
	if typ, _ := c.recv(); typ != 105 {
		t.Fatalf("stat after the late limits request: answer %d", typ)
	}
}
