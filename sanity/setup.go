package sanity

import (
	"errors"

	"github.com/simpled/simpled/base/sipx"

	"go.uber.org/zap"
)

// Config is what the sanity stage checks against.
type Config struct {
	// MaxBodySize is the largest body accepted, in bytes; a larger one gets 413
	// (limits.max_body_size).
	MaxBodySize int
	// Supported lists the Proxy-Require option tags the proxy understands; a request
	// requiring any other gets 420. Empty: none.
	Supported []string
}

// Deps are the services the sanity stage uses.
type Deps struct {
	// IsOurs reports whether a host (a domain or an address) is this server: an OPTIONS to it
	// with Max-Forwards 0 is answered rather than refused (RFC 3261 §16.3 step 3). Required.
	IsOurs func(host string) bool
	// Log receives one Warn line per refusal. Peers drive it, so the caller hands a sampled
	// logger. Nil: no logs.
	Log *zap.Logger
}

// Setup returns the sanity stage.
func Setup(cfg Config, deps Deps) (sipx.Plugin, error) {
	if deps.IsOurs == nil {
		return nil, errors.New("sanity: IsOurs is required")
	}
	log := deps.Log
	if log == nil {
		log = zap.NewNop()
	}
	return func(next sipx.Handler) sipx.Handler {
		return &sanity{next: next, maxBody: cfg.MaxBodySize, isOurs: deps.IsOurs,
			supported: cfg.Supported, log: log}
	}, nil
}

// OptionsConfig is what the options stage answers with.
type OptionsConfig struct {
	// Accept is the Accept header of the answer: the body types the server and its users take.
	Accept string
	// Supported is the Supported header of the answer, comma-separated option tags; a Require
	// naming any other gets 420.
	Supported string
}

// DefaultOptionsConfig is what simpled answers OPTIONS with: the body types its stages relay
// or serve (SDP of calls, MESSAGE text and CPIM, PIDF), and Path (RFC 3327), which the
// registrar supports.
func DefaultOptionsConfig() OptionsConfig {
	return OptionsConfig{
		Accept:    "application/sdp, text/plain, message/cpim, application/pidf+xml",
		Supported: "path",
	}
}

// OptionsDeps are the services the options stage uses.
type OptionsDeps struct {
	// IsOurs reports whether a host (a domain or an address) is this server. Required.
	IsOurs func(host string) bool
	// Allow returns the Allow header: the methods the server serves, known once the
	// dispatcher is registered. Required.
	Allow func() string
}

// SetupOptions returns the options stage.
func SetupOptions(cfg OptionsConfig, deps OptionsDeps) (sipx.Plugin, error) {
	if deps.IsOurs == nil || deps.Allow == nil {
		return nil, errors.New("options: IsOurs and Allow are required")
	}
	return func(next sipx.Handler) sipx.Handler {
		return &options{next: next, isOurs: deps.IsOurs, allow: deps.Allow,
			accept: cfg.Accept, supported: cfg.Supported}
	}, nil
}
