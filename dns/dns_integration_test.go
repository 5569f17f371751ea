package dns_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/simpled/simpled/internal/servertest"

	"github.com/miekg/dns"
)

// testDNS serves SRV and A records for elsewhere.example on 127.0.0.1 (tests never ask a
// resolver off loopback) and counts the queries it gets.
type testDNS struct {
	addr    string
	queries atomic.Int64
}

func startDNS(t *testing.T, sipPort int) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &testDNS{addr: pc.LocalAddr().String()}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		d.queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		switch {
		case q.Qtype == dns.TypeSRV && q.Name == "_sip._udp.elsewhere.example.":
			m.Answer = append(m.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 60},
				Priority: 10, Weight: 1, Port: uint16(sipPort), Target: "sip.elsewhere.example."})
		case q.Qtype == dns.TypeA && q.Name == "sip.elsewhere.example.":
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.ParseIP("127.0.0.1")})
		case strings.HasSuffix(q.Name, "elsewhere.example."):
			// exists, no record of that type
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return d
}

// TestForeignDomainByDNS: a trusted peer's MESSAGE for another domain is located with DNS SRV
// and A records (RFC 3263) and relayed there; a MESSAGE for a local user makes no DNS query; a
// domain that does not exist gets 404.
func TestForeignDomainByDNS(t *testing.T) {
	peerConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peerConn.Close()
	port := peerConn.LocalAddr().(*net.UDPAddr).Port
	d := startDNS(t, port)
	srv := servertest.Start(t, func(o *servertest.Options) {
		o.Proxy.DNS = d.addr
		o.Proxy.TrustedPeers = []string{"127.0.0.1/32"}
	})
	remote := servertest.PacketWire(t, peerConn, nil)
	bob := servertest.NewUA(t, srv, "udp", "bob")
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))

	alice.Send(servertest.Message("alice", "bob", "local-1", "text/plain", "local"))
	bob.Reply(bob.Request("MESSAGE"), 200)
	alice.Expect(`^SIP/2.0 200 `)
	if n := d.queries.Load(); n != 0 {
		t.Fatalf("%d DNS queries for a local user", n)
	}

	alice.Send(strings.Replace(servertest.Message("alice", "zoe", "far-1", "text/plain", "far away"),
		"MESSAGE sip:zoe@example.test", "MESSAGE sip:zoe@elsewhere.example", 1))
	req := remote.Request("MESSAGE")
	if req.Recipient.Host != "elsewhere.example" || string(req.Body()) != "far away" {
		t.Fatalf("relayed as:\n%s", req)
	}
	remote.Reply(req, 200)
	alice.Expect(`^SIP/2.0 200 `)
	if d.queries.Load() == 0 {
		t.Fatal("no DNS query was made")
	}

	alice.Send(strings.Replace(servertest.Message("alice", "x", "far-2", "text/plain", "nowhere"),
		"MESSAGE sip:x@example.test", "MESSAGE sip:x@nowhere.example", 1))
	alice.Expect(`^SIP/2.0 404 `)
}

// TestForeignDomainForAuthenticatedUser: without trusted peers, only a local user who proved
// their identity (407 then digest) may send to another domain.
func TestForeignDomainForAuthenticatedUser(t *testing.T) {
	peerConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peerConn.Close()
	d := startDNS(t, peerConn.LocalAddr().(*net.UDPAddr).Port)
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice@example.test:secret-alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, func(o *servertest.Options) {
		o.Proxy.DNS = d.addr
		o.UsersFile = users
	})
	remote := servertest.PacketWire(t, peerConn, nil)
	alice := servertest.Dial(t, "udp", srv.Listener("udp"))
	msg := strings.Replace(servertest.Message("alice", "zoe", "auth-far", "text/plain", "hi zoe"),
		"MESSAGE sip:zoe@example.test", "MESSAGE sip:zoe@elsewhere.example", 1)
	msg = strings.Replace(msg, "To: <sip:zoe@example.test>", "To: <sip:zoe@elsewhere.example>", 1)
	alice.Send(msg)
	res := alice.Expect(`^SIP/2.0 407 `)
	var challenges []string
	for _, h := range res.GetHeaders("Proxy-Authenticate") {
		challenges = append(challenges, h.Value())
	}
	c := servertest.ChallengeParams(challenges)
	resp := servertest.DigestMD5("alice", c["realm"], "secret-alice", "MESSAGE", "sip:zoe@elsewhere.example", c["nonce"], "00000001", "0a4f113b")
	authz := `Proxy-Authorization: Digest username="alice", realm="` + c["realm"] + `", nonce="` + c["nonce"] +
		`", uri="sip:zoe@elsewhere.example", response="` + resp + `", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"`
	retry := strings.Replace(strings.Replace(msg, "CSeq: 1 MESSAGE", "CSeq: 2 MESSAGE", 1), "branch=z9hG4bK", "branch=z9hG4bKretry", 1)
	retry = strings.Replace(retry, "Max-Forwards: 70", "Max-Forwards: 70\r\n"+authz, 1)
	alice.Send(retry)
	req := remote.Request("MESSAGE")
	if req.GetHeader("Proxy-Authorization") != nil {
		t.Errorf("our credentials were relayed to another domain")
	}
	remote.Reply(req, 200)
	alice.Expect(`^SIP/2.0 200 `)

	// A sender of another domain is not authenticated by us: refused.
	bob := servertest.Dial(t, "udp", srv.Listener("udp"))
	bob.Send(strings.Replace(msg, "From: <sip:alice@example.test>", "From: <sip:mallory@evil.example>", 1))
	bob.Expect(`^SIP/2.0 403 Relaying Denied`)
}
