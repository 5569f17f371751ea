package server

import (
	"net"

	"github.com/simpled/simpled/base/transport"

	"github.com/prometheus/client_golang/prometheus"
)

// transportMetrics count what the listeners see below SIP: connections by transport,
// connections the listeners refused or closed and why, keepalives, STUN requests.
type transportMetrics struct {
	conns      *prometheus.GaugeVec
	rejected   *prometheus.CounterVec
	keepalives *prometheus.CounterVec
	stun       *prometheus.CounterVec
}

func newTransportMetrics(reg prometheus.Registerer) *transportMetrics {
	m := &transportMetrics{
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "simpled_connections", Help: "Open connections of the stream listeners, by transport (tcp, tls, ws, wss).",
		}, []string{"transport"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpled_connections_rejected_total",
			Help: "Connections a listener refused or closed, by transport and reason (limit, handshake, subprotocol, origin, too large, stall, idle, frame, malformed: a message sipgo cannot parse, answered before the close).",
		}, []string{"transport", "reason"}),
		keepalives: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpled_keepalives_total",
			Help: "Keepalives received (RFC 5626), by transport and kind: crlf (CRLFCRLF on a connection, white space datagrams on UDP), stun (STUN on the SIP UDP port), ws (a CRLFCRLF frame or a WebSocket ping).",
		}, []string{"transport", "kind"}),
		stun: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpled_stun_requests_total",
			Help: "STUN messages on the SIP UDP port, by outcome (binding, indication, bad_fingerprint, unknown_attribute, bad_request, malformed).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.conns, m.rejected, m.keepalives, m.stun)
	return m
}

// event is a stream listener's Events hook.
func (m *transportMetrics) event(e transport.Event) {
	switch e.Kind {
	case transport.EventOpen:
		m.conns.WithLabelValues(e.Transport).Inc()
	case transport.EventClose:
		m.conns.WithLabelValues(e.Transport).Dec()
	case transport.EventKeepalive:
		kind := "crlf"
		if e.Transport == "ws" || e.Transport == "wss" {
			kind = "ws"
		}
		m.keepalives.WithLabelValues(e.Transport, kind).Inc()
	case transport.EventRejected:
		m.rejected.WithLabelValues(e.Transport, e.Reason).Inc()
	}
}

// udpKeepalive is a UDP guard's OnKeepalive hook.
func (m *transportMetrics) udpKeepalive(_ net.Addr, kind string) {
	m.keepalives.WithLabelValues("udp", kind).Inc()
}

// stunOutcome is a UDP guard's OnSTUN hook.
func (m *transportMetrics) stunOutcome(outcome string) { m.stun.WithLabelValues(outcome).Inc() }
