package storage

import (
	"cmp"
	"slices"
	"time"
)

// Dialog states (RFC 4235 §3.7.1), in the order a dialog goes through them.
const (
	DialogTrying     = "trying"
	DialogProceeding = "proceeding"
	DialogEarly      = "early"
	DialogConfirmed  = "confirmed"
	DialogTerminated = "terminated"
)

// DialogRank is a dialog state's place in that order (1 to 5), 0 for a value that is none of
// them. A dialog's state only moves to a higher rank.
func DialogRank(state string) int {
	switch state {
	case DialogTrying:
		return 1
	case DialogProceeding:
		return 2
	case DialogEarly:
		return 3
	case DialogConfirmed:
		return 4
	case DialogTerminated:
		return 5
	}
	return 0
}

// Dialog is one call as seen from one of its parties, a user of ours: the record the dialog
// event package (RFC 4235, busy lamp field) reports. The call tracker keeps one per call and
// AOR, keyed by ID within the AOR.
//
// Its state only moves forward: DialogStore.PutDialog stores a dialog only when no live one
// with its ID is stored or the stored one's Rank is lower, atomically, so whatever order
// nodes apply a call's changes in, the stored state never goes back (an early after a
// terminated is ignored).
type Dialog struct {
	// ExpiresAt comes first in the JSON (storage/redis reads it without decoding the rest):
	// a dialog is dropped then, whatever its state.
	ExpiresAt time.Time `json:"expires_at"`
	Rank      int       `json:"rank"` // DialogRank(State)
	ID        string    `json:"id"`
	State     string    `json:"state"`
	// Event and Code tell why a terminated dialog ended (RFC 4235 §4.1.2: cancelled,
	// rejected, replaced, local-bye, remote-bye, error, timeout) and the final status.
	Event string `json:"event,omitempty"`
	Code  int    `json:"code,omitempty"`
	// Call-ID and tags from the AOR's point of view; Direction "initiator" or "recipient".
	CallID    string `json:"call_id"`
	LocalTag  string `json:"local_tag,omitempty"`
	RemoteTag string `json:"remote_tag,omitempty"`
	Direction string `json:"direction,omitempty"`
	// The parties: identity URI, display name and target (Contact URI) of each side.
	Local        string `json:"local,omitempty"`
	LocalName    string `json:"local_name,omitempty"`
	LocalTarget  string `json:"local_target,omitempty"`
	Remote       string `json:"remote,omitempty"`
	RemoteName   string `json:"remote_name,omitempty"`
	RemoteTarget string `json:"remote_target,omitempty"`
	// StartedAt is when the call began; ConfirmedAt when it was answered (duration);
	// UpdatedAt when this state was reached.
	StartedAt   time.Time `json:"started_at"`
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Expired reports whether d has expired at now.
func (d *Dialog) Expired(now time.Time) bool { return !now.Before(d.ExpiresAt) }

// SortDialogs orders dialogs as the stores return them: by StartedAt, then ID.
func SortDialogs(ds []Dialog) {
	slices.SortFunc(ds, func(a, b Dialog) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
