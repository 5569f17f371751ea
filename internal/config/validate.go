package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Validate checks every field and the fields against each other (1 <= min_expires <=
// default_expires <= max_expires, a certificate and key that exist for tls:// and wss://
// listeners, no listener twice, a well-formed store URL, ...). The error, when not nil, is a
// *Errors holding every problem, each naming its YAML key; Parse and FromArgs run the same
// checks and report them at the file position or flag the value came from.
func (o Options) Validate() error {
	errs := &Errors{}
	o.validate(sources{}, errs)
	return errs.err()
}

// logLevels and logFormats are the accepted values, in the order messages list them.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"console", "json"}
)

func oneOf(s string, values []string) bool {
	for _, v := range values {
		if s == v {
			return true
		}
	}
	return false
}

func (o Options) validate(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }

	o.validateListen(src, errs)

	if len(o.Domains) == 0 {
		bad("domain", "at least one domain is required")
	}
	seenDomain := map[string]int{}
	for i, d := range o.Domains {
		key := fmt.Sprintf("domain[%d]", i)
		host := d
		if strings.HasPrefix(d, "[") && strings.HasSuffix(d, "]") {
			host = d[1 : len(d)-1]
			if !strings.Contains(host, ":") {
				bad(key, "%q: brackets are for IPv6 addresses only", d)
				continue
			}
		}
		if !validHost(host) {
			bad(key, "%q is not a host name or IP address", d)
			continue
		}
		if j, dup := seenDomain[d]; dup {
			bad(key, "%q given twice (also entry %d)", d, j+1)
		}
		seenDomain[d] = i
	}

	if _, err := ParseStoreURL(o.Store); err != nil {
		bad("store", "%v", err)
	}

	if o.HTTP != "" {
		if _, _, err := splitHostPort(o.HTTP); err != nil {
			bad("http", "%q: %v; want HOST:PORT, or \"\" to disable the HTTP endpoints", o.HTTP, err)
		}
	} else if o.Pprof {
		bad("pprof", "needs the HTTP listener, which http \"\" disables")
	}

	fileExists := func(key, path string) {
		if path == "" {
			return
		}
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			bad(key, "%v", err)
		case fi.IsDir():
			bad(key, "%s is a directory", path)
		}
	}
	fileExists("users", o.UsersFile)
	fileExists("tls_cert", o.TLSCert)
	fileExists("tls_key", o.TLSKey)
	if (o.TLSCert == "") != (o.TLSKey == "") {
		if o.TLSCert == "" {
			bad("tls_key", "tls_key is set but tls_cert is not")
		} else {
			bad("tls_cert", "tls_cert is set but tls_key is not")
		}
	}

	if !oneOf(o.LogLevel, logLevels) {
		bad("log_level", "%q: want one of %s", o.LogLevel, strings.Join(logLevels, ", "))
	}
	if o.LogFormat != "" && !oneOf(o.LogFormat, logFormats) {
		bad("log_format", "%q: want console, json or \"\" (console on a terminal, json otherwise)", o.LogFormat)
	}
	if o.NodeID != "" && !validNodeID(o.NodeID) {
		bad("node_id", "%q: want at most 64 letters, digits, '.', '-' or '_'", o.NodeID)
	}

	r := o.Registrar
	switch {
	case r.MinExpires < 1:
		bad("registrar.min_expires", "%d: must be at least 1 second", r.MinExpires)
	case r.DefaultExpires < r.MinExpires:
		bad("registrar.default_expires", "%d: must be at least min_expires (%d)", r.DefaultExpires, r.MinExpires)
	case r.MaxExpires < r.DefaultExpires:
		bad("registrar.max_expires", "%d: must be at least default_expires (%d)", r.MaxExpires, r.DefaultExpires)
	}
	if r.MaxContacts < 1 {
		bad("registrar.max_contacts", "%d: must be at least 1", r.MaxContacts)
	}
	if r.OnMaxContacts != "evict" && r.OnMaxContacts != "reject" {
		bad("registrar.on_max_contacts", "%q: want evict (remove the oldest binding) or reject (403)", r.OnMaxContacts)
	}
	if r.SweepInterval <= 0 {
		bad("registrar.sweep_interval", "%s: must be more than 0", r.SweepInterval)
	}

	a := o.Auth
	if a.NonceLifetime <= 0 {
		bad("auth.nonce_lifetime", "%s: must be more than 0", a.NonceLifetime)
	}
	if a.NonceSecret != "" && len(a.NonceSecret) < 16 {
		// The secret itself is never printed.
		bad("auth.nonce_secret", "too short (%d bytes): want at least 16 bytes, or \"\" for a random secret per process", len(a.NonceSecret))
	}
	if a.Lockout < 0 {
		bad("auth.lockout", "%s: must not be negative (0 disables lockouts)", a.Lockout)
	}
	if a.LockoutThreshold < 1 {
		bad("auth.lockout_threshold", "%d: must be at least 1", a.LockoutThreshold)
	}

	if len(a.Algorithms) == 0 {
		bad("auth.algorithms", "empty: want at least one of MD5, SHA-256, MD5-sess, SHA-256-sess")
	}
	seenAlg := map[string]bool{}
	for _, alg := range a.Algorithms {
		switch u := strings.ToUpper(alg); u {
		case "MD5", "SHA-256", "MD5-SESS", "SHA-256-SESS":
			if seenAlg[u] {
				bad("auth.algorithms", "%q listed twice", alg)
			}
			seenAlg[u] = true
		default:
			bad("auth.algorithms", "%q: want MD5, SHA-256, MD5-sess or SHA-256-sess", alg)
		}
	}

	l := o.Limits
	if l.MaxMessageSize < 1 {
		bad("limits.max_message_size", "%d: must be at least 1 byte", l.MaxMessageSize)
	}
	switch {
	case l.MaxBodySize < 0:
		bad("limits.max_body_size", "%d: must be 0 or more", l.MaxBodySize)
	case l.MaxMessageSize >= 1 && l.MaxBodySize > l.MaxMessageSize:
		bad("limits.max_body_size", "%d: must be at most max_message_size (%d)", l.MaxBodySize, l.MaxMessageSize)
	}

	p := o.Proxy
	if p.DNS != "" {
		if _, _, err := splitHostPort(p.DNS); err != nil {
			bad("proxy.dns", "%q: %v; want HOST:PORT, or \"\" for the system's resolver", p.DNS, err)
		}
	}
	for i, peer := range p.TrustedPeers {
		if _, err := ParsePrefix(peer); err != nil {
			bad(fmt.Sprintf("proxy.trusted_peers[%d]", i), "%q: want an IP address or a CIDR prefix", peer)
		}
	}
	if p.UDPMTU < 500 {
		bad("proxy.udp_mtu", "%d: must be at least 500 bytes", p.UDPMTU)
	}
	if p.InviteTimeout < time.Second {
		bad("proxy.invite_timeout", "%s: must be at least 1s", p.InviteTimeout)
	}

	m := o.Messages
	for i, ct := range m.ContentTypes {
		if t, sub, ok := strings.Cut(ct, "/"); ct != "*" && (!ok || t == "" || sub == "" || strings.ContainsAny(ct, " ;,")) {
			bad(fmt.Sprintf("messages.content_types[%d]", i), "%q: want type/subtype (e.g. application/json) or \"*\"", ct)
		}
	}
	if m.OfflineMaxCount < 1 {
		bad("messages.offline_max_count", "%d: must be at least 1", m.OfflineMaxCount)
	}
	if m.OfflineMaxBytes < 1 {
		bad("messages.offline_max_bytes", "%d: must be at least 1", m.OfflineMaxBytes)
	}
	if m.OfflineMaxAge < time.Minute {
		bad("messages.offline_max_age", "%s: must be at least 1m", m.OfflineMaxAge)
	}
	switch o.Presence.Policy {
	case "allow", "same-domain", "confirm":
	default:
		bad("presence.policy", "%q: want allow, same-domain or confirm", o.Presence.Policy)
	}
	if o.Presence.MinNotifyInterval < 0 || o.Presence.MinNotifyInterval > time.Minute {
		bad("presence.min_notify_interval", "%s: want 0 to 1m", o.Presence.MinNotifyInterval)
	}
	if o.Presence.MaxSubscriptionsPerSource < 1 {
		bad("presence.max_subscriptions_per_source", "%d: must be at least 1", o.Presence.MaxSubscriptionsPerSource)
	}
	tr := o.Transport
	if tr.MaxConnections < 1 {
		bad("transport.max_connections", "%d: must be at least 1", tr.MaxConnections)
	}
	if tr.IdleTimeout < time.Second {
		bad("transport.idle_timeout", "%s: must be at least 1s", tr.IdleTimeout)
	}
	if tr.MessageTimeout < 100*time.Millisecond {
		bad("transport.message_timeout", "%s: must be at least 100ms", tr.MessageTimeout)
	}
	if tr.HandshakeTimeout < 100*time.Millisecond {
		bad("transport.handshake_timeout", "%s: must be at least 100ms", tr.HandshakeTimeout)
	}
	if tr.FlowTimer < 0 || tr.FlowTimer%time.Second != 0 {
		bad("transport.flow_timer", "%s: want whole seconds, 0 (none) or more", tr.FlowTimer)
	}
}

