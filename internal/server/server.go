// Package server wires simpled together: the store, the sipgo user agent and its listeners, the
// dispatcher that runs every request through the chain of stages (whose order is fixed in
// chain.go), the HTTP endpoints, and a graceful shutdown. It holds no SIP logic of its own
// beyond the sanity and OPTIONS stages.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/auth"
	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipgox"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"
	"github.com/simpled/simpled/cluster"
	"github.com/simpled/simpled/delivery"
	"github.com/simpled/simpled/internal/admin"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/msgcheck"
	"github.com/simpled/simpled/offline"
	"github.com/simpled/simpled/presence"
	"github.com/simpled/simpled/presence/dialog"
	"github.com/simpled/simpled/presence/mwi"
	"github.com/simpled/simpled/proxy"
	"github.com/simpled/simpled/registrar"
	"github.com/simpled/simpled/routes"
	"github.com/simpled/simpled/storage"
	"github.com/simpled/simpled/storage/memory"
	redisstore "github.com/simpled/simpled/storage/redis"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Store is everything the stages need from the one storage backend.
type Store interface {
	storage.Backend
	registrar.Store
	auth.Store
	offline.MessageStore
	presence.Store
	mwi.MailboxStore
	dialog.Store
	storage.Credentials
}

// UDPSocketBuffer is the receive and send buffer asked for each UDP listener: bursts of
// thousands of datagrams must queue in the kernel rather than be dropped (Kamailio's
// benchmark setting is 4 MB as well).
const UDPSocketBuffer = 4 << 20

// maxLiveUDP bounds how many UDP client addresses the liveness table remembers, and
// liveUDPFor how long one is kept after it was last heard from: longer than any keepalive
// interval (RFC 5626 §4.4.1: under 30 s for UDP), shorter than a registration.
const (
	maxLiveUDP = 200000
	liveUDPFor = 10 * time.Minute
)

// ShutdownGrace bounds how long shutdown waits for in-flight transactions (docs/cli.md: 5 s).
const ShutdownGrace = 5 * time.Second

// Server is one simpled node.
type Server struct {
	opts config.Options
	log  *zap.Logger

	store Store
	// cluster is this node among the nodes sharing the store, and the event bus the stages
	// share (a cluster of one with the memory store).
	cluster   *cluster.Cluster
	auth      *auth.Auth
	registrar *registrar.Registrar
	proxy     *proxy.Proxy
	// calls is the dialog package's call tracker (BLF), nil when dialog.track_calls is off.
	calls    *dialog.Tracker
	delivery *delivery.Delivery
	offline  *offline.Offline
	rules    *msgcheck.Rules
	// location is the location service (registrar.Location), built with the shared services
	// for delivery, the proxy and presence.
	location registrar.Location
	// flows names flows and knows the listeners (registrar, proxy, delivery share it);
	// strays passes on the responses no sipgo transaction took (sipgox.StrayRouter).
	flows    *transport.Flows
	strays   *sipgox.StrayRouter
	presence *presence.Presence
	mwi      *mwi.MWI // nil with mwi.server set
	ua       *sipgo.UserAgent
	client   *sipgo.Client
	srv      *sipgo.Server
	// udptx runs the server transactions of non-INVITE requests over UDP in sipgo's stead.
	udptx     *sipgox.UDPTransactions
	chain     sipx.Handler
	allowText string
	// trusted are proxy.trusted_peers: by source address, or by a name a client certificate
	// verified against tls_client_ca proves (State.PeerNames); and the next hops of
	// proxy.routes named by an IP address.
	trusted sipx.Peers
	// routes is proxy.routes: the proxy forwards by it, and the presence agent leaves the
	// requests it takes to the proxy (setupPresence).
	routes *routes.Table

	registry *prometheus.Registry
	// limited counts what the abuse limits refused (simpled_limited_total{limit}); every stage
	// and listener that enforces a limit gets it.
	limited *sipx.Limited
	// rate is the per-source request rate (limits.source_rate), shared by every listener.
	rate      *transport.SourceRate
	requests  *prometheus.CounterVec
	responses *prometheus.CounterVec
	malformed *prometheus.CounterVec
	// retransAbsorbed counts UDP retransmissions answered from the retransmission cache.
	retransAbsorbed prometheus.Counter
	tm              *transportMetrics
	live            *transport.Liveness // when each UDP client address was last heard from

	mu        sync.Mutex
	closers   []func() error
	listeners []string // bound listener URLs
	sockets   atomic.Pointer[[]transport.Listener]
	streams   map[string][]flowHolder // stream listeners by transport
	ourHosts  map[string]bool
	http      *http.Server
	httpAddr  string
	// users is the users service (the users file, then the store's credentials), its file
	// reloaded on SIGHUP (ReloadUsers); adminToken is admin.token_file's token ("" without one).
	users      *auth.Directory
	adminToken string
	// secret keys nonces, Record-Route and flow tokens and GRUUs; seals and gruus are built
	// from it once for the stages that share them.
	secret []byte
	seals  *sipx.Seals
	gruus  *sipx.GRUUs
	// storeLatency observes storage calls by op (simpled_store_duration_seconds).
	storeLatency *prometheus.HistogramVec

	inflight sync.WaitGroup
	// gate orders requests entering (read lock, inflight.Add) before Shutdown's Wait (write
	// lock, then draining): a WaitGroup must not be added to while it is being waited on.
	gate     sync.RWMutex
	draining atomic.Bool
	ready    atomic.Bool
	cancel   context.CancelFunc
	bg       sync.WaitGroup
}

