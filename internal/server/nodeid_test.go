package server

import (
	"strings"
	"testing"

	"github.com/simpled/simpled/cluster"
)

// A node not given an id gets one from its host name and pid that the cluster takes, whatever
// the host is called.
func TestDefaultNodeID(t *testing.T) {
	for _, c := range []struct{ host, want string }{
		{"sip1.example.net", "sip1.example.net-4242"},
		{"", "simpled-4242"},
		{"host name{x}", "host-name-x--4242"},
		{strings.Repeat("h", 80), strings.Repeat("h", 59) + "-4242"},
	} {
		got := defaultNodeID(c.host, 4242)
		if got != c.want {
			t.Errorf("defaultNodeID(%q) = %q, want %q", c.host, got, c.want)
		}
		if !cluster.ValidNodeID(got) {
			t.Errorf("defaultNodeID(%q) = %q: not a valid node id", c.host, got)
		}
	}
}