// ParsePrefix parses a trusted peer: an IP address (a /32 or /128 prefix) or a CIDR prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// validateListen checks each listener, duplicates, two stream listeners on one TCP port, and
// the TLS material secure listeners need.
func (o Options) validateListen(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
	if len(o.Listen) == 0 {
		bad("listen", "at least one listener is required")
		return
	}
	type bound struct {
		network, addr string
	}
	seen := map[bound]string{}
	for i, uri := range o.Listen {
		key := fmt.Sprintf("listen[%d]", i)
		l, err := ParseListen(uri)
		if err != nil {
			bad(key, "%v", err)
			continue
		}
		if l.Secure() && (o.TLSCert == "" || o.TLSKey == "") {
			bad(key, "%s needs tls_cert and tls_key (-tls-cert, -tls-key)", l)
		}
		if l.Port == 0 {
			continue // every :0 listener gets its own port
		}
		b := bound{l.Network(), l.Addr()}
		if prev, dup := seen[b]; dup {
			if prev == l.String() {
				bad(key, "%s given twice", l)
			} else {
				bad(key, "%s and %s both bind %s port %s", prev, l, b.network, b.addr)
			}
			continue
		}
		seen[b] = l.String()
	}
}

// validNodeID reports whether id can go into flow tokens and Redis keys unquoted.
func validNodeID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
