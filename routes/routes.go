// Package routes is the table of proxy.routes: ordered rules that send requests matching a
// Request-URI (domain, user), a method or an event package to fixed next hops, such as a PBX
// (Asterisk, FreeSWITCH) serving extension numbers or a voicemail server taking message-summary
// subscriptions. It parses and validates the configured rules, compiles them, matches a
// request against them (the first matching rule wins) and checks a rule does not send a
// request back to simpled itself. It answers the next hop's digest challenge with a route's
// credentials (digest.go).
//
// It is a service of its own rather than part of the proxy because two stages ask it: the
// proxy forwards by it, and the wiring asks it whether a request is routed before the presence
// agent would answer a SUBSCRIBE or PUBLISH itself (an MWI subscription routed to a voicemail
// server is not the presence agent's). An explicit rule is the administrator's intent, so a
// matching rule wins over the location service: a routed user's registered devices are not
// tried.
package routes

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Rule is one entry of proxy.routes as configured (internal/config embeds the type: its
// yaml keys and field comments are the configuration reference).
type Rule struct {
	// Match says which requests the rule takes; every condition given must hold, and a rule
	// with none takes every request outside a dialog.
	Match Match `yaml:"match"`
	// To are the next hops, sip: or sips: URIs (sip:127.0.0.6:5080;transport=tcp), tried one
	// at a time in order: the next one after a 408, a 5xx or a transport failure.
	To []string `yaml:"to"`
	// Auth are the credentials simpled answers a next hop's 401 or 407 with, once per
	// request (digest MD5 or SHA-256, qop auth); no username leaves challenges to the caller.
	Auth Credentials `yaml:"auth"`
	// RecordRoute keeps simpled in the dialogs the rule creates (Record-Route). Default true.
	RecordRoute bool `yaml:"record_route"`
}

// Match is the condition of a rule. Empty fields match anything.
type Match struct {
	// Domain is the Request-URI's host: exact (case-insensitive), or "*.suffix" for any name
	// ending in .suffix.
	Domain string `yaml:"domain"`
	// User is a regular expression (Go RE2 syntax) the Request-URI's user part must match,
	// anchored only as written: "^1[0-9]{3}$" for four-digit extensions starting with 1.
	User string `yaml:"user"`
	// Method lists the request methods the rule takes (INVITE, MESSAGE, SUBSCRIBE, ...).
	Method []string `yaml:"method"`
	// Event is the event package of the Event header (message-summary, presence, ...); a
	// request without one does not match.
	Event string `yaml:"event"`
}

// Credentials are a route's outbound digest credentials.
type Credentials struct {
	// Username is the digest username simpled answers challenges with.
	Username string `yaml:"username"`
	// Password is its password. Never printed: -t and the admin API show it as "***" or
	// not at all.
	Password string `yaml:"password"`
}

// Problem is one thing wrong with a rule: Key is relative to the rule ("match.user",
// "to[1]").
type Problem struct {
	Key string
	Msg string
}

// Route is one compiled rule of a Table.
type Route struct {
	// Index is the rule's position in proxy.routes, from 0.
	Index int
	Rule  Rule
	// Hops are the parsed To URIs, in order.
	Hops []sip.Uri
	user *regexp.Regexp
}

// Table is the compiled proxy.routes. The zero value and nil route nothing. It is read-only
// once built and safe for concurrent use.
type Table struct {
	routes []*Route
}

// New compiles rules; it fails, naming the rule, when one has a Problem.
func New(rules []Rule) (*Table, error) {
	t := &Table{}
	for i, r := range rules {
		if ps := r.Problems(); len(ps) > 0 {
			return nil, fmt.Errorf("routes: proxy.routes[%d].%s: %s", i, ps[0].Key, ps[0].Msg)
		}
		rt := &Route{Index: i, Rule: r}
		if r.Match.User != "" {
			rt.user = regexp.MustCompile(r.Match.User) // Problems compiled it
		}
		for _, to := range r.To {
			u, _ := ParseHop(to)
			rt.Hops = append(rt.Hops, u)
		}
		t.routes = append(t.routes, rt)
	}
	return t, nil
}

// Problems lists what is wrong with r: a user expression that does not compile, a bad
// domain pattern or method, no next hop, a next hop that is no sip: or sips: URI, a password
// without a username.
func (r Rule) Problems() []Problem {
	var out []Problem
	add := func(key, format string, args ...any) { out = append(out, Problem{key, fmt.Sprintf(format, args...)}) }
	if r.Match.User != "" {
		if _, err := regexp.Compile(r.Match.User); err != nil {
			add("match.user", "%q: not a regular expression: %v", r.Match.User, err)
		}
	}
	if d := strings.TrimPrefix(r.Match.Domain, "*."); strings.ContainsAny(d, "*@:;/ \t") || (r.Match.Domain != "" && d == "") {
		add("match.domain", "%q: want a domain, or *.suffix for any name under suffix", r.Match.Domain)
	}
	for i, m := range r.Match.Method {
		if !isToken(m) {
			add(fmt.Sprintf("match.method[%d]", i), "%q: not a SIP method", m)
		}
	}
	if r.Match.Event != "" && !isToken(r.Match.Event) {
		add("match.event", "%q: not an event package", r.Match.Event)
	}
	if len(r.To) == 0 {
		add("to", "no next hop: want at least one sip: URI such as sip:192.0.2.10:5060")
	}
	for i, to := range r.To {
		if _, err := ParseHop(to); err != nil {
			add(fmt.Sprintf("to[%d]", i), "%q: %v", to, err)
		}
	}
	if r.Auth.Username == "" && r.Auth.Password != "" {
		add("auth.username", "a password without a username")
	}
	return out
}

// ParseHop parses a next hop: a sip: or sips: URI with a host and no user part.
func ParseHop(s string) (sip.Uri, error) {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		return u, fmt.Errorf("not a SIP URI: %w", err)
	}
	switch {
	case u.Scheme != "sip" && u.Scheme != "sips":
		return u, fmt.Errorf("want a sip: or sips: URI")
	case u.Host == "":
		return u, fmt.Errorf("no host")
	case u.User != "":
		return u, fmt.Errorf("a next hop names a server, not a user: drop %q@", u.User)
	}
	return u, nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// Routes returns the compiled routes in order.
func (t *Table) Routes() []*Route {
	if t == nil {
		return nil
	}
	return t.routes
}

// Match returns the first route req matches, or nil. Requests within a dialog (a To tag)
// never match: they follow their Route set.
func (t *Table) Match(req *sip.Request) *Route {
	if t == nil || len(t.routes) == 0 {
		return nil
	}
	if to := req.To(); to == nil || to.Params.Has("tag") {
		return nil
	}
	for _, r := range t.routes {
		if r.matches(req) {
			return r
		}
	}
	return nil
}

// Routed reports whether a rule takes req.
func (t *Table) Routed(req *sip.Request) bool { return t.Match(req) != nil }

func (r *Route) matches(req *sip.Request) bool {
	m := r.Rule.Match
	if len(m.Method) > 0 && !containsFold(m.Method, string(req.Method)) {
		return false
	}
	if m.Domain != "" && !domainMatches(m.Domain, req.Recipient.Host) {
		return false
	}
	if r.user != nil && !r.user.MatchString(req.Recipient.User) {
		return false
	}
	if m.Event != "" {
		h := req.GetHeader("Event")
		if h == nil {
			return false
		}
		pkg, _, _ := strings.Cut(h.Value(), ";")
		if !strings.EqualFold(strings.TrimSpace(pkg), m.Event) {
			return false
		}
	}
	return true
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// domainMatches matches a host against "name" or "*.suffix" (a name under suffix, not suffix
// itself).
func domainMatches(pattern, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	pattern = strings.ToLower(pattern)
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(host, "."+suffix)
	}
	return host == pattern
}

// HopAddrs returns the IP addresses of the next hops named by IP literals: the wiring trusts
// requests from them as a trusted peer's. A hop named by DNS is not resolved (an address
// proves nothing about a name): it must be listed in proxy.trusted_peers.
func (t *Table) HopAddrs() []netip.Addr {
	var out []netip.Addr
	for _, r := range t.Routes() {
		for _, h := range r.Hops {
			if ip, err := netip.ParseAddr(strings.Trim(h.Host, "[]")); err == nil && !containsAddr(out, ip.Unmap()) {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, v := range list {
		if v == a {
			return true
		}
	}
	return false
}

// Self says whether a next hop is simpled itself.
type Self func(hop sip.Uri) bool

// Loops returns, for each rule with a next hop that Self says is simpled itself, a Problem
// naming that hop: such a route would send requests back to simpled.
func Loops(rules []Rule, self Self) map[int]Problem {
	out := map[int]Problem{}
	for i, r := range rules {
		for j, to := range r.To {
			u, err := ParseHop(to)
			if err == nil && self(u) {
				out[i] = Problem{Key: fmt.Sprintf("to[%d]", j), Msg: fmt.Sprintf("%q is this server (a listen address or a served domain): the route would loop", to)}
				break
			}
		}
	}
	return out
}
