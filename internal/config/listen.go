package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Listener is one parsed -listen URI.
type Listener struct {
	// Scheme is udp, tcp, tls, ws or wss, lower case.
	Scheme string
	// Host is an IP literal (IPv6 without brackets) or a host name.
	Host string
	// Port is 0..65535; 0 asks the system for a free port.
	Port int
}

// schemes lists the listener schemes in the order error messages name them.
var schemes = []string{"udp", "tcp", "tls", "ws", "wss"}

// ParseListen parses SCHEME://HOST:PORT, as in udp://127.0.0.1:5060, wss://[::1]:0 or
// tcp://sip.example.test:5060. The scheme is case-insensitive; nothing may follow the port.
func ParseListen(uri string) (Listener, error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return Listener{}, fmt.Errorf("%q: want SCHEME://HOST:PORT, scheme one of %s", uri, strings.Join(schemes, ", "))
	}
	scheme = strings.ToLower(scheme)
	if !isListenScheme(scheme) {
		return Listener{}, fmt.Errorf("%q: unknown scheme %q, want one of %s", uri, scheme, strings.Join(schemes, ", "))
	}
	if i := strings.IndexAny(rest, "/?#;"); i >= 0 {
		return Listener{}, fmt.Errorf("%q: unexpected %q after HOST:PORT", uri, rest[i:])
	}
	host, port, err := splitHostPort(rest)
	if err != nil {
		return Listener{}, fmt.Errorf("%q: %w; want SCHEME://HOST:PORT, IPv6 as [::1]:5060", uri, err)
	}
	if host == "" {
		return Listener{}, fmt.Errorf("%q: missing host (0.0.0.0 or [::] listens on every interface)", uri)
	}
	return Listener{Scheme: scheme, Host: host, Port: port}, nil
}

func isListenScheme(s string) bool {
	for _, v := range schemes {
		if s == v {
			return true
		}
	}
	return false
}

// Addr returns HOST:PORT as net.Listen wants it, with brackets around an IPv6 host.
func (l Listener) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// String returns the listener as SCHEME://HOST:PORT.
func (l Listener) String() string { return l.Scheme + "://" + l.Addr() }

// Network returns the socket network the listener binds: "udp" for udp, "tcp" for the others.
func (l Listener) Network() string {
	if l.Scheme == "udp" {
		return "udp"
	}
	return "tcp"
}

// Secure reports whether the listener needs TLS material (tls and wss).
func (l Listener) Secure() bool { return l.Scheme == "tls" || l.Scheme == "wss" }

// splitHostPort splits HOST:PORT, checks the port (0..65535, digits only) and the host (an IP
// literal or a host name; "" is returned as is for the caller to judge).
func splitHostPort(s string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", 0, errors.New(ae.Err) // without the address, which callers quote
		}
		return "", 0, err
	}
	port, err := parsePort(portStr)
	if err != nil {
		return "", 0, err
	}
	if host != "" && !validHost(host) {
		return "", 0, fmt.Errorf("invalid host %q", host)
	}
	return host, port, nil
}

func parsePort(s string) (int, error) {
	if s == "" {
		return 0, errors.New("missing port")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("invalid port %q", s)
		}
	}
	p, err := strconv.Atoi(s)
	if err != nil || p > 65535 {
		return 0, fmt.Errorf("port %s out of range 0..65535", s)
	}
	return p, nil
}

// validHost reports whether s is an IP literal (IPv6 without brackets, zone allowed) or a
// host name.
func validHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	return validHostname(s)
}

// validHostname reports whether s is a DNS host name: dot-separated labels of 1..63 letters,
// digits and inner hyphens, at most 253 characters, not all digits (that would be a bad IP).
func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	allDigits := true
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				allDigits = false
			default:
				return false
			}
		}
	}
	return !allDigits
}

// Loopback reports whether the listener binds a loopback address only (127.0.0.0/8, ::1 or
// localhost): nothing off this machine reaches it.
func (l Listener) Loopback() bool {
	if strings.EqualFold(l.Host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(l.Host, "[]"))
	return err == nil && ip.IsLoopback()
}
