package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/simpled/simpled/auth"
)

const response = "SIP/2.0 401 Unauthorized\r\n" +
	"v: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKL1f.2.3a.1, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKy\r\n" +
	"f: <sip:u000001@example.test>;tag=abc\r\n" +
	"To:   <sip:u000001@example.test> ;tag=srv1 \r\n" +
	"i: 1f.2.3a@load\r\n" +
	"CSeq: 1 REGISTER\r\n" +
	"WWW-Authenticate: Digest realm=\"example.test\", nonce=\"n1\", qop=\"auth,auth-int\", algorithm=MD5, opaque=\"op\"\r\n" +
	"Contact: <sip:srv@127.0.0.1:5060;transport=udp>\r\n" +
	"SIP-ETag: et1\r\n" +
	"Content-Length: 0\r\n\r\n"

func TestParseResponse(t *testing.T) {
	var m sipMsg
	if !parse([]byte(response), &m) {
		t.Fatal("the response did not parse")
	}
	if m.request || m.status != 401 || m.nvia != 2 {
		t.Fatalf("status %d request %v vias %d", m.status, m.request, m.nvia)
	}
	if got := string(param(m.topVia(), "branch")); got != "z9hG4bKL1f.2.3a.1" {
		t.Errorf("top branch %q", got)
	}
	if got := string(param(m.to, "tag")); got != "srv1" {
		t.Errorf("To tag %q", got)
	}
	if got := string(uriOf(m.contact)); got != "sip:srv@127.0.0.1:5060;transport=udp" {
		t.Errorf("contact URI %q", got)
	}
	if string(m.etag) != "et1" || string(m.cseqMethod()) != "REGISTER" || string(m.callID) != "1f.2.3a@load" {
		t.Errorf("etag %q cseq %q call-id %q", m.etag, m.cseqMethod(), m.callID)
	}
	r, ok := parseBranch(param(m.topVia(), "branch"))
	if !ok || r != (ref{run: 0x1f, sock: 2, call: 0x3a, txn: 1}) {
		t.Errorf("branch ref %+v %v", r, ok)
	}
	ch, ok := parseChallenge(m.authn)
	if !ok || string(ch.realm) != "example.test" || string(ch.nonce) != "n1" || !ch.qopAuth || !ch.md5 || string(ch.opaque) != "op" {
		t.Errorf("challenge %+v %v", ch, ok)
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{
		"",
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: 1 X\r\n", // no empty line
		"SIP/2.0 99 Low\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: 1 X\r\n\r\n",
		"SIP/2.0 2x0 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: 1 X\r\n\r\n",
		"SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: 1 X\r\n\r\n", // no Via
		"NOTIFY sip:a@b HTTP/1.1\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: 1 X\r\n\r\n",
		"SIP/2.0 200 OK\r\nVia SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: 1 X\r\n\r\n", // no colon
		"SIP/2.0 200 OK\r\n" + strings.Repeat("Via: SIP/2.0/UDP h\r\n", maxVias+1) + "Call-ID: x\r\nCSeq: 1 X\r\n\r\n",
	} {
		var m sipMsg
		if parse([]byte(s), &m) {
			t.Errorf("accepted %q", s)
		}
	}
	for _, b := range []string{"z9hG4bKL1.2.3", "z9hG4bKL1.2.3.4.5", "z9hG4bKL1.2.3.10000", "z9hG4bKL1..3.4", "z9hG4bKLg.2.3.4", "z9hG4bKX1.2.3.4", "z9hG4bKL123456789.1.1.1"} {
		if r, ok := parseBranch([]byte(b)); ok {
			t.Errorf("branch %q read as %+v", b, r)
		}
	}
}

func TestRefsRoundTrip(t *testing.T) {
	r := ref{run: 0xdeadbeef, sock: 17, call: 1234567, txn: 65535}
	got, ok := parseBranch(appendBranch(nil, r))
	if !ok || got != r {
		t.Errorf("branch round trip %+v %v", got, ok)
	}
	got, ok = parseCallID(appendCallID(nil, r))
	if !ok || got != (ref{run: r.run, sock: r.sock, call: r.call}) {
		t.Errorf("call-id round trip %+v %v", got, ok)
	}
}

func TestUsersAndPasswords(t *testing.T) {
	// as bench/sipp/gen-users.sh writes them
	for _, c := range []struct {
		p          pool
		i          int
		name, pass string
	}{{poolUsers, 0, "u000001", "pw000001"}, {poolUsers, 19999, "u020000", "pw020000"}, {poolCallees, 0, "c00001", "pwc00001"}} {
		if got := string(appendUser(nil, c.p, c.i)); got != c.name {
			t.Errorf("user %d: %q, want %q", c.i, got, c.name)
		}
		if got := password(c.p, c.i); got != c.pass {
			t.Errorf("password %d: %q, want %q", c.i, got, c.pass)
		}
	}
}

// testWorker is a worker with no socket, for the builders.
func testWorker(t *testing.T, scenario string) (*worker, *call) {
	t.Helper()
	cfg := &config{domain: "example.test", users: 20000, callees: 1000, presentities: 2000, sockets: 4, drain: time.Second}
	ph := newPhase(cfg, scenario, 1000, 100)
	ph.run = 0xabc
	w := &worker{ph: ph, k: 1, laddr: "127.0.0.1:15062", calls: make([]call, 10)}
	c := &w.calls[3]
	c.txn = 1
	return w, c
}

// sipgoParse parses b with sipgo's parser, which simpled uses: every request the generator
// sends must be one it takes.
func sipgoParse(t *testing.T, b []byte) *sip.Request {
	t.Helper()
	msg, err := sip.ParseMessage(b)
	if err != nil {
		t.Fatalf("sipgo rejects %q: %v", b, err)
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("not a request: %q", b)
	}
	return req
}

func TestBuildRequests(t *testing.T) {
	w, c := testWorker(t, "register")
	req := sipgoParse(t, buildRegister(w, nil, 3, c))
	// socket 1 of 4, its 4th call: member 1 + 4*3 = 13, u000014, Contact at the socket
	if req.Method != sip.REGISTER || req.Recipient.String() != "sip:example.test" ||
		req.From().Address.User != "u000014" || req.Contact().Address.Host != "127.0.0.1" || req.Contact().Address.Port != 15062 {
		t.Errorf("REGISTER: %s", req)
	}
	if b := req.Via().Params.GetOr("branch", ""); b != "z9hG4bKLabc.1.3.1" {
		t.Errorf("branch %q", b)
	}

	w, c = testWorker(t, "publish")
	c.state = st1
	c.dlg = &dialog{etag: []byte("e42")}
	req = sipgoParse(t, buildPublish(w, nil, 3, c))
	if h := req.GetHeader("SIP-If-Match"); h == nil || h.Value() != "e42" || req.CSeq().SeqNo != 2 ||
		!bytes.Contains(req.Body(), []byte("<note>Away</note>")) {
		t.Errorf("PUBLISH modify: %s", req)
	}

	w, c = testWorker(t, "subscribe")
	c.state = st2
	c.dlg = &dialog{toTag: []byte("srv"), target: []byte("sip:srv@127.0.0.1:5060")}
	req = sipgoParse(t, buildSubscribe(w, nil, 3, c))
	if req.Recipient.String() != "sip:srv@127.0.0.1:5060" || req.To().Params.GetOr("tag", "") != "srv" ||
		req.GetHeader("Expires").Value() != "0" || req.From().Address.User != "w13" {
		t.Errorf("un-SUBSCRIBE: %s", req)
	}

	w, c = testWorker(t, "message")
	req = sipgoParse(t, buildMessage(w, nil, 3, c))
	if req.To().Address.User != "c00014" || !strings.HasPrefix(string(req.Body()), "Hello c00014,") {
		t.Errorf("MESSAGE: %s", req)
	}
}

// TestDigestRFC2617 checks the response against RFC 2617 §3.5's example.
func TestDigestRFC2617(t *testing.T) {
	ch := challenge{realm: []byte("testrealm@host.com"), nonce: []byte("dcd98b7102dd2f0e8b11d0f600bfb0c093"), qopAuth: true, md5: true}
	got := digestResponse(&ch, []byte("Mufasa"), []byte("Circle Of Life"), []byte("GET"), []byte("/dir/index.html"),
		[]byte("00000001"), []byte("0a4f113b"))
	if string(got[:]) != "6629fae49393a05397450978507c4ef1" {
		t.Errorf("response %s", got)
	}
}

// TestDigestVerifiedByAuth checks the Authorization header with simpled's own auth package,
// with and without qop.
func TestDigestVerifiedByAuth(t *testing.T) {
	for _, qop := range []bool{true, false} {
		ch := challenge{realm: []byte("example.test"), nonce: []byte("abc123"), opaque: []byte("o"), qopAuth: qop, md5: true}
		h := appendAuthorization(nil, &ch, []byte("u000001"), []byte("pw000001"), []byte("sip:example.test"), []byte("c1"))
		v := strings.TrimSuffix(strings.TrimPrefix(string(h), "Authorization: "), "\r\n")
		cr, err := auth.ParseCredentials(v)
		if err != nil {
			t.Fatalf("auth rejects %q: %v", v, err)
		}
		if err := cr.Validate(); err != nil {
			t.Errorf("invalid credentials %q: %v", v, err)
		}
		if !cr.Verify(auth.HA1(auth.MD5, "u000001", "example.test", "pw000001"), "REGISTER", nil) {
			t.Errorf("qop %v: simpled does not accept %q", qop, v)
		}
		if cr.Verify(auth.HA1(auth.MD5, "u000001", "example.test", "wrong"), "REGISTER", nil) {
			t.Errorf("qop %v: accepted with a wrong password", qop)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h hist
	if h.quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
	for i := 1; i <= 1000; i++ { // 1..1000 ms
		h.add(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}} {
		got := h.quantile(c.q)
		if got < c.want || got > c.want*1.035 {
			t.Errorf("q%g = %g ms, want %g (+3.5 %%)", c.q, got, c.want)
		}
	}
	var small hist
	small.add(40 * time.Microsecond)
	small.add(-time.Second) // a clock that went back counts as 0
	h.merge(&small)
	if h.n != 1002 || h.max != 1000000 {
		t.Errorf("merge: n %d max %d", h.n, h.max)
	}
	if got := small.quantile(1); got != 0.04 {
		t.Errorf("exact below 64 µs: %g ms", got)
	}
	for i := 0; i < histBuckets; i++ { // buckets are contiguous
		if i > 0 && histIndex(histUpper(i-1)+1) != i {
			t.Fatalf("bucket %d does not start after %d's end", i, i-1)
		}
	}
	if histIndex(math.MaxInt64) != histBuckets-1 {
		t.Error("a huge value is not in the last bucket")
	}
}

// startResponder serves the responder on a free loopback port until the test ends.
func startResponder(t *testing.T, opts respondOpts) string {
	t.Helper()
	conns, err := listenReusePort("127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, len(conns))
	for _, c := range conns {
		go func() { newServer(c, opts, 16).serve(); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		closeAll(conns)
		for range conns {
			<-done
		}
	})
	return conns[0].LocalAddr().String()
}

func testConfig(t *testing.T, target, scenario string, rate float64, d time.Duration) *config {
	t.Helper()
	cfg, err := parseFlags([]string{"-target", target, "-scenario", scenario, "-rate", fmtFloat(rate), "-duration", d.String(),
		"-users", "200", "-callees", "50", "-presentities", "100", "-setup-rate", "1000"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// TestAgainstResponder runs every scenario against the responder at 500 calls/s for 1 s:
// every call must succeed, none be retransmitted, and the summary say so.
func TestAgainstResponder(t *testing.T) {
	plain := startResponder(t, respondOpts{notify: true})
	withAuth := startResponder(t, respondOpts{auth: true, notify: true})
	for _, scen := range scenarios {
		t.Run(scen, func(t *testing.T) {
			target := plain
			if scen == "register_auth" {
				target = withAuth
			}
			res, err := generate(context.Background(), testConfig(t, target, scen, 500, time.Second), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			st := res.st
			if st.created != 500 || st.ok != 500 || st.failed != 0 || st.calls.n != 500 {
				t.Errorf("created %d ok %d failed %d (codes %v)", st.created, st.ok, st.failed, st.codes)
			}
			if res.setupName != "" && res.setup.ok != res.setupCalls {
				t.Errorf("setup %s: %d of %d", res.setupName, res.setup.ok, res.setupCalls)
			}
			s := res.summary()
			if !strings.HasPrefix(s, "LOAD-SUMMARY scenario="+scen+" ") || !strings.Contains(s, " ok=500 failed=0 ") {
				t.Errorf("summary %q", s)
			}
		})
	}
}

// TestRetransmissions: a server that answers only every second copy of a request makes each
// call succeed after one retransmission; one that never answers makes every call fail when
// Timer F runs out, after a few retransmissions.
func TestRetransmissions(t *testing.T) {
	half, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	go func() {
		seen := map[string]bool{}
		buf := make([]byte, 65536)
		for {
			n, from, err := half.ReadFromUDP(buf)
			if err != nil {
				return
			}
			var m sipMsg
			if !parse(buf[:n], &m) {
				continue
			}
			br := string(param(m.topVia(), "branch"))
			if !seen[br] {
				seen[br] = true
				continue
			}
			_, _ = half.WriteToUDP(appendEnd(appendAnswer(nil, &m, 200, "OK", "x"), nil), from)
		}
	}()
	cfg := testConfig(t, half.LocalAddr().String(), "register", 100, 500*time.Millisecond)
	cfg.t1, cfg.t2 = 20*time.Millisecond, 80*time.Millisecond
	res, err := generate(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if st := res.st; st.ok != 50 || st.failed != 0 || st.retrans < 50 {
		t.Errorf("every second copy answered: ok %d failed %d retrans %d", st.ok, st.failed, st.retrans)
	}

	mute, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	cfg = testConfig(t, mute.LocalAddr().String(), "register", 100, 200*time.Millisecond)
	cfg.t1, cfg.t2, cfg.timerF = 20*time.Millisecond, 80*time.Millisecond, 200*time.Millisecond
	res, err = generate(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// sends at 0, 20, 60, 140 ms (at the earliest) within Timer F's 200 ms
	if st := res.st; st.ok != 0 || st.failed != 20 || st.timeouts != 20 || st.retrans < 20 || st.retrans > 60 {
		t.Errorf("never answered: ok %d failed %d timeouts %d retrans %d", st.ok, st.failed, st.timeouts, st.retrans)
	}
}
