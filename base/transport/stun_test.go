package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/stun/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

var stunFrom = &net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40123}

// buildSTUN builds a STUN message from setters, failing the test on error.
func buildSTUN(t testing.TB, setters ...stun.Setter) *stun.Message {
	t.Helper()
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// decodeReply decodes a reply and checks what every response must carry: the request's
// transaction id, SOFTWARE "simpled" and a FINGERPRINT that verifies.
func decodeSTUNReply(t testing.TB, req []byte, reply []byte) *stun.Message {
	t.Helper()
	res := new(stun.Message)
	if err := stun.Decode(reply, res); err != nil {
		t.Fatalf("reply does not decode: %v", err)
	}
	if !bytes.Equal(res.TransactionID[:], req[8:20]) {
		t.Errorf("transaction id %x, want %x", res.TransactionID, req[8:20])
	}
	if err := stun.Fingerprint.Check(res); err != nil {
		t.Errorf("reply FINGERPRINT: %v", err)
	}
	var sw stun.Software
	if err := sw.GetFrom(res); err != nil || sw.String() != STUNSoftware {
		t.Errorf("SOFTWARE = %q (%v), want %q", sw, err, STUNSoftware)
	}
	return res
}

// rfcUnknownAttributes reads UNKNOWN-ATTRIBUTES as RFC 8489 §14.9 lays it out (16 bits each).
func rfcUnknownAttributes(t testing.TB, m *stun.Message) []stun.AttrType {
	t.Helper()
	v, err := m.Get(stun.AttrUnknownAttributes)
	if err != nil {
		t.Fatalf("no UNKNOWN-ATTRIBUTES: %v", err)
	}
	if len(v)%2 != 0 {
		t.Fatalf("UNKNOWN-ATTRIBUTES of %d bytes", len(v))
	}
	var types []stun.AttrType
	for i := 0; i < len(v); i += 2 {
		types = append(types, stun.AttrType(binary.BigEndian.Uint16(v[i:])))
	}
	return types
}

func stunErrorCode(t testing.TB, m *stun.Message) stun.ErrorCode {
	t.Helper()
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		t.Fatalf("no ERROR-CODE: %v", err)
	}
	return ec.Code
}

func TestHandleSTUNBinding(t *testing.T) {
	for _, from := range []*net.UDPAddr{
		stunFrom,
		{IP: net.ParseIP("2001:db8::1"), Port: 5060},
		{IP: net.ParseIP("::ffff:198.51.100.9"), Port: 1}, // dual-stack socket: an IPv4 peer
	} {
		t.Run(from.String(), func(t *testing.T) {
			for _, fp := range []bool{true, false} {
				setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, stun.NewSoftware("test")}
				if fp {
					setters = append(setters, stun.Fingerprint)
				}
				req := buildSTUN(t, setters...)
				reply, outcome := HandleSTUN(req.Raw, from)
				if outcome != STUNBinding || reply == nil {
					t.Fatalf("outcome %q, reply %v", outcome, reply != nil)
				}
				res := decodeSTUNReply(t, req.Raw, reply)
				if res.Type != stun.BindingSuccess {
					t.Fatalf("type %v", res.Type)
				}
				var xa stun.XORMappedAddress
				if err := xa.GetFrom(res); err != nil {
					t.Fatal(err)
				}
				if !xa.IP.Equal(from.IP) || xa.Port != from.Port {
					t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", xa, from)
				}
				if v, _ := res.Get(stun.AttrXORMappedAddress); (from.IP.To4() != nil) != (len(v) == 8) {
					t.Errorf("address family: value of %d bytes for %v", len(v), from.IP)
				}
			}
		})
	}
}

