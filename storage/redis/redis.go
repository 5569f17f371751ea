// Package redis is simpled's Redis storage backend: persistence, several simpled nodes on one
// Redis, and Redis Cluster to scale out. It implements registrar.Store, auth.Store,
// offline.MessageStore, presence's stores, storage.Credentials and storage.Backend with the
// semantics storage/storagetest checks (the memory backend passes the same suite). Redis 7.0
// or later.
//
// # Keys
//
// Hash tags keep one user's keys in one Cluster slot; no command, script or MULTI ever
// combines keys of different slots. Pipelines do (the index ZADDs beside an item's script, the
// sweep's 16 shards, UseNonceCount's epoch beside its script, the batcher's shared pipelines):
// a cluster client splits a pipeline by master and sends the parts at once, so on Redis
// Cluster one call may wait on two masters. creds and nonce-epoch carry no hash tag and need
// none: each is a key alone in its slot and only ever alone in a command (their one master
// serves every credential write, HasCredentials and nonce use; both names are kept, since
// credentials are provisioned by writing cred:{aor} and creds directly). The layout is the same
// on one server and on Cluster: moving a deployment from one to the other is a copy of its
// keys, no migration. TestRealCluster runs the conformance suite and the Redis-specific tests
// on a real Cluster of three masters (base/redistest.StartCluster).
//
//	reg:{aor}        hash    binding key → binding JSON (storage.Binding's JSON names, with
//	                         expires_at and updated_at in unix seconds); TTL = latest expiry +
//	                         Options.KeyGrace, a backstop for when no sweeper runs (PEXPIRE
//	                         relative to the caller's now, so clock offsets do not matter)
//	msg:{aor}        hash    message ID → offline message: a JSON header (storage.Message's
//	                         JSON names: not ID and Body; times in unix seconds), a newline, then
//	                         the body bytes as they are (binary safe, no base64); TTL as
//	                         reg:{aor}, from the latest message expiry
//	msgid:{aor}      hash    dedup key → "<id> <expires_at> <size> <foreign> <sender>", one
//	                         per stored message: what the store script counts (per sender,
//	                         foreign), dedups and expires by without reading any body; same
//	                         TTL as msg:{aor}
//	known:{aor}      string  known-user until (unix s); expires at until + Options.KeyGrace
//	                         (PXAT, Redis's clock)
//	dlg:{aor}        hash    dialog ID → the call tracker's dialog JSON (dialog.go); TTL =
//	                         latest dialog expiry + Options.KeyGrace (PEXPIREAT, Redis's clock)
//	exp:{n}          zset    n = 0..15 = FNV-1a(aor) mod 16; the sweep index of every kind:
//	                         member "reg|<aor>|<binding key>", "msg|<aor>|<message ID>",
//	                         "pub|<aor>|<etag>" or "sub|<aor>|<subscription ID>" (| and % in
//	                         aor %-escaped), score = expires_at
//	mwi:{aor}        string  message summary: "<updated_at unix ns> <body>"; no TTL (mwi.go)
//	cred:{aor}       hash    realm → storage.Credential JSON
//	creds            set     every AOR with a credential (HasCredentials is one EXISTS)
//	nonce:{<nonce>}  string  highest nonce count accepted; TTL = the ttl of the last accepted
//	nonce-epoch      string  the nonce epoch (decimal, random, non-zero), created when missing:
//	                         nonces carry it, so after a FLUSHALL or a restart without
//	                         persistence older nonces are refused, not replayable
//	nodes            hash    node id → "<lease end ms> <heartbeat ms> <storage.NodeRecord
//	                         JSON>": the membership of package cluster (cluster.go)
//	inbox:{<node>}   stream  the events other nodes sent this node (cluster.go)
//
// The mailbox is a hash, not a stream (the first design named a stream). StoreMessage must
// drop expired entries, dedup and check a count and a byte limit in one script; a stream
// helps with none of it (the script would read every entry whole, bodies included, to learn
// expiries and sizes), deleting a delivered message from the middle (XDEL) frees memory only
// once a whole stream node is empty, and an emptied stream key stays. With a hash and the
// small msgid:{aor} summary the script reads only the summary, and every delete is by field.
// Message IDs are 16 zero-padded digits, max(Redis TIME in µs, highest ID + 1), so their
// string order is store order, as in the memory backend (stream IDs "ms-seq" do not sort as
// strings).
//
// # Round trips
//
// UpdateBindings is one round trip: a pipeline of ZADD exp:{n} (one per change that stores a
// binding) and one Lua script on reg:{aor} that applies storage.BindingUpdate atomically.
// Concurrent updates share pipelines (batch.go): under load one write and one read carry many
// REGISTERs, which raised the sustained REGISTER rate with Redis by about 1.4x under sipp.
// The ZADDs may run although the script then refuses the update. That is safe as long as an
// index entry is never later than its binding's expiry: an early entry, or one whose binding
// is gone, is verified and corrected by the sweep. So after ErrStale or ErrTooManyBindings
// one more round trip lowers the entries back to the stored expiries (ZADD LT). The one case
// left is two REGISTERs for the same binding racing on two connections, where the ZADD of the
// one whose script ran first may land last: the entry is then late by the difference of their
// expiries, which delays that binding's expiry event (the binding itself is not returned by
// Bindings once expired). Scripts are sent with EVALSHA and, if Redis does not know them
// (NOSCRIPT, e.g. after a restart), once more with EVAL.
//
// RemoveFlowBindings (the connection or UDP flow bindings were registered over ended) is one
// script on reg:{aor} that deletes only the bindings still bound to that flow; like
// RemoveBindings it leaves their index entries to the sweep, which finds nothing and drops
// them.
//
// Timed events come from the expiry index, not from Redis: pub/sub is at-most-once and
// keyspace notifications reach only the nodes subscribed when the key expires (and Redis may
// send them late, when it notices the expiry), so the exp:{n} index a sweeper reads is the
// source of truth for every expiry event.
//
// Every expiry sweep (SweepExpired, ExpireMessages, ExpirePublications, ExpireSubscriptions)
// is one path, sweepKind.sweep in sweep.go, and takes about three round trips per batch: a
// script per index shard listing its due entries of the kind ("reg|", "msg|", "pub|",
// "sub|"; one pipeline over the 16 shards; the script pages past other kinds' entries inside
// Redis, so a backlog of one kind cannot hide another's), a claim script per candidate on its
// exp:{n} key (ZREM only if the score is still due, so exactly one sweeper claims it), and
// for the claimed ones the kind's script on its keys, which deletes the item only if its
// stored expiry is due and returns it. An item refreshed in between is left alone and its
// index entry put back (ZADD LT). So each expired item is returned once, across any number of
// nodes.
//
// StoreMessage is one script on msg:{aor} and msgid:{aor} (drop expired, dedup, limits,
// store, TTLs, atomically) and, when it stored the message, a second round trip for its
// ZADD exp:{n}: the member carries the ID the script chose, and the index shard is in another
// slot. A duplicate or a full mailbox costs the script alone. Messages is one HGETALL,
// HasMessages one EXISTS, DeleteMessage one pipeline (a script on the two mailbox keys and
// the ZREM of the index entry), DeleteMessages two (HKEYS and DEL in MULTI/EXEC, then the
// ZREMs), MarkKnown one script, Known one GET. The calls a REGISTER or a MESSAGE makes
// (UpdateBindings, Bindings, HasMessages, Known, MarkKnown, Credential, HasCredentials,
// UseNonceCount and the presence operations) go through the batcher, so under load they share
// round trips with concurrent calls; the mailbox's own operations (StoreMessage, Messages,
// DeleteMessage(s)), rare next to them, are sent on their own.
//
// # Errors
//
// Every error from Redis or the network (refused, timeout, LOADING, ...) is wrapped with
// storage.ErrUnavailable. A stored value that does not decode is an error of its own (not
// ErrUnavailable), never a panic. go-redis retries a command after a network error
// (Options.MaxRetries); should a reply be lost after the update script ran, the retry finds
// the binding stored with the same CSeq and fails with storage.ErrStale (the client's next
// REGISTER carries a new CSeq and succeeds). go-redis logs connection failures through its
// own global logger (goredis.SetLogger), which the program wiring should redirect.
//
// Times are stored in whole seconds (see storage.Binding); strings must be valid UTF-8
// (invalid bytes become U+FFFD, as encoding/json does), message bodies are kept byte for
// byte.
package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/storage"

	goredis "github.com/redis/go-redis/v9"
)

