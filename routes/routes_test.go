package routes

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/simpled/simpled/auth"

	"github.com/emiago/sipgo/sip"
)

func request(t *testing.T, text string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(strings.ReplaceAll(text, "\n", "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

func req(t *testing.T, method, ruri, toTag, event string) *sip.Request {
	t.Helper()
	msg := method + " " + ruri + " SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\n" +
		"From: <sip:a@example.test>;tag=1\nTo: <" + ruri + ">" + toTag + "\nCall-ID: c\nCSeq: 1 " + method + "\n"
	if event != "" {
		msg += "Event: " + event + "\n"
	}
	return request(t, msg+"Content-Length: 0\n\n")
}

// The first rule whose every condition holds wins; dialogs never match.
func TestMatch(t *testing.T) {
	tbl, err := New([]Rule{
		{Match: Match{Method: []string{"SUBSCRIBE"}, Event: "message-summary"}, To: []string{"sip:192.0.2.5"}},
		{Match: Match{User: "^1[0-9]{3}$", Domain: "example.test"}, To: []string{"sip:192.0.2.6:5080"}},
		{Match: Match{Domain: "*.pbx.test", Method: []string{"invite", "MESSAGE"}}, To: []string{"sip:192.0.2.7"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name                  string
		method, ruri, tag, ev string
		want                  int // rule index, -1 none
	}{
		{"extension", "INVITE", "sip:1001@example.test", "", "", 1},
		{"extension, domain case", "MESSAGE", "sip:1001@EXAMPLE.test", "", "", 1},
		{"five digits", "INVITE", "sip:10011@example.test", "", "", -1},
		{"user regexp anchored as written", "INVITE", "sip:x1001@example.test", "", "", -1},
		{"other domain", "INVITE", "sip:1001@other.test", "", "", -1},
		{"MWI before the extension rule", "SUBSCRIBE", "sip:1001@example.test", "", "message-summary;id=1", 0},
		{"presence is not MWI", "SUBSCRIBE", "sip:alice@example.test", "", "presence", -1},
		{"no Event", "SUBSCRIBE", "sip:alice@example.test", "", "", -1},
		{"suffix", "INVITE", "sip:bob@a.pbx.test", "", "", 2},
		{"suffix itself is not under it", "INVITE", "sip:bob@pbx.test", "", "", -1},
		{"method not listed", "OPTIONS", "sip:bob@a.pbx.test", "", "", -1},
		{"in a dialog", "INVITE", "sip:1001@example.test", ";tag=x", "", -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := tbl.Match(req(t, c.method, c.ruri, c.tag, c.ev))
			got := -1
			if r != nil {
				got = r.Index
			}
			if got != c.want {
				t.Errorf("rule %d, want %d", got, c.want)
			}
		})
	}
	var none *Table
	if none.Routed(req(t, "INVITE", "sip:1001@example.test", "", "")) {
		t.Error("a nil table routes")
	}
}

func TestHopAddrs(t *testing.T) {
	tbl, err := New([]Rule{{To: []string{"sip:192.0.2.5:5080", "sip:pbx.example.test", "sips:[2001:db8::1]"}},
		{To: []string{"sip:192.0.2.5:5090;transport=tcp"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.5"), netip.MustParseAddr("2001:db8::1")}
	if got := tbl.HopAddrs(); !reflect.DeepEqual(got, want) {
		t.Errorf("HopAddrs %v, want %v (names are not resolved)", got, want)
	}
}

// Answer computes credentials the next hop verifies: SHA-256 preferred over MD5 when both
// are offered, qop auth, the forwarded request's method and Request-URI; a 407 gets
// Proxy-Authorization.
func TestAnswer(t *testing.T) {
	r := req(t, "INVITE", "sip:1001@example.test", "", "")
	c := Credentials{Username: "trunk", Password: "pw"}
	for _, tc := range []struct {
		code       int
		in, out    string
		challenges []string
		alg        string
	}{
		{401, "WWW-Authenticate", "Authorization", []string{`Digest realm="pbx", nonce="n1", algorithm=MD5, qop="auth"`, `Digest realm="pbx", nonce="n2", algorithm=SHA-256, qop="auth,auth-int"`}, "SHA-256"},
		{407, "Proxy-Authenticate", "Proxy-Authorization", []string{`Digest realm="pbx", nonce="n1", opaque="o"`}, "MD5"},
	} {
		res := sip.NewResponseFromRequest(r, tc.code, "", nil)
		for _, ch := range tc.challenges {
			res.AppendHeader(sip.NewHeader(tc.in, ch))
		}
		h, err := c.Answer(res, r)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name() != tc.out {
			t.Errorf("header %s, want %s", h.Name(), tc.out)
		}
		cr, err := auth.ParseCredentials(h.Value())
		if err != nil {
			t.Fatal(err)
		}
		alg, _ := auth.ParseAlgorithm(cr.Algorithm)
		if cr.Algorithm != tc.alg || cr.URI != "sip:1001@example.test" || !cr.Verify(auth.HA1(alg, "trunk", "pbx", "pw"), "INVITE", nil) {
			t.Errorf("%d: credentials %+v do not verify with %s", tc.code, cr, tc.alg)
		}
	}
	res := sip.NewResponseFromRequest(r, 401, "", nil)
	res.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="pbx", nonce="n", qop="auth-int"`))
	if _, err := c.Answer(res, r); err == nil {
		t.Error("an auth-int-only challenge was answered")
	}
}
