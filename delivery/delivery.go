// Package delivery sends the requests simpled originates, and picks for every request —
// originated or relayed — the place a contact is reached: the flow it registered over (the
// connection or NAT binding, RFC 5626 §5.3), the node of this deployment that holds that
// flow, its Path (RFC 3327), or its own address located with DNS (RFC 3263, package dns).
//
// Two kinds of request leave from here:
//
//   - in-dialog requests of the dialogs simpled is a party of (SendInDialog: the presence
//     agent's NOTIFYs, RFC 3261 §12.2.1.1 and RFC 6665 §4.2.2): to the route set's first hop,
//     a device of ours through the location service, or down the flow the dialog came over;
//   - out-of-dialog requests to a user's registered devices (Reach, then Send: the offline
//     store's deliveries and the admin API's messages), forked to every device as a proxy
//     would (RFC 3261 §16.6, parallel within a q-value, sequential between), the first 2xx
//     winning and the best failure chosen as §16.7 does.
//
// The proxy builds and starts its branches with the same machinery (Targets, HopTarget,
// FlowTarget, Build, Start); what makes a relayed request different (Record-Route, the loop
// hash, relaying the answers upstream, CANCEL) stays in package proxy. Non-INVITE client
// transactions are simpled's own (sipgox.ClientTxs), INVITEs sipgo's.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/base/sipgox"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"
	"github.com/simpled/simpled/dns"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Sender is what presence, offline store-and-forward and the admin API send through.
type Sender interface {
	// SendInDialog sends a request of a dialog simpled is a party of and returns the final
	// status.
	SendInDialog(ctx context.Context, req *sip.Request, d Dialog) (int, error)
	// Reach returns the registered devices of aor, in the order a request tries them.
	Reach(ctx context.Context, aor string) (Devices, error)
	// Send sends req, a request simpled originates outside any dialog, to devices and
	// returns the final status.
	Send(ctx context.Context, req *sip.Request, to Devices) int
}

var _ Sender = (*Delivery)(nil)

// Locator finds the live bindings of an address-of-record: the registrar.
type Locator interface {
	Lookup(ctx context.Context, aor string) ([]storage.Binding, error)
}

// Resolver locates the SIP server of a URI (RFC 3263): package dns.
type Resolver interface {
	Resolve(ctx context.Context, uri sip.Uri) ([]dns.Target, error)
}

// Options configure a Delivery. Domains, Flows, Locator, Client and Seals are required.
type Options struct {
	Domains []string
	// Flows names flows and knows this node's listeners: the flows service.
	Flows   *transport.Flows
	Locator Locator
	Client  *sipgo.Client
	// ClientTxs runs the non-INVITE client transactions; its Deliver must get the responses
	// sipgo matched to none of its own (sipgox.StrayRouter). nil makes one on Client (whose
	// responses then reach nothing unless the caller routes them: see ClientTxs).
	ClientTxs *sipgox.ClientTxs
	// Resolver locates foreign domains; with nil, a next hop named by a host name (not an IP
	// address) is unroutable.
	Resolver Resolver
	// Seals gives the proofs of the requests this node sends through another node that
	// holds the callee's flow.
	Seals *sipx.Seals
	// GRUUs opens the temporary GRUUs the registrar issued (RFC 5627); nil routes only public
	// GRUUs.
	GRUUs *sipx.GRUUs
	// LastSeen tells when a UDP client address was last heard from (a request or a
	// keepalive); of a device's several UDP flows the freshest is tried first. nil: by
	// registration time only.
	LastSeen func(netip.AddrPort) time.Time
	// UDPMTU: a request bigger than this goes out over TCP instead of UDP (RFC 3261 §18.1.1),
	// falling back to UDP when TCP cannot connect. 0 means 1300.
	UDPMTU     int
	Log        *zap.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Delivery sends requests to contacts. Create it with New; it is safe for concurrent use.
type Delivery struct {
	opts       Options
	flows      *transport.Flows
	txs        *sipgox.ClientTxs
	domains    map[string]bool
	defaultDom string
	log        *zap.Logger

	branches     *prometheus.CounterVec
	flowRequests *prometheus.CounterVec
	messages     *prometheus.CounterVec
}

// New builds a Delivery from opts.
func New(opts Options) (*Delivery, error) {
	if opts.Flows == nil || opts.Locator == nil || opts.Client == nil || opts.Seals == nil || len(opts.Domains) == 0 {
		return nil, errors.New("delivery: Domains, Flows, Locator, Client and Seals are required")
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.UDPMTU <= 0 {
		opts.UDPMTU = 1300
	}
	if opts.ClientTxs == nil {
		opts.ClientTxs = sipgox.NewClientTxs(opts.Client)
	}
	d := &Delivery{opts: opts, flows: opts.Flows, txs: opts.ClientTxs, domains: map[string]bool{},
		defaultDom: strings.ToLower(opts.Domains[0]), log: opts.Log}
	for _, dom := range opts.Domains {
		d.domains[strings.ToLower(dom)] = true
	}
	d.branches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_proxy_branches_total", Help: "Forked branches by method and final status class (2xx..6xx, or error).",
	}, []string{"method", "class"})
	d.flowRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_flow_requests_total",
		Help: "Requests sent down a client's flow (RFC 5626), by transport and result: sent, or closed (the connection was gone; the device counts as unreachable).",
	}, []string{"transport", "result"})
	d.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_messages_total",
		Help: "MESSAGE requests by outcome: relayed (a device answered 2xx), stored (kept offline, 202), delivered (an offline message reached a device), expired (dropped undelivered), refused (mailbox full), failed.",
	}, []string{"outcome"})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{d.branches, d.flowRequests, d.messages} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("delivery: metrics: %w", err)
			}
		}
	}
	return d, nil
}

// Flows returns the flows service the Delivery sends with.
func (d *Delivery) Flows() *transport.Flows { return d.flows }

// ClientTxs returns the table of non-INVITE client transactions (for the stray-response
// router).
func (d *Delivery) ClientTxs() *sipgox.ClientTxs { return d.txs }

// CountBranch counts a branch of method that ended with status (simpled_proxy_branches_total
// by class), or failed without a response (status 0).
func (d *Delivery) CountBranch(method sip.RequestMethod, status int) {
	class := "error"
	if status > 0 {
		class = strconv.Itoa(status/100) + "xx"
	}
	d.branches.WithLabelValues(string(method), class).Inc()
}

// CountMessage counts a MESSAGE's outcome (simpled_messages_total): relayed, stored,
// delivered, expired, refused, rejected or failed. The proxy, offline store-and-forward and
// the admin API's sends share the one counter.
func (d *Delivery) CountMessage(outcome string) { d.messages.WithLabelValues(outcome).Inc() }
