package auth

import (
	"fmt"
	"time"

	"github.com/simpled/simpled/base/sipx"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Config is the auth: section of the configuration file (internal/config embeds it as is: its
// yaml keys and field comments are the configuration reference). It configures digest
// authentication of local users.
type Config struct {
	// Mode is "required" (every request that claims a local identity proves it with digest
	// authentication; a user without credentials gets 403) or "off" (claims are taken at
	// their word: a test server). "" (the default) means required, except on a server whose
	// SIP listeners are all loopback and that has no users file, which runs off, as `make
	// run` does (set required to use credentials kept in Redis there). What the store holds
	// never changes it. A public listener with required and no credential source (users
	// file or Redis) is refused. See AuthMode.
	Mode string `yaml:"mode"`
	// NonceLifetime is how long an issued nonce stays valid. Default 5m.
	NonceLifetime time.Duration `yaml:"nonce_lifetime"`
	// NonceSecret keys the nonces; "" (the default) draws a random secret per process, so
	// nodes sharing a store must set the same secret. At least 16 bytes when set. Never
	// printed: YAML shows it as "***".
	NonceSecret string `yaml:"nonce_secret"`
	// Algorithms are the digest algorithms offered, one challenge each, in order of
	// preference: MD5, SHA-256 (RFC 8760), MD5-sess, SHA-256-sess. Default [MD5]: baresip
	// 1.0.0 abandons a registration when any challenge names another algorithm, so SHA-256
	// is opt-in (put it first to prefer it with clients that understand it).
	Algorithms []string `yaml:"algorithms"`
	// RequireQOP refuses digest answers without qop (RFC 2069 style) with a fresh challenge.
	// Without it such an answer is accepted once per nonce. Default false.
	RequireQOP bool `yaml:"require_qop"`
	// Lockout is how long a source address gets 403 for an AOR after LockoutThreshold failed
	// attempts (wrong password, unknown user) for it within a minute, even with the right
	// password; counted per node. 0 disables lockouts. Default 5m.
	Lockout time.Duration `yaml:"lockout"`
	// LockoutThreshold is the number of failures within a minute that starts a lockout.
	// Default 10.
	LockoutThreshold int `yaml:"lockout_threshold"`
}

// DefaultConfig is the identity stage's part of config.Default: the one place these defaults
// live.
func DefaultConfig() Config {
	return Config{
		// Decided by the wiring (config.Options.AuthMode): required unless loopback-only with
		// no users file.
		Mode: "",
		// Long enough for a client to answer, short enough to limit replay.
		NonceLifetime: 5 * time.Minute,
		// "": random per process (single node only).
		NonceSecret: "",
		// MD5 only, as Kamailio and Asterisk offer: every client understands it.
		Algorithms: []string{"MD5"},
		// baresip and some phones answer without qop; each such nonce is usable once.
		RequireQOP: false,
		// Long enough to make guessing hopeless (10 guesses per 5 minutes per source and
		// AOR), short enough that a user who mistyped is back soon.
		Lockout: 5 * time.Minute,
		// Ten wrong passwords within a minute are no typing mistake.
		LockoutThreshold: 10,
	}
}

// Deps is what the wiring hands the identity stage besides its own section: the services it
// shares with other stages.
type Deps struct {
	// Domains are the local domains. The realm for an AOR is its domain in lower case.
	Domains []string
	// Users is the users service: the users file, then Store. Required.
	Users *Directory
	// Store holds the nonce-count records and the credentials besides the users file.
	// Required.
	Store Store
	// Secret keys the nonces (Config.NonceSecret, or the process's random secret shared with
	// Record-Route and flow tokens). Required, at least 16 bytes.
	Secret []byte
	// IsOurs reports whether a host (not a domain) is one of this server's addresses. May be
	// nil.
	IsOurs func(host string) bool
	// TrustedPeer reports whether the request comes from a trusted peer. May be nil.
	TrustedPeer func(st *sipx.State) bool
	// Seals checks dialog tokens and node proofs. Required.
	Seals      *sipx.Seals
	Log        *zap.Logger // already named; nil: no logs
	Registerer prometheus.Registerer
}

// Setup builds the identity stage from cfg, whose Mode the wiring has resolved to required or
// off.
func Setup(cfg Config, deps Deps) (*Auth, error) {
	if deps.Users == nil {
		return nil, fmt.Errorf("auth: setup: no users service")
	}
	algs := make([]Algorithm, 0, len(cfg.Algorithms))
	for _, name := range cfg.Algorithms {
		a, ok := ParseAlgorithm(name)
		if !ok {
			return nil, fmt.Errorf("auth: algorithms: %q", name)
		}
		algs = append(algs, a)
	}
	return New(Options{
		Algorithms:       algs,
		Domains:          deps.Domains,
		Users:            deps.Users.File(),
		Store:            deps.Store,
		Secret:           deps.Secret,
		NonceLifetime:    cfg.NonceLifetime,
		Mode:             Mode(cfg.Mode),
		IsOurs:           deps.IsOurs,
		TrustedPeer:      deps.TrustedPeer,
		Seals:            deps.Seals,
		RequireQOP:       cfg.RequireQOP,
		Lockout:          cfg.Lockout,
		LockoutThreshold: cfg.LockoutThreshold,
		Log:              deps.Log,
		Registerer:       deps.Registerer,
	})
}