func TestHandleSTUN(t *testing.T) {
	binding := buildSTUN(t, stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw
	badFP := bytes.Clone(binding)
	badFP[len(badFP)-1] ^= 1
	// FINGERPRINT followed by another attribute: not last, so not valid.
	fpNotLast := buildSTUN(t, stun.TransactionID, stun.BindingRequest, stun.Fingerprint, stun.NewSoftware("x")).Raw
	// An attribute whose length runs past the message.
	truncated := buildSTUN(t, stun.TransactionID, stun.BindingRequest, stun.NewSoftware("abcdefgh")).Raw
	binary.BigEndian.PutUint16(truncated[22:24], 200)
	// A message length that is not the datagram's.
	longer := append(bytes.Clone(binding), 0, 0, 0, 0)
	odd := buildSTUN(t, stun.TransactionID, stun.BindingRequest).Raw
	odd = append(odd, 0, 0)
	binary.BigEndian.PutUint16(odd[2:4], 2)
	topBits := bytes.Clone(binding)
	topBits[0] |= 0x40

	tests := []struct {
		name    string
		data    []byte
		outcome string
		code    stun.ErrorCode // 0: no reply
		unknown []stun.AttrType
	}{
		{name: "bad fingerprint", data: badFP, outcome: STUNBadFingerprint},
		{name: "fingerprint not last", data: fpNotLast, outcome: STUNBadFingerprint},
		{name: "truncated attribute", data: truncated, outcome: STUNMalformed},
		{name: "trailing bytes", data: longer, outcome: STUNMalformed},
		{name: "length not a multiple of 4", data: odd, outcome: STUNMalformed},
		{name: "short header", data: binding[:19], outcome: STUNMalformed},
		{name: "type top bits set", data: topBits, outcome: STUNMalformed},
		{name: "binding indication", data: buildSTUN(t, stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication), stun.Fingerprint).Raw, outcome: STUNIndication},
		{name: "indication with unknown attribute", data: buildSTUN(t, stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication), stun.RawAttribute{Type: 0x7f01, Value: []byte{1}}).Raw, outcome: STUNIndication},
		{name: "success response", data: buildSTUN(t, stun.TransactionID, stun.BindingSuccess, stun.Fingerprint).Raw, outcome: STUNResponse},
		{name: "error response", data: buildSTUN(t, stun.TransactionID, stun.BindingError, stun.CodeBadRequest).Raw, outcome: STUNResponse},
		{name: "allocate request", data: buildSTUN(t, stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.Fingerprint).Raw, outcome: STUNBadRequest, code: stun.CodeBadRequest},
		{name: "unknown method", data: buildSTUN(t, stun.TransactionID, stun.NewType(0x0ff, stun.ClassRequest)).Raw, outcome: STUNBadRequest, code: stun.CodeBadRequest},
		{
			name: "unknown attributes",
			data: buildSTUN(t, stun.TransactionID, stun.BindingRequest,
				stun.RawAttribute{Type: 0x7f01, Value: []byte{1, 2, 3}},
				stun.RawAttribute{Type: 0x9f02, Value: []byte{1}}, // comprehension-optional: ignored
				stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 6}},
				stun.RawAttribute{Type: 0x7f01, Value: nil}, // listed once
				stun.Fingerprint).Raw,
			outcome: STUNUnknownAttribute, code: stun.CodeUnknownAttribute,
			unknown: []stun.AttrType{0x7f01, stun.AttrChangeRequest},
		},
		{
			name: "unknown attribute after MESSAGE-INTEGRITY ignored",
			data: buildSTUN(t, stun.TransactionID, stun.BindingRequest, stun.NewUsername("u"),
				stun.NewShortTermIntegrity("pw"), stun.RawAttribute{Type: 0x7f01, Value: []byte{1}}).Raw,
			outcome: STUNBinding,
		},
		{
			name: "known attributes",
			data: buildSTUN(t, stun.TransactionID, stun.BindingRequest, stun.NewUsername("u"), stun.NewRealm("r"),
				stun.NewNonce("n"), stun.NewSoftware("s"), stun.Fingerprint).Raw,
			outcome: STUNBinding,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, outcome := HandleSTUN(tt.data, stunFrom)
			if outcome != tt.outcome {
				t.Fatalf("outcome %q, want %q", outcome, tt.outcome)
			}
			switch {
			case tt.outcome == STUNBinding:
				if reply == nil {
					t.Fatal("no reply")
				}
				decodeSTUNReply(t, tt.data, reply)
			case tt.code == 0:
				if reply != nil {
					t.Fatalf("replied %x", reply)
				}
			default:
				if reply == nil {
					t.Fatal("no reply")
				}
				res := decodeSTUNReply(t, tt.data, reply)
				if res.Type.Class != stun.ClassErrorResponse {
					t.Errorf("type %v", res.Type)
				}
				var req stun.Message
				_ = stun.Decode(tt.data, &req)
				if res.Type.Method != req.Type.Method {
					t.Errorf("method %v, want the request's %v", res.Type.Method, req.Type.Method)
				}
				if got := stunErrorCode(t, res); got != tt.code {
					t.Errorf("ERROR-CODE %d, want %d", got, tt.code)
				}
				if tt.unknown != nil {
					if got := rfcUnknownAttributes(t, res); !slices.Equal(got, tt.unknown) {
						t.Errorf("UNKNOWN-ATTRIBUTES %v, want %v", got, tt.unknown)
					}
				}
			}
		})
	}
}

