package presence

import (
	"context"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Config is the presence: section of the configuration file (internal/config embeds it as
// is: its yaml keys and field comments are the configuration reference). It configures the
// presence agent (PUBLISH, SUBSCRIBE/NOTIFY); its expiry limits are the registrar's.
type Config struct {
	// Policy decides for a watcher the presentity has no rule for: "allow" (everyone is
	// active), "same-domain" (watchers of the presentity's domain are active, others pending:
	// the default) or "confirm" (every other watcher is pending until a rule decides).
	Policy string `yaml:"policy"`
	// MinNotifyInterval is the shortest time between two NOTIFYs of one subscription (RFC
	// 6446): changes in between are coalesced, the last state always sent. Default 200ms.
	MinNotifyInterval time.Duration `yaml:"min_notify_interval"`
	// MaxSubscriptionsPerSource bounds the live subscriptions accepted from one source (an
	// IPv4 address, an IPv6 /64; 503 with Retry-After above). Default 10000.
	MaxSubscriptionsPerSource int `yaml:"max_subscriptions_per_source"`
	// MaxWatchers bounds the presence subscriptions to one presentity (403 above), counted
	// per node. Default 1000.
	MaxWatchers int `yaml:"max_watchers"`
	// MaxWatchersPerDomain bounds those of them whose watcher is of one other domain (403
	// above), so one foreign domain cannot take every slot; watchers of our own domains never
	// count against it. At most MaxWatchers. Default 100.
	MaxWatchersPerDomain int `yaml:"max_watchers_per_domain"`
}

// DefaultConfig is the presence agent's part of config.Default: the one place these defaults
// live.
func DefaultConfig() Config {
	return Config{
		// docs/cli.md: watchers of a local domain are active at once, others pending.
		Policy: PolicySameDomain,
		// Watchers see a change within a fifth of a second; a storm costs five
		// NOTIFYs a second per watcher at most.
		MinNotifyInterval: 200 * time.Millisecond,
		// A gateway or attendant console holds thousands; a flood does not get more.
		MaxSubscriptionsPerSource: 10000,
		// A receptionist or a popular colleague is watched by hundreds; 3,000 watchers
		// of one user were a flood (44 MB, and its winfo subscription broken).
		MaxWatchers: 1000,
		// Federation: a partner domain's whole staff may watch one person; ten foreign
		// domains are needed to fill MaxWatchers, and local watchers never count here.
		MaxWatchersPerDomain: 100,
	}
}

// Deps is what the wiring hands the presence agent besides its own section: settings of other
// sections and the services it shares with other stages. Domains, Store, Locator, Sender,
// Contact and IsOurs are required.
type Deps struct {
	Domains []string
	Store   Store
	Locator Locator
	Sender  Sender
	// Contact returns our Contact URI for a dialog created over transport (udp, tcp, ...) by
	// a request from remote (host:port): the remote target of the watcher's in-dialog
	// requests.
	Contact func(transport, remote string) string
	// IsOurs reports whether a host (domain or address) is this server.
	IsOurs func(host string) bool
	// Known reports whether aor is a user of ours (credentials, or a recent registration); a
	// SUBSCRIBE to a presentity that is not known, not registered and has no publication
	// gets 404. Nil: every AOR of a local domain exists.
	Known func(ctx context.Context, aor string) (bool, error)
	// Routed reports whether a route of the proxy takes an out-of-dialog SUBSCRIBE or PUBLISH
	// to a user of ours elsewhere (then the proxy forwards it); nil: none does.
	Routed func(req *sip.Request) bool
	// Expiry limits of PUBLISH and SUBSCRIBE, seconds: the registrar's (registrar.min_expires,
	// default_expires, max_expires).
	MinExpires, DefaultExpires, MaxExpires int
	// MaxBodySize bounds PUBLISH bodies (413 above): limits.max_body_size.
	MaxBodySize int
	// SweepInterval is how often expired publications and subscriptions are swept:
	// registrar.sweep_interval.
	SweepInterval time.Duration
	// Limited counts refusals by limit (simpled_limited_total); nil counts nothing.
	Limited *sipx.Limited
	// NodeID names this node: it owns the subscriptions it accepts.
	NodeID string
	// Nodes tells which nodes sharing the store are alive (package cluster); nil for a node
	// alone, which owns every subscription.
	Nodes      Nodes
	Bus        storage.Bus
	Log        *zap.Logger // nil: no logs
	Registerer prometheus.Registerer
	Now        func() time.Time // nil: time.Now
}

// Setup checks cfg and deps and returns the presence agent: put its Plugin in the chain and
// run Run for the sweeps and the notifier.
func Setup(cfg Config, deps Deps) (*Presence, error) {
	return newPresence(options{Config: cfg, Deps: deps})
}
