package storage

import "time"

// Presence events, published by the presence agent (and, for PresenceChanged, by whoever
// changes what a presentity's document is made of) so that every node's subscriptions are
// notified.
const (
	// PresenceChanged: a publication of AOR was added, modified, removed or expired.
	PresenceChanged EventKind = "presence.changed"
	// RulesChanged: an authorization rule of AOR (the presentity) was set or removed.
	RulesChanged EventKind = "presence.rules"
	// WatchersChanged: a subscription to AOR's presence was created, changed state or ended
	// (what AOR's own presence.winfo subscriptions report).
	WatchersChanged EventKind = "presence.watchers"
	// NotifyRequested: the node receiving it (Bus.PublishTo) must notify the subscriptions
	// Event.IDs of AOR, which it owns, of a change (Event.Full: of their full state).
	NotifyRequested EventKind = "presence.notify"
	// SubscriptionMoved, sent to a subscription's former owner: another node notifies it now.
	SubscriptionMoved EventKind = "presence.moved"
	// SubscriptionEnded, sent to a subscription's owner: it ended elsewhere (expired, rules);
	// send its final NOTIFY with Event.Reason if it can.
	SubscriptionEnded EventKind = "presence.ended"
	// StateChanged: the state of AOR in the event package Event.Package (dialog,
	// message-summary, reg: every package the presence agent serves but presence itself)
	// changed; its subscriptions are notified.
	StateChanged EventKind = "presence.state"
)

// PublicationKey is the key under which the publications of aor in event package event are
// stored (the aor argument of PublicationStore methods): aor itself for presence, so that
// presence publications keep their keys, and "event:aor" for the other packages (dialog state
// a PBX publishes, message-summary), which must not mix into a presence document. An AOR
// never holds a ':' (a SIP URI's user part has it only escaped), so the two never meet.
func PublicationKey(event, aor string) string {
	if event == "" || event == "presence" {
		return aor
	}
	return event + ":" + aor
}

// SplitPublicationKey reverses PublicationKey: the event package ("presence" for a bare AOR)
// and the AOR.
func SplitPublicationKey(key string) (event, aor string) {
	for i := 0; i < len(key); i++ {
		switch key[i] {
		case ':':
			return key[:i], key[i+1:]
		case '@':
			return "presence", key
		}
	}
	return "presence", key
}

// Publication is one event state published with PUBLISH (RFC 3903) for a presentity. It is
// addressed by its entity tag, which changes on every refresh and modification.
type Publication struct {
	// ETag is not in the stored JSON: Redis keeps it as the hash field, Body after the
	// header (storage/redis).
	ETag string `json:"-"`
	// ContentType is the body's media type as published (application/pidf+xml); Body the
	// document, bytes as received.
	ContentType string    `json:"content_type"`
	Body        []byte    `json:"-"`
	ExpiresAt   time.Time `json:"expires_at"`
	// UpdatedAt is when the body last changed (not when it was last refreshed): composition
	// orders publications by it, newest wins.
	UpdatedAt time.Time `json:"updated_at"`
	// Source names the publisher for operators: the Contact or source address of the PUBLISH.
	Source string `json:"source,omitempty"`
}

// Expired reports whether p has expired at now. A publication is live while now < ExpiresAt.
func (p *Publication) Expired(now time.Time) bool { return !now.Before(p.ExpiresAt) }

// PublishOp is one PUBLISH's effect on a presentity's publications, applied atomically by
// presence.PublicationStore.Publish (RFC 3903 §6):
//
//   - IfMatch empty: a new publication is stored under NewETag with Body (Body must be set).
//   - IfMatch set: the live publication with that entity tag is looked up; if there is none (it
//     never existed, was removed, or expired at Now) the op fails with ErrETagMismatch and
//     nothing changes. Otherwise, with Remove, it is deleted; else it is re-stored under
//     NewETag with the new ExpiresAt and, when Body is non-nil, the new Body, ContentType and
//     UpdatedAt = Now (a refresh without body keeps the body and UpdatedAt).
//
// Publications of the AOR that expired at Now are dropped first.
//
// MaxPublications, when > 0, bounds the live publications of the AOR: an op without IfMatch
// that would add a publication while MaxPublications live ones (expired ones do not count)
// already exist fails with ErrTooManyPublications and nothing changes. Refreshes,
// modifications and removals are never refused by it, nor an op without IfMatch whose NewETag
// names a live publication (it replaces that one: a retried op). The check is atomic with the
// op, so concurrent PUBLISHes cannot exceed the bound.
type PublishOp struct {
	Now             time.Time
	IfMatch         string
	NewETag         string
	Remove          bool
	ContentType     string
	Body            []byte // nil: refresh, keep the stored body
	ExpiresAt       time.Time
	Source          string
	MaxPublications int // 0: no bound
}