func TestHandleSTUNManyUnknownAttributes(t *testing.T) {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	for i := range 500 {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrType(0x4000 + i)})
	}
	req := buildSTUN(t, setters...)
	reply, outcome := HandleSTUN(req.Raw, stunFrom)
	if outcome != STUNUnknownAttribute {
		t.Fatalf("outcome %q", outcome)
	}
	if got := rfcUnknownAttributes(t, decodeSTUNReply(t, req.Raw, reply)); len(got) != maxUnknownAttrs {
		t.Errorf("%d unknown attributes listed, want %d", len(got), maxUnknownAttrs)
	}
}

func TestHandleSTUNNoAddress(t *testing.T) {
	req := buildSTUN(t, stun.TransactionID, stun.BindingRequest)
	for _, from := range []net.Addr{nil, (*net.UDPAddr)(nil), &net.UnixAddr{Name: "@x", Net: "unixgram"}} {
		reply, outcome := HandleSTUN(req.Raw, from)
		if outcome != STUNServerError || stunErrorCode(t, decodeSTUNReply(t, req.Raw, reply)) != stun.CodeServerError {
			t.Errorf("from %#v: outcome %q", from, outcome)
		}
	}
	// Another net.Addr with an ip:port form is mapped.
	reply, outcome := HandleSTUN(req.Raw, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 7})
	var xa stun.XORMappedAddress
	if outcome != STUNBinding || xa.GetFrom(decodeSTUNReply(t, req.Raw, reply)) != nil || xa.String() != "10.1.2.3:7" {
		t.Errorf("tcp addr: outcome %q, mapped %v", outcome, xa)
	}
}

func TestIsSTUN(t *testing.T) {
	binding := buildSTUN(t, stun.TransactionID, stun.BindingRequest).Raw
	indication := buildSTUN(t, stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication)).Raw
	for _, tt := range []struct {
		data []byte
		want bool
	}{
		{binding, true},
		{indication, true},
		{binding[:19], false},
		{[]byte(okRegister), false},
		{[]byte("\r\n\r\n"), false},
		{make([]byte, 40), false}, // no magic cookie
		{nil, false},
	} {
		if got := IsSTUN(tt.data); got != tt.want {
			t.Errorf("IsSTUN(%q) = %v", tt.data, got)
		}
	}
}

