package registrar

import (
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"
	"github.com/simpled/simpled/storage"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Config is the registrar: section of the configuration file (internal/config embeds it as
// is: its yaml keys and field comments are the configuration reference). The limits of the
// registrar (RFC 3261 §10.3); the expiry limits also apply to PUBLISH and SUBSCRIBE.
type Config struct {
	// MinExpires is the shortest expiry accepted, in seconds; shorter gets 423 with
	// Min-Expires. Default 60.
	MinExpires int `yaml:"min_expires"`
	// DefaultExpires is the expiry, in seconds, when the request gives none. Default 3600.
	DefaultExpires int `yaml:"default_expires"`
	// MaxExpires is the longest expiry, in seconds; longer is clamped. Default 7200.
	// Validation requires 1 <= MinExpires <= DefaultExpires <= MaxExpires.
	MaxExpires int `yaml:"max_expires"`
	// MaxContacts is the most bindings one AOR may hold, at least 1. Default 10.
	MaxContacts int `yaml:"max_contacts"`
	// OnMaxContacts says what happens past MaxContacts: "evict" removes the oldest binding
	// (the default), "reject" answers 403.
	OnMaxContacts string `yaml:"on_max_contacts"`
	// SweepInterval is how often expired bindings, publications and subscriptions are swept
	// (a Go duration in YAML, e.g. "500ms"). Default 1s.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// MaxNewAORsPerSource bounds, when auth.mode is off, how many AORs one source (an IPv4
	// address, an IPv6 /64) registers for the first time per minute, per node; more get 503
	// with Retry-After. Refreshes, removals and AORs that have bindings already do not count;
	// authenticated users and trusted peers are not limited. 0 disables it. Default 60.
	MaxNewAORsPerSource int `yaml:"max_new_aors_per_source"`
}

// DefaultConfig is the registrar's part of config.Default: the one place these defaults live.
func DefaultConfig() Config {
	return Config{
		// Below 60 s: 423 Interval Too Brief (RFC 3261 §10.2.8 suggests 60 s or more).
		MinExpires: 60,
		// RFC 3261 §10.2.1.1 suggests 3600 s when the client gives no expiry.
		DefaultExpires: 3600,
		// Longer expiries are clamped to two hours.
		MaxExpires: 7200,
		// Enough for a user's phones and clients; more is likely a leak.
		MaxContacts: 10,
		// A client that forgot its old bindings can still register.
		OnMaxContacts: "evict",
		// Expiry events (presence closed, subscription terminated) fire within a second.
		SweepInterval: time.Second,
		// Open mode only: an office behind one NAT brings up 60 new phones a minute (the
		// rest follow within minutes, told by Retry-After), while a flood of made-up AORs
		// gets 60 a minute, not 200 a second (3,000 of them took 385 MB).
		MaxNewAORsPerSource: 60,
	}
}

// Deps is what the wiring hands the registrar besides its own section: settings of other
// sections and the services it shares with other stages.
type Deps struct {
	// Domains are the local domains (lower case).
	Domains []string
	// FlowTimer is the keepalive interval asked of outbound clients on stream transports
	// (RFC 5626 Flow-Timer, transport.flow_timer), whole seconds; 0 sends none.
	FlowTimer time.Duration
	// UDPFlowTimer is the keepalive interval asked of outbound clients over UDP
	// (transport.udp_flow_timer), whole seconds; 0 sends none. A UDP flow of such a client
	// that is not heard from (Liveness) for twice as long is dead: its bindings are removed.
	UDPFlowTimer time.Duration
	// Flow names the flow (transport, source host:port) a REGISTER came over, as a token
	// stored in the binding (transport.Flows.Token, the flows service); nil or "" records none.
	Flow func(transport, source string) string
	// FlowOpen reports whether the connection from source over stream transport tp is still
	// open on this node; nil: taken as open. It catches a connection that closed while its
	// REGISTER was handled. The wiring tells the registrar of every close (FlowClosed).
	FlowOpen func(transport, source string) bool
	// Liveness tells when a UDP client address was last heard from (a request, a STUN or
	// CRLF keepalive); nil: no UDP flow is ever taken as dead.
	Liveness *transport.Liveness
	// Node is this node's id (node_id), recorded with every binding bound to a flow of this
	// node (storage.Binding.Node).
	Node string
	// GRUUs seals temporary GRUUs; nil hands out no GRUU (RFC 5627).
	GRUUs *sipx.GRUUs
	// TrustedPeer reports whether a request comes from a trusted peer (proxy.trusted_peers),
	// which MaxNewAORsPerSource does not limit (an edge proxy relaying many phones'
	// REGISTERs); nil: none is.
	TrustedPeer func(*sipx.State) bool
	// Limited counts refusals by limit (simpled_limited_total); nil counts nothing.
	Limited *sipx.Limited

	// Store holds the bindings. Required.
	Store Store
	Bus   storage.Bus // may be nil
	Log   *zap.Logger // nil: no logs
	// Registerer receives the registrar's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// StoreLatency observes store calls by op; may be nil.
	StoreLatency prometheus.ObserverVec
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Setup checks cfg and returns a Registrar: put its Plugin in the chain and run Run for the
// expiry sweep.
func Setup(cfg Config, deps Deps) (*Registrar, error) {
	return newRegistrar(options{Config: cfg, Deps: deps})
}
