package sipx

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Peers are the trusted peers (proxy.trusted_peers): requests from them may go to other
// domains without digest authentication. A peer is an address or CIDR prefix, matched
// against the request's source IP, or a DNS name, matched against the names a verified TLS
// client certificate proves for the request's connection (State.PeerNames). Names match
// exactly, case-insensitively, ignoring a trailing dot: no wildcards, and never a DNS lookup
// (an address proves nothing about a name). The zero value trusts nobody.
type Peers struct {
	prefixes []netip.Prefix
	names    []string // lower case, no trailing dot
}

// ParsePeers parses proxy.trusted_peers: each entry an IP address, a CIDR prefix or a DNS
// name.
func ParsePeers(entries []string) (Peers, error) {
	var p Peers
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if strings.Contains(e, "/") {
			pfx, err := netip.ParsePrefix(e)
			if err != nil {
				return Peers{}, fmt.Errorf("sipx: trusted peer %q: %w", e, err)
			}
			p.prefixes = append(p.prefixes, pfx.Masked())
			continue
		}
		if a, err := netip.ParseAddr(e); err == nil {
			a = a.Unmap()
			p.prefixes = append(p.prefixes, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		name := peerName(e)
		if name == "" || strings.ContainsAny(name, " \t*/:@[]") {
			return Peers{}, fmt.Errorf("sipx: trusted peer %q: want an IP address, a CIDR prefix or a DNS name", e)
		}
		p.names = append(p.names, name)
	}
	return p, nil
}

// peerName is the form names are compared in.
func peerName(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// Empty reports whether no peer is trusted.
func (p Peers) Empty() bool { return len(p.prefixes) == 0 && len(p.names) == 0 }

// Trusted reports whether the request of st comes from a trusted peer: its source IP is in
// one of the prefixes, or one of st.PeerNames is one of the names.
func (p Peers) Trusted(st *State) bool {
	ip, _ := netip.ParseAddr(st.SourceIP())
	return p.TrustsSource(ip, st.PeerNames)
}

// TrustsSource reports whether a message from ip (invalid: unknown), over a connection whose
// verified client certificate proves names (nil: none), comes from a trusted peer. It
// allocates nothing: the transport asks it before parsing (per-source limits exempt peers).
func (p Peers) TrustsSource(ip netip.Addr, names []string) bool {
	if len(p.prefixes) > 0 && ip.IsValid() {
		ip = ip.Unmap()
		for _, pfx := range p.prefixes {
			if pfx.Contains(ip) {
				return true
			}
		}
	}
	for _, n := range names {
		if slices.Contains(p.names, peerName(n)) {
			return true
		}
	}
	return false
}