// Defaults for zero Options fields.
const (
	DefaultDialTimeout = 2 * time.Second
	DefaultReadTimeout = 2 * time.Second
	DefaultKeyGrace    = time.Hour
)

// go-redis settings without an Options field (see Options.MaxRetries).
const (
	defaultMaxRetries = 1
	dialAttempts      = 2 // go-redis DialerRetries: attempts per dial, 100 ms apart
)

// shards is the number of exp:{n} index keys. Changing it orphans existing index entries.
const shards = 16

// Options tunes the client. The zero value is usable; each field's default is in its comment.
// Options given here override the same settings in the URL's query (e.g. ?dial_timeout=1s).
type Options struct {
	// DialTimeout bounds connecting to one Redis node. Default 2 s.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound one command's socket read and write. Default 2 s;
	// WriteTimeout defaults to ReadTimeout. A context deadline also applies.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize is the number of connections per node. Default go-redis's: 10 per CPU.
	PoolSize int
	// MaxRetries is how often a command is retried after a network error (a pooled
	// connection that died with a Redis restart). Default 1; -1 disables retries. Each
	// attempt dials at most twice, 100 ms apart, so with Redis down a call fails within about
	// half a second (plus DialTimeout when the host does not answer at all): a SIP server
	// should answer 503 quickly rather than wait.
	MaxRetries int
	// TLSConfig replaces the TLS settings of a rediss:// URL (default: verify the server name
	// from the URL). Ignored for plain redis://.
	TLSConfig *tls.Config
	// KeyGrace is added to the latest expiry of an AOR's items to form the TTL of its keys
	// (reg:, msg:, msgid:, pub:, sub:{aor}) and to a known user's until (known:{aor}). It
	// must exceed the sweep interval, or a stopped sweeper loses expiry events. Default 1 h.
	KeyGrace time.Duration
}

