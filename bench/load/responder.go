package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// respondOpts says what a serving socket does beyond answering 200.
type respondOpts struct {
	auth   bool // challenge a REGISTER without Authorization (401, MD5, qop=auth)
	notify bool // follow a SUBSCRIBE's 200 with a NOTIFY to its sender
}

// listenReusePort opens n UDP sockets on addr with SO_REUSEPORT: the kernel spreads the
// senders over them by address.
func listenReusePort(addr string, n int) ([]*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	var conns []*net.UDPConn
	for i := 0; i < n; i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		c := pc.(*net.UDPConn)
		setBuffers(c)
		conns = append(conns, c)
		addr = c.LocalAddr().String() // port 0: the others share the first's port
	}
	return conns, nil
}

func setBuffers(c *net.UDPConn) {
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
}

func closeAll(conns []*net.UDPConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// server answers the requests that reach one socket, statelessly, in batches.
type server struct {
	conn  *net.UDPConn
	pc    *ipv4.PacketConn
	opts  respondOpts
	laddr string
	rms   []ipv4.Message
	wms   []ipv4.Message
	out   []byte
	m     sipMsg
	seq   uint64
	nw    int
}

func newServer(conn *net.UDPConn, opts respondOpts, batch int) *server {
	s := &server{conn: conn, pc: ipv4.NewPacketConn(conn), opts: opts, laddr: conn.LocalAddr().String(),
		rms: make([]ipv4.Message, batch), wms: make([]ipv4.Message, 2*batch), out: make([]byte, 0, 64<<10)}
	for i := range s.rms {
		s.rms[i].Buffers = [][]byte{make([]byte, 65536)}
	}
	for i := range s.wms {
		s.wms[i].Buffers = make([][]byte, 1)
	}
	return s
}

// serve answers until the socket is closed. Every request but ACK gets a 200 (To tag added)
// or, with opts.auth, a REGISTER without credentials a 401; PUBLISH's 200 carries a
// SIP-ETag; with opts.notify a SUBSCRIBE's 200 is followed by a NOTIFY (active, or
// terminated for Expires: 0), sent once. Answers to its NOTIFYs are read and dropped.
func (s *server) serve() {
	for {
		n, err := s.pc.ReadBatch(s.rms, 0)
		for i := 0; i < n; i++ {
			s.answer(s.rms[i].Buffers[0][:s.rms[i].N], s.rms[i].Addr)
		}
		s.flush()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond) // ECONNREFUSED of an earlier send, and the like
		}
	}
}

func (s *server) flush() {
	ms := s.wms[:s.nw]
	for len(ms) > 0 {
		n, err := s.pc.WriteBatch(ms, 0)
		if n <= 0 || err != nil {
			ms = ms[max(n, 1):] // drop the datagram that failed: the client resends
			continue
		}
		ms = ms[n:]
	}
	s.nw = 0
	s.out = s.out[:0]
}

func (s *server) queue(b []byte, to net.Addr) {
	s.wms[s.nw].Buffers[0] = b
	s.wms[s.nw].Addr = to
	s.nw++
}

