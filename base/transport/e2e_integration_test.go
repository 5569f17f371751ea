//go:build linux

package transport_test

// End-to-end tests of the stream transports with real SIP clients: two headless baresip
// (alice and bob) register with simpled over TCP and over TLS, the admin API must show each
// binding with that transport, and they text each other through simpled. The helpers (simpled on
// loopback, baresip driven through its stdio UI, the admin API lookup) are those of
// internal/servertest; as everywhere, a missing baresip skips
// the test unless SIMPLED_REQUIRE_TOOLS=1.
//
// baresip 1.0.0 (Debian, libre 1.1.0) as a TLS client: the account's outbound proxy URI with
// ";transport=tls" is all it needs (servertest.BaresipAccount). Its config has sip_certificate and
// sip_cafile but no sip_verify_server (a later addition), and it does not verify the server's
// certificate: it registers to a self-signed one with no sip_cafile at all, so the tests need not
// hand it the certificate. It also opens a TLS listener of its own on its SIP port + 1, which is
// the port of its Contact, and which fails every handshake ("no peer certificate") without
// sip_certificate: simpled must send requests to a TLS-registered baresip down the connection it
// registered on (RFC 5626 flow / RFC 3261 §18 connection reuse), which the tests check in
// baresip's SIP trace for TCP as well.

import (
	mrand "math/rand/v2"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/servertest"
)

// TestBaresipTransportTCP: alice and bob register over TCP and text each other.
func TestBaresipTransportTCP(t *testing.T) {
	testBaresipTransport(t, "tcp")
}

// TestBaresipTransportTLS: alice and bob register over TLS (simpled's tls:// listener with a
// self-signed certificate) and text each other.
func TestBaresipTransportTLS(t *testing.T) {
	testBaresipTransport(t, "tls")
}

func testBaresipTransport(t *testing.T, tp string) {
	bin := servertest.BaresipBin(t)
	mod := func(o *servertest.Options) {
		// Only the transport under test, so that nothing can take another way.
		o.Listen = []string{"udp://127.0.0.1:0", tp + "://127.0.0.1:0"}
		o.UsersFile = servertest.UsersFile(t, "alice", "bob")
		if tp == "tls" {
			o.TLSCert, o.TLSKey = servertest.SelfSignedCert(t)
		}
	}
	srv := servertest.Start(t, mod)
	if srv.Listener(tp) == "" {
		t.Fatalf("no %s listener: %v", tp, srv.Listeners())
	}
	alice := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Name: "alice",
		Account: servertest.BaresipAccount(srv, "alice", tp, ""), Contacts: []string{"<sip:bob@example.test>"}})
	bob := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Name: "bob",
		Account: servertest.BaresipAccount(srv, "bob", tp, ""), Contacts: []string{"<sip:alice@example.test>"}})
	alice.Registered(t, tp)
	bob.Registered(t, tp)

	// The registrar recorded each binding with the transport it came over, from the
	// connection baresip opened (received: its ephemeral port, not the contact's).
	received := map[string]string{}
	for _, ua := range []*servertest.Baresip{alice, bob} {
		aor := ua.Name + "@example.test"
		reg, body := servertest.Lookup(t, srv, aor)
		if len(reg.Bindings) != 1 {
			t.Fatalf("%s: %d bindings, want 1\n%s", aor, len(reg.Bindings), body)
		}
		bd := reg.Bindings[0]
		if bd.Transport != tp || !strings.HasPrefix(bd.UserAgent, "baresip") ||
			!strings.HasPrefix(bd.URI, "sip:"+ua.Name) || !strings.Contains(bd.URI, "@127.0.0.1:") {
			t.Errorf("%s: binding %+v, want a baresip contact over %s\n%s", aor, bd, tp, body)
		}
		if !strings.Contains(strings.ToLower(bd.URI), "transport="+tp) {
			t.Errorf("%s: contact %s has no transport=%s", aor, bd.URI, tp)
		}
		if host, port, err := net.SplitHostPort(bd.Received); err != nil || host != "127.0.0.1" || port == strconv.Itoa(ua.Port) {
			t.Errorf("%s: received %q, want baresip's connection from 127.0.0.1", aor, bd.Received)
		}
		received[ua.Name] = bd.Received
	}

	nonce := strconv.Itoa(mrand.IntN(1e9))
	hello := "hello bob over " + tp + " " + nonce
	alice.Command(t, "/message "+hello)
	// menu prints a received MESSAGE as `<From URI>: "<body>"`.
	bob.WaitFor(t, 5*time.Second, `sip:alice@example.test: "`+hello+`"`)
	// baresip's SIP trace (-s) heads each message with "TLS <from> -> <to>": the MESSAGE came
	// down the connection bob registered on. (A new connection to bob's contact could not
	// work over TLS anyway: baresip's TLS listener has no certificate.)
	e2eSameFlow(t, bob, tp, received["bob"], "MESSAGE sip:bob")

	reply := "hi alice over " + tp + " " + nonce
	bob.Command(t, "/message "+reply)
	alice.WaitFor(t, 5*time.Second, `sip:bob@example.test: "`+reply+`"`)
	e2eSameFlow(t, alice, tp, received["alice"], "MESSAGE sip:alice")
}

// e2eSameFlow checks in ua's SIP trace that the request starting with requestLine reached ua
// over transport tp on the connection whose far end (ua's side) is local.
func e2eSameFlow(t *testing.T, ua *servertest.Baresip, tp, local, requestLine string) {
	t.Helper()
	rx := regexp.MustCompile(`(?m)^` + strings.ToUpper(tp) + ` (\S+) -> (\S+)\s*\n` + regexp.QuoteMeta(requestLine))
	m := rx.FindStringSubmatch(ua.Output())
	if m == nil {
		t.Fatalf("baresip %s: no %s %q in its SIP trace", ua.Name, tp, requestLine)
	}
	if m[2] != local {
		t.Errorf("baresip %s: %q came in on %s -> %s, not on its registration's connection (%s)",
			ua.Name, requestLine, m[1], m[2], local)
	}
}
