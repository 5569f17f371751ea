package presence

import (
	"fmt"

	"github.com/simpled/simpled/storage"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests     *prometheus.CounterVec
	publications *prometheus.CounterVec
	notifies     *prometheus.CounterVec
	ended        *prometheus.CounterVec
	latency      prometheus.Histogram
	takeovers    prometheus.Counter
	live         *prometheus.Desc
	owner        *notifier
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpled_presence_requests_total",
			Help: "PUBLISH and SUBSCRIBE handled by the presence agent, by method and outcome.",
		}, []string{"method", "outcome"}),
		publications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpled_presence_publications_total",
			Help: "Publications by operation (initial, refresh, modify, remove, expired).",
		}, []string{"op"}),
		notifies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpled_presence_notifies_total",
			Help: "NOTIFYs sent, by result (ok, error: no answer or not sent, or the class of the refusal).",
		}, []string{"result"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpled_presence_subscriptions_ended_total",
			Help: "Subscriptions ended, by reason (timeout: expired or un-subscribed, rejected, notify_failed, node_lost: a stream subscription of a node that is gone).",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "simpled_presence_notify_latency_seconds",
			Help:    "From a presentity's change (PUBLISH, registration) to a watcher's 2xx to the NOTIFY.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "simpled_presence_takeovers_total",
			Help: "Subscriptions this node took over from a node that is gone or that they moved from.",
		}),
		live: prometheus.NewDesc("simpled_presence_subscriptions",
			"Subscriptions this node notifies, by event package and state.", []string{"event", "state"}, nil),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.publications, m.notifies, m.ended, m.latency, m.takeovers, m} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("presence: metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Describe implements prometheus.Collector for the live subscription gauge.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.live }

// Collect counts the notifier's subscriptions at scrape time.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	counts := map[[2]string]int{}
	for _, e := range []string{EventPresence, EventWinfo} {
		for _, s := range []string{storage.SubActive, storage.SubPending} {
			counts[[2]string{e, s}] = 0
		}
	}
	if n := m.owner; n != nil {
		n.mu.Lock()
		for _, s := range n.subs {
			if s.reason == "" {
				counts[[2]string{s.rec.field(recEvent), s.rec.field(recState)}]++
			}
		}
		n.mu.Unlock()
	}
	for k, v := range counts {
		ch <- prometheus.MustNewConstMetric(m.live, prometheus.GaugeValue, float64(v), k[0], k[1])
	}
}