// New builds a server from opts: it opens the store, builds the services the stages share,
// then each stage of the chain in the order chain.go gives, and registers the dispatcher; it
// binds nothing (Start does). The caller owns log.
func New(ctx context.Context, opts config.Options, log *zap.Logger) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, log: log, ourHosts: map[string]bool{}, streams: map[string][]flowHolder{}}
	for _, d := range opts.Domains {
		s.ourHosts[strings.ToLower(d)] = true
	}
	if s.opts.NodeID == "" {
		host, _ := os.Hostname()
		s.opts.NodeID = defaultNodeID(host, os.Getpid())
	}
	if err := s.build(ctx); err != nil {
		s.closeAll()
		return nil, err
	}
	return s, nil
}

// build makes the shared services, then the stages from the chain table, then registers the
// dispatcher. On an error the caller closes what was opened (s.closers).
func (s *Server) build(ctx context.Context) error {
	if err := s.buildMetrics(); err != nil {
		return err
	}
	store, err := openStore(ctx, s.opts.Store, s.opts.NodeID, s.opts.StorePersistenceWarning, s.log.Named("store"))
	if err != nil {
		return err
	}
	s.store = store
	s.closers = append(s.closers, store.Close)
	if err := s.buildServices(); err != nil {
		return err
	}
	if err := s.buildSIP(); err != nil {
		return err
	}
	if err := s.buildSenders(); err != nil {
		return err
	}
	plugins := make([]sipx.Plugin, 0, len(chain))
	for _, st := range chain {
		p, err := st.setup(s)
		if err != nil {
			return fmt.Errorf("server: stage %s: %w", st.name, err)
		}
		plugins = append(plugins, p)
	}
	s.chain = buildChain(plugins)
	s.registerDispatch()
	return nil
}

// buildMetrics makes the registry and the server's own metrics.
func (s *Server) buildMetrics() error {
	s.registry = prometheus.NewRegistry()
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var err error
	if s.limited, err = sipx.NewLimited(s.registry, transport.LimitSourceRate, transport.LimitConnectionsPerIP,
		limitInflight, limitInflightPerSource); err != nil {
		return err
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_sip_requests_total", Help: "SIP requests received, by method.",
	}, []string{"method"})
	s.responses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_sip_responses_total", Help: "Final SIP responses sent, by method and status code.",
	}, []string{"method", "code"})
	s.malformed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simpled_sip_malformed_total", Help: "Datagrams refused before parsing, by status answered (-1: dropped).",
	}, []string{"code"})
	s.storeLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "simpled_store_duration_seconds",
		Help:    "Latency of storage calls, by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"op"})
	s.retransAbsorbed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "simpled_sip_retransmissions_answered_total",
		Help: "Retransmitted UDP requests answered again with their recorded final response.",
	})
	s.registry.MustRegister(s.requests, s.responses, s.malformed, s.storeLatency, s.retransAbsorbed)
	s.tm = newTransportMetrics(s.registry)
	s.live = transport.NewLiveness(maxLiveUDP)
	return nil
}