func FuzzSTUN(f *testing.F) {
	f.Add(buildSTUN(f, stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw)
	f.Add(buildSTUN(f, stun.TransactionID, stun.BindingRequest).Raw)
	f.Add(buildSTUN(f, stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication)).Raw)
	f.Add(buildSTUN(f, stun.TransactionID, stun.BindingRequest, stun.RawAttribute{Type: 0x7f01, Value: []byte{1}}, stun.Fingerprint).Raw)
	f.Add(buildSTUN(f, stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.NewUsername("u"), stun.NewShortTermIntegrity("p"), stun.Fingerprint).Raw)
	f.Add([]byte(okRegister))
	// Method 0x3c1: valid STUN that the demux (IsSTUN) does not route here, answered 400 all
	// the same; the answer's first byte is 0x31.
	f.Add([]byte("0A\x00\x00!\x12\xa4B000000000000"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, from := range []net.Addr{stunFrom, &net.UDPAddr{IP: net.ParseIP("2001:db8::2"), Port: 9}} {
			reply, outcome := HandleSTUN(data, from)
			switch outcome {
			case STUNBinding, STUNUnknownAttribute, STUNBadRequest:
				if reply == nil {
					t.Fatalf("%s without a reply", outcome)
				}
			case STUNIndication, STUNBadFingerprint, STUNMalformed, STUNResponse:
				if reply != nil {
					t.Fatalf("%s with a reply", outcome)
				}
			default:
				t.Fatalf("outcome %q", outcome)
			}
			if reply == nil {
				continue
			}
			if !stun.IsMessage(reply) || reply[0]&0xc0 != 0 {
				t.Fatalf("reply is not STUN: %x", reply)
			}
			res := new(stun.Message)
			if err := stun.Decode(reply, res); err != nil {
				t.Fatalf("reply does not decode: %v", err)
			}
			if !bytes.Equal(res.TransactionID[:], data[8:20]) {
				t.Fatalf("transaction id %x, want %x", res.TransactionID, data[8:20])
			}
			if err := stun.Fingerprint.Check(res); err != nil {
				t.Fatalf("reply FINGERPRINT: %v", err)
			}
			if c := res.Type.Class; c != stun.ClassSuccessResponse && c != stun.ClassErrorResponse {
				t.Fatalf("reply class %v", c)
			}
		}
	})
}

// --- GuardConn with a real sipgo server and real STUN clients on the same socket.

// hookLog records what GuardConn's hooks report.
type hookLog struct {
	mu         sync.Mutex
	outcomes   []string
	keepalives []string // kind + " " + remote
}

func (h *hookLog) onSTUN(outcome string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.outcomes = append(h.outcomes, outcome)
}

func (h *hookLog) onKeepalive(remote net.Addr, kind string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keepalives = append(h.keepalives, kind+" "+remote.String())
}

// waitFor polls until the hooks have seen outcome (and keepalive, when not "").
func (h *hookLog) waitFor(t *testing.T, outcome, keepalive string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		h.mu.Lock()
		ok := (outcome == "" || slices.Contains(h.outcomes, outcome)) && (keepalive == "" || slices.Contains(h.keepalives, keepalive))
		seen := strings.Join(h.outcomes, ",") + " / " + strings.Join(h.keepalives, ",")
		h.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hooks did not report %q / %q; saw %s", outcome, keepalive, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *hookLog) keepaliveCount(kind string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, k := range h.keepalives {
		if strings.HasPrefix(k, kind+" ") {
			n++
		}
	}
	return n
}

// startGuardedSIP serves a sipgo server (answering OPTIONS 200) on a GuardConn over a UDP
// socket on network's loopback, with two read loops as simpled runs.
func startGuardedSIP(t *testing.T, network, addr string) (*GuardConn, *hookLog) {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("%s %s: %v", network, addr, err)
	}
	log := zap.NewNop()
	if testing.Verbose() {
		log = zaptest.NewLogger(t)
	}
	g := NewGuardConn(pc, log)
	h := &hookLog{}
	g.OnSTUN = h.onSTUN
	g.OnKeepalive = h.onKeepalive
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("guard-test"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	done := make(chan struct{}, 2)
	for range 2 {
		go func() { _ = srv.ServeUDP(g); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		_ = ua.Close()
		_ = pc.Close()
		for range 2 {
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				t.Error("ServeUDP did not return after the socket closed")
			}
		}
	})
	return g, h
}

// guardClient is a connected UDP socket towards the guarded server.
type guardClient struct {
	t    *testing.T
	conn net.Conn
	seq  int
}

