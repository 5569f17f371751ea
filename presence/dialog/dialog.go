// Package dialog is the dialog event package (RFC 4235), the busy lamp field (BLF) of desk
// phones and attendant consoles: a watcher subscribed to a user's dialog state sees the user's
// calls come and go — trying, proceeding, early (ringing), confirmed, terminated.
//
// simpled is a transaction-stateful proxy, so it knows every call it routes: the Tracker is
// the proxy's proxy.CallObserver and keeps, for the caller (direction initiator) and the
// callee (recipient) of each call, when they are users of ours, one dialog per call (Store,
// in storage/memory and storage/redis, shared by the nodes); a call nobody watches is stored
// only once answered (see Tracker), so the call path costs next to nothing when no lamp
// shows it. The lamp follows the call, not
// its branches: a forked call's losing branches, cancelled once one device answered, are not
// reported. A dialog's state only moves forward, whatever node or goroutine applies a change
// (the store refuses a state that does not rank above the stored one). A terminated dialog is
// kept for TerminatedLinger, so its NOTIFY is sent, then dropped; no dialog lives longer than
// Config.MaxDuration (a call whose BYE never came does not keep the lamp on).
//
// The Package serves SUBSCRIBE (authorized as presence is: the presentity's rules and the
// policy) and PUBLISH from trusted peers only (a PBX reporting calls simpled does not route);
// a user's document lists the dialogs of both sources. Every document holds at least one
// <dialog>: an idle user's is a terminated dummy dialog, as phones expect. The package is
// presence.Lenient: a NOTIFY that times out or fails does not end the subscription at once
// (only a 481 or three failures in a row do), so a BLF key that missed one is not left dark.
package dialog

import (
	"context"
	"time"

	"github.com/simpled/simpled/storage"
)

// Event is the package's name; Type its documents' media type.
const (
	Event = "dialog"
	Type  = "application/dialog-info+xml"
)

// Remote identity policies (Config.RemoteIdentity).
const (
	RemoteSameDomain = "same-domain"
	RemoteAlways     = "always"
	RemoteNever      = "never"
)

// TerminatedLinger is how long a terminated dialog is kept: longer than a NOTIFY under way
// may take (Timer F, 32 s) plus the notify interval, so the NOTIFY that reports the end,
// built when it is sent, still finds it.
const TerminatedLinger = time.Minute

// Config is the dialog: section.
type Config struct {
	// TrackCalls: the proxy reports the calls it routes to the tracker. Off, the package
	// shows only what trusted peers publish, and no call costs a store write.
	TrackCalls bool `yaml:"track_calls"`
	// RemoteIdentity says to which watchers a dialog shows the other party (identity,
	// target) and the dialog's identifiers (Call-ID and tags, which a phone's call pickup
	// uses): same-domain (watchers of the watched user's domain), always, never.
	RemoteIdentity string `yaml:"remote_identity"`
	// MaxDuration bounds every dialog: one whose BYE never came (the caller's node died,
	// a phone lost power) is dropped after it, and its lamp goes off.
	MaxDuration time.Duration `yaml:"max_duration"`
	// MaxDialogs bounds the dialogs kept per user: a new call when that many are live is not
	// shown (terminated ones make room first).
	MaxDialogs int `yaml:"max_dialogs"`
}

// DefaultConfig is the dialog: section of config.Default.
func DefaultConfig() Config {
	return Config{
		TrackCalls: true,
		// Colleagues see whom a colleague talks to (and can pick up a ringing call);
		// another domain's watchers see only that the line is busy.
		RemoteIdentity: RemoteSameDomain,
		// Kamailio's dialog module bounds dialogs the same way (default_timeout, 12 h).
		MaxDuration: 12 * time.Hour,
		// Two lines, a transfer and a few calls waiting fit many times over.
		MaxDialogs: 32,
	}
}

// Store keeps the tracker's dialogs (storage/memory, storage/redis; storagetest checks both).
type Store interface {
	// PutDialog stores d under aor unless a live dialog with d.ID ranks as high or higher
	// (storage.DialogRank of its State), atomically; applied reports whether it did. The
	// AOR's dialogs expired at now are dropped first. limit > 0 bounds the AOR's live
	// dialogs: a new ID when limit are stored evicts the terminated one updated longest ago,
	// or, when none is terminated, is not stored.
	PutDialog(ctx context.Context, aor string, d storage.Dialog, now time.Time, limit int) (applied bool, err error)
	// Dialogs returns aor's live dialogs, oldest call first.
	Dialogs(ctx context.Context, aor string, now time.Time) ([]storage.Dialog, error)
}
