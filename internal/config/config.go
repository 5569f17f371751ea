// Package config holds the Options of simpled and everything that fills them: every default in
// one function (Default), the YAML configuration file (Parse, ParseFile, ParseString), the
// command-line flags of the CLI contract (docs/cli.md) that override the file (FromArgs), and validation that
// reports every error at once, each with the file, line and column (or the flag) at fault.
//
// The flow of cmd/simpled is:
//
//	opts, flags, err := config.FromArgs(os.Args[1:], os.Stderr)
//	// errors.Is(err, flag.ErrHelp) → exit 0; errors.Is(err, config.ErrUsage) → exit 2;
//	// other errors (a *config.Errors, one line per problem) → exit 1.
//	// flags.Version → print the version; flags.Check → fmt.Print(opts.YAML()), exit 0.
//
// Options is a plain value: its zero value is not the defaults (MaxContacts defaults to 10,
// for one), so programs and tests start from Default() and change what they need.
package config

import (
	"time"

	"github.com/simpled/simpled/auth"
	"github.com/simpled/simpled/presence"
	"github.com/simpled/simpled/presence/dialog"
	"github.com/simpled/simpled/presence/mwi"
	"github.com/simpled/simpled/presence/reg"
	"github.com/simpled/simpled/registrar"
	"github.com/simpled/simpled/routes"
)