func (s *server) answer(b []byte, from net.Addr) {
	m := &s.m
	if !parse(b, m) || !m.request || eqFold(m.method, "ACK") {
		return
	}
	s.seq++
	start := len(s.out)
	switch {
	case s.opts.auth && eqFold(m.method, "REGISTER") && !m.authz:
		s.out = appendAnswer(s.out, m, 401, "Unauthorized", "R1")
		s.out = append(s.out, "WWW-Authenticate: Digest realm=\""...)
		s.out = append(s.out, hostOf(uriOf(m.to))...)
		s.out = append(s.out, "\", nonce=\"n"...)
		s.out = strconv.AppendUint(s.out, s.seq, 16)
		s.out = append(s.out, "\", qop=\"auth\", algorithm=MD5\r\n"...)
	case eqFold(m.method, "PUBLISH"):
		s.out = appendAnswer(s.out, m, 200, "OK", "R1")
		s.out = append(s.out, "SIP-ETag: e"...)
		s.out = strconv.AppendUint(s.out, s.seq, 16)
		s.out = append(s.out, "\r\nExpires: 3600\r\n"...)
	case eqFold(m.method, "SUBSCRIBE"):
		s.out = appendAnswer(s.out, m, 200, "OK", "R1")
		s.out = s.appendContact(s.out)
		s.out = appendHeader(s.out, "Expires", m.expires)
	default:
		s.out = appendAnswer(s.out, m, 200, "OK", "R1")
	}
	s.out = appendEnd(s.out, nil)
	s.queue(s.out[start:], from)
	if s.opts.notify && eqFold(m.method, "SUBSCRIBE") && len(notifyTarget(m)) > 0 {
		start = len(s.out)
		s.out = s.appendNotify(s.out, m)
		s.queue(s.out[start:], from)
	}
}

func (s *server) appendContact(b []byte) []byte {
	b = append(b, "Contact: <sip:responder@"...)
	b = append(b, s.laddr...)
	return append(b, ">\r\n"...)
}

// appendNotify appends the NOTIFY that follows SUBSCRIBE m, in the dialog its 200 made.
func (s *server) appendNotify(b []byte, m *sipMsg) []byte {
	b = append(b, "NOTIFY "...)
	b = append(b, notifyTarget(m)...)
	b = append(b, " SIP/2.0\r\nVia: SIP/2.0/UDP "...)
	b = append(b, s.laddr...)
	b = append(b, ";branch=z9hG4bKR"...)
	b = strconv.AppendUint(b, s.seq, 16)
	b = append(b, "\r\nMax-Forwards: 70\r\nFrom: "...)
	b = append(b, m.to...)
	if param(m.to, "tag") == nil {
		b = append(b, ";tag=R1"...)
	}
	b = append(b, "\r\nTo: "...)
	b = append(b, m.from...)
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, m.callID...)
	b = append(b, "\r\nCSeq: "...)
	n := m.cseq
	if i := bytes.IndexByte(n, ' '); i >= 0 {
		n = n[:i]
	}
	b = append(b, n...)
	b = append(b, " NOTIFY\r\n"...)
	b = s.appendContact(b)
	b = append(b, "Event: presence\r\n"...)
	if string(trim(m.expires)) == "0" {
		b = append(b, "Subscription-State: terminated;reason=timeout\r\n"...)
	} else {
		b = append(b, "Subscription-State: active;expires=600\r\n"...)
	}
	return appendEnd(b, nil)
}

// notifyTarget is where the NOTIFY following SUBSCRIBE m goes: its Contact's URI, else its
// From's; empty when it has neither.
func notifyTarget(m *sipMsg) []byte {
	if t := trim(uriOf(m.contact)); len(t) > 0 {
		return t
	}
	return trim(uriOf(m.from))
}

// hostOf returns the host part of a SIP URI (after '@', before ';', '>' or a port).
func hostOf(uri []byte) []byte {
	if i := bytes.IndexByte(uri, '@'); i >= 0 {
		uri = uri[i+1:]
	} else if i := bytes.IndexByte(uri, ':'); i >= 0 {
		uri = uri[i+1:]
	}
	for i, c := range uri {
		if c == ';' || c == ':' || c == '>' || c == '?' {
			return uri[:i]
		}
	}
	return uri
}

// respond runs the -responder mode until ctx ends: n sockets on addr.
func respond(ctx context.Context, addr string, n, batch int, opts respondOpts) error {
	conns, err := listenReusePort(addr, n)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	for _, c := range conns {
		go func() {
			newServer(c, opts, batch).serve()
			done <- struct{}{}
		}()
	}
	<-ctx.Done()
	closeAll(conns)
	for range conns {
		<-done
	}
	return nil
}
