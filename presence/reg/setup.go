package reg

import (
	"fmt"
	"strings"
)

// Config is the reg section of the configuration.
type Config struct {
	// Watchers are the users (user@domain) who may watch the registrations (Event: reg) of
	// every user of ours, besides each user its own and the trusted peers: an operator's
	// monitoring account. They must authenticate (or auth.mode be off). Default none.
	Watchers []string `yaml:"watchers"`
}

// DefaultConfig is the section's default: no one but the users themselves and the trusted
// peers.
func DefaultConfig() Config { return Config{Watchers: []string{}} }

// CheckWatcher reports whether w, an entry of reg.watchers, is user@domain (a sip: prefix
// allowed).
func CheckWatcher(w string) error {
	if user, domain, ok := strings.Cut(watcherAOR(w), "@"); !ok || user == "" || domain == "" || strings.ContainsAny(domain, "@;>") {
		return fmt.Errorf("%q is not user@domain", w)
	}
	return nil
}

func watcherAOR(w string) string {
	return strings.ToLower(strings.TrimPrefix(strings.TrimSpace(w), "sip:"))
}