// Store is the Redis backend. It is safe for concurrent use; several Stores (nodes) may share
// one Redis.
type Store struct {
	c         goredis.UniversalClient
	grace     time.Duration
	batch     *batcher
	decoded   decodeCache[storage.Binding]
	subs      decodeCache[storage.Subscription]
	closeOnce sync.Once
}

// batchTimeout bounds one shared pipeline: a dial, a write and a read.
func batchTimeout(o Options) time.Duration {
	return pick(o.DialTimeout, 0, DefaultDialTimeout) + 2*pick(o.ReadTimeout, 0, DefaultReadTimeout)
}

// New connects to the Redis at rawURL and pings it. rawURL is one of
//
//	redis://[user:pass@]HOST:PORT/DB          one server
//	rediss://[user:pass@]HOST:PORT/DB         one server over TLS
//	redis+cluster://[user:pass@]HOST:PORT[,HOST:PORT...]    Redis Cluster (seed nodes)
//	rediss+cluster://...                      Redis Cluster over TLS
//
// with optional go-redis query parameters (?dial_timeout=1s&pool_size=20). An unreachable
// server is an error wrapping storage.ErrUnavailable.
func New(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	c, addr, err := newClient(rawURL, opts)
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis: connect %s: %w: %w", addr, storage.ErrUnavailable, err)
	}
	grace := opts.KeyGrace
	if grace <= 0 {
		grace = DefaultKeyGrace
	}
	return &Store{c: c, grace: grace, batch: newBatcher(c, batchTimeout(opts)),
		decoded: decodeCache[storage.Binding]{clone: cloneBinding},
		subs:    decodeCache[storage.Subscription]{clone: cloneSubscription}}, nil
}

