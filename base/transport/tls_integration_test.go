package transport_test

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/servertest"

	"github.com/miekg/dns"
)

// testPKI is a certificate authority made by a test, writing its certificates as PEM files.
type testPKI struct {
	t      testing.TB
	dir    string
	cert   *x509.Certificate
	key    crypto.Signer
	serial int64
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "simpled test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{t: t, dir: t.TempDir(), cert: cert, key: key, serial: 1}
	p.write("ca.pem", "CERTIFICATE", der)
	return p
}

// caFile is the CA certificate's PEM file.
func (p *testPKI) caFile() string { return filepath.Join(p.dir, "ca.pem") }

func (p *testPKI) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	return pool
}

func (p *testPKI) write(name, typ string, der []byte) string {
	p.t.Helper()
	file := filepath.Join(p.dir, name)
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return file
}

// issue makes a certificate for dns names (and 127.0.0.1 when ip), with an RSA key when
// rsaKey (else ECDSA P-256), usable by servers and clients. It returns the certificate and
// its PEM files.
func (p *testPKI) issue(name string, dns []string, ip, rsaKey bool) (tls.Certificate, string, string) {
	p.t.Helper()
	var key crypto.Signer
	var err error
	if rsaKey {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    dns}
	if ip {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, key.Public(), p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	certFile := p.write(name+".pem", "CERTIFICATE", der)
	keyFile := p.write(name+".key", "PRIVATE KEY", keyDER)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certFile, keyFile
}

// dialTLS connects to simpled's tls listener with conf; {transport} in what is sent is TLS.
func dialTLS(t testing.TB, addr string, conf *tls.Config) (*servertest.Wire, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	tc := tls.Client(raw, conf)
	_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return servertest.WireOn(t, tc), nil
}

// TestTLSListenerAEADOnly: the tls listener refuses a TLS 1.2 client that offers only
// TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA (issue 14: CBC-SHA1 was accepted), serves one that
// offers ECDHE with AES-GCM, and speaks TLS 1.3 to a client that can.
func TestTLSListenerAEADOnly(t *testing.T) {
	pki := newTestPKI(t)
	_, certFile, keyFile := pki.issue("server", []string{"example.test"}, true, true)
	srv := servertest.Start(t, func(o *servertest.Options) {
		o.Listen = append(o.Listen, "tls://127.0.0.1:0")
		o.TLSCert, o.TLSKey = certFile, keyFile
	})
	addr := srv.Listener("tls")
	base := func() *tls.Config { return &tls.Config{RootCAs: pki.pool(), ServerName: "example.test"} }

	cbc := base()
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
	if _, err := dialTLS(t, addr, cbc); err == nil {
		t.Error("TLS 1.2 with only ECDHE_RSA_WITH_AES_128_CBC_SHA: handshake succeeded")
	}

	gcm := base()
	gcm.MaxVersion = tls.VersionTLS12
	gcm.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	w, err := dialTLS(t, addr, gcm)
	if err != nil {
		t.Fatalf("TLS 1.2 with ECDHE_RSA_WITH_AES_128_GCM_SHA256: %v", err)
	}
	w.Send(strings.ReplaceAll(servertest.Register("tls12", "tls12-reg", 1), "{transport}", "TLS"))
	w.Expect(`^SIP/2.0 200 `)

	w, err = dialTLS(t, addr, base())
	if err != nil {
		t.Fatalf("TLS 1.3: %v", err)
	}
	if v := w.Conn.(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", v)
	}
	w.Send(strings.ReplaceAll(servertest.Register("tls13", "tls13-reg", 1), "{transport}", "TLS"))
	w.Expect(`^SIP/2.0 200 `)
}

// TestTrustedPeerByCertificate: with tls_client_ca and proxy.trusted_peers [peer.test], a
// TLS client whose certificate (issued by the test's CA) names peer.test may relay a MESSAGE
// to a foreign domain; the same request without a certificate, or with one for another
// name, gets 403 Relaying Denied and nothing reaches the target.
func TestTrustedPeerByCertificate(t *testing.T) {
	pki := newTestPKI(t)
	_, certFile, keyFile := pki.issue("server", []string{"example.test"}, true, false)
	peerCert, _, _ := pki.issue("peer", []string{"peer.test"}, false, false)
	otherCert, _, _ := pki.issue("other", []string{"other.test"}, false, false)
	srv := servertest.Start(t, func(o *servertest.Options) {
		o.Listen = append(o.Listen, "tls://127.0.0.1:0")
		o.TLSCert, o.TLSKey = certFile, keyFile
		o.TLSClientCA = pki.caFile()
		o.Proxy.TrustedPeers = []string{"peer.test"}
	})
	// The foreign target: a TCP socket on loopback, reached through a Route.
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	msg := func(callID string) string {
		return strings.ReplaceAll("MESSAGE sip:bob@elsewhere.example SIP/2.0\n"+
			"Via: SIP/2.0/TLS {local};branch=z9hG4bK"+servertest.NextBranch()+";rport\n"+
			"Max-Forwards: 70\n"+
			"Route: <sip:"+target.Addr().String()+";transport=tcp;lr>\n"+
			"From: <sip:carol@peer.test>;tag=f"+callID+"\n"+
			"To: <sip:bob@elsewhere.example>\n"+
			"Call-ID: "+callID+"\n"+
			"CSeq: 1 MESSAGE\n"+
			"Content-Type: text/plain\n"+
			"Content-Length: 2\n\nhi", "\n", "\r\n")
	}
	client := func(certs ...tls.Certificate) *servertest.Wire {
		w, err := dialTLS(t, srv.Listener("tls"), &tls.Config{RootCAs: pki.pool(), ServerName: "example.test", Certificates: certs})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}

	for name, w := range map[string]*servertest.Wire{"no certificate": client(), "certificate for other.test": client(otherCert)} {
		w.Send(msg("denied-" + strings.ReplaceAll(name, " ", "-")))
		w.Expect(`^SIP/2.0 403 Relaying Denied`)
	}
	select {
	case c := <-accepted:
		c.Close()
		t.Fatal("a denied request reached the target")
	default:
	}

	w := client(peerCert)
	w.Send(msg("trusted-peer"))
	var conn net.Conn
	select {
	case conn = <-accepted:
	case <-time.After(3 * time.Second):
		t.Fatal("the trusted peer's MESSAGE was not relayed")
	}
	t.Cleanup(func() { conn.Close() })
	peer := servertest.WireOn(t, conn)
	req := peer.Request("MESSAGE")
	if req.Recipient.Host != "elsewhere.example" {
		t.Errorf("relayed to %s", req.Recipient.String())
	}
	peer.Reply(req, 200)
	w.Expect(`^SIP/2.0 200 `)
}

// startNameDNS answers A queries for each of names with 127.0.0.1 (tests never ask a resolver
// off loopback); other names do not exist.
func startNameDNS(t *testing.T, names ...string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		known := slices.Contains(names, strings.TrimSuffix(q.Name, "."))
		switch {
		case known && q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.ParseIP("127.0.0.1")})
		case known:
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// tlsPeer is a SIP server on loopback speaking TLS with cert, handing the test each
// connection simpled opens.
func tlsPeer(t *testing.T, cert tls.Certificate) (port string, conns chan *servertest.Wire) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = make(chan *servertest.Wire, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			// Handshake now: a tls.Listen connection would only answer on its first read.
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			_ = c.(*tls.Conn).Handshake()
			_ = c.SetDeadline(time.Time{})
			conns <- servertest.WireOn(t, c)
		}
	}()
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, conns
}