// buildServices makes what several stages share: the secret, the users service, the trusted
// peers, the per-source rate, the seals and GRUUs; and the admin token.
func (s *Server) buildServices() error {
	opts := s.opts
	// One secret keys nonces, Record-Route and flow tokens and temporary GRUUs: nodes sharing
	// a store share auth.nonce_secret; without one, a random secret per process.
	s.secret = []byte(opts.Auth.NonceSecret)
	if len(s.secret) == 0 {
		s.secret = make([]byte, 32)
		_, _ = rand.Read(s.secret)
	}
	var err error
	if s.users, err = auth.NewDirectory(opts.UsersFile, s.store); err != nil {
		return fmt.Errorf("server: -users: %w", err)
	}
	if opts.Admin.TokenFile != "" {
		if s.adminToken, err = config.ReadTokenFile(opts.Admin.TokenFile); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	table := opts.Proxy.Routes
	if opts.MWI.Server != "" {
		table = append([]routes.Rule{mwiRoute(opts.MWI.Server)}, table...)
	}
	if s.routes, err = routes.New(table); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	// A route's next hop is a peer simpled sends requests to and takes them from: a PBX's
	// calls to our users come from the address we send its extensions to (docs/security.md).
	peers := slices.Clone(opts.Proxy.TrustedPeers)
	for _, a := range s.routes.HopAddrs() {
		peers = append(peers, a.String())
	}
	if s.trusted, err = sipx.ParsePeers(peers); err != nil {
		return fmt.Errorf("server: proxy.trusted_peers: %w", err)
	}
	s.rate = transport.NewSourceRate(opts.Limits.SourceRate, opts.Limits.SourceBurst, s.limited,
		s.log.Named("transport"))
	if s.rate != nil {
		s.rate.Trusted = s.trusted.TrustsSource
	}
	// One Seals for the identity stage, which checks dialog tokens and node proofs, and the
	// proxy, which issues them.
	s.seals = sipx.NewSeals(s.secret)
	s.gruus = sipx.NewGRUUs(s.secret)
	// The flows service names the connections and NAT bindings clients are reached over; the
	// registrar stores its tokens and delivery resolves them.
	s.sockets.Store(&[]transport.Listener{})
	s.flows = transport.NewFlows(s.secret, func() []transport.Listener { return *s.sockets.Load() })
	s.strays = &sipgox.StrayRouter{}
	s.location = registrar.Location{Store: s.store}
	return s.buildCluster()
}

// buildCluster makes this node's membership and the event bus: over the store when it
// keeps the nodes' records and inboxes (Redis), else a cluster of this node alone.
func (s *Server) buildCluster() error {
	o := cluster.Options{Node: s.opts.NodeID, Lease: s.opts.Cluster.Lease, Listeners: s.Listeners,
		Flows: s.openFlows, Subscriptions: s.ownedSubscriptions, Registerer: s.registry, Log: s.log.Named("cluster")}
	if cs, ok := s.store.(cluster.Store); ok {
		o.Store = cs
	}
	var err error
	if s.cluster, err = cluster.New(o); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	// Before the store's: Close leaves the cluster, which needs the store.
	s.closers = append(s.closers, s.cluster.Close)
	return nil
}

// ownedSubscriptions counts the subscriptions this node notifies (0 before presence is built).
func (s *Server) ownedSubscriptions() int {
	s.mu.Lock()
	p := s.presence
	s.mu.Unlock()
	if p == nil {
		return 0
	}
	return p.OwnedSubscriptions()
}

// openFlows counts the open connections of the stream listeners: the flows this node holds.
func (s *Server) openFlows() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ls := range s.streams {
		for _, l := range ls {
			n += l.Len()
		}
	}
	return n
}

// defaultNodeID is the node id of a node not given one: host-pid, with what a node id may not
// hold in the host name replaced by '-' and the name cut to fit 64 bytes.
func defaultNodeID(host string, pid int) string {
	suffix := "-" + strconv.Itoa(pid)
	b := []byte(host)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	if len(b) > 64-len(suffix) {
		b = b[:64-len(suffix)]
	}
	if len(b) == 0 {
		b = []byte("simpled")
	}
	return string(b) + suffix
}

