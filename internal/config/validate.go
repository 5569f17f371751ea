package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/routes"

	"github.com/emiago/sipgo/sip"
	"github.com/simpled/simpled/presence/dialog"
	"github.com/simpled/simpled/presence/reg"
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
	o.validateListen(src, errs)
	o.validateDomains(src, errs)
	o.validateHTTP(src, errs)
	o.validateAdmin(src, errs)
	o.validateFiles(src, errs)
	o.validateRegistrar(src, errs)
	o.validateAuth(src, errs)
	o.validateLimits(src, errs)
	o.validateProxy(src, errs)
	o.validateMessages(src, errs)
	o.validatePresence(src, errs)
	o.validateReg(src, errs)
	o.validateTransport(src, errs)
	o.validateCluster(src, errs)
	o.validateDialog(src, errs)
}

// validateDialog checks the dialog: section (BLF).
func (o Options) validateDialog(src sources, errs *Errors) {
	d := o.Dialog
	switch d.RemoteIdentity {
	case dialog.RemoteSameDomain, dialog.RemoteAlways, dialog.RemoteNever:
	default:
		errs.add(src.errorf("dialog.remote_identity", "%q: want same-domain, always or never", d.RemoteIdentity))
	}
	if d.MaxDuration < time.Minute {
		errs.add(src.errorf("dialog.max_duration", "%s: must be at least 1m", d.MaxDuration))
	}
	if d.MaxDialogs < 1 {
		errs.add(src.errorf("dialog.max_dialogs", "%d: must be at least 1", d.MaxDialogs))
	}
}

// validateReg checks the reg: section: each watcher is user@domain.
func (o Options) validateReg(src sources, errs *Errors) {
	for i, w := range o.Reg.Watchers {
		if err := reg.CheckWatcher(w); err != nil {
			errs.add(src.errorf(fmt.Sprintf("reg.watchers[%d]", i), "%v", err))
		}
	}
}

// validateCluster checks the cluster: section.
func (o Options) validateCluster(src sources, errs *Errors) {
	if l := o.Cluster.Lease; l < time.Second || l > 5*time.Minute {
		errs.add(src.errorf("cluster.lease", "%s: must be between 1s and 5m", l))
	}
}

// validateDomains checks the domains: host names or IP literals, none twice.
func (o Options) validateDomains(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
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
}

// validateHTTP checks the store URL and the HTTP listener, which beyond loopback needs the admin token, as the profiler always does.
func (o Options) validateHTTP(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
	if _, err := ParseStoreURL(o.Store); err != nil {
		bad("store", "%v", err)
	}

	if o.HTTP != "" {
		if host, _, err := splitHostPort(o.HTTP); err != nil {
			bad("http", "%q: %v; want HOST:PORT, or \"\" to disable the HTTP endpoints", o.HTTP, err)
		} else if !IsLoopbackHost(host) && o.Admin.TokenFile == "" {
			bad("http", "%q is not a loopback address and the admin API has no token: set admin.token_file (-admin-token-file FILE), or listen on 127.0.0.1", o.HTTP)
		}
	} else if o.Pprof {
		bad("pprof", "needs the HTTP listener, which http \"\" disables")
	}
	if o.Pprof && o.HTTP != "" && o.Admin.TokenFile == "" {
		bad("pprof", "the profiler shows stacks and memory: it needs admin.token_file (-admin-token-file FILE)")
	}
}

// validateFiles checks the files named (users, TLS material) and the log and node settings.
func (o Options) validateFiles(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
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
	fileExists("tls_client_ca", o.TLSClientCA)
	fileExists("tls_ca", o.TLSCA)
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
}

// validateRegistrar checks the registrar: section.
func (o Options) validateRegistrar(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
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
	if r.MaxNewAORsPerSource < 0 {
		bad("registrar.max_new_aors_per_source", "%d: must be 0 (no limit) or more", r.MaxNewAORsPerSource)
	}
}

// validateAuth checks the auth: section, and that a public listener has a credential source when authentication is required.
func (o Options) validateAuth(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
	a := o.Auth
	switch {
	case a.Mode != "" && a.Mode != AuthRequired && a.Mode != AuthOff:
		bad("auth.mode", "%q: want required (every local identity proven) or off (an open test server)", a.Mode)
	case o.AuthMode() == AuthRequired && o.UsersFile == "" && o.Store == "memory":
		for i, uri := range o.Listen {
			if l, err := ParseListen(uri); err == nil && !l.Loopback() {
				bad(fmt.Sprintf("listen[%d]", i), "%s is beyond loopback and auth.mode is required, but there is no credential source: give users (-users FILE) or a Redis store holding credentials, or set auth.mode: off to run an open server on purpose", uri)
				break
			}
		}
	}
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
}

