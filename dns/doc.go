// Package dns locates the SIP server of a URI as RFC 3263 §4 says (without NAPTR: SRV per
// RFC 2782, then A/AAAA), for the requests simpled sends to other domains: a Resolver caches
// answers briefly, bounds the fan-out a hostile zone could cause, and never looks up .invalid
// hosts. Its errors tell "no such server" (404) from "DNS failed for now" (503) by wrapping the
// routing errors of package sipx, whose ErrorStatus is the one table of answers. Package
// delivery uses it through its small Resolver interface.
package dns