// buildSIP makes the sipgo user agent, server and client.
func (s *Server) buildSIP() error {
	opts, log := s.opts, s.log
	clientTLS, err := s.clientTLS()
	if err != nil {
		return err
	}
	slogger := logging.Slog(log)
	sipgox.Configure(slogger)
	s.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent("simpled"),
		sipgo.WithUserAgenTLSConfig(clientTLS),
		sipgo.WithUserAgentParser(sipx.NewParser(opts.Limits.MaxMessageSize)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(slogger)),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(slogger),
			// A 2xx to an INVITE retransmitted after our client transaction ended still has
			// to reach the caller (RFC 6026): the proxy relays it statelessly.
			sip.WithTransactionLayerUnhandledResponseHandler(s.strays.Serve),
		),
	)
	if err != nil {
		return fmt.Errorf("server: user agent: %w", err)
	}
	s.srv, err = sipgo.NewServer(s.ua, sipgo.WithServerLogger(slogger))
	if err != nil {
		return fmt.Errorf("server: sip server: %w", err)
	}
	s.client, err = sipgo.NewClient(s.ua, sipgo.WithClientLogger(slogger))
	if err != nil {
		return fmt.Errorf("server: sip client: %w", err)
	}
	return nil
}

// registerDispatch hands every request sipgo receives to the dispatcher, through the
// workers, the retransmission cache and the in-flight limits; non-INVITE requests over UDP
// come through the same cache and limits from simpled's own transactions (udptx), on workers
// of their own.
func (s *Server) registerDispatch() {
	opts := s.opts
	cache := sipgox.NewRetransCache(opts.Limits.SourceRate, s.retransAbsorbed)
	admitted := s.admitInflight(newInflight(opts.Limits.MaxInflight, opts.Limits.MaxInflightPerSource), s.dispatch)
	s.udptx = sipgox.NewUDPTransactions(sipx.NewLeanParser(opts.Limits.MaxMessageSize), cache, admitted)
	if _, local := s.store.(*memory.Store); local {
		// On the memory store a REGISTER never waits: the registrar, the digest check (users
		// file or store) and the binding update are in this process, and what follows a
		// registration goes out on the bus, which never blocks. It runs on its read loop.
		s.udptx.Inline = func(req *sip.Request) bool { return req.Method == sip.REGISTER }
	}
	dispatch := sipgox.OnWorkers(sipgox.Retransmits(cache, admitted))
	for _, m := range servedMethods {
		s.srv.OnRequest(m, dispatch)
	}
	s.srv.OnRequest(sip.ACK, s.dispatchACK)
	s.srv.OnRequest(sip.CANCEL, s.dispatchCANCEL)
	// A proxy forwards methods it does not know (RFC 3261 §16): they go through the chain too.
	s.srv.OnNoRoute(dispatch)
	methods := s.srv.RegisteredMethods()
	slices.Sort(methods)
	s.allowText = strings.Join(methods, ", ")
}

// servedMethods are the methods some stage serves or the proxy routes; they make the Allow
// header. Other methods are routed by the proxy too, and get 405 with Allow when addressed to
// the server itself.
var servedMethods = []sip.RequestMethod{sip.REGISTER, sip.OPTIONS, sip.MESSAGE, sip.INVITE,
	sip.BYE, sip.INFO, sip.UPDATE, sip.PRACK, sip.REFER, sip.NOTIFY, sip.SUBSCRIBE, sip.PUBLISH}

func openStore(ctx context.Context, url, node string, checkPersistence bool, log *zap.Logger) (Store, error) {
	if url == "" || url == "memory" {
		return memory.New(), nil
	}
	redisLogger.Do(func() { goredis.SetLogger(redisLog{log.WithOptions(sampled())}) })
	st, err := redisstore.New(ctx, url, redisstore.Options{})
	if err != nil {
		return nil, fmt.Errorf("server: -store: %w", err)
	}
	if checkPersistence {
		warnPersistence(ctx, st, log)
	}
	return st, nil
}

// persistenceTimeout bounds the start-up question to Redis about its persistence.
const persistenceTimeout = 5 * time.Second

