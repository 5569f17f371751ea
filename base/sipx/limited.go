package sipx

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Limited counts what simpled's abuse limits refused or dropped, one series per limit:
// simpled_limited_total{limit}. One value is built by the server and handed to every stage and
// listener that enforces a limit (docs/limits.md lists them), so operators read one metric.
// A nil *Limited counts nothing. Safe for concurrent use.
type Limited struct {
	c *prometheus.CounterVec
}

// NewLimited builds the counter and registers it with reg (nil: not registered), with a zero
// series for each of the names given, so dashboards see every limit before it first trips.
func NewLimited(reg prometheus.Registerer, limits ...string) (*Limited, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_limited_total",
		Help: "Requests, connections or state refused or dropped by an abuse limit, by limit (docs/limits.md).",
	}, []string{"limit"})
	for _, l := range limits {
		c.WithLabelValues(l)
	}
	if reg != nil {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("sipx: metrics: %w", err)
		}
	}
	return &Limited{c: c}, nil
}

// Inc counts one refusal by limit.
func (l *Limited) Inc(limit string) {
	if l != nil {
		l.c.WithLabelValues(limit).Inc()
	}
}

// Declare creates a zero series for each limit a stage enforces, so dashboards see it before
// it first trips.
func (l *Limited) Declare(limits ...string) {
	if l != nil {
		for _, name := range limits {
			l.c.WithLabelValues(name)
		}
	}
}
