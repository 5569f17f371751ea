//go:build linux

package server

// End-to-end tests of the stream transports with real SIP clients: two headless baresip
// (alice and bob) register with simpled over TCP and over TLS, the admin API must show each
// binding with that transport, and they text each other through simpled. The helpers (simpled on
// loopback, baresip driven through its stdio UI, the admin API lookup) are those of
// e2e_integration_test.go and e2e_proxy_integration_test.go; as there, a missing baresip skips
// the test unless SIMPLED_REQUIRE_TOOLS=1.
//
// baresip 1.0.0 (Debian, libre 1.1.0) as a TLS client: the account's outbound proxy URI with
// ";transport=tls" is all it needs (baresipAccount). Its config has sip_certificate and
// sip_cafile but no sip_verify_server (a later addition), and it does not verify the server's
// certificate: it registers to a self-signed one with no sip_cafile at all, so the tests need not
// hand it the certificate. It also opens a TLS listener of its own on its SIP port + 1, which is
// the port of its Contact, and which fails every handshake ("no peer certificate") without
// sip_certificate: simpled must send requests to a TLS-registered baresip down the connection it
// registered on (RFC 5626 flow / RFC 3261 §18 connection reuse), which the tests check in
// baresip's SIP trace for TCP as well.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
)

// e2eSelfSignedCert writes a self-signed ECDSA P-256 certificate for 127.0.0.1 (IP SAN) and
// its key as PEM files in a temporary directory and returns their paths.
func e2eSelfSignedCert(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "127.0.0.1", Organization: []string{"simpled e2e test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"example.test"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own trust anchor, should a client be given it as CA
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

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
	bin := e2eBaresip(t)
	mod := func(o *config.Options) {
		// Only the transport under test, so that nothing can take another way.
		o.Listen = []string{"udp://127.0.0.1:0", tp + "://127.0.0.1:0"}
		o.UsersFile = usersFile(t, "alice", "bob")
		if tp == "tls" {
			o.TLSCert, o.TLSKey = e2eSelfSignedCert(t)
		}
	}
	srv := startServer(t, mod)
	if srv.Listener(tp) == "" {
		t.Fatalf("no %s listener: %v", tp, srv.Listeners())
	}
	alice := startBaresipUA(t, bin, baresipSetup{name: "alice",
		account: baresipAccount(srv, "alice", tp, ""), contacts: []string{"<sip:bob@example.test>"}})
	bob := startBaresipUA(t, bin, baresipSetup{name: "bob",
		account: baresipAccount(srv, "bob", tp, ""), contacts: []string{"<sip:alice@example.test>"}})
	alice.registered(t, tp)
	bob.registered(t, tp)

	// The registrar recorded each binding with the transport it came over, from the
	// connection baresip opened (received: its ephemeral port, not the contact's).
	received := map[string]string{}
	for _, ua := range []*baresipUA{alice, bob} {
		aor := ua.name + "@example.test"
		reg, body := e2eLookup(t, srv, aor)
		if len(reg.Bindings) != 1 {
			t.Fatalf("%s: %d bindings, want 1\n%s", aor, len(reg.Bindings), body)
		}
		bd := reg.Bindings[0]
		if bd.Transport != tp || !strings.HasPrefix(bd.UserAgent, "baresip") ||
			!strings.HasPrefix(bd.URI, "sip:"+ua.name) || !strings.Contains(bd.URI, "@127.0.0.1:") {
			t.Errorf("%s: binding %+v, want a baresip contact over %s\n%s", aor, bd, tp, body)
		}
		if !strings.Contains(strings.ToLower(bd.URI), "transport="+tp) {
			t.Errorf("%s: contact %s has no transport=%s", aor, bd.URI, tp)
		}
		if host, port, err := net.SplitHostPort(bd.Received); err != nil || host != "127.0.0.1" || port == strconv.Itoa(ua.port) {
			t.Errorf("%s: received %q, want baresip's connection from 127.0.0.1", aor, bd.Received)
		}
		received[ua.name] = bd.Received
	}

	nonce := strconv.Itoa(mrand.IntN(1e9))
	hello := "hello bob over " + tp + " " + nonce
	alice.command(t, "/message "+hello)
	// menu prints a received MESSAGE as `<From URI>: "<body>"`.
	bob.waitFor(t, 5*time.Second, `sip:alice@example.test: "`+hello+`"`)
	// baresip's SIP trace (-s) heads each message with "TLS <from> -> <to>": the MESSAGE came
	// down the connection bob registered on. (A new connection to bob's contact could not
	// work over TLS anyway: baresip's TLS listener has no certificate.)
	e2eSameFlow(t, bob, tp, received["bob"], "MESSAGE sip:bob")

	reply := "hi alice over " + tp + " " + nonce
	bob.command(t, "/message "+reply)
	alice.waitFor(t, 5*time.Second, `sip:bob@example.test: "`+reply+`"`)
	e2eSameFlow(t, alice, tp, received["alice"], "MESSAGE sip:alice")
}

// e2eSameFlow checks in ua's SIP trace that the request starting with requestLine reached ua
// over transport tp on the connection whose far end (ua's side) is local.
func e2eSameFlow(t *testing.T, ua *baresipUA, tp, local, requestLine string) {
	t.Helper()
	rx := regexp.MustCompile(`(?m)^` + strings.ToUpper(tp) + ` (\S+) -> (\S+)\s*\n` + regexp.QuoteMeta(requestLine))
	m := rx.FindStringSubmatch(ua.output())
	if m == nil {
		t.Fatalf("baresip %s: no %s %q in its SIP trace", ua.name, tp, requestLine)
	}
	if m[2] != local {
		t.Errorf("baresip %s: %q came in on %s -> %s, not on its registration's connection (%s)",
			ua.name, requestLine, m[1], m[2], local)
	}
}