// warnPersistence logs a warning when Redis keeps nothing across a restart (no append-only
// file, no snapshots), or only snapshots, or will not say: offline messages already answered
// 202 would then be lost with it (store_persistence_warning: false silences it).
func warnPersistence(ctx context.Context, st *redisstore.Store, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(ctx, persistenceTimeout)
	defer cancel()
	const silence = "set store_persistence_warning: false to silence this"
	p, err := st.Persistence(ctx)
	switch {
	case err != nil:
		log.Warn("could not check whether Redis persists data (CONFIG GET refused or renamed): if it does not, offline messages already answered 202 Accepted, registrations and presence are lost when Redis restarts; "+silence, zap.Error(err))
	case !p.Durable():
		log.Warn("Redis persists nothing (appendonly no, save \"\"): offline messages already answered 202 Accepted, registrations and presence are lost when Redis restarts; turn on appendonly yes, or "+silence,
			zap.String("redis", p.Addr), zap.Bool("appendonly", p.AppendOnly), zap.String("save", p.Save))
	case !p.AppendOnly:
		log.Warn("Redis keeps RDB snapshots only (appendonly no): offline messages answered 202 Accepted since the last snapshot are lost when Redis restarts; turn on appendonly yes, or "+silence,
			zap.String("redis", p.Addr), zap.Bool("appendonly", p.AppendOnly), zap.String("save", p.Save))
	}
}

// redisLogger routes go-redis's process-wide logger (dial failures, pool events) into zap once.
var redisLogger sync.Once

type redisLog struct{ log *zap.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// Start binds every listener and the HTTP endpoint and starts serving; it returns once all are
// bound (or the first error, after releasing what was bound).
func (s *Server) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	// The first heartbeat before the first request: the others see this node, and it holds
	// its lease, before it serves. Run keeps trying when this fails.
	if err := s.cluster.Join(ctx); err != nil {
		s.log.Warn("cluster: first heartbeat failed; retrying", zap.Error(err))
	}
	for _, uri := range s.opts.Listen {
		if err := s.listen(uri); err != nil {
			s.closeAll()
			return err
		}
	}
	if s.opts.HTTP != "" {
		l, err := net.Listen("tcp", s.opts.HTTP)
		if err != nil {
			s.closeAll()
			return fmt.Errorf("server: -http %s: %w", s.opts.HTTP, err)
		}
		s.httpAddr = l.Addr().String()
		s.http = admin.NewServer(admin.New(s.adminOptions()))
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http server stopped", zap.Error(err))
			}
		}()
		s.log.Info("http listening", zap.String(logging.KeyListener, "http://"+s.httpAddr))
	}
	s.bg.Add(5)
	go func() {
		defer s.bg.Done()
		s.cluster.Run(ctx)
	}()
	go func() {
		defer s.bg.Done()
		s.registrar.Run(ctx)
	}()
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				s.live.Prune(now.Add(-liveUDPFor))
			}
		}
	}()
	go func() {
		defer s.bg.Done()
		s.presence.Run(ctx)
	}()
	go func() {
		defer s.bg.Done()
		s.offline.Run(ctx)
	}()
	s.ready.Store(true)
	return nil
}

// listen opens the SIP listener uri (scheme://host:port), records where it is bound, and
// serves it in the background until shutdown.
func (s *Server) listen(uri string) error {
	l, err := config.ParseListen(uri)
	if err != nil {
		return fmt.Errorf("server: -listen %s: %w", uri, err)
	}
	var bound string
	var serve func() error
	switch l.Scheme {
	case "udp":
		bound, serve, err = s.listenUDP(uri, l.Addr())
	case "tcp", "ws", "tls", "wss":
		bound, serve, err = s.listenStream(uri, l.Scheme, l.Addr())
	default:
		err = fmt.Errorf("server: -listen %s: unknown scheme", uri)
	}
	if err != nil {
		return err
	}
	url := l.Scheme + "://" + bound
	s.mu.Lock()
	s.listeners = append(s.listeners, url)
	if ap, err := netip.ParseAddrPort(bound); err == nil {
		sockets := append(slices.Clone(*s.sockets.Load()), transport.Listener{Transport: l.Scheme, Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())})
		s.sockets.Store(&sockets)
	}
	if host, _, err := net.SplitHostPort(bound); err == nil {
		s.ourHosts[host] = true
	}
	s.mu.Unlock()
	s.log.Info("sip listening", zap.String(logging.KeyListener, url))
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := serve(); err != nil && !errors.Is(err, net.ErrClosed) && !s.draining.Load() {
			s.log.Error("listener stopped", zap.String(logging.KeyListener, url), zap.Error(err))
		}
	}()
	return nil
}

