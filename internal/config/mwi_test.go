package config

import (
	"strings"
	"testing"
)

// mwi.server naming simpled itself (a listen address, on its port or the default one, or a
// served domain) is refused: the forwarded message-summary SUBSCRIBEs would come back to us;
// so is anything but a sip: or sips: URI of a server. Another port or host is fine.
func TestMWIServerValidation(t *testing.T) {
	const head = "domain: example.test\nauth: {mode: \"off\"}\nlisten: [udp://127.0.0.1:5060, tcp://0.0.0.0:5070]\nmwi:\n  server: "
	for _, c := range []struct{ server, want string }{
		{`"sip:127.0.0.1:5060"`, `mwi.server: "sip:127.0.0.1:5060" is this server`},
		{`"sip:127.0.0.1"`, `mwi.server: "sip:127.0.0.1" is this server`},
		{`"sip:127.0.0.9:5070;transport=tcp"`, `mwi.server: "sip:127.0.0.9:5070;transport=tcp" is this server`},
		{`"sip:EXAMPLE.test"`, `mwi.server: "sip:EXAMPLE.test" is this server`},
		{`"http://192.0.2.1/"`, `mwi.server: "http://192.0.2.1/": want a sip: or sips: URI`},
		{`"vm.example.com"`, `mwi.server: "vm.example.com": want a sip: or sips: URI`},
		{`"sip:vm@192.0.2.1"`, `mwi.server: "sip:vm@192.0.2.1": a next hop names a server, not a user`},
	} {
		t.Run(c.server, func(t *testing.T) {
			_, err := ParseString(head + c.server + "\n")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	for _, ok := range []string{`"sip:127.0.0.1:5080"`, `"sip:192.0.2.1"`, `"sips:vm.example.com"`} {
		if _, err := ParseString(head + ok + "\n"); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
