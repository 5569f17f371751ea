package sipx

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/simpled/simpled/base/logging"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// State is what the chain knows about one request. The dispatcher creates it once; stages read
// it and fill in what they learn (AuthUser), so no stage parses the same header twice.
type State struct {
	Req *sip.Request
	// base is the stage-independent logger; Logger adds the request's fields on first use,
	// so a request that logs nothing costs no field encoding.
	base *zap.Logger
	log  *zap.Logger
	// Source is the address the request came from (host:port), Transport its transport in
	// lower case (udp, tcp, tls, ws, wss).
	Source    string
	Transport string
	// Start is when the dispatcher received the request.
	Start time.Time
	// PeerNames are the names a verified TLS client certificate proves for the connection
	// this request came on (its DNS names and sip: URI hosts, lower case, RFC 5922 §7.1);
	// nil otherwise. Peers.Trusted matches them against proxy.trusted_peers.
	PeerNames []string
	// AuthUser is the AOR ("user@domain") that proved its identity with digest auth, or "".
	AuthUser string
	// Rule is the trust rule the identity stage accepted the request under (RuleNone: none
	// did). Stages after it read it; none decides trust itself.
	Rule Rule
	// Dialog is, for RuleDialog proven by one of our Record-Route tokens, what the token
	// proved; the proxy checks the next hop against it.
	Dialog DialogProof
	// KeepFlow is when the request's connection may close at the earliest (HoldFlow).
	KeepFlow time.Time
}

type stateKey struct{}

// WithState returns ctx carrying st.
func WithState(ctx context.Context, st *State) context.Context {
	return context.WithValue(ctx, stateKey{}, st)
}

// StateFrom returns the request state carried by ctx. A context without one (a unit test
// calling a stage directly) gets a fresh State built from nothing, never nil.
func StateFrom(ctx context.Context) *State {
	if st, ok := ctx.Value(stateKey{}).(*State); ok {
		return st
	}
	return &State{base: zap.NewNop(), Req: &sip.Request{}}
}

// Logger returns the request logger: base with method, call_id, cseq, remote_addr and
// transport.
func (st *State) Logger() *zap.Logger {
	if st.log == nil {
		if st.Req == nil || st.Req.CallID() == nil {
			st.log = st.base
			return st.log
		}
		fields := []zap.Field{
			zap.String(logging.KeyMethod, string(st.Req.Method)),
			zap.String(logging.KeyCallID, st.Req.CallID().Value()),
			zap.String(logging.KeyRemoteAddr, st.Source),
			zap.String(logging.KeyTransport, st.Transport),
		}
		if cs := st.Req.CSeq(); cs != nil {
			fields = append(fields, zap.Uint32(logging.KeyCSeq, cs.SeqNo))
		}
		st.log = st.base.With(fields...)
	}
	return st.log
}

// NewState builds the state of req: source address and transport as sipgo received them.
func NewState(req *sip.Request, log *zap.Logger) *State {
	return &State{
		Req:       req,
		base:      log,
		Source:    req.Source(),
		Transport: lowerTransport(req.Transport()),
		Start:     time.Now(),
	}
}

// lowerTransport returns tp in lower case, without allocating for the transports sipgo names.
func lowerTransport(tp string) string {
	switch tp {
	case "UDP", "udp":
		return "udp"
	case "TCP", "tcp":
		return "tcp"
	case "TLS", "tls":
		return "tls"
	case "WS", "ws":
		return "ws"
	case "WSS", "wss":
		return "wss"
	}
	return strings.ToLower(tp)
}

// SourceIP returns the IP of the request's source address, or "".
func (st *State) SourceIP() string {
	host, _, err := net.SplitHostPort(st.Source)
	if err != nil {
		return ""
	}
	return host
}

// HoldFlow asks that the connection the request came over stay open at least until t: it
// carries a registration or subscription, and requests for that client can only reach it
// down this connection. The dispatcher passes the latest such time to the listener.
func (st *State) HoldFlow(t time.Time) {
	if t.After(st.KeepFlow) {
		st.KeepFlow = t
	}
}
