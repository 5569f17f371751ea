package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Store schemes.
const (
	StoreMemory       = "memory"        // embedded, the default
	StoreRedis        = "redis"         // one Redis server
	StoreRedisTLS     = "rediss"        // one Redis server over TLS
	StoreRedisCluster = "redis+cluster" // Redis Cluster, seed nodes listed
)

// defaultRedisPort is used when a Redis URL gives a host without a port, as go-redis does.
const defaultRedisPort = "6379"

// StoreURL is a parsed Options.Store.
type StoreURL struct {
	// Scheme is one of StoreMemory, StoreRedis, StoreRedisTLS, StoreRedisCluster.
	Scheme string
	// Username and Password come from the URL's user information ("" when absent).
	Username, Password string
	// Addrs are the HOST:PORT of the server (one for redis and rediss) or of the cluster's
	// seed nodes; a missing port is 6379. Empty for memory.
	Addrs []string
	// DB is the database number (redis and rediss only; a cluster has database 0 only).
	DB int
}

// ParseStoreURL parses a store setting: "memory", redis://[user:pass@]HOST:PORT/DB,
// rediss://... or redis+cluster://[user:pass@]HOST:PORT[,HOST:PORT...]. User and password
// may be percent-encoded. Error messages never contain the password.
func ParseStoreURL(s string) (StoreURL, error) {
	if s == StoreMemory {
		return StoreURL{Scheme: StoreMemory}, nil
	}
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return StoreURL{}, fmt.Errorf("%q: want memory, redis://HOST:PORT/DB, rediss://HOST:PORT/DB or redis+cluster://HOST:PORT,HOST:PORT", redactStore(s))
	}
	scheme = strings.ToLower(scheme)
	switch scheme {
	case StoreRedis, StoreRedisTLS, StoreRedisCluster:
	default:
		return StoreURL{}, fmt.Errorf("%q: unknown scheme %q, want memory, redis, rediss or redis+cluster", redactStore(s), scheme)
	}
	// Parsed by hand: url.Parse rejects the HOST:PORT,HOST:PORT list of redis+cluster.
	rest := s[len(scheme)+len("://"):]
	authority, path := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if strings.ContainsAny(path, "?#") {
		return StoreURL{}, fmt.Errorf("%q: unexpected query or fragment", redactStore(s))
	}
	out := StoreURL{Scheme: scheme}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		user, pass, _ := strings.Cut(authority[:at], ":")
		var err1, err2 error
		out.Username, err1 = url.PathUnescape(user)
		out.Password, err2 = url.PathUnescape(pass)
		if err1 != nil || err2 != nil {
			return StoreURL{}, fmt.Errorf("%q: bad percent-encoding in user or password", redactStore(s))
		}
		authority = authority[at+1:]
	}
	if authority == "" {
		return StoreURL{}, fmt.Errorf("%q: missing HOST:PORT", redactStore(s))
	}
	hosts := strings.Split(authority, ",")
	if scheme != StoreRedisCluster && len(hosts) > 1 {
		return StoreURL{}, fmt.Errorf("%q: several hosts need redis+cluster://", redactStore(s))
	}
	for _, h := range hosts {
		addr, err := redisAddr(h)
		if err != nil {
			return StoreURL{}, fmt.Errorf("%q: %w", redactStore(s), err)
		}
		out.Addrs = append(out.Addrs, addr)
	}
	if db := strings.TrimPrefix(path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 || strings.HasPrefix(db, "+") {
			return StoreURL{}, fmt.Errorf("%q: database %q is not a number >= 0", redactStore(s), db)
		}
		if scheme == StoreRedisCluster && n != 0 {
			return StoreURL{}, fmt.Errorf("%q: redis cluster has database 0 only", redactStore(s))
		}
		out.DB = n
	}
	return out, nil
}

// redisAddr checks HOST[:PORT] and returns HOST:PORT.
func redisAddr(h string) (string, error) {
	if h == "" {
		return "", errors.New("empty host")
	}
	hasPort := strings.LastIndex(h, ":") > strings.LastIndex(h, "]")
	if !hasPort {
		h = net.JoinHostPort(strings.Trim(h, "[]"), defaultRedisPort)
	}
	host, port, err := splitHostPort(h)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", errors.New("missing host")
	}
	if port == 0 {
		return "", errors.New("port 0 is not a server port")
	}
	return h, nil
}

// RedactedStore returns the store setting as given with the password replaced by "***", safe to
// print or log. Anything that does not parse as user information is left as is.
func (o Options) RedactedStore() string { return redactStore(o.Store) }

// redactStore masks the password of SCHEME://USER:PASSWORD@HOST... in s, working on the text
// so that the rest of s is printed exactly as given.
func redactStore(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	auth := s[i+3:]
	if j := strings.IndexAny(auth, "/?#"); j >= 0 {
		auth = auth[:j]
	}
	at := strings.LastIndex(auth, "@")
	if at < 0 {
		return s
	}
	user, _, hasPass := strings.Cut(auth[:at], ":")
	if !hasPass {
		return s
	}
	return s[:i+3] + user + ":***" + s[i+3+at:]
}