// Options is the whole configuration of one simpled process. YAML keys are given in the yaml
// struct tags; the default of each field is in its comment and, authoritatively, in Default.
type Options struct {
	// Listen lists the SIP listeners as SCHEME://HOST:PORT, scheme udp, tcp, tls, ws or wss;
	// port 0 picks a free port; IPv6 hosts in brackets ([::1]:5060). See ParseListen.
	// Default udp://127.0.0.1:5060 and tcp://127.0.0.1:5060.
	Listen []string `yaml:"listen"`
	// Domains are the SIP domains this server is the registrar and presence agent for,
	// lower case, host names or IP literals. Default localhost.
	Domains []string `yaml:"domain"`
	// Store is "memory" (embedded, the default) or a Redis URL:
	// redis://[user:pass@]HOST:PORT/DB, rediss://... (TLS) or
	// redis+cluster://[user:pass@]HOST:PORT[,HOST:PORT...]. See ParseStoreURL.
	Store string `yaml:"store"`
	// StorePersistenceWarning: at start with a Redis store, simpled asks Redis whether it
	// persists data (appendonly, save) and logs a warning when it does not, since offline
	// messages answered 202 would be lost with a Redis restart. Default true.
	StorePersistenceWarning bool `yaml:"store_persistence_warning"`
	// HTTP is the HOST:PORT of the metrics, health and admin endpoints; "" disables them.
	// A host that is not loopback (127.0.0.1, ::1, localhost; "" and 0.0.0.0 are every
	// interface) needs admin.token_file. Default 127.0.0.1:8080.
	HTTP string `yaml:"http"`
	// Pprof serves Go's profiler (net/http/pprof) under /debug/pprof/ on the HTTP listener.
	// It shows stacks and memory, so it needs admin.token_file: every profiler request then
	// presents the token. Default false.
	Pprof bool `yaml:"pprof"`
	// UsersFile, TLSCert, TLSKey, TLSClientCA and TLSCA name files. In a configuration file a relative path is
	// taken from the file's directory (Parse makes it absolute); on the command line, from
	// the working directory.
	//
	// UsersFile is a file of digest credentials (user@domain:password or
	// user@domain:realm:HA1 per line). Default "" (no file).
	UsersFile string `yaml:"users"`
	// TLSCert is the PEM certificate file for tls:// and wss:// listeners. Default "".
	TLSCert string `yaml:"tls_cert"`
	// TLSKey is the PEM private key file for tls:// and wss:// listeners. Default "".
	TLSKey string `yaml:"tls_key"`
	// TLSClientCA is a PEM bundle of CA certificates: when set, tls:// and wss:// listeners
	// ask each client for a certificate and verify one it gives against this bundle (a
	// client without one is still served, and challenged as anyone is). The DNS names and
	// sip: URI hosts of a verified certificate can name a trusted peer
	// (proxy.trusted_peers). Default "" (no client certificates asked).
	TLSClientCA string `yaml:"tls_client_ca"`
	// TLSCA is a PEM bundle of CA certificates that outbound TLS connections verify the
	// server's certificate against (for the SIP domain of the target, RFC 5922). Default ""
	// (the system's roots).
	TLSCA string `yaml:"tls_ca"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// LogFormat is console or json; "" (the default) means console on a terminal, json
	// otherwise.
	LogFormat string `yaml:"log_format"`
	// NodeID names this node among several sharing a store (docs/cluster.md): at most 64
	// letters, digits, '.', '-' or '_', unique among the nodes. "" (the default) lets the
	// server derive one from the host name and process id, new at each start.
	NodeID string `yaml:"node_id"`

	// Registrar holds the REGISTER limits: the registrar stage's own section.
	Registrar registrar.Config `yaml:"registrar"`
	// Auth holds the digest authentication settings: the identity stage's own section.
	Auth auth.Config `yaml:"auth"`
	// Limits holds the message size limits.
	Limits LimitOptions `yaml:"limits"`
	// Proxy holds the routing settings of the proxy.
	Proxy ProxyOptions `yaml:"proxy"`
	// Messages holds the MESSAGE relay and offline store settings.
	Messages MessageOptions `yaml:"messages"`
	// Presence holds the presence agent's settings: the presence stage's own section.
	Presence presence.Config `yaml:"presence"`
	// Reg holds who may watch registrations (the reg event package, RFC 3680).
	Reg reg.Config `yaml:"reg"`
	// Transport holds the connection limits and timers of the stream listeners.
	Transport TransportOptions `yaml:"transport"`
	// Admin holds who may use the admin API on the HTTP listener.
	Admin AdminOptions `yaml:"admin"`
	// Cluster holds how the nodes sharing a Redis store know each other (docs/cluster.md).
	Cluster ClusterOptions `yaml:"cluster"`
	// MWI holds the message waiting indication settings (message-summary, docs/pbx.md):
	// the mwi package's own section.
	MWI mwi.Config `yaml:"mwi"`
	// Dialog holds the dialog event package's settings (BLF, docs/pbx.md): its own
	// section.
	Dialog dialog.Config `yaml:"dialog"`
}

// ClusterOptions set the membership of the nodes sharing a Redis store (package cluster).
// With the memory store a node is a cluster of one and they do nothing.
type ClusterOptions struct {
	// Lease is how long a node's heartbeat keeps it alive to the others; it heartbeats every
	// lease/3. A node that stops (or loses Redis) is taken for dead by the others within the
	// lease, and stops acting as the owner of its subscriptions a quarter of the lease
	// before that. Between 1s and 5m. Default 10s.
	Lease time.Duration `yaml:"lease"`
}

// AdminOptions protect the admin API (/api/v1/...) and the profiler (/debug/pprof/) on the
// HTTP listener. /metrics, /healthz and /readyz stay open to whoever reaches the listener.
type AdminOptions struct {
	// TokenFile names a file holding the bearer token (surrounding whitespace trimmed, at
	// least 16 bytes). When set, every /api/v1 and /debug/pprof request must carry
	// "Authorization: Bearer TOKEN" (401 otherwise). Without a token the HTTP listener must
	// be loopback and pprof is refused. A relative path in a file is taken from the file's
	// directory. Default "" (no token).
	TokenFile string `yaml:"token_file"`
	// Hosts are names clients may put in the Host header of /api/v1 and /debug/pprof
	// requests besides the listener's own address (and 127.0.0.1, localhost, [::1] with its
	// port for a loopback listener): "name" allows that host with any port, "name:port"
	// that port only. Any other Host gets 421, which stops DNS rebinding. Default none.
	Hosts []string `yaml:"hosts"`
	// SendAsUsers lets the token holder send POST /api/v1/messages "from" any user of a
	// local domain (each such send logged on the audit logger); otherwise, and always
	// without a token, the only sender is sip:system@<domain> (403 for any other).
	// Needs TokenFile. Default false.
	SendAsUsers bool `yaml:"send_as_users"`
}

// TransportOptions bound the connections of the tcp, tls, ws and wss listeners and set the
// keepalive asked of outbound clients (RFC 5626).
type TransportOptions struct {
	// MaxConnections bounds the open connections of each stream listener; a connection
	// beyond is closed at once. Default 10000.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP bounds the open connections of each stream listener from one
	// source (an IPv4 address, an IPv6 /64); one beyond is closed at accept
	// (simpled_limited_total{limit="connections_per_ip"}). Trusted peers (by address) are
	// exempt. Default 100.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// IdleTimeout closes a connection that carried no byte for this long, unless it carries
	// a registration or subscription accepted from an authenticated user or a trusted peer
	// (then it stays until that expires). CRLF keepalives do not keep any other connection
	// open past it. Default 2m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MessageTimeout closes a connection on which a SIP message began and did not end within
	// this long (a peer that stalls mid-message). Default 30s.
	MessageTimeout time.Duration `yaml:"message_timeout"`
	// HandshakeTimeout bounds the TLS and WebSocket handshakes. Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// WSOrigins lists the Origins (e.g. https://chat.example.com) a WebSocket upgrade may
	// carry; one with another Origin gets HTTP 403. An upgrade without an Origin (not a
	// browser) is accepted. Empty (the default) accepts any Origin, logging each new one once.
	WSOrigins []string `yaml:"ws_origins"`
	// FlowTimer is the keepalive interval asked of outbound clients on connections
	// (Flow-Timer in the REGISTER 200, RFC 5626 §4.4.1); 0 asks none. Default 120s.
	FlowTimer time.Duration `yaml:"flow_timer"`
	// UDPFlowTimer is the keepalive interval (STUN or CRLF) asked of outbound clients over
	// UDP: Flow-Timer in the REGISTER 200 when the client registered with reg-id and
	// +sip.instance straight to simpled (no Path). A flow of such a client that sends no
	// keepalive and no request for twice this long is dead: the bindings registered over it
	// are removed (presence shows the user closed) instead of lasting until they expire. 0
	// asks none and never takes a UDP flow as dead. At most 5m. Default 25s.
	UDPFlowTimer time.Duration `yaml:"udp_flow_timer"`
}

// ProxyOptions configure how requests are routed (RFC 3261 §16, RFC 3263).
type ProxyOptions struct {
	// DNS is the HOST:PORT of the DNS server used to locate other domains (RFC 3263 SRV, A,
	// AAAA); "" (the default) uses the system's resolver. Local domains and IP literals are
	// never looked up.
	DNS string `yaml:"dns"`
	// TrustedPeers are addresses, CIDR prefixes (e.g. a PBX) or DNS names whose requests may
	// go to other domains without digest authentication. A name is matched, exactly and
	// case-insensitively, against the DNS names and sip: URI hosts of a client certificate
	// verified against tls_client_ca (RFC 5922 §7.1); it never matches by DNS lookup. Authenticated local users may always;
	// anyone else gets 403, so simpled is never an open relay. Default none.
	TrustedPeers []string `yaml:"trusted_peers"`
	// UDPMTU is the size above which a request goes over TCP instead of UDP (RFC 3261
	// §18.1.1), back to UDP when TCP cannot connect. Default 1300.
	UDPMTU int `yaml:"udp_mtu"`
	// InviteTimeout is Timer C: a ringing branch is cancelled after this long. Default 3m.
	InviteTimeout time.Duration `yaml:"invite_timeout"`
	// Routes send requests to fixed next hops, such as a PBX for extension numbers
	// (docs/pbx.md): ordered rules, the first whose match holds wins, and wins over the
	// registered contacts of the location service. Requests from a route's next hop named by
	// an IP address are trusted as a trusted peer's. Each entry's keys are the
	// proxy.routes[] rows. Default none.
	Routes []routes.Rule `yaml:"routes"`
}

// MessageOptions configure MESSAGE relay and store-and-forward (RFC 3428).
type MessageOptions struct {
	// ContentTypes are MESSAGE body types relayed besides text/plain, message/cpim and
	// message/imdn+xml (always relayed); "*" relays any. Others get 415. Default none.
	ContentTypes []string `yaml:"content_types"`
	// OfflineMaxCount is the most messages stored for one offline user; more get 480.
	// Default 100.
	OfflineMaxCount int `yaml:"offline_max_count"`
	// OfflineMaxBytes is the most bytes stored for one offline user. Default 1048576.
	OfflineMaxBytes int `yaml:"offline_max_bytes"`
	// OfflineMaxPerSender is the most messages one sender may have waiting for one offline
	// user (the authenticated user, else the From address); more get 480. 0 means no bound.
	// Default 20.
	OfflineMaxPerSender int `yaml:"offline_max_per_sender"`
	// OfflineForeignShare is the share (0 to 1) of offline_max_count and offline_max_bytes
	// that foreign senders (inbound federation, in-dialog requests) may fill together, so
	// spam from outside cannot lock a user's mailbox; the rest stays for authenticated
	// users, trusted peers and simpled. 1 reserves nothing. Default 0.5.
	OfflineForeignShare float64 `yaml:"offline_foreign_share"`
	// OfflineMaxAge is how long an undelivered message is kept; a user who registered is
	// known (messages to them are stored) for as long after their last registration.
	// Default 168h (7 days).
	OfflineMaxAge time.Duration `yaml:"offline_max_age"`
}

// LimitOptions bound the size of what peers send.
type LimitOptions struct {
	// MaxMessageSize is the largest SIP message accepted, in bytes. Default 262144 (256 KiB).
	MaxMessageSize int `yaml:"max_message_size"`
	// MaxBodySize is the largest MESSAGE or PUBLISH body, in bytes; larger gets 413. At most
	// MaxMessageSize. Default 65536 (64 KiB).
	MaxBodySize int `yaml:"max_body_size"`
	// SourceRate is the sustained rate of SIP messages, per second, accepted from one
	// source (an IPv4 address, an IPv6 /64), checked before parsing; SourceBurst the burst
	// above it. Beyond: 503 with Retry-After at most once per second per source, then
	// silence (UDP) or, on a connection, 503 and the connection closed
	// (simpled_limited_total{limit="source_rate"}). Trusted peers are exempt. Defaults 200
	// and 400.
	SourceRate  int `yaml:"source_rate"`
	SourceBurst int `yaml:"source_burst"`
	// MaxInflight bounds the requests being handled at once (sipgo transaction and handler
	// goroutines); more get 503 with Retry-After (limit="inflight"). Default 10000.
	MaxInflight int `yaml:"max_inflight"`
	// MaxInflightPerSource bounds them per source (an IPv4 address, an IPv6 /64), so one
	// source cannot take every slot (limit="inflight_per_source"); trusted peers are exempt.
	// At most MaxInflight. Default 500.
	MaxInflightPerSource int `yaml:"max_inflight_per_source"`
}

// Default returns the options simpled runs with when neither file nor flags say otherwise.
// Every default lives here and nowhere else: the sections a stage owns (registrar, auth,
// presence) come from that stage's DefaultConfig, which only Default and the stage's tests
// call. docs/cli.md states the defaults clients rely on.
func Default() Options {
	return Options{
		// Loopback only, so a fresh install exposes nothing; UDP and TCP on the SIP port.
		Listen: []string{"udp://127.0.0.1:5060", "tcp://127.0.0.1:5060"},
		// The one domain a local softphone can use without DNS.
		Domains: []string{"localhost"},
		// Embedded store: nothing to set up, state lost on exit.
		Store: "memory",
		// A Redis that loses acknowledged messages on restart is a risk the operator
		// should hear about once, at start; silenced on purpose (a cache-only Redis).
		StorePersistenceWarning: true,
		// Metrics, health and admin API on loopback.
		HTTP: "127.0.0.1:8080",
		// No credentials file: on loopback alone, auth.mode then resolves to off.
		UsersFile: "",
		// No TLS material: tls:// and wss:// listeners need both to be set.
		TLSCert: "",
		TLSKey:  "",
		// No client certificates: peers are trusted by address or authenticate.
		TLSClientCA: "",
		// Outbound TLS trusts the system's roots, as a browser would.
		TLSCA: "",
		// Lifecycle and configuration lines, not one line per message.
		LogLevel: "info",
		// "": console on a terminal, json otherwise.
		LogFormat: "",
		// "": the server derives an id from the host name.
		NodeID: "",
		// The registrar, identity and presence stages own their sections and defaults (their
		// DefaultConfig); the other sections' defaults follow Default.
		Registrar: registrar.DefaultConfig(),
		Auth:      auth.DefaultConfig(),
		Limits:    defaultLimits(),
		Proxy:     defaultProxy(),
		Messages:  defaultMessages(),
		Presence:  presence.DefaultConfig(),
		MWI:       mwi.DefaultConfig(),
		Reg:       reg.DefaultConfig(),
		Dialog:    dialog.DefaultConfig(),
		Transport: defaultTransport(),
		Admin:     defaultAdmin(),
		Cluster: ClusterOptions{
			// A node that died is noticed within ten seconds, while a Redis hiccup of a
			// few seconds (two missed heartbeats) costs no node its lease.
			Lease: 10 * time.Second,
		},
	}
}

// defaultLimits is the limits: section of Default.
func defaultLimits() LimitOptions {
	return LimitOptions{
		// 256 KiB: any SIP message (docs/cli.md).
		MaxMessageSize: 256 << 10,
		// 64 KiB: MESSAGE and PUBLISH bodies (docs/cli.md); larger gets 413.
		MaxBodySize: 64 << 10,
		// A busy office behind one NAT address: 200 phones each re-registering, keeping
		// subscriptions and sending a message every few seconds make a few dozen
		// requests a second, and 200 all booting at once (REGISTER, its challenge,
		// SUBSCRIBEs) about 400 at once. A scanner sweeping at thousands a second is cut
		// to 200/s, a fifth of what one core handles.
		SourceRate:  200,
		SourceBurst: 400,
		// Each request in flight holds a sipgo transaction and two or three goroutines,
		// about 40 KB; ten thousand is 400 MB at worst, and at 2,000 relayed requests a
		// second with a few seconds' answer time, several times the steady load.
		MaxInflight: 10000,
		// 5% of MaxInflight: a large office NAT or a gateway never has 500 requests
		// waiting at once, and twenty such sources cannot starve everyone else.
		MaxInflightPerSource: 500,
	}
}

// defaultProxy is the proxy: section of Default.
func defaultProxy() ProxyOptions {
	return ProxyOptions{
		// The system's resolver.
		DNS: "",
		// Nobody relays without authenticating.
		TrustedPeers: []string{},
		// RFC 3261 §18.1.1: 1300 bytes when the path MTU is unknown.
		UDPMTU: 1300,
		// RFC 3261 §16.6 step 11: Timer C greater than 3 minutes... 3 minutes.
		InviteTimeout: 3 * time.Minute,
		// Requests for local users go to their registered devices.
		Routes: []routes.Rule{},
	}
}

// DefaultRoute is the default of each proxy.routes entry (part of Default: a key left out of
// an entry has this value).
func DefaultRoute() routes.Rule {
	return routes.Rule{
		// The PBX's dialogs go through simpled like any other: in-dialog requests from
		// the PBX are then proven by our dialog token, and CANCEL and BYE find their way.
		RecordRoute: true,
		Match:       routes.Match{Method: []string{}},
		To:          []string{},
	}
}

// defaultMessages is the messages: section of Default.
func defaultMessages() MessageOptions {
	return MessageOptions{
		// text/plain, message/cpim and message/imdn+xml only.
		ContentTypes: []string{},
		// A week of chat for an offline user, bounded.
		OfflineMaxCount: 100,
		OfflineMaxBytes: 1 << 20,
		OfflineMaxAge:   7 * 24 * time.Hour,
		// A fifth of the mailbox: a chatty friend's burst fits, one spammer's flood
		// stops there and leaves room for everyone else.
		OfflineMaxPerSender: 20,
		// Half: anonymous and federated senders together cannot take more than half
		// of a mailbox, the other half always takes authenticated users' messages.
		OfflineForeignShare: 0.5,
	}
}

// defaultTransport is the transport: section of Default.
func defaultTransport() TransportOptions {
	return TransportOptions{
		// Ten thousand phones per listener; a flood of idle connections stops there.
		// Each costs about 70 KB of heap, most of it sipgo's 64 KiB read buffer.
		MaxConnections: 10000,
		// One connection per phone: a hundred phones behind one NAT address; a flood of
		// connections from one host stops at 1% of MaxConnections.
		MaxConnectionsPerIP: 100,
		// Kamailio's tcp_connection_lifetime default: an unregistered connection that
		// says nothing for two minutes is closed.
		IdleTimeout: 2 * time.Minute,
		// A message is a few KiB: thirty seconds is generous for any real link.
		MessageTimeout: 30 * time.Second,
		// A handshake is a few round trips.
		HandshakeTimeout: 10 * time.Second,
		// Any Origin, each new one logged: browser clients are served from pages anywhere
		// until the operator lists theirs.
		WSOrigins: []string{},
		// RFC 5626 §4.4.1's recommended interval for connections.
		FlowTimer: 120 * time.Second,
		// RFC 5626 §4.4.1's interval for UDP (24-29 s without a Flow-Timer), which NAT
		// bindings outlive: a client that stopped is taken as gone after 50 s.
		UDPFlowTimer: 25 * time.Second,
	}
}

// defaultAdmin is the admin: section of Default.
func defaultAdmin() AdminOptions {
	return AdminOptions{
		// No token: the admin API is for whoever can reach a loopback listener, which
		// is the local operator (validation refuses a non-loopback http without one).
		TokenFile: "",
		// Only the listener's own address: a browser led to it by a DNS name (DNS
		// rebinding) gets 421.
		Hosts: []string{},
		// The operator sends as sip:system@<domain> only: impersonating users is opt-in.
		SendAsUsers: false,
	}
}
