// Package admin serves simpled's HTTP endpoints: Prometheus /metrics, /healthz (the process is
// alive), /readyz (listeners up and the store answers) and the JSON admin API under /api/v1.
// It knows the stages only through the small read/remove interfaces below.
//
// The three monitoring endpoints are open to whoever reaches the listener. Every other path
// (/api/v1, /debug/pprof) passes the guard (guard.go): a Host naming this listener or an
// admin.hosts entry (else 421, against DNS rebinding), the bearer token when one is set
// (else 401), and Content-Type application/json on a request with a body (else 415, against
// cross-site forms). Each request other than GET and HEAD is logged on the audit logger.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/routes"
	"github.com/simpled/simpled/storage"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Registrations is the registrar's admin surface.
type Registrations interface {
	Lookup(ctx context.Context, aor string) ([]storage.Binding, error)
	Remove(ctx context.Context, aor string) ([]storage.Binding, error)
}

// Messages is the offline store's and the proxy's admin surface.
type Messages interface {
	// Pending lists aor's stored messages, oldest first.
	Pending(ctx context.Context, aor string) ([]storage.Message, error)
	// Delete removes one stored message (id) or all of aor's (id ""), returning how many.
	Delete(ctx context.Context, aor, id string) (int, error)
	// Send sends a MESSAGE as the server and returns the final SIP status.
	Send(ctx context.Context, from, to, contentType string, body []byte) (int, error)
}

// Options configure the handler.
type Options struct {
	Gatherer      prometheus.Gatherer
	Ready         func(ctx context.Context) error
	Registrations Registrations
	// Messages serves /api/v1/messages; nil leaves it out.
	Messages Messages
	// Presence serves /api/v1/presence; nil leaves it out.
	Presence Presence
	// MWI serves /api/v1/mwi (message summaries); nil leaves it out.
	MWI MWI
	// Users serves /api/v1/users (credentials in the store); nil leaves it out.
	Users UserStore
	// Cluster serves /api/v1/cluster (the nodes sharing the store); nil leaves it out.
	Cluster Cluster
	// Routes serves /api/v1/routes (proxy.routes as loaded); nil leaves it out.
	Routes *routes.Table
	// UsersFile is the users file's credentials, which take precedence over the store's:
	// listed, never changed through the API. Nil when there is no file.
	UsersFile UsersFile
	// Domains are the local SIP domains: a user's domain must be one (it is the realm),
	// and the server sends as sip:system@<domain>.
	Domains []string
	Log     *zap.Logger
	// Audit receives one Info line per request other than GET and HEAD: who, remote
	// address, method, path, AOR, status. Never a secret. Nil means Log.Named("audit").
	Audit *zap.Logger
	// Registerer takes the admin metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Token is the bearer token every guarded request must present; "" means none (the
	// listener is then loopback: config validation sees to it).
	Token string
	// Addr is the listener's bound HOST:PORT, which Host headers must name (with
	// 127.0.0.1, localhost and [::1] for a loopback or wildcard listener, and every local
	// address for a wildcard one). "" skips the Host check.
	Addr string
	// Hosts are further accepted Host names: "name" (any port) or "name:port".
	Hosts []string
	// AuthOff: auth.mode is off, nobody is challenged; PUT /api/v1/users answers 409 rather
	// than store a credential that would never be asked for.
	AuthOff bool
	// SendAsUsers lets the token holder send POST /api/v1/messages from any user of a
	// local domain; without it (or without a token) only from sip:system@<domain>.
	SendAsUsers bool
	// Pprof mounts net/http/pprof under /debug/pprof/.
	Pprof bool
	// Now is the clock for remaining expiries; nil means time.Now.
	Now func() time.Time
}

// New returns the HTTP handler.
func New(o Options) http.Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Audit == nil {
		o.Audit = o.Log.Named("audit")
	}
	a := &api{o: o, domains: map[string]bool{}}
	for _, d := range o.Domains {
		a.domains[strings.ToLower(d)] = true
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /api/v1/openapi.json", serveOpenAPI)
	mux.HandleFunc("GET /api/v1/registrations/{aor}", a.getRegistrations)
	mux.HandleFunc("DELETE /api/v1/registrations/{aor}", a.deleteRegistrations)
	if o.Messages != nil {
		mux.HandleFunc("GET /api/v1/messages/{aor}", a.getMessages)
		mux.HandleFunc("DELETE /api/v1/messages/{aor}", a.deleteMessages)
		mux.HandleFunc("DELETE /api/v1/messages/{aor}/{id}", a.deleteMessages)
		mux.HandleFunc("POST /api/v1/messages", a.postMessage)
	}
	if o.Presence != nil {
		mux.HandleFunc("GET /api/v1/presence/{aor}", a.getPresence)
		mux.HandleFunc("PUT /api/v1/presence/{aor}/rules/{watcher}", a.putRule)
		mux.HandleFunc("DELETE /api/v1/presence/{aor}/rules/{watcher}", a.deleteRule)
	}
	if o.MWI != nil {
		mux.HandleFunc("GET /api/v1/mwi/{aor}", a.getMWI)
		mux.HandleFunc("PUT /api/v1/mwi/{aor}", a.putMWI)
		mux.HandleFunc("DELETE /api/v1/mwi/{aor}", a.deleteMWI)
	}
	if o.Routes != nil {
		mux.HandleFunc("GET /api/v1/routes", a.getRoutes)
	}
	if o.Cluster != nil {
		mux.HandleFunc("GET /api/v1/cluster", a.getCluster)
	}
	if o.Users != nil {
		mux.HandleFunc("GET /api/v1/users", a.listUsers)
		mux.HandleFunc("PUT /api/v1/users/{aor}", a.putUser)
		mux.HandleFunc("DELETE /api/v1/users/{aor}", a.deleteUser)
	}
	g := newGuard(o, mux)
	a.refused = g.refused
	return g
}

