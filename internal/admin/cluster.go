package admin

import (
	"net/http"
	"time"

	"github.com/simpled/simpled/cluster"
)

// Cluster is what /api/v1/cluster needs: the cluster service.
type Cluster interface {
	Self() string
	Leased() bool
	Nodes() []cluster.NodeInfo
}

// clusterBody is the body of GET /api/v1/cluster.
type clusterBody struct {
	Self   string     `json:"self"`
	Leased bool       `json:"leased"`
	Nodes  []nodeView `json:"nodes"`
}

// nodeView is one live node. Heartbeat and lease_expires are by the store's clock, absent
// for a node alone (memory store); lease_seconds is what is left of its lease.
type nodeView struct {
	ID            string     `json:"id"`
	Self          bool       `json:"self"`
	Listeners     []string   `json:"listeners"`
	Started       time.Time  `json:"started"`
	Heartbeat     *time.Time `json:"heartbeat,omitempty"`
	LeaseExpires  *time.Time `json:"lease_expires,omitempty"`
	LeaseSeconds  *float64   `json:"lease_seconds,omitempty"`
	Subscriptions int        `json:"subscriptions"`
	Flows         int        `json:"flows"`
}

// GET /api/v1/cluster: the nodes of the deployment that hold a lease, this one always.
func (a *api) getCluster(w http.ResponseWriter, _ *http.Request) {
	c := a.o.Cluster
	now := a.o.Now()
	out := clusterBody{Self: c.Self(), Leased: c.Leased(), Nodes: []nodeView{}}
	for _, n := range c.Nodes() {
		v := nodeView{ID: n.ID, Self: n.Self, Listeners: n.Listeners, Started: n.Started.UTC(),
			Subscriptions: n.Subscriptions, Flows: n.Flows}
		if v.Listeners == nil {
			v.Listeners = []string{}
		}
		if !n.Heartbeat.IsZero() {
			hb, exp := n.Heartbeat.UTC(), n.LeaseExpires.UTC()
			left := max(exp.Sub(now).Seconds(), 0)
			v.Heartbeat, v.LeaseExpires, v.LeaseSeconds = &hb, &exp, &left
		}
		out.Nodes = append(out.Nodes, v)
	}
	writeJSON(w, http.StatusOK, out)
}