// Client returns the underlying client, for tests and diagnostics.
func (s *Store) Client() goredis.UniversalClient { return s.c }

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close closes the client's connections.
func (s *Store) Close() error {
	s.closeOnce.Do(s.batch.close)
	if err := s.c.Close(); err != nil {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

// apply lays opts over the client settings a URL gave (go-redis's Options and ClusterOptions
// have the same fields but no common type): explicit options win, then the URL, then
// simpled's defaults.
func (opts Options) apply(dial, read, write *time.Duration, pool, retries, dialRetries *int, tlsc **tls.Config, ctxTimeout *bool) {
	*dial = pick(opts.DialTimeout, *dial, DefaultDialTimeout)
	*read = pick(opts.ReadTimeout, *read, DefaultReadTimeout)
	*write = pick(opts.WriteTimeout, *write, *read)
	if opts.PoolSize > 0 {
		*pool = opts.PoolSize
	}
	*retries = pickInt(opts.MaxRetries, *retries, defaultMaxRetries)
	*dialRetries = pickInt(0, *dialRetries, dialAttempts)
	if opts.TLSConfig != nil && *tlsc != nil {
		*tlsc = opts.TLSConfig
	}
	*ctxTimeout = true
}

// newClient parses rawURL, applies opts and returns the client and a printable address (no
// password).
func newClient(rawURL string, opts Options) (goredis.UniversalClient, string, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, "", errors.New("redis: url: missing scheme (want redis://, rediss:// or redis+cluster://)")
	}
	switch scheme {
	case "redis", "rediss":
		o, err := goredis.ParseURL(rawURL)
		if err != nil {
			return nil, "", fmt.Errorf("redis: url: %w", stripURL(err))
		}
		opts.apply(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolSize, &o.MaxRetries,
			&o.DialerRetries, &o.TLSConfig, &o.ContextTimeoutEnabled)
		o.Protocol = resp(o.Protocol)
		return goredis.NewClient(o), scheme + "://" + o.Addr, nil
	case "redis+cluster", "rediss+cluster":
		base := strings.TrimSuffix(scheme, "+cluster")
		u, err := clusterURL(base, rest)
		if err != nil {
			return nil, "", err
		}
		o, err := goredis.ParseClusterURL(u)
		if err != nil {
			return nil, "", fmt.Errorf("redis: url: %w", stripURL(err))
		}
		opts.apply(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolSize, &o.MaxRetries,
			&o.DialerRetries, &o.TLSConfig, &o.ContextTimeoutEnabled)
		o.Protocol = resp(o.Protocol)
		return goredis.NewClusterClient(o), scheme + "://" + strings.Join(o.Addrs, ","), nil
	default:
		return nil, "", fmt.Errorf("redis: url: scheme %q: want redis, rediss, redis+cluster or rediss+cluster", scheme)
	}
}

// resp is the protocol version spoken to Redis: 2 unless the URL asks (?protocol=3). Over
// RESP3 go-redis checks every connection for push notifications before each reply, which
// simpled never uses (no client-side caching, no pub/sub): 9 % of simpled's CPU under
// REGISTER load.
func resp(fromURL int) int {
	if fromURL != 0 {
		return fromURL
	}
	return 2
}

// clusterURL turns "[user:pass@]h1:p1,h2:p2[/0][?query]" into the form go-redis parses:
// base://[user:pass@]h1:p1?query&addr=h2:p2.
func clusterURL(base, rest string) (string, error) {
	hostsAndPath, query, _ := strings.Cut(rest, "?")
	userHosts, path, _ := strings.Cut(hostsAndPath, "/")
	if path != "" && path != "0" {
		return "", fmt.Errorf("redis: url: cluster database %q: Redis Cluster has only database 0", path)
	}
	user, hosts := "", userHosts
	if i := strings.LastIndex(userHosts, "@"); i >= 0 {
		user, hosts = userHosts[:i+1], userHosts[i+1:]
	}
	addrs := strings.Split(hosts, ",")
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return "", fmt.Errorf("redis: url: cluster node %q: want HOST:PORT", a)
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("redis: url: query: %w", err)
	}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	u := base + "://" + user + addrs[0]
	if enc := q.Encode(); enc != "" {
		u += "?" + enc
	}
	return u, nil
}

