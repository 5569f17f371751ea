package transport

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
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