// ExpiredPublication is one publication removed by a background sweep because it expired.
type ExpiredPublication struct {
	AOR         string
	Publication Publication
}

// Subscription states (RFC 6665 §4.1.3 Subscription-State values).
const (
	SubActive     = "active"
	SubPending    = "pending"
	SubTerminated = "terminated"
)

// Subscription is one SUBSCRIBE dialog the presence agent is the notifier of (RFC 6665): a
// watcher subscribed to AOR's presence, or AOR subscribed to its own watcher information
// (Event presence.winfo). It is keyed by ID within the presentity AOR: the To tag the notifier
// chose, so an in-dialog request (To = the presentity, with that tag) finds it.
type Subscription struct {
	ID    string `json:"id"`
	AOR   string `json:"aor"`
	Event string `json:"event"` // the event package: "presence", "presence.winfo", "dialog", ...
	// Watcher is the subscriber's AOR (user@domain of its From URI); WatcherURI the From URI
	// and WatcherName its display name, for winfo documents.
	Watcher     string `json:"watcher"`
	WatcherURI  string `json:"watcher_uri"`
	WatcherName string `json:"watcher_name,omitempty"`
	// Dialog identifiers: the SUBSCRIBE's Call-ID and From tag (the remote tag). The local tag
	// is ID.
	CallID  string `json:"call_id"`
	FromTag string `json:"from_tag"`
	// Accept lists the media types the watcher accepts, as negotiated (the chosen one first).
	Accept []string `json:"accept,omitempty"`
	// RouteSet is the dialog's route set (the SUBSCRIBE's Record-Route values in order);
	// RemoteTarget the subscriber's Contact URI.
	RouteSet     []string `json:"route_set,omitempty"`
	RemoteTarget string   `json:"remote_target"`
	// RemoteCSeq is the CSeq of the last SUBSCRIBE accepted in this dialog (RFC 3261 §12.2.2:
	// a lower one is out of order).
	RemoteCSeq uint32 `json:"remote_cseq"`
	// Transport and Source are where the SUBSCRIBE came from (transport and host:port): the
	// client's flow, which NOTIFYs go back over.
	Transport string `json:"transport,omitempty"`
	Source    string `json:"source,omitempty"`
	// State is SubActive or SubPending; a terminated subscription is deleted, not stored.
	State     string    `json:"state"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
	// Node is the node that owns the subscription and sends its NOTIFYs (several nodes on one
	// Redis): the one it was last subscribed through, or the one that took it over.
	Node string `json:"node,omitempty"`
	// NotifyCSeq is the owner's reservation of NOTIFY CSeqs: it sends CSeqs up to it without
	// writing again, and a node that takes the subscription over (ClaimSubscription) starts
	// above it, so CSeqs keep rising from node to node whatever their clocks say. 0 in a
	// subscription stored before reservations existed.
	NotifyCSeq uint32 `json:"notify_cseq,omitempty"`
}

// Expired reports whether s has expired at now. A subscription is live while now < ExpiresAt.
func (s *Subscription) Expired(now time.Time) bool { return !now.Before(s.ExpiresAt) }

// ExpiredSubscription is one subscription removed by a background sweep because it expired.
type ExpiredSubscription struct {
	AOR          string
	Subscription Subscription
}

// Authorization rule values (a presentity's decision about one watcher, RFC 5025 sub-handling).
const (
	RuleAllow       = "allow"
	RuleBlock       = "block"
	RulePoliteBlock = "polite-block"
	RulePending     = "pending" // the presentity has not decided yet: the watcher waits
)

// RaiseCSeq is a NotifyCSeq reservation raised by block, held below 2^31 (RFC 3261 §8.1.1.5:
// a CSeq is less than 2^31); a reservation that would pass it stays at the limit.
func RaiseCSeq(cseq, block uint32) uint32 {
	const limit = 1<<31 - 1
	if uint64(cseq)+uint64(block) > limit {
		return limit
	}
	return cseq + block
}