// listenUDP opens a UDP socket on addr behind the transport guard (size, rate, STUN and
// keepalive handling) and returns the address it is bound to and the function that serves it.
func (s *Server) listenUDP(uri, addr string) (bound string, serve func() error, err error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("server: -listen %s: %w", uri, err)
	}
	if err := transport.SetSocketBuffers(pc, UDPSocketBuffer); err != nil {
		s.log.Warn("udp socket buffers", zap.String(logging.KeyListener, uri), zap.Error(err))
	}
	g := transport.NewGuardConn(pc, s.log.Named("transport").WithOptions(sampled()))
	g.OnReject = func(code int, _ string) { s.malformed.WithLabelValues(strconv.Itoa(code)).Inc() }
	g.OnSTUN = s.tm.stunOutcome
	g.Rate = s.rate
	g.Take = s.udptx.For(pc)
	g.OnKeepalive = func(remote net.Addr, kind string) {
		s.tm.udpKeepalive(remote, kind)
		if ua, ok := remote.(*net.UDPAddr); ok {
			s.live.Touch(ua.AddrPort(), time.Now())
		}
	}
	s.closers = append(s.closers, pc.Close)
	return pc.LocalAddr().String(), func() error { return sipgox.ServeUDP(s.srv, g) }, nil
}

// listenStream opens a TCP socket on addr for the stream transport tp (tcp, ws, tls, wss)
// behind the transport's stream listener (connection limits, handshake and idle timeouts) and
// returns the address it is bound to and the function that serves it.
func (s *Server) listenStream(uri, tp, addr string) (bound string, serve func() error, err error) {
	var tlsConf *tls.Config
	if tp == "tls" || tp == "wss" {
		if tlsConf, err = s.serverTLS(); err != nil {
			return "", nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("server: -listen %s: %w", uri, err)
	}
	sl := transport.NewStreamListener(ln, transport.StreamOptions{
		Transport:           tp,
		TLS:                 tlsConf,
		MaxConnections:      s.opts.Transport.MaxConnections,
		MaxConnectionsPerIP: s.opts.Transport.MaxConnectionsPerIP,
		Rate:                s.rate,
		Trusted:             s.trusted.TrustsSource,
		Limited:             s.limited,
		HandshakeTimeout:    s.opts.Transport.HandshakeTimeout,
		IdleTimeout:         s.opts.Transport.IdleTimeout,
		MessageTimeout:      s.opts.Transport.MessageTimeout,
		MaxMessageSize:      s.opts.Limits.MaxMessageSize, // ws: capped at sipgo's buffer
		WSOrigins:           s.opts.Transport.WSOrigins,
		Log:                 s.log.Named("transport").WithOptions(sampled()),
		Events:              s.streamEvent,
	})
	s.closers = append(s.closers, sl.Close)
	s.mu.Lock()
	s.streams[tp] = append(s.streams[tp], sl)
	s.mu.Unlock()
	switch tp {
	case "tcp":
		serve = func() error { return s.srv.ServeTCP(sl) }
	case "ws":
		serve = func() error { return s.srv.ServeWS(sl) }
	case "tls":
		serve = func() error { return s.srv.ServeTLS(sl) }
	case "wss":
		serve = func() error { return s.srv.ServeWSS(sl) }
	}
	return ln.Addr().String(), serve, nil
}

// serverTLS is the TLS configuration of the tls and wss listeners: tls_cert and tls_key, and
// client certificates verified against tls_client_ca when it is set.
func (s *Server) serverTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(s.opts.TLSCert, s.opts.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("server: -tls-cert/-tls-key: %w", err)
	}
	var clientCAs *x509.CertPool
	if s.opts.TLSClientCA != "" {
		if clientCAs, err = loadCAs(s.opts.TLSClientCA); err != nil {
			return nil, fmt.Errorf("server: -tls-client-ca: %w", err)
		}
	}
	return transport.ServerTLS(cert, clientCAs), nil
}

// clientTLS is the TLS configuration of outbound connections: servers verified against
// tls_ca (default the system's roots), and tls_cert presented to servers asking for a client
// certificate.
func (s *Server) clientTLS() (*tls.Config, error) {
	var roots *x509.CertPool
	if s.opts.TLSCA != "" {
		var err error
		if roots, err = loadCAs(s.opts.TLSCA); err != nil {
			return nil, fmt.Errorf("server: -tls-ca: %w", err)
		}
	}
	var cert *tls.Certificate
	if s.opts.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(s.opts.TLSCert, s.opts.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("server: -tls-cert/-tls-key: %w", err)
		}
		cert = &c
	}
	return transport.ClientTLS(roots, cert), nil
}