func newGuardClient(t *testing.T, network string, server net.Addr) *guardClient {
	t.Helper()
	c, err := net.Dial(network, server.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &guardClient{t: t, conn: c}
}

func (c *guardClient) send(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next datagram, or nil after d.
func (c *guardClient) read(d time.Duration) []byte {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 65535)
	n, err := c.conn.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		c.t.Fatalf("read: %v", err)
	}
	return buf[:n]
}

// stunRoundTrip sends req and returns the decoded answer.
func (c *guardClient) stunRoundTrip(req *stun.Message) *stun.Message {
	c.t.Helper()
	c.send(req.Raw)
	reply := c.read(3 * time.Second)
	if reply == nil {
		c.t.Fatal("no STUN answer")
	}
	return decodeSTUNReply(c.t, req.Raw, reply)
}

// expectSilence asserts that nothing comes back within a short while.
func (c *guardClient) expectSilence() {
	c.t.Helper()
	if reply := c.read(300 * time.Millisecond); reply != nil {
		c.t.Fatalf("unexpected answer: %q", reply)
	}
}

// options sends an OPTIONS request from this socket and expects sipgo's 200.
func (c *guardClient) options() {
	c.t.Helper()
	c.seq++
	local := c.conn.LocalAddr().String()
	branch := "z9hG4bKguard" + time.Now().Format("150405.000000000")
	msg := "OPTIONS sip:guard@example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=" + branch + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:probe@example.test>;tag=p1\r\n" +
		"To: <sip:guard@example.test>\r\n" +
		"Call-ID: guard-" + branch + "\r\n" +
		"CSeq: " + strconv.Itoa(c.seq) + " OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
	c.send([]byte(msg))
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		res := c.read(time.Until(deadline))
		if res == nil {
			break
		}
		if IsSTUN(res) {
			c.t.Fatalf("STUN datagram while waiting for the OPTIONS answer: %x", res)
		}
		if strings.HasPrefix(string(res), "SIP/2.0 200 ") && strings.Contains(string(res), branch) {
			return
		}
	}
	c.t.Fatal("OPTIONS not answered 200 by sipgo behind the guard")
}

