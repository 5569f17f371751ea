package config

import (
	"io/fs"
	"strings"
	"testing"
)

func errNotExist() error { return fs.ErrNotExist }

func TestParseListen(t *testing.T) {
	tests := []struct {
		name     string
		uri      string
		want     Listener
		addr     string
		network  string
		secure   bool
		errorHas string
	}{
		{name: "udp", uri: "udp://127.0.0.1:5060", want: Listener{"udp", "127.0.0.1", 5060}, addr: "127.0.0.1:5060", network: "udp"},
		{name: "tcp any port", uri: "tcp://0.0.0.0:0", want: Listener{"tcp", "0.0.0.0", 0}, addr: "0.0.0.0:0", network: "tcp"},
		{name: "tls IPv6", uri: "tls://[::1]:5061", want: Listener{"tls", "::1", 5061}, addr: "[::1]:5061", network: "tcp", secure: true},
		{name: "ws host name", uri: "ws://sip.example.test:8080", want: Listener{"ws", "sip.example.test", 8080}, addr: "sip.example.test:8080", network: "tcp"},
		{name: "wss upper-case scheme", uri: "WSS://[::]:443", want: Listener{"wss", "::", 443}, addr: "[::]:443", network: "tcp", secure: true},
		{name: "IPv6 zone", uri: "udp://[fe80::1%eth0]:5060", want: Listener{"udp", "fe80::1%eth0", 5060}, addr: "[fe80::1%eth0]:5060", network: "udp"},
		{name: "no scheme", uri: "127.0.0.1:5060", errorHas: "want SCHEME://HOST:PORT"},
		{name: "unknown scheme", uri: "sips://127.0.0.1:5061", errorHas: `unknown scheme "sips"`},
		{name: "no port", uri: "udp://127.0.0.1", errorHas: "missing port in address"},
		{name: "empty port", uri: "udp://127.0.0.1:", errorHas: "missing port"},
		{name: "named port", uri: "udp://127.0.0.1:sip", errorHas: `invalid port "sip"`},
		{name: "signed port", uri: "udp://127.0.0.1:+5060", errorHas: `invalid port "+5060"`},
		{name: "port too big", uri: "udp://127.0.0.1:65536", errorHas: "port 65536 out of range"},
		{name: "no host", uri: "udp://:5060", errorHas: "missing host"},
		{name: "bad host", uri: "udp://bad_host:5060", errorHas: `invalid host "bad_host"`},
		{name: "unbracketed IPv6", uri: "udp://::1:5060", errorHas: "too many colons"},
		{name: "path", uri: "ws://127.0.0.1:80/sip", errorHas: `unexpected "/sip" after HOST:PORT`},
		{name: "parameters", uri: "udp://127.0.0.1:5060;transport=udp", errorHas: `unexpected ";transport=udp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseListen(tt.uri)
			if tt.errorHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errorHas) {
					t.Fatalf("ParseListen(%q) error = %v, want one containing %q", tt.uri, err, tt.errorHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseListen(%q): %v", tt.uri, err)
			}
			if got != tt.want {
				t.Errorf("ParseListen(%q) = %+v, want %+v", tt.uri, got, tt.want)
			}
			if got.Addr() != tt.addr {
				t.Errorf("Addr() = %q, want %q", got.Addr(), tt.addr)
			}
			if got.Network() != tt.network || got.Secure() != tt.secure {
				t.Errorf("Network(), Secure() = %q, %v, want %q, %v", got.Network(), got.Secure(), tt.network, tt.secure)
			}
			if again, err := ParseListen(got.String()); err != nil || again != got {
				t.Errorf("ParseListen(String()) = %+v, %v, want %+v", again, err, got)
			}
		})
	}
}

func TestValidHostname(t *testing.T) {
	tests := []struct {
		name string
		host string
		want bool
	}{
		{name: "single label", host: "localhost", want: true},
		{name: "dotted", host: "sip.example.test", want: true},
		{name: "digits and hyphen", host: "node-1.example.test", want: true},
		{name: "63-char label", host: strings.Repeat("a", 63) + ".test", want: true},
		{name: "64-char label", host: strings.Repeat("a", 64) + ".test", want: false},
		{name: "too long", host: strings.Repeat("a.", 127) + "ab", want: false},
		{name: "empty", host: "", want: false},
		{name: "empty label", host: "a..b", want: false},
		{name: "trailing dot", host: "example.test.", want: false},
		{name: "leading hyphen", host: "-a.test", want: false},
		{name: "underscore", host: "a_b.test", want: false},
		{name: "all digits", host: "999.1.1.1", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validHostname(tt.host); got != tt.want {
				t.Errorf("validHostname(%q) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}
