package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestServerTLSSuites: a TLS 1.2 client offering only a CBC-SHA1 suite is refused; one
// offering an ECDHE AEAD suite is served; a client that can do TLS 1.3 gets TLS 1.3.
func TestServerTLSSuites(t *testing.T) {
	cert, err := streamCert()
	if err != nil {
		t.Fatal(err)
	}
	s := startStreamServer(t, StreamOptions{Transport: "tls", TLS: ServerTLS(cert, nil)})
	handshake := func(c *tls.Config) (tls.ConnectionState, error) {
		raw, err := net.DialTimeout("tcp", s.addr, streamWait)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		tc := tls.Client(raw, c)
		_ = tc.SetDeadline(time.Now().Add(streamWait))
		err = tc.Handshake()
		return tc.ConnectionState(), err
	}
	cbc := streamClientTLS(t)
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	if _, err := handshake(cbc); err == nil {
		t.Error("a TLS 1.2 client offering only ECDHE_ECDSA_WITH_AES_128_CBC_SHA was served")
	}
	gcm := streamClientTLS(t)
	gcm.MaxVersion = tls.VersionTLS12
	gcm.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	if cs, err := handshake(gcm); err != nil || cs.Version != tls.VersionTLS12 {
		t.Errorf("TLS 1.2 AES-GCM: version %x, %v", cs.Version, err)
	}
	if cs, err := handshake(streamClientTLS(t)); err != nil || cs.Version != tls.VersionTLS13 {
		t.Errorf("default client: version %x, %v; want TLS 1.3", cs.Version, err)
	}
}

// testCA is a certificate authority made by a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// client issues a client certificate for the given DNS names and URIs.
func (ca *testCA) client(t testing.TB, dns []string, uris ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "peer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames: dns}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestPeerNames: with client CAs, the names of a verified client certificate are known for
// its connection while it is open; a client without a certificate is served and proves no
// name; one whose certificate another CA issued is refused.
func TestPeerNames(t *testing.T) {
	cert, err := streamCert()
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	s := startStreamServer(t, StreamOptions{Transport: "tls", TLS: ServerTLS(cert, ca.pool())})
	dial := func(c *tls.Config) (*tls.Conn, error) {
		raw, err := net.DialTimeout("tcp", s.addr, streamWait)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = raw.Close() })
		tc := tls.Client(raw, c)
		_ = tc.SetDeadline(time.Now().Add(streamWait))
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		// A TLS 1.3 server checks the client's certificate after the client's handshake
		// returned: a round trip shows whether it was accepted.
		if _, err := io.WriteString(tc, streamRegister("tls", "")); err != nil {
			return nil, err
		}
		buf := make([]byte, 1024)
		if _, err := tc.Read(buf); err != nil {
			return nil, err
		}
		return tc, nil
	}
	withCert := streamClientTLS(t)
	withCert.Certificates = []tls.Certificate{ca.client(t, []string{"Peer.Test"}, "sip:edge.peer.test;transport=tls", "https://web.test/")}
	tc, err := dial(withCert)
	if err != nil {
		t.Fatal(err)
	}
	local := tc.LocalAddr().String()
	if got := s.l.PeerNames(local); !slices.Equal(got, []string{"edge.peer.test", "peer.test"}) {
		t.Errorf("PeerNames = %q, want the sip: URI host and the DNS name", got)
	}
	_ = tc.Close()
	streamPoll(t, "the connection forgotten", func() bool { return !s.l.Has(local) })
	if got := s.l.PeerNames(local); got != nil {
		t.Errorf("PeerNames after close = %q", got)
	}

	tc, err = dial(streamClientTLS(t))
	if err != nil {
		t.Fatalf("a client without a certificate was refused: %v", err)
	}
	if got := s.l.PeerNames(tc.LocalAddr().String()); got != nil {
		t.Errorf("PeerNames without a certificate = %q", got)
	}

	other := streamClientTLS(t)
	other.Certificates = []tls.Certificate{newTestCA(t).client(t, []string{"peer.test"})}
	if _, err := dial(other); err == nil {
		t.Error("a certificate of another CA was accepted")
	}
}

// TestWSOrigins: with transport.ws_origins set, an upgrade from another Origin gets HTTP
// 403 and a listed one (or none: not a browser) is upgraded; without a list any Origin is
// upgraded and each new one is logged once.
func TestWSOrigins(t *testing.T) {
	upgrade := func(s *streamServer, origin string) string {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
			"Sec-WebSocket-Protocol: sip\r\n"
		if origin != "" {
			req += "Origin: " + origin + "\r\n"
		}
		if _, err := io.WriteString(c, req+"\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(streamWait))
		buf := make([]byte, 512)
		n, _ := io.ReadAtLeast(c, buf, 12)
		return string(buf[:n])
	}
	s := startStreamServer(t, StreamOptions{Transport: "ws", WSOrigins: []string{"https://chat.example.test"}})
	for origin, want := range map[string]string{
		"https://chat.example.test":  "HTTP/1.1 101 ",
		"HTTPS://Chat.Example.Test/": "HTTP/1.1 101 ",
		"":                           "HTTP/1.1 101 ",
		"https://evil.test":          "HTTP/1.1 403 ",
		"http://chat.example.test":   "HTTP/1.1 403 ",
	} {
		if got := upgrade(s, origin); !strings.HasPrefix(got, want) {
			t.Errorf("Origin %q: %q, want %s", origin, got, want)
		}
	}
	s.ev.wait(t, EventRejected, ReasonOrigin, 2)

	core, logs := observer.New(zap.InfoLevel)
	s = startStreamServer(t, StreamOptions{Transport: "ws", Log: zap.New(core)})
	for range 3 {
		for _, origin := range []string{"https://a.test", "https://b.test"} {
			if got := upgrade(s, origin); !strings.HasPrefix(got, "HTTP/1.1 101 ") {
				t.Errorf("any origin: %q refused: %q", origin, got)
			}
		}
	}
	if n := logs.FilterMessageSnippet("new origin").Len(); n != 2 {
		t.Errorf("%d origin log lines for 6 upgrades from 2 origins, want 2", n)
	}
}

// TestVerifyPeerName: a SIP domain matches a DNS SAN or a sip: URI SAN host whole, never a
// wildcard (RFC 5922 §7.2); an IP literal matches an IP SAN only.
func TestVerifyPeerName(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.client(t, []string{"*.example.test", "Peer.Test"}, "sip:sip.other.test")
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	leaf.IPAddresses = []net.IP{net.IPv4(192, 0, 2, 7)}
	conn := fakeTLSConn{cs: tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}}
	for name, want := range map[string]bool{
		"peer.test": true, "PEER.test.": true, "sip.other.test": true, "192.0.2.7": true,
		"a.example.test": false, "example.test": false, "other.test": false, "192.0.2.8": false, "127.0.0.1": false,
	} {
		if err := VerifyPeerName(conn, name); (err == nil) != want {
			t.Errorf("%s: %v, want match %v", name, err, want)
		}
	}
	if err := VerifyPeerName(fakeTLSConn{}, "peer.test"); err == nil {
		t.Error("a connection without a certificate names peer.test")
	}
}

type fakeTLSConn struct {
	net.Conn
	cs tls.ConnectionState
}

func (f fakeTLSConn) ConnectionState() tls.ConnectionState { return f.cs }