// loadCAs reads a PEM bundle of CA certificates.
func loadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return pool, nil
}

// sampled caps per-second log lines of a logger that peers can drive (malformed datagrams).
func sampled() zap.Option {
	return zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, 10, 100)
	})
}

// Listeners returns the bound listener URLs, with the ports actually chosen.
func (s *Server) Listeners() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.listeners)
}

// Listener returns the first bound listener URL's host:port for scheme, or "".
func (s *Server) Listener(scheme string) string {
	for _, u := range s.Listeners() {
		if strings.HasPrefix(u, scheme+"://") {
			return strings.TrimPrefix(u, scheme+"://")
		}
	}
	return ""
}

// NodeID returns this node's id (configured, or derived from the host name and pid).
func (s *Server) NodeID() string { return s.opts.NodeID }

// HTTPAddr returns the bound HTTP address, or "".
func (s *Server) HTTPAddr() string { return s.httpAddr }

// Store returns the server's store (for tests and tools that seed credentials).
func (s *Server) Store() Store { return s.store }

// Bus returns the server's event bus: the cluster's, which reaches the other nodes sharing
// the store.
func (s *Server) Bus() storage.Bus { return s.cluster }

// Cluster returns this node's view of the nodes sharing the store (Self, Alive, Leased,
// Nodes).
func (s *Server) Cluster() *cluster.Cluster { return s.cluster }

// Ready reports nil once every listener is up and the store answers.
func (s *Server) Ready(ctx context.Context) error {
	if !s.ready.Load() || s.draining.Load() {
		return errors.New("server: not serving")
	}
	if err := s.store.Ping(ctx); err != nil {
		return fmt.Errorf("server: store: %w", err)
	}
	return nil
}

// isOurs reports whether host (a domain or an address) is this server.
func (s *Server) isOurs(host string) bool {
	host = strings.ToLower(strings.Trim(host, "[]"))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ourHosts[host] {
		return true
	}
	// A listener bound to a wildcard address is reached by any local address.
	if ip := net.ParseIP(host); ip != nil && (s.ourHosts["0.0.0.0"] || s.ourHosts["::"]) {
		return ip.IsLoopback() || isLocalIP(ip)
	}
	return false
}

func isLocalIP(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

func (s *Server) allow() string { return s.allowText }

// Run starts the server and serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Shutdown()
}

// Shutdown stops taking new requests (503), waits up to ShutdownGrace for in-flight ones, then
// closes listeners, the HTTP endpoint and the store.
func (s *Server) Shutdown() error {
	s.gate.Lock()
	already := s.draining.Swap(true)
	s.gate.Unlock()
	if already {
		return nil
	}
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(ShutdownGrace):
		s.log.Warn("shutdown: in-flight requests still running after grace period")
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	}
	err := s.ua.Close()
	s.closeAll()
	s.bg.Wait()
	s.log.Info("shutdown complete")
	return err
}

func (s *Server) closeAll() {
	s.mu.Lock()
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		_ = closers[i]()
	}
}

// dispatch runs one request through the chain. It is the only sipgo handler that answers
// requests, so every request gets exactly one final answer: the stage's, 500 when a stage
// failed without answering, 501 when none served it, 503 while draining.
func (s *Server) dispatch(req *sip.Request, tx sip.ServerTransaction) {
	method := string(req.Method)
	s.requests.WithLabelValues(method).Inc()
	s.gate.RLock()
	if s.draining.Load() {
		s.gate.RUnlock()
		s.count(method, s.respond(tx, req, 503, "Shutting Down", sip.NewHeader("Retry-After", sipx.RetryAfterSeconds)))
		return
	}
	s.inflight.Add(1)
	s.gate.RUnlock()
	defer s.inflight.Done()
	ctx, cancel := sipgox.TxContext(tx)
	defer cancel()
	st := sipx.NewState(req, s.log)
	ctx = sipx.WithState(ctx, st)
	if s.opts.TLSClientCA != "" && (st.Transport == "tls" || st.Transport == "wss") {
		st.PeerNames = s.peerNames(st.Transport, st.Source)
	}
	if st.Transport == "udp" {
		if ap, err := netip.ParseAddrPort(st.Source); err == nil {
			s.live.Touch(ap, st.Start)
		}
	}
	status := 0
	defer func() {
		if p := recover(); p != nil {
			st.Logger().Error("stage panicked", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			if status == 0 {
				status = s.respond(tx, req, 500, "")
			}
		}
		s.count(method, status)
	}()
	status, err := s.chain.ServeSIP(ctx, tx, req)
	if !st.KeepFlow.IsZero() && mayPin(st.Rule) {
		s.holdFlow(st.Transport, st.Source, st.KeepFlow)
	}
	if err != nil {
		if status == 0 {
			status = s.respond(tx, req, 500, "")
		}
		st.Logger().Error("request failed", zap.Int(logging.KeyStatus, status), zap.Error(err))
	}
	if status == 0 {
		status = s.respond(tx, req, 501, "Not Implemented")
	}
}

func (s *Server) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) int {
	status, err := sipx.Respond(tx, req, code, reason, hdrs...)
	if err != nil {
		s.log.Debug("respond failed", zap.Int(logging.KeyStatus, code), zap.Error(err))
	}
	return status
}

