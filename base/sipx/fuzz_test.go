package sipx

import (
	"slices"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzTokens holds the token readers (Tokens, HasToken, Unsupported) to the plain reading of
// a header list: every comma-separated value, trimmed, empty ones skipped.
func FuzzTokens(f *testing.F) {
	f.Add("path, outbound", "gruu", "outbound")
	f.Add(" , ,x,, ", "", "x")
	f.Add("100rel;q=1 ,\ttimer", "replaces", "TIMER")
	f.Fuzz(func(t *testing.T, a, b, token string) {
		if strings.ContainsAny(a+b+token, "\r\n") || strings.TrimSpace(token) != token {
			return
		}
		msg, err := NewParser(1 << 16).ParseSIP([]byte(strings.ReplaceAll(head, "\n", "\r\n") +
			"Supported: " + a + "\r\nk: " + b + "\r\n\r\n"))
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		var want []string
		for _, h := range Headers(req, "Supported") {
			for _, v := range strings.Split(h.Value(), ",") {
				if v = strings.TrimSpace(v); v != "" {
					want = append(want, v)
				}
			}
		}
		if got := Tokens(req, "Supported"); !slices.Equal(got, want) {
			t.Fatalf("Tokens = %q, want %q", got, want)
		}
		has := slices.ContainsFunc(want, func(v string) bool { return strings.EqualFold(v, token) })
		if HasToken(req, "supported", token) != has {
			t.Fatalf("HasToken(%q) = %v, want %v in %q", token, !has, has, want)
		}
		un := Unsupported(req, "Supported", token)
		if want := slices.DeleteFunc(slices.Clone(want), func(v string) bool { return strings.EqualFold(v, token) }); !slices.Equal(un, want) {
			t.Fatalf("Unsupported = %q, want %q", un, want)
		}
	})
}
