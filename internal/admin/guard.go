package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/simpled/simpled/base/logging"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The HTTP server's limits (NewServer). They are not settings: no legitimate client of
// /metrics or the admin API needs more, and a slow or hostile one gets less.
const (
	// ReadHeaderTimeout bounds the request line and headers (slowloris).
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds the whole request, body included (at most maxBody).
	ReadTimeout = 30 * time.Second
	// WriteTimeout bounds the handling and the answer: above a MESSAGE's 32 s transaction
	// timeout (Timer F), which POST /api/v1/messages waits for. net/http/pprof extends it
	// for profile, trace and delta profiles by their ?seconds=.
	WriteTimeout = 60 * time.Second
	// IdleTimeout closes a keep-alive connection idle this long.
	IdleTimeout = 2 * time.Minute
	// MaxHeaderBytes bounds the request headers.
	MaxHeaderBytes = 64 << 10
	// maxBody bounds every request body: the largest is a POST /api/v1/messages.
	maxBody = 1 << 20
)

// NewServer returns the HTTP server for h (from New) with the limits above.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// openPaths are served to whoever reaches the listener: monitoring and probes carry no
// token and may use any Host (a load balancer, a port mapping). Everything else is guarded.
var openPaths = map[string]bool{"/metrics": true, "/healthz": true, "/readyz": true}

// guard is the admin API's front door, in this order: the Host header (421), the bearer
// token (401), the Content-Type of a request with a body (415); then the handler. Every
// request other than GET and HEAD is written to the audit logger with its outcome.
type guard struct {
	next      http.Handler
	tokenHash []byte // SHA-256 of the token; nil: no token
	port      string // the listener's port
	hosts     map[string]bool
	anyPort   map[string]bool // admin.hosts names given without a port
	checkHost bool
	audit     *zap.Logger
	refused   *prometheus.CounterVec
}

func newGuard(o Options, next http.Handler) *guard {
	g := &guard{next: next, audit: o.Audit, hosts: map[string]bool{}, anyPort: map[string]bool{}}
	if o.Token != "" {
		sum := sha256.Sum256([]byte(o.Token))
		g.tokenHash = sum[:]
	}
	if host, port, err := net.SplitHostPort(o.Addr); err == nil {
		g.checkHost, g.port = true, port
		g.hosts[hostKey(host, port)] = true
		ip, _ := netip.ParseAddr(host)
		if ip.IsLoopback() || ip.IsUnspecified() || host == "" {
			for _, h := range []string{"127.0.0.1", "localhost", "::1"} {
				g.hosts[hostKey(h, port)] = true
			}
		}
		if ip.IsUnspecified() || host == "" {
			// Every address of the machine reaches a wildcard listener. An IP literal is
			// not a rebinding risk: a rebound name arrives as that name.
			if addrs, err := net.InterfaceAddrs(); err == nil {
				for _, a := range addrs {
					if n, ok := a.(*net.IPNet); ok {
						g.hosts[hostKey(n.IP.String(), port)] = true
					}
				}
			}
		}
	}
	for _, h := range o.Hosts {
		if host, port, err := net.SplitHostPort(h); err == nil {
			g.hosts[hostKey(host, port)] = true
		} else {
			g.anyPort[strings.ToLower(strings.Trim(h, "[]"))] = true
		}
	}
	g.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_admin_refused_total",
		Help: "Admin API requests refused before their handler, by reason: host (421), token (401), content_type (415); and sender (403, POST /api/v1/messages from a user).",
	}, []string{"reason"})
	for _, r := range []string{"host", "token", "content_type", "sender"} {
		g.refused.WithLabelValues(r)
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(g.refused)
	}
	return g
}

// hostKey is the form Host values are compared in: lower case, IPv6 without brackets and
// canonical.
func hostKey(host, port string) string {
	host = strings.ToLower(strings.Trim(host, "[]"))
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	}
	return net.JoinHostPort(host, port)
}

// hostOK reports whether the Host header names this listener or an admin.hosts entry.
func (g *guard) hostOK(h string) bool {
	if !g.checkHost {
		return true
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		host, port = h, "80" // no port: the scheme's default
	}
	if g.anyPort[strings.ToLower(strings.Trim(host, "[]"))] {
		return true
	}
	return g.hosts[hostKey(host, port)]
}

// tokenOK compares the bearer token in constant time (hashes, so the length leaks nothing).
func (g *guard) tokenOK(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], g.tokenHash) == 1
}

// auditKey carries the *auditEntry of a request to its handler.
type auditKey struct{}

// auditEntry collects what a handler adds to the audit line (the AOR, a sender).
type auditEntry struct{ fields []zap.Field }

// auditf adds fields to the request's audit line; a no-op for requests that are not audited.
func auditf(ctx context.Context, fields ...zap.Field) {
	if e, ok := ctx.Value(auditKey{}).(*auditEntry); ok {
		e.fields = append(e.fields, fields...)
	}
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if openPaths[r.URL.Path] {
		g.next.ServeHTTP(w, r)
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		g.serve(w, r)
		return
	}
	rec := &statusWriter{ResponseWriter: w}
	entry := &auditEntry{}
	r = r.WithContext(context.WithValue(r.Context(), auditKey{}, entry))
	g.serve(rec, r)
	// Who: the token holder, or without a token whoever reached the loopback listener.
	who := "loopback"
	if g.tokenHash != nil {
		who = "anonymous"
		if g.tokenOK(r) {
			who = "token"
		}
	}
	fields := append([]zap.Field{
		zap.String("who", who),
		zap.String(logging.KeyRemoteAddr, r.RemoteAddr),
		zap.String(logging.KeyMethod, r.Method),
		zap.String("path", r.URL.Path),
	}, entry.fields...)
	if aor := r.PathValue("aor"); aor != "" {
		fields = append(fields, zap.String(logging.KeyAOR, aor))
	}
	fields = append(fields, zap.Int(logging.KeyStatus, rec.code()))
	g.audit.Info("admin request", fields...)
}

// serve applies the checks, then the handler.
func (g *guard) serve(w http.ResponseWriter, r *http.Request) {
	if !g.hostOK(r.Host) {
		g.refused.WithLabelValues("host").Inc()
		writeError(w, http.StatusMisdirectedRequest, "Host "+quoteHost(r.Host)+" is not this server's address: use it, or add the name to admin.hosts")
		return
	}
	if g.tokenHash != nil && !g.tokenOK(r) {
		g.refused.WithLabelValues("token").Inc()
		if r.Header.Get("Authorization") == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="simpled"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="simpled", error="invalid_token"`)
		}
		writeError(w, http.StatusUnauthorized, "want Authorization: Bearer <the token of admin.token_file>")
		return
	}
	if needsJSON(r) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			g.refused.WithLabelValues("content_type").Inc()
			writeError(w, http.StatusUnsupportedMediaType, "want Content-Type: application/json")
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

// needsJSON: POST, PUT and PATCH always carry a JSON body; any other request that has a
// body must say it is JSON. A cross-site HTML form cannot send application/json without a
// CORS preflight, which simpled never answers, so this stops browser CSRF.
func needsJSON(r *http.Request) bool {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return true
	case http.MethodGet, http.MethodHead:
		return false
	}
	return r.ContentLength != 0 // -1: chunked, unknown length
}

// quoteHost shows a Host header in an error, bounded.
func quoteHost(h string) string {
	if len(h) > 100 {
		h = h[:100] + "..."
	}
	return `"` + strings.ToValidUTF8(h, "?") + `"`
}

// statusWriter records the status code for the audit line.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (write deadlines, flush).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
