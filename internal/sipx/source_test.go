package sipx

import "testing"

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
