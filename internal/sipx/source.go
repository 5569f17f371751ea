package sipx

import "net/netip"

// SourceGroup is the key per-source limits count a source address under: an IPv4 address as
// itself, an IPv6 address by its /64 (one subscriber's LAN: a host picks any address in its
// /64, so counting exact IPv6 addresses would give one attacker 2^64 fresh quotas), an
// IPv4-mapped IPv6 address as the IPv4 address. ip is an address without port or brackets;
// one that does not parse is its own group.
func SourceGroup(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}
