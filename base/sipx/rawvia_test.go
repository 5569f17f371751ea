package sipx

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// viaSamples are Via values as clients send them: common ones sipgo prints back unchanged,
// and the odd ones RFC 4475 and RFC 5118 send.
var viaSamples = []string{
	"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport",
	"SIP/2.0/TCP client.example.test;branch=z9hG4bKx;received=192.0.2.9;rport=5070",
	"SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks",
	"SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
	"SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111",
	"SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19",
	"SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111",
	"SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3",
	"SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
	"SIP/2.0/UDP 192.0.2.2;branch=\"z9hG4bK quoted\"",
	"SIP/2.0/UDP 192.0.2.2;branch=\"z9hG4bKq\"",
	"SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw",
	"SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8",
	"SIP/2.0/UDP 192.0.2.15;;",
	"sip/2.0/udp Host.Example.COM;BRANCH=z9hG4bKcase",
}

// TestViaPrints: the walk that decides whether a Via needs its received text kept agrees with
// what sipgo prints, for common and odd values alike.
func TestViaPrints(t *testing.T) {
	for _, raw := range viaSamples {
		checkViaPrints(t, raw)
	}
}

func checkViaPrints(t *testing.T, raw string) {
	t.Helper()
	h, err := sip.DefaultHeadersParser()["via"]([]byte("via"), raw)
	via, ok := h.(*sip.ViaHeader)
	if err != nil || !ok {
		return
	}
	if got, want := viaPrints(via, raw), via.Value() == raw; got != want {
		t.Errorf("viaPrints(%q) = %v, sipgo prints %q", raw, got, via.Value())
	}
}

func FuzzViaPrints(f *testing.F) {
	for _, s := range viaSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		checkViaPrints(t, raw)
		// Through the parser and back: whatever parses is answered with its text.
		msg := "OPTIONS sip:a@example.test SIP/2.0\r\nVia: " + raw + "\r\nFrom: <sip:b@example.test>;tag=1\r\n" +
			"To: <sip:a@example.test>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
		if !Sanitize(raw) {
			return
		}
		m, err := NewParser(1 << 16).ParseSIP([]byte(msg))
		if err != nil {
			return
		}
		req := m.(*sip.Request)
		res := NewResponse(req, 200, "")
		reqVias, resVias := Headers(req, "Via"), Headers(res, "Via")
		if len(reqVias) != len(resVias) {
			t.Fatalf("%d Vias in, %d out", len(reqVias), len(resVias))
		}
	})
}

// TestResponseViaAsReceived: a response carries the request's Via values as received (RFC 3261
// §8.2.6.2), IPv6 literals, quoted or odd branches and spacing included, with only received and
// the rport value added to the top one.
func TestResponseViaAsReceived(t *testing.T) {
	tests := []struct{ via, want string }{
		{"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport=5070;received=127.0.0.1"},
		{"SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19", "SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19;received=127.0.0.1"},
		{"SIP/2.0/UDP 127.0.0.1:5070;branch=\"z9hG4bKq\"", "SIP/2.0/UDP 127.0.0.1:5070;branch=\"z9hG4bKq\""},
		{"SIP/2.0/UDP 192.0.2.2;branch=390skdjuw", "SIP/2.0/UDP 192.0.2.2;branch=390skdjuw;received=127.0.0.1"},
		{"SIP  / 2.0  / TCP     127.0.0.1   ;  branch  =   z9hG4bK9ikj8 ; rport", "SIP  / 2.0  / TCP     127.0.0.1   ;  branch  =   z9hG4bK9ikj8 ; rport=5070;received=127.0.0.1"},
		{"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa, SIP/2.0/UDP [2001:db8::1];branch=z9hG4bKb", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa|SIP/2.0/UDP [2001:db8::1];branch=z9hG4bKb"},
	}
	for _, tt := range tests {
		msg := "OPTIONS sip:a@example.test SIP/2.0\r\nVia: " + tt.via + "\r\nFrom: <sip:b@example.test>;tag=1\r\n" +
			"To: <sip:a@example.test>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
		m, err := NewParser(1 << 16).ParseSIP([]byte(msg))
		if err != nil {
			t.Fatalf("%q: %v", tt.via, err)
		}
		req := m.(*sip.Request)
		req.SetSource("127.0.0.1:5070")
		var got []string
		for _, h := range Headers(NewResponse(req, 200, ""), "Via") {
			got = append(got, h.Value())
		}
		if strings.Join(got, "|") != tt.want {
			t.Errorf("Via %q answered as\n%q, want\n%q", tt.via, strings.Join(got, "|"), tt.want)
		}
		// sipgo still matches the transaction: the parsed top Via has a magic-cookie branch.
		if _, err := sip.ServerTxKeyMake(req); err != nil {
			t.Errorf("%q: no transaction key: %v", tt.via, err)
		}
	}
}

const benchRequest = "REGISTER sip:example.test SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n" +
	"Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.test>;tag=1928301774\r\n" +
	"To: <sip:alice@example.test>\r\nCall-ID: a84b4c76e66710@pc33.example.test\r\nCSeq: 314159 REGISTER\r\n" +
	"Contact: <sip:alice@192.0.2.1:5060>;expires=3600\r\nContent-Length: 0\r\n\r\n"

// BenchmarkParseRequest: the parser's cost per typical request (Via text kept only when sipgo
// would print it otherwise, address checks).
func BenchmarkParseRequest(b *testing.B) {
	p := NewParser(1 << 16)
	data := []byte(benchRequest)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ParseSIP(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewResponse: building the answer to a typical request.
func BenchmarkNewResponse(b *testing.B) {
	m, err := NewParser(1 << 16).ParseSIP([]byte(benchRequest))
	if err != nil {
		b.Fatal(err)
	}
	req := m.(*sip.Request)
	req.SetSource("192.0.2.1:5060")
	b.ReportAllocs()
	for b.Loop() {
		_ = NewResponse(req, 200, "")
	}
}

func TestPlausibleHost(t *testing.T) {
	for host, want := range map[string]bool{
		"example.test": true, "my_pc.local": true, "192.0.2.1": true, "[2001:db8::1]": true,
		"2001:db8::1": true, "::ffff:192.0.2.10": true,
		"2001:db8:::192.0.2.1": false, "[2001:db8:::192.0.2.1]": false, "": false,
		"TCP     spindle.example.com": false, "a;b": false,
	} {
		if got := PlausibleHost(host); got != want {
			t.Errorf("PlausibleHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestAddressChecks: the From, To and Contact values RFC 4475 calls invalid are kept as plain
// headers (for sanity's 400), the valid odd ones parse.
func TestAddressChecks(t *testing.T) {
	for v, want := range map[string]bool{
		`<sip:a@example.test>;tag=1`:                                   true,
		`"Bell, Alexander" <sip:a.g.bell@example.com>;tag=43`:          true,
		`caller<sip:caller@example.com>;tag=323`:                       true,
		`"J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 9`: true,
		`sip:user@example.com ; tag = 1918181833n`:                     true,
		`token1~` + "`" + ` token2'+_ <sip:mundane@example.com>`:       true,
		`Bell, Alexander <sip:a.g.bell@example.com>;tag=43`:            false,
		`"Watson, Thomas" < sip:t.watson@example.org >`:                false,
		`sip:user@example.com?Route=%3Csip:sip.example.com%3E`:         false,
		`"Mr. J. User <sip:j.user@example.com>`:                        false,
	} {
		if got := validAddress(v); got != want {
			t.Errorf("validAddress(%q) = %v, want %v", v, got, want)
		}
	}
}