// stripURL drops the URL (which may hold a password) from a *url.Error.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// pick returns the first positive of opt, fromURL, def.
func pick(opt, fromURL, def time.Duration) time.Duration {
	switch {
	case opt > 0:
		return opt
	case fromURL > 0:
		return fromURL
	default:
		return def
	}
}

// pickInt returns the first non-zero of opt, fromURL, def.
func pickInt(opt, fromURL, def int) int {
	switch {
	case opt != 0:
		return opt
	case fromURL != 0:
		return fromURL
	default:
		return def
	}
}

// unavailable wraps a Redis or network error for step.
func unavailable(step string, err error) error {
	return fmt.Errorf("redis: %s: %w: %w", step, storage.ErrUnavailable, err)
}

// isNoScript reports whether err asks for the script source (EVALSHA of an unknown SHA).
func isNoScript(err error) bool {
	return errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT")
}

// Key layout (see the package doc). The {...} hash tag is the AOR (or nonce), so one user's
// keys share a Cluster slot.

func regKey(aor string) string  { return "reg:{" + aor + "}" }
func credKey(aor string) string { return "cred:{" + aor + "}" }
func nonceKey(n string) string  { return "nonce:{" + n + "}" }

// nonceEpochKey holds the nonce epoch (NonceEpoch).
const nonceEpochKey = "nonce-epoch"

func msgKey(aor string) string   { return "msg:{" + aor + "}" }
func msgIDKey(aor string) string { return "msgid:{" + aor + "}" }
func knownKey(aor string) string { return "known:{" + aor + "}" }

// expKey is the index shard of aor's items of every kind.
func expKey(aor string) string { return expShard(int(shardOf(aor))) }

func expShard(n int) string { return "exp:{" + strconv.Itoa(n) + "}" }

// shardOf picks aor's index shard: FNV-1a 32 mod shards.
func shardOf(aor string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(aor)) // a hash.Hash never fails
	return h.Sum32() % shards
}

// Index entry kinds: the prefix of an exp:{n} member up to and including the first |.
const (
	regPrefix = "reg|"
	msgPrefix = "msg|"
)

// indexMember is the index entry of one item of a kind: "<kind>|<aor>|<id>", with | and % in
// aor escaped so the first | after the AOR ends it.
func indexMember(prefix, aor, id string) string { return prefix + escaper.Replace(aor) + "|" + id }

// member is the index entry of one binding: "reg|<aor>|<key>".
func member(aor, key string) string { return indexMember(regPrefix, aor, key) }

// credsKey is the set of AORs that have a credential.
const credsKey = "creds"

var (
	escaper   = strings.NewReplacer("%", "%25", "|", "%7C")
	unescaper = strings.NewReplacer("%7C", "|", "%25", "%")
)

// parseMember splits an exp:{n} member of a binding into AOR and binding key.
func parseMember(m string) (aor, key string, ok bool) { return parseIndexMember(regPrefix, m) }

// parseIndexMember splits an exp:{n} member of the kind prefix into AOR and id.
func parseIndexMember(prefix, m string) (aor, id string, ok bool) {
	rest, ok := strings.CutPrefix(m, prefix)
	if !ok {
		return "", "", false
	}
	a, id, ok := strings.Cut(rest, "|")
	if !ok {
		return "", "", false
	}
	return unescaper.Replace(a), id, true
}