// TestOutboundTLSVerifiesSIPDomain: a request sent over TLS to a SIP domain is delivered only
// when the server's certificate, issued by a CA in tls_ca, names that domain (RFC 5922 §4,
// §7.2) — not the IP it resolved to (issue 14). A certificate for another name, or from
// another CA, gets the request 503 and nothing is written to the peer; a connection opened
// for one domain carries no request for a domain its certificate does not name.
func TestOutboundTLSVerifiesSIPDomain(t *testing.T) {
	pki := newTestPKI(t)
	_, certFile, keyFile := pki.issue("simpled", []string{"example.test"}, true, false)
	peerCert, _, _ := pki.issue("right", []string{"right.test"}, true, false)
	port, peerConns := tlsPeer(t, peerCert)
	strangerCert, _, _ := newTestPKI(t).issue("stranger", []string{"right.test"}, true, false)
	strangerPort, strangerConns := tlsPeer(t, strangerCert)
	dnsAddr := startNameDNS(t, "right.test", "wrong.test")
	srv := servertest.Start(t, func(o *servertest.Options) {
		o.Listen = append(o.Listen, "tls://127.0.0.1:0")
		o.TLSCert, o.TLSKey = certFile, keyFile
		o.TLSCA = pki.caFile()
		o.Proxy.DNS = dnsAddr
		o.Proxy.TrustedPeers = []string{"127.0.0.1"}
	})
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	send := func(callID, hostport string) {
		alice.Send(strings.Replace(servertest.Message("alice", "bob", callID, "text/plain", "hi"),
			"MESSAGE sip:bob@example.test", "MESSAGE sip:bob@"+hostport+";transport=tls", 1))
	}
	nothingWritten := func(w *servertest.Wire) {
		t.Helper()
		if msg := w.Read(300 * time.Millisecond); msg != "" {
			t.Fatalf("the peer got a request it must not:\n%s", msg)
		}
	}

	// A fresh connection whose certificate names right.test, for wrong.test: refused.
	send("wrong-1", "wrong.test:"+port)
	alice.Expect(`^SIP/2.0 503 `)
	var peer *servertest.Wire
	select {
	case peer = <-peerConns:
		nothingWritten(peer)
	case <-time.After(3 * time.Second):
		t.Fatal("simpled did not connect to the peer")
	}

	// For right.test, over the same connection: delivered.
	send("right-1", "right.test:"+port)
	req := peer.Request("MESSAGE")
	if req.Recipient.Host != "right.test" {
		t.Fatalf("delivered %s", req.Recipient.String())
	}
	peer.Reply(req, 200)
	alice.Expect(`^SIP/2.0 200 `)

	// wrong.test again, the connection now open and verified for right.test: refused.
	send("wrong-2", "wrong.test:"+port)
	alice.Expect(`^SIP/2.0 503 `)
	nothingWritten(peer)

	// right.test at a server whose certificate another CA issued: refused at the handshake.
	send("stranger-1", "right.test:"+strangerPort)
	alice.Expect(`^SIP/2.0 503 `)
	select {
	case w := <-strangerConns:
		nothingWritten(w)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestWSOriginsAllowList: with transport.ws_origins set, a browser upgrade from another
// Origin gets HTTP 403 and a listed one is upgraded (issue 14: any Origin was accepted).
func TestWSOriginsAllowList(t *testing.T) {
	srv := servertest.Start(t, func(o *servertest.Options) {
		o.Listen = append(o.Listen, "ws://127.0.0.1:0")
		o.Transport.WSOrigins = []string{"https://chat.example.test"}
	})
	upgrade := func(origin string) string {
		c, err := net.DialTimeout("tcp", srv.Listener("ws"), 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
			"Sec-WebSocket-Protocol: sip\r\nOrigin: " + origin + "\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	if got := upgrade("https://evil.test"); !strings.HasPrefix(got, "HTTP/1.1 403 ") {
		t.Errorf("foreign Origin: %q, want 403", got)
	}
	if got := upgrade("https://chat.example.test"); !strings.HasPrefix(got, "HTTP/1.1 101 ") {
		t.Errorf("listed Origin: %q, want 101", got)
	}
}
