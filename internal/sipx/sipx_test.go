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
