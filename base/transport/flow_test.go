package transport

import (
	"net/netip"
	"strings"
	"testing"
)

func TestFlowToken(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, f := range []Flow{
		{Transport: "udp", Remote: netip.MustParseAddrPort("203.0.113.7:40123"), Local: netip.MustParseAddrPort("127.0.0.1:5060")},
		{Transport: "wss", Remote: netip.MustParseAddrPort("[2001:db8::1]:443"), Local: netip.MustParseAddrPort("[::1]:5061")},
		{Transport: "tcp", Remote: netip.MustParseAddrPort("10.0.0.2:1"), Local: netip.MustParseAddrPort("10.0.0.1:5060")},
	} {
		tok := f.Token(key)
		if strings.Trim(tok, "abcdefghijklmnopqrstuvwxyz234567") != "" {
			t.Errorf("token %q has characters outside a SIP user part's safe set", tok)
		}
		got, ok := ParseFlowToken(tok, key)
		if !ok || got != f {
			t.Errorf("ParseFlowToken(Token(%+v)) = %+v, %v", f, got, ok)
		}
		if _, ok := ParseFlowToken(strings.ToUpper(tok), key); !ok {
			t.Errorf("an upper-cased token (some clients rewrite URIs) is refused")
		}
		if _, ok := ParseFlowToken(tok, []byte("another deployment's secret....")); ok {
			t.Errorf("a token is accepted under another key")
		}
		// Every single-character change is refused (the MAC covers every byte).
		for i := range tok {
			c := byte('a')
			if tok[i] == 'a' {
				c = 'b'
			}
			bad := tok[:i] + string(c) + tok[i+1:]
			if g, ok := ParseFlowToken(bad, key); ok && g != f {
				t.Fatalf("tampered token %q accepted as %+v", bad, g)
			}
		}
	}
	for _, s := range []string{"", "alice", "tgruu.abc", strings.Repeat("a", 200)} {
		if _, ok := ParseFlowToken(s, key); ok {
			t.Errorf("ParseFlowToken(%q) accepted", s)
		}
	}
}

func FuzzFlowToken(f *testing.F) {
	key := []byte("fuzz key")
	f.Add(Flow{Transport: "udp", Remote: netip.MustParseAddrPort("1.2.3.4:5"), Local: netip.MustParseAddrPort("127.0.0.1:5060")}.Token(key))
	f.Add("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	f.Fuzz(func(t *testing.T, tok string) {
		fl, ok := ParseFlowToken(tok, key)
		if ok && fl.Token(key) != strings.ToLower(tok) {
			t.Fatalf("%q parses to %+v, which writes %q", tok, fl, fl.Token(key))
		}
	})
}