func TestGuardConnSTUN(t *testing.T) {
	g, h := startGuardedSIP(t, "udp4", "127.0.0.1:0")
	server := g.LocalAddr()

	t.Run("pion client binding", func(t *testing.T) {
		conn, err := net.Dial("udp4", server.String())
		if err != nil {
			t.Fatal(err)
		}
		client, err := stun.NewClient(conn)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		var (
			res    stun.Event
			doneCh = make(chan struct{})
		)
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if err := client.Do(req, func(e stun.Event) { res = e; close(doneCh) }); err != nil {
			t.Fatal(err)
		}
		<-doneCh
		if res.Error != nil {
			t.Fatalf("binding: %v", res.Error)
		}
		if res.Message.Type != stun.BindingSuccess {
			t.Fatalf("type %v", res.Message.Type)
		}
		if err := stun.Fingerprint.Check(res.Message); err != nil {
			t.Errorf("FINGERPRINT: %v", err)
		}
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(res.Message); err != nil {
			t.Fatal(err)
		}
		if xa.String() != conn.LocalAddr().String() {
			t.Errorf("XOR-MAPPED-ADDRESS %v, want the client's %v", xa, conn.LocalAddr())
		}
		h.waitFor(t, STUNBinding, KeepaliveSTUN+" "+conn.LocalAddr().String())
	})

	c := newGuardClient(t, "udp4", server)
	t.Run("binding and SIP on one socket", func(t *testing.T) {
		c.options()
		res := c.stunRoundTrip(buildSTUN(t, stun.TransactionID, stun.BindingRequest, stun.Fingerprint))
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(res); err != nil || xa.String() != c.conn.LocalAddr().String() {
			t.Errorf("XOR-MAPPED-ADDRESS %v (%v), want %v", xa, err, c.conn.LocalAddr())
		}
		c.options()
	})

	t.Run("bad fingerprint", func(t *testing.T) {
		before := g.STUNDiscarded()
		req := buildSTUN(t, stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		req.Raw[len(req.Raw)-2] ^= 0xff
		c.send(req.Raw)
		c.expectSilence()
		h.waitFor(t, STUNBadFingerprint, "")
		if g.STUNDiscarded() != before+1 {
			t.Errorf("STUNDiscarded %d, want %d", g.STUNDiscarded(), before+1)
		}
		c.options()
	})

	t.Run("unknown comprehension-required attribute", func(t *testing.T) {
		res := c.stunRoundTrip(buildSTUN(t, stun.TransactionID, stun.BindingRequest,
			stun.RawAttribute{Type: 0x7f33, Value: []byte("x")}, stun.Fingerprint))
		if res.Type != stun.BindingError || stunErrorCode(t, res) != stun.CodeUnknownAttribute {
			t.Fatalf("answer %v", res)
		}
		if got := rfcUnknownAttributes(t, res); !slices.Equal(got, []stun.AttrType{0x7f33}) {
			t.Errorf("UNKNOWN-ATTRIBUTES %v, want [0x7f33]", got)
		}
		h.waitFor(t, STUNUnknownAttribute, "")
	})

	t.Run("unknown method", func(t *testing.T) {
		res := c.stunRoundTrip(buildSTUN(t, stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest), stun.Fingerprint))
		if res.Type != stun.NewType(stun.MethodRefresh, stun.ClassErrorResponse) || stunErrorCode(t, res) != stun.CodeBadRequest {
			t.Fatalf("answer %v", res)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		full := buildSTUN(t, stun.TransactionID, stun.BindingRequest, stun.NewSoftware("truncate me"), stun.Fingerprint).Raw
		before := g.STUNDiscarded()
		c.send(full[:len(full)-6]) // cut inside FINGERPRINT: length field disagrees
		bad := bytes.Clone(full)
		binary.BigEndian.PutUint16(bad[22:24], 0xff0) // SOFTWARE runs past the end
		c.send(bad)
		c.expectSilence()
		c.options()
		if g.STUNDiscarded() != before+2 {
			t.Errorf("STUNDiscarded %d, want %d", g.STUNDiscarded(), before+2)
		}
	})

	t.Run("indication is a keepalive", func(t *testing.T) {
		before := h.keepaliveCount(KeepaliveSTUN)
		c.send(buildSTUN(t, stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication), stun.Fingerprint).Raw)
		c.expectSilence()
		h.waitFor(t, STUNIndication, KeepaliveSTUN+" "+c.conn.LocalAddr().String())
		if n := h.keepaliveCount(KeepaliveSTUN); n <= before {
			t.Errorf("stun keepalives %d, want more than %d", n, before)
		}
	})

	t.Run("crlf keepalive", func(t *testing.T) {
		c.send([]byte("\r\n\r\n"))
		c.send([]byte("\r\n\r\n\r\n\r\n")) // above sipgo's 4-byte keepalive check
		c.expectSilence()
		h.waitFor(t, "", KeepaliveCRLF+" "+c.conn.LocalAddr().String())
		deadline := time.Now().Add(3 * time.Second)
		for h.keepaliveCount(KeepaliveCRLF) < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := h.keepaliveCount(KeepaliveCRLF); n != 2 {
			t.Errorf("crlf keepalives %d, want 2", n)
		}
		c.options()
	})

	if g.Rejected() != 0 {
		t.Errorf("guard rejected %d datagrams: STUN must not reach Check", g.Rejected())
	}
}

func TestGuardConnSTUNIPv6(t *testing.T) {
	g, _ := startGuardedSIP(t, "udp6", "[::1]:0")
	c := newGuardClient(t, "udp6", g.LocalAddr())
	res := c.stunRoundTrip(buildSTUN(t, stun.TransactionID, stun.BindingRequest, stun.Fingerprint))
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(res); err != nil {
		t.Fatal(err)
	}
	local := c.conn.LocalAddr().(*net.UDPAddr)
	if !xa.IP.Equal(local.IP) || xa.Port != local.Port || len(xa.IP) != net.IPv6len {
		t.Errorf("XOR-MAPPED-ADDRESS %v, want %v (IPv6)", xa, local)
	}
	c.options()
}
