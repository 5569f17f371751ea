package auth

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// sameURI reports whether the digest-uri of credentials names the Request-URI ruri (RFC 7616
// §3.4.6, RFC 3261 §22.4: the server checks that they are the same resource). The same string
// matches; otherwise both are compared as SIP URIs (RFC 3261 §19.1.4): scheme and host case
// insensitively, user and password exactly, the same port (an absent port is not 5060), the
// user, ttl, method, maddr and transport parameters present in both or neither and equal
// (case-insensitive), other parameters equal where both have them, and the same headers. A
// digest-uri that does not parse, or a URI of another scheme, must match as a string.
func sameURI(digestURI string, ruri *sip.Uri) bool {
	rs := ruri.String()
	if digestURI == rs {
		return true
	}
	var d sip.Uri
	if err := sip.ParseUri(digestURI, &d); err != nil {
		return false
	}
	if !isSIPScheme(d.Scheme) || !isSIPScheme(ruri.Scheme) {
		return d.String() == rs
	}
	if !strings.EqualFold(schemeOf(&d), schemeOf(ruri)) || d.User != ruri.User || d.Password != ruri.Password ||
		!strings.EqualFold(d.Host, ruri.Host) || d.Port != ruri.Port {
		return false
	}
	if !sameParams(d.UriParams, ruri.UriParams) {
		return false
	}
	return sameHeaders(d.Headers, ruri.Headers)
}

func schemeOf(u *sip.Uri) string {
	if u.Scheme == "" {
		return "sip"
	}
	return u.Scheme
}

func isSIPScheme(s string) bool {
	return s == "" || strings.EqualFold(s, "sip") || strings.EqualFold(s, "sips")
}

// paramsInBothOrNeither are the URI parameters that must be in both URIs or in neither (RFC
// 3261 §19.1.4).
var paramsInBothOrNeither = []string{"user", "ttl", "method", "maddr", "transport"}

func sameParams(a, b sip.HeaderParams) bool {
	for _, name := range paramsInBothOrNeither {
		av, aok := paramFold(a, name)
		bv, bok := paramFold(b, name)
		if aok != bok || !strings.EqualFold(av, bv) {
			return false
		}
	}
	for _, kv := range a {
		if bv, ok := paramFold(b, kv.K); ok && !strings.EqualFold(kv.V, bv) {
			return false
		}
	}
	return true
}

// sameHeaders: the same header names (case-insensitive) with the same values.
func sameHeaders(a, b sip.HeaderParams) bool {
	if len(a) != len(b) {
		return false
	}
	for _, kv := range a {
		if bv, ok := paramFold(b, kv.K); !ok || bv != kv.V {
			return false
		}
	}
	return true
}

// paramFold returns the value of the parameter name, compared case-insensitively.
func paramFold(p sip.HeaderParams, name string) (string, bool) {
	for _, kv := range p {
		if strings.EqualFold(kv.K, name) {
			return kv.V, true
		}
	}
	return "", false
}

// bothUs reports whether the digest-uri and the Request-URI both name this server itself — a
// user-less URI of one of our domains or addresses, such as a REGISTER's sip:example.test
// and the sip:192.0.2.1:5060 that sipp (and clients configured with the server's address)
// put in the credentials: the same resource, the registrar, under two names.
func (a *Auth) bothUs(digestURI string, ruri *sip.Uri) bool {
	if ruri.User != "" {
		return false
	}
	var d sip.Uri
	if err := sip.ParseUri(digestURI, &d); err != nil || d.User != "" || !isSIPScheme(d.Scheme) {
		return false
	}
	_, ours := a.Canonical(strings.Trim(d.Host, "[]"))
	_, rOurs := a.Canonical(strings.Trim(ruri.Host, "[]"))
	return ours && rOurs
}