// validateLimits checks the limits: section.
func (o Options) validateLimits(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
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

	if l.SourceRate < 1 {
		bad("limits.source_rate", "%d: must be at least 1 message per second", l.SourceRate)
	}
	if l.SourceBurst < l.SourceRate {
		bad("limits.source_burst", "%d: must be at least source_rate (%d)", l.SourceBurst, l.SourceRate)
	}
	if l.MaxInflight < 1 {
		bad("limits.max_inflight", "%d: must be at least 1", l.MaxInflight)
	}
	if l.MaxInflightPerSource < 1 || l.MaxInflightPerSource > max(1, l.MaxInflight) {
		bad("limits.max_inflight_per_source", "%d: want 1 to max_inflight (%d)", l.MaxInflightPerSource, l.MaxInflight)
	}
}

// validateProxy checks the proxy: section.
func (o Options) validateProxy(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
	p := o.Proxy
	if p.DNS != "" {
		if _, _, err := splitHostPort(p.DNS); err != nil {
			bad("proxy.dns", "%q: %v; want HOST:PORT, or \"\" for the system's resolver", p.DNS, err)
		}
	}
	for i, peer := range p.TrustedPeers {
		if _, err := ParsePrefix(peer); err != nil {
			switch {
			case !IsDNSName(peer):
				bad(fmt.Sprintf("proxy.trusted_peers[%d]", i), "%q: want an IP address, a CIDR prefix or a DNS name (matched against client certificates)", peer)
			case o.TLSClientCA == "":
				bad(fmt.Sprintf("proxy.trusted_peers[%d]", i), "%q: a name is only proven by a client certificate: set tls_client_ca (-tls-client-ca)", peer)
			}
		}
	}
	if p.UDPMTU < 500 {
		bad("proxy.udp_mtu", "%d: must be at least 500 bytes", p.UDPMTU)
	}
	if p.InviteTimeout < time.Second {
		bad("proxy.invite_timeout", "%s: must be at least 1s", p.InviteTimeout)
	}
	loops := routes.Loops(p.Routes, o.isSelf)
	for i, r := range p.Routes {
		for _, pr := range r.Problems() {
			bad(fmt.Sprintf("proxy.routes[%d].%s", i, pr.Key), "route %d: %s", i, pr.Msg)
		}
		if pr, ok := loops[i]; ok {
			bad(fmt.Sprintf("proxy.routes[%d].%s", i, pr.Key), "route %d: %s", i, pr.Msg)
		}
	}
}

