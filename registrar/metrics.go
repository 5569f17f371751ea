package registrar

import (
	"strconv"
	"sync"

	"github.com/simpled/simpled/storage"

	"github.com/prometheus/client_golang/prometheus"
)

// children caches a metric vector's children for a known set of label values. Each is made on
// first use, as WithLabelValues would make it (a series appears once it is counted), so that
// counting a REGISTER does not format, copy and hash the label again. Other values go to
// the vector on every use.
type children[K comparable, M any] struct {
	of    map[K]*child[M] // read only once built
	newer func(K) M
}

type child[M any] struct {
	once sync.Once
	m    M
}

func newChildren[K comparable, M any](keys []K, newer func(K) M) children[K, M] {
	of := make(map[K]*child[M], len(keys))
	for _, k := range keys {
		of[k] = &child[M]{}
	}
	return children[K, M]{of: of, newer: newer}
}

// get returns the child for k.
func (c children[K, M]) get(k K) M {
	ch := c.of[k]
	if ch == nil {
		return c.newer(k)
	}
	ch.once.Do(func() { ch.m = c.newer(k) })
	return ch.m
}

// metricsOf caches r's metric children: results by the statuses the registrar answers with,
// binding events by kind, store latency by operation.
func (r *Registrar) metricsOf() {
	r.resultOf = newChildren([]int{200, 400, 403, 404, 416, 420, 423, 439, 500, 503},
		func(code int) prometheus.Counter { return r.results.WithLabelValues(strconv.Itoa(code)) })
	kinds := []string{string(storage.BindingAdded), string(storage.BindingRefreshed), string(storage.BindingRemoved),
		string(storage.BindingExpired), string(storage.BindingEvicted), storage.RemovedFlowClosed, storage.RemovedFlowDead}
	r.eventOf = newChildren(kinds, func(kind string) prometheus.Counter { return r.events.WithLabelValues(kind) })
	if vec := r.opts.StoreLatency; vec != nil {
		r.latencyOf = newChildren([]string{"update_bindings", "bindings", "sweep_expired", "remove_flow_bindings"},
			func(op string) prometheus.Observer { return vec.WithLabelValues(op) })
	}
}
