package sftp

import (
	"encoding/binary"
	"io"
)

// limits@openssh.com (OpenSSH's PROTOCOL, "sftp: Extension request
// limits@openssh.com"): a server that announces it in its VERSION answer
// tells the client, on request, the largest packets, reads and writes it
// takes; OpenSSH's client then writes with the largest size offered, and
// 32 KiB (the SFTP minimum) otherwise. pkg/sftp's server neither announces
// nor answers it, so the channel does both: it adds the extension to the
// VERSION answer, and reads the first handshakeRequests requests whole,
// answering a limits request itself instead of handing it on (OpenSSH asks
// right after VERSION and waits for the answer). Writes of 255 KiB fit
// pkg/sftp's largest packet (256 KiB); reads stay at 32 KiB, the largest
// answer pkg/sftp gives.
const (
	fxpVersion       = 2
	fxpExtended      = 200
	fxpExtendedReply = 201

	limitsName        = "limits@openssh.com"
	handshakeRequests = 4
	limitsPacket      = 256 << 10
	limitsRead        = 32 << 10
	limitsWrite       = 255 << 10
)

// withLimits returns p with the limits extension added, when p is a whole
// VERSION answer.
func withLimits(p []byte) ([]byte, bool) {
	if len(p) < 9 || p[4] != fxpVersion || int(binary.BigEndian.Uint32(p))+4 != len(p) {
		return nil, false
	}
	q := append([]byte(nil), p...)
	q = appendString(q, limitsName)
	q = appendString(q, "1")
	binary.BigEndian.PutUint32(q, uint32(len(q)-4))
	return q, true
}

func appendString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint32(b, uint32(len(s))), s...)
}

// readWhole reads one request whole, at the start of the session: a
// limits request is answered here, anything else is kept in pre for
// pkg/sftp.
func (w *sftpChannel) readWhole() error {
	var h [4]byte
	if _, err := io.ReadFull(w.Channel, h[:]); err != nil {
		return err
	}
	w.handshake++
	n := binary.BigEndian.Uint32(h[:])
	if n == 0 || n > limitsPacket {
		// pkg/sftp refuses it; the body (if any) streams on as usual.
		w.pre = h[:]
		w.handshake = handshakeRequests
		if n > 0 {
			var t [1]byte
			if _, err := io.ReadFull(w.Channel, t[:]); err != nil {
				return err
			}
			w.pre = append(w.pre, t[0])
			w.inLeft = int(n) - 1
			w.count(t[0])
		}
		return nil
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(w.Channel, body); err != nil {
		return err
	}
	if id, ok := limitsRequest(body); ok {
		return w.answerLimits(id)
	}
	w.count(body[0])
	w.pre = append(h[:], body...)
	return nil
}

// limitsRequest reports whether body (type onwards) is a limits request,
// and its id.
func limitsRequest(body []byte) (uint32, bool) {
	if len(body) < 9 || body[0] != fxpExtended {
		return 0, false
	}
	id := binary.BigEndian.Uint32(body[1:])
	l := binary.BigEndian.Uint32(body[5:])
	if uint64(l) != uint64(len(body)-9) || string(body[9:]) != limitsName {
		return 0, false
	}
	return id, true
}

// answerLimits sends the answer to limits request id, once every request
// before it has been answered (so that no answer of pkg/sftp's is being
// written meanwhile: it has no other request to answer).
func (w *sftpChannel) answerLimits(id uint32) error {
	w.mu.Lock()
	for w.answered < w.received && !w.ended {
		w.cond.Wait()
	}
	w.mu.Unlock()
	p := binary.BigEndian.AppendUint32(nil, 1+4+4*8)
	p = append(p, fxpExtendedReply)
	p = binary.BigEndian.AppendUint32(p, id)
	for _, v := range []uint64{limitsPacket, limitsRead, limitsWrite, 0} { // 0: no limit on open handles
		p = binary.BigEndian.AppendUint64(p, v)
	}
	_, err := w.Channel.Write(p)
	return err
}