// isSelf reports whether a route's next hop is this server: one of its domains, or the
// address and port of one of its listeners (any local address of a wildcard listener on
// that port: a loopback one is checked; a listener on port 0 has no port to compare).
func (o Options) isSelf(hop sip.Uri) bool {
	host := strings.ToLower(strings.Trim(hop.Host, "[]"))
	if slices.Contains(o.Domains, host) {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	port := hop.Port
	if port == 0 {
		port = 5060
		if tp, _ := hop.UriParams.Get("transport"); hop.IsEncrypted() || strings.EqualFold(tp, "tls") {
			port = 5061
		}
	}
	for _, l := range o.Listen {
		ln, err := ParseListen(l)
		if err != nil || ln.Port == 0 || ln.Port != port {
			continue
		}
		lip, err := netip.ParseAddr(ln.Host)
		if err != nil {
			continue
		}
		if lip.Unmap() == ip.Unmap() || (lip.IsUnspecified() && (ip.IsLoopback() || ip.IsUnspecified())) {
			return true
		}
	}
	return false
}

// validateMessages checks the messages: section.
func (o Options) validateMessages(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
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
	if m.OfflineMaxPerSender < 0 {
		bad("messages.offline_max_per_sender", "%d: must be 0 (no bound) or more", m.OfflineMaxPerSender)
	}
	if !(m.OfflineForeignShare > 0 && m.OfflineForeignShare <= 1) {
		bad("messages.offline_foreign_share", "%g: must be above 0 and at most 1", m.OfflineForeignShare)
	}
	if m.OfflineMaxAge < time.Minute {
		bad("messages.offline_max_age", "%s: must be at least 1m", m.OfflineMaxAge)
	}
}

// validatePresence checks the presence: section.
func (o Options) validatePresence(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
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
	if o.Presence.MaxWatchers < 1 {
		bad("presence.max_watchers", "%d: must be at least 1", o.Presence.MaxWatchers)
	}
	if o.Presence.MaxWatchersPerDomain < 1 || o.Presence.MaxWatchersPerDomain > o.Presence.MaxWatchers {
		bad("presence.max_watchers_per_domain", "%d: want 1 to presence.max_watchers (%d)",
			o.Presence.MaxWatchersPerDomain, o.Presence.MaxWatchers)
	}
	if v := o.MWI.Server; v != "" {
		var u sip.Uri
		if err := sip.ParseUri(v, &u); err != nil || u.Host == "" || !sipx.IsSIPScheme(u.Scheme) || !sipx.Sanitize(v) {
			bad("mwi.server", "%q: want a sip: or sips: URI", v)
		} else if hop, err := routes.ParseHop(v); err != nil {
			bad("mwi.server", "%q: %v", v, err)
		} else if o.isSelf(hop) {
			bad("mwi.server", "%q is this server (a listen address or a served domain): message-summary SUBSCRIBEs would loop", v)
		}
	}
}

// validateTransport checks the transport: section.
func (o Options) validateTransport(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
	tr := o.Transport
	if tr.MaxConnections < 1 {
		bad("transport.max_connections", "%d: must be at least 1", tr.MaxConnections)
	}
	if tr.MaxConnectionsPerIP < 1 {
		bad("transport.max_connections_per_ip", "%d: must be at least 1", tr.MaxConnectionsPerIP)
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
	for i, origin := range tr.WSOrigins {
		if u, err := url.Parse(origin); err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			bad(fmt.Sprintf("transport.ws_origins[%d]", i), "%q: want an origin, SCHEME://HOST[:PORT] (e.g. https://chat.example.com)", origin)
		}
	}
	if tr.FlowTimer < 0 || tr.FlowTimer%time.Second != 0 {
		bad("transport.flow_timer", "%s: want whole seconds, 0 (none) or more", tr.FlowTimer)
	}
	// Twice 5m is as long as the server remembers a UDP client address it stopped hearing
	// from; NATs forget a UDP binding far sooner.
	if tr.UDPFlowTimer < 0 || tr.UDPFlowTimer%time.Second != 0 || tr.UDPFlowTimer > 5*time.Minute {
		bad("transport.udp_flow_timer", "%s: want whole seconds, 0 (none) to 5m", tr.UDPFlowTimer)
	}
}

// MinTokenLen is the shortest admin token accepted, in bytes.
const MinTokenLen = 16

// ReadTokenFile reads the admin token from path: the file's content with surrounding
// whitespace trimmed, at least MinTokenLen bytes. The error never contains the token.
func ReadTokenFile(path string) (string, error) {
	tok, err := readToken(path)
	if err != nil {
		return "", fmt.Errorf("config: admin.token_file: %w", err)
	}
	return tok, nil
}

func readToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if len(tok) < MinTokenLen {
		return "", fmt.Errorf("%s: too short (%d bytes): want at least %d (e.g. head -c 32 /dev/urandom | base64)", path, len(tok), MinTokenLen)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("%s: holds whitespace: want one word", path)
	}
	return tok, nil
}

// IsLoopbackHost reports whether host (of a HOST:PORT, brackets removed) reaches this
// machine only: "localhost" or a loopback IP address. "" and 0.0.0.0 or :: are every
// interface, not loopback.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// validateAdmin checks the admin API's token file, Host names and send_as_users.
func (o Options) validateAdmin(src sources, errs *Errors) {
	bad := func(key, format string, args ...any) { errs.add(src.errorf(key, format, args...)) }
	a := o.Admin
	if a.TokenFile != "" {
		if _, err := readToken(a.TokenFile); err != nil {
			bad("admin.token_file", "%v", err)
		}
	} else if a.SendAsUsers {
		bad("admin.send_as_users", "needs admin.token_file: without a token nobody is identified to send as a user")
	}
	for i, h := range a.Hosts {
		host := h
		if hh, _, err := splitHostPort(h); err == nil {
			host = hh
		}
		if !validHost(strings.Trim(host, "[]")) {
			bad(fmt.Sprintf("admin.hosts[%d]", i), "%q: want a host name, an IP address, or either with :port", h)
		}
	}
}

// IsDNSName reports whether s is a DNS host name (letters, digits, hyphens and dots, labels
// of 1 to 63 characters, not all digits): a trusted peer named by its certificate.
func IsDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	digits := true
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				digits = false
			default:
				return false
			}
		}
	}
	return !digits
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

// The values of auth.mode.
const (
	AuthRequired = "required"
	AuthOff      = "off"
)

// AuthMode is the auth.mode the server runs with: the one set, or for "" required — unless
// every SIP listener is loopback and no users file is given (a server only this machine
// reaches, as `make run` starts it, like Redis's protected mode): off. What the store holds
// never decides it.
func (o Options) AuthMode() string {
	if o.Auth.Mode != "" {
		return o.Auth.Mode
	}
	if o.UsersFile == "" && len(o.publicListeners()) == 0 {
		return AuthOff
	}
	return AuthRequired
}

// publicListeners lists the SIP listeners that are not loopback-only (one that does not parse
// is left to validateListen, which reports it: a server with one never starts).
func (o Options) publicListeners() []string {
	var pub []string
	for _, uri := range o.Listen {
		if l, err := ParseListen(uri); err == nil && !l.Loopback() {
			pub = append(pub, uri)
		}
	}
	return pub
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