type api struct {
	o       Options
	domains map[string]bool // lower case
	refused *prometheus.CounterVec
}

func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.o.Ready(ctx); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ready\n"))
}

// Binding is one registration as the admin API shows it.
type Binding struct {
	Contact    string    `json:"contact"`
	URI        string    `json:"uri"`
	Expires    int64     `json:"expires"` // seconds left
	ExpiresAt  time.Time `json:"expires_at"`
	Q          *float64  `json:"q,omitempty"`
	CallID     string    `json:"call_id"`
	CSeq       uint32    `json:"cseq"`
	Path       []string  `json:"path,omitempty"`
	InstanceID string    `json:"instance_id,omitempty"`
	RegID      int       `json:"reg_id,omitempty"`
	Received   string    `json:"received,omitempty"`
	Transport  string    `json:"transport,omitempty"`
	UserAgent  string    `json:"user_agent,omitempty"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Registrations is the body of GET and DELETE /api/v1/registrations/{aor}.
type registrationsBody struct {
	AOR      string    `json:"aor"`
	Bindings []Binding `json:"bindings"`
}

func (a *api) view(aor string, bs []storage.Binding) registrationsBody {
	now := a.o.Now()
	out := registrationsBody{AOR: aor, Bindings: make([]Binding, 0, len(bs))}
	for _, b := range bs {
		v := Binding{
			Contact: b.Contact, URI: b.URI, ExpiresAt: b.ExpiresAt.UTC(),
			Expires: int64((b.ExpiresAt.Sub(now) + time.Second - 1) / time.Second),
			CallID:  b.CallID, CSeq: b.CSeq, Path: b.Path, InstanceID: b.InstanceID, RegID: b.RegID,
			Received: b.Received, Transport: b.Transport, UserAgent: b.UserAgent, UpdatedAt: b.UpdatedAt.UTC(),
		}
		if v.Expires < 0 {
			v.Expires = 0
		}
		if b.Q >= 0 {
			q := float64(b.Q) / 1000
			v.Q = &q
		}
		out.Bindings = append(out.Bindings, v)
	}
	return out
}

// normalizeAOR accepts "user@domain" or "sip:user@domain" and lower-cases the domain.
func normalizeAOR(s string) (string, bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "sip:"), "sips:")
	user, domain, ok := strings.Cut(s, "@")
	if !ok || user == "" || domain == "" || strings.ContainsAny(s, " \r\n;<>") {
		return "", false
	}
	return user + "@" + strings.ToLower(domain), true
}

func (a *api) getRegistrations(w http.ResponseWriter, r *http.Request) {
	a.registrations(w, r, a.o.Registrations.Lookup)
}

func (a *api) deleteRegistrations(w http.ResponseWriter, r *http.Request) {
	a.registrations(w, r, func(ctx context.Context, aor string) ([]storage.Binding, error) {
		bs, err := a.o.Registrations.Remove(ctx, aor)
		if err == nil && len(bs) > 0 {
			a.o.Log.Info("registrations removed by admin", zap.String(logging.KeyAOR, aor), zap.Int("count", len(bs)))
		}
		return bs, err
	})
}

// registrations answers GET and DELETE /api/v1/registrations/{aor}: op reads or removes the
// AOR's bindings, which are shown (404 when there were none).
func (a *api) registrations(w http.ResponseWriter, r *http.Request, op func(context.Context, string) ([]storage.Binding, error)) {
	aor, ok := normalizeAOR(r.PathValue("aor"))
	if !ok {
		writeError(w, http.StatusBadRequest, "want an AOR like alice@example.com")
		return
	}
	bs, err := op(r.Context(), aor)
	if err != nil {
		a.storeError(w, err)
		return
	}
	if len(bs) == 0 {
		writeError(w, http.StatusNotFound, "no registration for "+aor)
		return
	}
	writeJSON(w, http.StatusOK, a.view(aor, bs))
}

func (a *api) storeError(w http.ResponseWriter, err error) {
	if errors.Is(err, storage.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	a.o.Log.Error("admin request failed", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, "store unavailable")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
