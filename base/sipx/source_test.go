package sipx

import (
	"net/netip"
	"testing"
)

// TestSourceGroup: IPv6 sources count per /64, IPv4 ones per address.
func TestSourceGroup(t *testing.T) {
	cases := []struct {
		a, b string
		same bool
	}{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"fe80::1%eth0", "fe80::2", true},
		{"127.0.0.2", "127.0.0.3", false},
		{"::ffff:192.0.2.1", "192.0.2.1", true},
		{"::1", "::2", true},
		{"not-an-ip", "not-an-ip", true},
	}
	for _, c := range cases {
		if got := SourceGroup(c.a) == SourceGroup(c.b); got != c.same {
			t.Errorf("SourceGroup(%s)=%s, SourceGroup(%s)=%s: same %v, want %v",
				c.a, SourceGroup(c.a), c.b, SourceGroup(c.b), got, c.same)
		}
	}
	if g := SourceGroup("2001:db8::1"); g != "2001:db8::/64" {
		t.Errorf("SourceGroup(2001:db8::1) = %s", g)
	}
}

// SourceKey, the allocation-free form the packet paths use, groups as SourceGroup does.
func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":               "192.0.2.7",
		"::ffff:192.0.2.7":        "192.0.2.7",
		"2001:db8:1:2:3:4:5:6":    "2001:db8:1:2::",
		"2001:db8:1:2::9":         "2001:db8:1:2::",
		"fe80::1%eth0":            "fe80::",
		"2001:db8:1:3:ffff::ffff": "2001:db8:1:3::",
	} {
		if got := SourceKey(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("SourceKey(%s) = %s, want %s", in, got, want)
		}
	}
}
