package sipx

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestParseDeltaSeconds(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint32
		wantErr bool
	}{
		{name: "zero", in: "0", want: 0},
		{name: "spaces", in: " 600 ", want: 600},
		{name: "max", in: "4294967295", want: math.MaxUint32},
		{name: "huge clamps", in: "99999999999999999999999", want: math.MaxUint32},
		{name: "negative", in: "-1", wantErr: true},
		{name: "float", in: "1.5", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "letters", in: "abc", wantErr: true},
		{name: "absurdly long", in: strings.Repeat("9", 100), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDeltaSeconds(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func FuzzParseDeltaSeconds(f *testing.F) {
	for _, s := range []string{"0", "600", "4294967296", "-1", " 1 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseDeltaSeconds(s)
		if err != nil {
			return
		}
		// Whatever parsed must be digits whose value (clamped) is v.
		n, perr := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if perr == nil && n <= math.MaxUint32 && uint32(n) != v {
			t.Fatalf("ParseDeltaSeconds(%q) = %d, want %d", s, v, n)
		}
	})
}

func parse(t *testing.T, raw string) *sip.Request {
	t.Helper()
	msg, err := NewParser(1 << 16).ParseSIP([]byte(strings.ReplaceAll(raw, "\n", "\r\n")))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("not a request")
	}
	return req
}

const head = `REGISTER sip:example.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1
Call-ID: c1
CSeq: 1 REGISTER
Max-Forwards: 70
`

func TestLenientParserKeepsMalformedHeaders(t *testing.T) {
	tests := []struct {
		name    string
		headers string
		want    string // Malformed's answer
	}{
		{name: "well formed", headers: "From: <sip:a@example.test>;tag=1\nTo: <sip:a@example.test>\nContact: <sip:a@127.0.0.1>, <sip:a@127.0.0.2>\n", want: ""},
		{name: "bad From", headers: "From: <sip:a@example.test\nTo: <sip:a@example.test>\n", want: "Malformed From"},
		{name: "compact bad To", headers: "From: <sip:a@x>;tag=1\nt: <<<\n", want: "Malformed To"},
		{name: "bad contact uri", headers: "From: <sip:a@x>;tag=1\nTo: <sip:a@x>\nContact: <sip:a@127.0.0.1>, <sip:a@127.0.0.1:notaport>\n", want: "Malformed Contact"},
		{name: "duplicate To", headers: "From: <sip:a@x>;tag=1\nTo: <sip:a@x>\nTo: <sip:b@x>\n", want: "Duplicate To"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := parse(t, head+tt.headers+"\n")
			if got := Malformed(req, "From", "To", "Contact"); got != tt.want {
				t.Errorf("Malformed = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLenientParserKeepsMultiValueContacts(t *testing.T) {
	req := parse(t, head+"From: <sip:a@x>;tag=1\nTo: <sip:a@x>\nm: <sip:a@127.0.0.1>;expires=60, <sip:a@127.0.0.2>\n\n")
	cs := req.GetHeaders("Contact")
	if len(cs) != 2 {
		t.Fatalf("contacts = %d, want 2", len(cs))
	}
	for _, c := range cs {
		if _, ok := c.(*sip.ContactHeader); !ok {
			t.Errorf("contact %q not parsed", c.Value())
		}
	}
}

func TestTokensReadCompactForms(t *testing.T) {
	req := parse(t, head+"From: <sip:a@x>;tag=1\nTo: <sip:a@x>\nk: path, outbound\nSupported: gruu\n\n")
	if !HasToken(req, "Supported", "PATH") || !HasToken(req, "supported", "gruu") {
		t.Errorf("tokens = %v", Tokens(req, "Supported"))
	}
	if got := Unsupported(req, "Supported", "path"); len(got) != 2 {
		t.Errorf("Unsupported = %v, want outbound and gruu", got)
	}
}

// TestAddressList: Path and Record-Route values split at top-level commas only, across
// headers, in order, unsafe values dropped.
func TestAddressList(t *testing.T) {
	req := parse(t, head+"From: <sip:a@x>;tag=1\nTo: <sip:a@x>\n"+
		"Path: <sip:a@x;lr>, \"B, Jr\" <sip:b@y;lr>\n"+
		"Path: <sip:c@z;lr>\n"+
		"Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\n\n")
	if got, want := AddressList(req, "path"), []string{"<sip:a@x;lr>", `"B, Jr" <sip:b@y;lr>`, "<sip:c@z;lr>"}; !slices.Equal(got, want) {
		t.Errorf("Path %q, want %q", got, want)
	}
	if got, want := AddressList(req, "Record-Route"), []string{"<sip:p1.example;lr>", "<sip:p2.example;lr>"}; !slices.Equal(got, want) {
		t.Errorf("Record-Route %q, want %q", got, want)
	}
	if got := AddressList(req, "Route"); got != nil {
		t.Errorf("no Route: %q, want nil", got)
	}
}

// TestDisplayNameRoundTrip: a display name's text, quoted for a header, is a valid
// quoted-string (RFC 3261 §25.1) that reads back as the same text; CR and LF, which no
// quoted-string may carry, become spaces.
func TestDisplayNameRoundTrip(t *testing.T) {
	for _, c := range []struct{ text, quoted, back string }{
		{`Alice`, `Alice`, `Alice`},
		{`a"`, `a\"`, `a"`},
		{`ends in \`, `ends in \\`, `ends in \`},
		{`"q" \ x`, `\"q\" \\ x`, `"q" \ x`},
		{"two\r\nlines", `two  lines`, `two  lines`},
	} {
		q := QuoteDisplayName(c.text)
		if q != c.quoted {
			t.Errorf("QuoteDisplayName(%q) = %q, want %q", c.text, q, c.quoted)
		}
		var uri sip.Uri
		var params sip.HeaderParams
		raw, err := sip.ParseAddressValue(`"`+q+`" <sip:a@example.test>`, &uri, &params)
		if err != nil || uri.User != "a" {
			t.Errorf("%q: not a valid name-addr: %v", q, err)
			continue
		}
		if got := DisplayNameText(raw); got != c.back {
			t.Errorf("DisplayNameText(%q) = %q, want %q", raw, got, c.back)
		}
	}
	if got := DisplayNameText(`"quoted"`); got != "quoted" {
		t.Errorf("DisplayNameText strips the quotes: %q", got)
	}
}

// TestPeersTrusted: a trusted peer is matched by source prefix, or by a name a verified
// client certificate proved, exactly and case-insensitively; a name never matches an address.
func TestPeersTrusted(t *testing.T) {
	p, err := ParsePeers([]string{"10.0.0.0/8", "192.0.2.1", "Peer.Test."})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		source string
		names  []string
		want   bool
	}{
		{"10.1.2.3:5060", nil, true},
		{"192.0.2.1:5061", nil, true},
		{"[::ffff:192.0.2.1]:5061", nil, true},
		{"192.0.2.2:5061", nil, false},
		{"127.0.0.1:5061", []string{"peer.test"}, true},
		{"127.0.0.1:5061", []string{"other.test", "PEER.TEST"}, true},
		{"127.0.0.1:5061", []string{"sub.peer.test"}, false},
		{"127.0.0.1:5061", []string{"peer.test.evil"}, false},
		{"127.0.0.1:5061", nil, false},
	} {
		st := &State{Source: c.source, PeerNames: c.names}
		if got := p.Trusted(st); got != c.want {
			t.Errorf("%s %v: trusted %v, want %v", c.source, c.names, got, c.want)
		}
	}
	if (Peers{}).Trusted(&State{Source: "10.0.0.1:1", PeerNames: []string{"peer.test"}}) {
		t.Error("the zero Peers trusts someone")
	}
	for _, bad := range []string{"10.0.0.0/33", "*.peer.test", "sip:peer.test", ""} {
		if _, err := ParsePeers([]string{bad}); err == nil {
			t.Errorf("ParsePeers(%q): no error", bad)
		}
	}
}

// TestCountAndExpires: Count finds both forms of a name in any case; Expires tells an absent
// header from a malformed or repeated one.
func TestCountAndExpires(t *testing.T) {
	req := parse(t, head+"From: <sip:a@x>;tag=1\nTo: <sip:a@x>\nk: path\nSUPPORTED: gruu\nsupported: outbound\n\n")
	if got := Count(req, "Supported"); got != 3 {
		t.Errorf("Count(Supported) = %d, want 3", got)
	}
	if got := Count(req, "Require"); got != 0 {
		t.Errorf("Count(Require) = %d, want 0", got)
	}
	tests := []struct {
		headers string
		v       uint32
		ok, bad bool
	}{
		{headers: "", v: 0, ok: false},
		{headers: "Expires: 60\n", v: 60, ok: true},
		{headers: "expires: 0\n", v: 0, ok: true},
		{headers: "Expires: 60\nExpires: 60\n", ok: true, bad: true},
		{headers: "Expires: soon\n", ok: true, bad: true},
	}
	for _, tt := range tests {
		req := parse(t, head+"From: <sip:a@x>;tag=1\nTo: <sip:a@x>\n"+tt.headers+"\n")
		v, ok, err := Expires(req)
		if v != tt.v || ok != tt.ok || (err != nil) != tt.bad {
			t.Errorf("%q: Expires = %d, %v, %v; want %d, %v, bad %v", tt.headers, v, ok, err, tt.v, tt.ok, tt.bad)
		}
	}
}

func TestAllStopsWhenAsked(t *testing.T) {
	req := parse(t, head+"From: <sip:a@x>;tag=1\nTo: <sip:a@x>\nm: <sip:a@h1>\nContact: <sip:a@h2>\nCONTACT: <sip:a@h3>\n\n")
	var got []string
	for h := range All(req, "Contact") {
		got = append(got, h.Value())
		if len(got) == 2 {
			break
		}
	}
	if want := []string{"<sip:a@h1>", "<sip:a@h2>"}; !slices.Equal(got, want) {
		t.Errorf("All = %q, want %q", got, want)
	}
}