func (s *Server) count(method string, status int) {
	if status > 0 {
		s.responses.WithLabelValues(method, strconv.Itoa(status)).Inc()
	}
}

// flowHolder is a stream listener that can keep a connection open past its idle timeout,
// tells what a connection's client certificate proves, whether a connection is open and how
// many are.
type flowHolder interface {
	Len() int
	Pin(remote string, until time.Time) bool
	PeerNames(remote string) []string
	Has(remote string) bool
}

// streamEvent is the stream listeners' Events hook: metrics, and the flows service learns of
// every connection that closes (the registrar removes what was registered over it).
func (s *Server) streamEvent(e transport.Event) {
	s.tm.event(e)
	if e.Kind == transport.EventClose {
		s.flows.Closed(e.Transport, e.Remote)
	}
}

// streamOpen reports whether a stream listener of transport tp holds the connection from
// source open.
func (s *Server) streamOpen(tp, source string) bool {
	s.mu.Lock()
	streams := s.streams[tp]
	s.mu.Unlock()
	for _, sl := range streams {
		if sl.Has(source) {
			return true
		}
	}
	return false
}

// peerNames returns the names the client certificate of the connection from source on a
// stream listener of transport tp proves, or nil.
func (s *Server) peerNames(tp, source string) []string {
	s.mu.Lock()
	streams := s.streams[tp]
	s.mu.Unlock()
	for _, sl := range streams {
		if names := sl.PeerNames(source); names != nil {
			return names
		}
	}
	return nil
}

// holdFlow keeps the connection from source on a stream listener of transport tp open until
// until: it carries a registration or subscription, and requests for that client can only go
// down it.
func (s *Server) holdFlow(tp, source string, until time.Time) {
	s.mu.Lock()
	streams := s.streams[tp]
	s.mu.Unlock()
	for _, sl := range streams {
		if sl.Pin(source, until) {
			return
		}
	}
}

// mayPin reports whether a request accepted under rule may keep its connection open past the
// idle timeout (State.HoldFlow): only flows of authenticated users and trusted peers are
// pinned, so a foreign or anonymous client cannot hold connection slots with registrations
// or subscriptions. With auth.mode off (RuleOpen) every client is taken at its word, as
// before: the loopback dev server keeps its clients' connections.
func mayPin(rule sipx.Rule) bool {
	return rule == sipx.RuleUser || rule == sipx.RulePeer || rule == sipx.RuleOpen
}

// dispatchACK hands ACKs that matched no transaction of ours (ACKs for 2xx, their own
// transaction end to end) to the proxy, which routes them statelessly; an ACK is never answered.
func (s *Server) dispatchACK(req *sip.Request, tx sip.ServerTransaction) {
	s.requests.WithLabelValues(string(sip.ACK)).Inc()
	if s.draining.Load() {
		return
	}
	// No transaction bounds an ACK's work: its next hop's lookup gets as long as a connection.
	ctx, cancel := context.WithTimeout(context.Background(), delivery.ConnectTimeout)
	defer cancel()
	s.proxy.ServeACK(ctx, req)
}

// dispatchCANCEL answers a CANCEL that matched no pending INVITE (sipgo answers the ones that
// do): 481 (RFC 3261 §9.2).
func (s *Server) dispatchCANCEL(req *sip.Request, tx sip.ServerTransaction) {
	s.requests.WithLabelValues(string(sip.CANCEL)).Inc()
	s.count(string(sip.CANCEL), s.respond(tx, req, 481, ""))
}
