package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// ServerCipherSuites are the TLS 1.2 suites the tls and wss listeners accept: ECDHE key
// exchange with an AEAD cipher only (RFC 7525 §4.2), no CBC-SHA1 or RSA key exchange. TLS 1.3
// suites are all AEAD and not configurable; TLS 1.3 is preferred whenever the client offers it.
var ServerCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerTLS returns the TLS configuration of a tls or wss listener: TLS 1.2 or later, AEAD
// suites only. With clientCAs, a client is asked for a certificate and one it gives must
// verify against clientCAs (a client without one is still served: it is challenged as anyone
// is); PeerNames then tells what the certificate proves.
func ServerTLS(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	c := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: ServerCipherSuites,
	}
	if clientCAs != nil {
		c.ClientCAs = clientCAs
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return c
}

// CertNames returns the names a certificate proves for a SIP peer (RFC 5922 §7.1): the host
// of each sip: or sips: URI subjectAltName and each DNS name subjectAltName, lower case,
// without duplicates. The subject's common name is not used (RFC 5922 §7.1 uses it only
// when there are no such SANs; modern CAs always put the names in SANs).
func CertNames(cert *x509.Certificate) []string {
	var names []string
	add := func(n string) {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n == "" {
			return
		}
		for _, have := range names {
			if have == n {
				return
			}
		}
		names = append(names, n)
	}
	for _, u := range cert.URIs {
		if u.Scheme == "sip" || u.Scheme == "sips" {
			add(sipURIHost(u))
		}
	}
	for _, n := range cert.DNSNames {
		add(n)
	}
	return names
}

// sipURIHost is the host part of a sip: URI SAN (sip:example.com, sip:user@example.com;p).
func sipURIHost(u *url.URL) string {
	s := u.Opaque
	if s == "" {
		s = u.Host
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexAny(s, ";?"); i >= 0 {
		s = s[:i]
	}
	if strings.HasPrefix(s, "[") {
		return "" // an IP literal names no domain
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	return s
}

// ClientTLS returns the TLS configuration of outbound connections (sipgo dials them): the
// server's certificate chain is verified against roots (nil: the system's roots), as a
// server certificate, but not its name: sipgo dials the resolved address and would check
// the certificate against that IP, where RFC 5922 §4 asks for the SIP domain the address was
// resolved from. The proxy checks that name for every request it sends over the connection
// (VerifyPeerName), a reused connection included. No SNI is sent (there is no name to send
// at dial time). cert, when not nil, is presented to servers that ask for a client
// certificate (mutual TLS between peers, RFC 5922 §7.3).
func ClientTLS(roots *x509.CertPool, cert *tls.Certificate) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The standard name check is replaced, not skipped: VerifyConnection verifies the
		// chain here, and VerifyPeerName the name per request.
		InsecureSkipVerify: true, //nolint:gosec // see above
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("transport: the server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			return err
		},
	}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// ErrPeerName is the error of VerifyPeerName.
var ErrPeerName = errors.New("transport: TLS peer certificate does not name the target")

// VerifyPeerName checks that the certificate conn's TLS peer presented names name: a SIP
// domain (a DNS SAN, or the host of a sip: URI SAN, matched whole and without wildcards as
// RFC 5922 §7.2 asks) or an IP literal (an IP SAN). conn is a *tls.Conn or a connection of a StreamListener (an accepted connection
// reused to reach its peer: its client certificate was verified against the listener's
// client CAs). A connection without a verified certificate names nothing.
func VerifyPeerName(conn net.Conn, name string) error {
	s, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return fmt.Errorf("%w %s: not a TLS connection", ErrPeerName, name)
	}
	certs := s.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return fmt.Errorf("%w %s: no certificate", ErrPeerName, name)
	}
	leaf := certs[0]
	name = strings.ToLower(strings.TrimSuffix(strings.Trim(name, "[]"), "."))
	if ip := net.ParseIP(name); ip != nil {
		for _, have := range leaf.IPAddresses {
			if have.Equal(ip) {
				return nil
			}
		}
	} else if slices.Contains(CertNames(leaf), name) {
		return nil
	}
	return fmt.Errorf("%w %s (it names %s)", ErrPeerName, name, strings.Join(append(CertNames(leaf), ipNames(leaf)...), ", "))
}

func ipNames(c *x509.Certificate) []string {
	var out []string
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}
