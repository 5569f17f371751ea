package transport

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"net/netip"
	"strings"
)

// Flow is how one client is reached (RFC 5626 §3): the transport, the client's address as this
// server sees it (the NAT binding's public side, or the peer of a TCP/TLS/WebSocket
// connection), and the listener of this node the client talks to. A request for the client
// goes back over the flow — the same connection, or from that UDP socket to that address —
// never to the address the client writes in its Contact, which behind a NAT or in a browser
// reaches nothing.
type Flow struct {
	Transport string         // udp, tcp, tls, ws, wss
	Remote    netip.AddrPort // the client as seen from here
	Local     netip.AddrPort // our listener (it names the node that holds the flow)
}

// Stream reports whether the flow is a connection (tcp, tls, ws, wss) rather than UDP.
func (f Flow) Stream() bool { return f.Transport != "udp" }

var transportCodes = []string{"udp", "tcp", "tls", "ws", "wss"}

// tokenEncoding is base32 in lower case without padding: its alphabet is legal in the user
// part of a SIP URI as it is, and survives clients that lower-case URIs.
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// tokenMAC is the length of the MAC in a token: 64 bits is plenty for a value only this
// deployment checks, on a path where a forgery buys at most a request sent to an address.
const tokenMAC = 8

// Token is the flow's name in Path and Record-Route user parts and in stored bindings: the
// transport, both addresses and a MAC under key, so that a token coming back in a Route can be
// trusted to have been written by a node of this deployment (nodes share key).
func (f Flow) Token(key []byte) string {
	code := byte(0)
	for i, t := range transportCodes {
		if t == f.Transport {
			code = byte(i)
		}
	}
	b := make([]byte, 0, 1+2*18+tokenMAC)
	b = append(b, code)
	b = appendAddrPort(b, f.Remote)
	b = appendAddrPort(b, f.Local)
	m := hmac.New(sha256.New, key)
	m.Write(b)
	b = m.Sum(b)[:len(b)+tokenMAC]
	return tokenEncoding.EncodeToString(b)
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().Unmap()
	if a.Is4() {
		b = append(b, 4)
	} else {
		b = append(b, 16)
	}
	b = append(b, a.AsSlice()...)
	return append(b, byte(ap.Port()>>8), byte(ap.Port()))
}

func readAddrPort(b []byte) (netip.AddrPort, []byte, bool) {
	if len(b) < 1 || (b[0] != 4 && b[0] != 16) || len(b) < 1+int(b[0])+2 {
		return netip.AddrPort{}, nil, false
	}
	n := int(b[0])
	a, ok := netip.AddrFromSlice(b[1 : 1+n])
	if !ok {
		return netip.AddrPort{}, nil, false
	}
	port := uint16(b[1+n])<<8 | uint16(b[2+n])
	return netip.AddrPortFrom(a, port), b[3+n:], true
}

// ParseFlowToken decodes a token written by Token under the same key. It refuses anything
// else — a token of another deployment, a mangled one, or a plain user name.
func ParseFlowToken(tok string, key []byte) (Flow, bool) {
	if len(tok) < 16 || len(tok) > 96 {
		return Flow{}, false
	}
	tok = strings.ToLower(tok)
	b, err := tokenEncoding.DecodeString(tok)
	// Only the one spelling Token writes: base32 without padding also decodes a last
	// character whose unused bits are set, which would give a token two spellings.
	if err != nil || len(b) < 1+tokenMAC || tokenEncoding.EncodeToString(b) != tok {
		return Flow{}, false
	}
	body, mac := b[:len(b)-tokenMAC], b[len(b)-tokenMAC:]
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil)[:tokenMAC], mac) || int(body[0]) >= len(transportCodes) {
		return Flow{}, false
	}
	f := Flow{Transport: transportCodes[body[0]]}
	var ok bool
	rest := body[1:]
	if f.Remote, rest, ok = readAddrPort(rest); !ok {
		return Flow{}, false
	}
	if f.Local, rest, ok = readAddrPort(rest); !ok || len(rest) != 0 {
		return Flow{}, false
	}
	return f, true
}
