package sipx

import "net/netip"

// SourceKey is the key per-source limits count a source address under: an IPv4 address as
// itself, an IPv6 address by its /64 (one subscriber's LAN: a host picks any address in its
// /64, so counting exact IPv6 addresses would give one attacker 2^64 fresh quotas), an
// IPv4-mapped IPv6 address as the IPv4 address. It allocates nothing.
func SourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// SourceGroup is SourceKey for an address in text (no port or brackets), as the stages get
// it from the request state: the IPv4 address, or the IPv6 /64 as a prefix. One that does not
// parse is its own group.
func SourceGroup(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	k := SourceKey(a)
	if k.Is4() {
		return k.String()
	}
	return netip.PrefixFrom(k, 64).String()
}
