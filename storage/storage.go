// Package storage holds the types, sentinel errors, validation and event bus shared by simpled's
// two storage backends: storage/memory (embedded, the default) and storage/redis (persistence,
// several nodes, Redis Cluster). The interfaces themselves are small and owned by the packages
// that use them (registrar.Store, auth.Store, presence.PublicationStore, ...); both backends
// satisfy all of them, and storage/storagetest is the one conformance suite both must pass.
// Nothing in storage imports a stage.
//
// There is one record type per kind: Binding, Publication, Subscription, Message, Credential;
// a rule is one of the Rule* strings, a nonce count a number. Their json tags are the names
// storage/redis stores them under (its codec.go; a field tagged "-" is kept beside the JSON,
// as a hash field or a raw body), so a field added here is stored by Redis with no other
// change.
//
// Times are whole seconds from the caller's clock: every method that decides expiry takes `now`
// from its caller, so tests and several nodes agree on what has expired.
package storage

import (
	"errors"
	"time"
)

// Sentinel errors callers branch on. Backends wrap them with %w; test with errors.Is.
var (
	// ErrNotFound: the AOR, binding, credential or entry does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrStale: a REGISTER's CSeq is not higher than the one stored for the same binding and
	// Call-ID (RFC 3261 §10.3 step 7), or an in-dialog SUBSCRIBE's not higher than its
	// subscription's (presence.SubscriptionStore.PutSubscription). The whole update was
	// rejected; nothing changed.
	ErrStale = errors.New("storage: stale request (CSeq out of order)")
	// ErrTooManyBindings: the update would leave more than MaxBindings bindings and eviction
	// was not allowed. Nothing changed.
	ErrTooManyBindings = errors.New("storage: too many bindings")
	// ErrTooManyPublications: a new publication was refused because its AOR already has
	// PublishOp.MaxPublications live publications. Nothing changed.
	ErrTooManyPublications = errors.New("storage: too many publications")
	// ErrETagMismatch: no publication has the given entity tag (PUBLISH, RFC 3903 → 412).
	ErrETagMismatch = errors.New("storage: entity tag mismatch")
	// ErrConflict: a concurrent update won; the caller may retry.
	ErrConflict = errors.New("storage: conflict")
	// ErrUnavailable: the backend could not be reached or answered an error. Callers answer
	// 503 with Retry-After (or 500) and must not assume anything was written.
	ErrUnavailable = errors.New("storage: backend unavailable")
)

// Binding is one registered contact of an address-of-record (RFC 3261 §10).
//
// Backends store ExpiresAt and UpdatedAt in whole seconds: they return
// time.Unix(t.Unix(), 0).UTC(), i.e. the time truncated to the second, in UTC. Expiry is
// decided on those whole seconds (a binding with ExpiresAt 12:00:10.9 is stored as 12:00:10
// and has expired at Now 12:00:10.0).
type Binding struct {
	// Key identifies the binding within its AOR: "<+sip.instance>" or "<+sip.instance>;reg-id=N"
	// when the contact carries an instance id (RFC 5626), else the contact URI without its
	// parameters that are not part of URI comparison (the registrar computes it).
	Key string `json:"key"`
	// Contact is the Contact header value to return and to route to: `<uri>;params` without
	// the expires and q parameters (the registrar adds their current values when it answers).
	Contact string `json:"contact"`
	// URI is the contact's URI alone, as the Request-URI of requests sent to this device.
	URI       string    `json:"uri"`
	ExpiresAt time.Time `json:"expires_at"`
	// Q is the q-value times 1000 (0..1000); -1 when the contact gave none.
	Q      int    `json:"q"`
	CallID string `json:"call_id"`
	CSeq   uint32 `json:"cseq"`
	// Path is the REGISTER's Path header values in order (RFC 3327). Backends return an
	// empty Path as nil.
	Path       []string `json:"path,omitempty"`
	InstanceID string   `json:"instance_id,omitempty"`
	RegID      int      `json:"reg_id,omitempty"`
	// Received is the source address (host:port) the REGISTER came from; Transport its
	// transport (udp, tcp, tls, ws, wss); Flow the flow token and Node the node holding it.
	Received  string    `json:"received,omitempty"`
	Transport string    `json:"transport,omitempty"`
	Flow      string    `json:"flow,omitempty"`
	Node      string    `json:"node,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Expired reports whether b has expired at now. A binding is live while now < ExpiresAt.
func (b *Binding) Expired(now time.Time) bool { return !now.Before(b.ExpiresAt) }

// BindingChange is one Contact of a REGISTER, already validated by the registrar.
type BindingChange struct {
	// Binding carries the new state (Key, Contact, URI, ExpiresAt, Q, CallID, CSeq, Path, ...).
	// ExpiresAt at or before the update's Now removes the binding.
	Binding Binding
}

// BindingUpdate is one REGISTER's effect on one AOR, applied atomically by
// registrar.Store.UpdateBindings. Semantics, in order (RFC 3261 §10.3 steps 6-8):
//
//  1. Bindings of the AOR that expired at Now are dropped (and reported in Result.Expired).
//  2. If RemoveAll (Contact: * with Expires: 0): every binding whose CallID differs from CallID,
//     or whose CSeq is lower than CSeq, is removed; if a binding has the same CallID and a CSeq
//     greater than or equal to CSeq the whole update fails with ErrStale.
//  3. Otherwise, for each change: if a binding with the same Key exists, has the same CallID and
//     a CSeq greater than or equal to the change's CSeq, the whole update fails with ErrStale
//     (nothing is written). A change whose ExpiresAt is at or before Now removes the binding
//     with that Key (no error if none exists); any other change inserts or replaces it whole.
//  4. If more than MaxBindings (> 0) bindings would remain: when EvictOldest, the bindings not
//     touched by this update with the earliest UpdatedAt are removed (reported in
//     Result.Evicted) until MaxBindings remain, and if that is not enough the update fails with
//     ErrTooManyBindings; without EvictOldest the update fails with ErrTooManyBindings.
//  5. Result.Bindings lists every binding left, ordered by Key.
//
// Details both backends share: with RemoveAll, Changes are ignored; a change with an empty Key
// is an error. The stale check of rule 3 is made for every change against the bindings as
// stored (after rule 1) before anything is applied; when several changes carry the same Key,
// the last one decides that binding. Rule 4 is applied literally: it also refuses an
// update that only refreshes or removes bindings of an AOR already above MaxBindings (e.g.
// after the limit was lowered) unless EvictOldest lets it evict. Eviction order is earliest
// UpdatedAt first, then Key (byte order) on ties.
type BindingUpdate struct {
	Now         time.Time
	RemoveAll   bool
	CallID      string // for RemoveAll
	CSeq        uint32 // for RemoveAll
	Changes     []BindingChange
	MaxBindings int
	EvictOldest bool
}

// BindingResult is the outcome of a successful BindingUpdate. Every list is ordered by Key.
// Removed, Expired and Evicted hold the bindings as they were stored; Added and Refreshed the
// bindings as they are now stored. A binding that had expired (rule 1) and is registered again
// by the same update is in both Expired and Added.
type BindingResult struct {
	Bindings  []Binding // current bindings after the update, ordered by Key
	Removed   []Binding // bindings this update removed on request (Expires 0 or *)
	Expired   []Binding // bindings found expired and dropped
	Evicted   []Binding // bindings evicted to respect MaxBindings
	Added     []Binding // bindings that did not exist before
	Refreshed []Binding // bindings that existed and were replaced
	// Mailbox is whether the AOR's offline mailbox held a message just after the update,
	// read with it (Redis: in the same round trip), so that offline delivery after a
	// registration needs no store call of its own; MailboxUnknown when the read failed.
	Mailbox Mailbox
}

// Mailbox is what an operation saw of an AOR's offline mailbox.
type Mailbox uint8

const (
	// MailboxUnknown: not read; whoever needs to know asks the store (HasMessages).
	MailboxUnknown Mailbox = iota
	// MailboxEmpty: no stored message.
	MailboxEmpty
	// MailboxHasMessages: at least one stored message (expired ones included).
	MailboxHasMessages
)

// MailboxOf is the Mailbox for a known answer.
func MailboxOf(has bool) Mailbox {
	if has {
		return MailboxHasMessages
	}
	return MailboxEmpty
}

// ExpiredBinding is one binding removed by a background sweep because it expired.
type ExpiredBinding struct {
	AOR     string
	Binding Binding
}

// Credential holds the digest secrets of one user for one realm. HA1 values are lowercase hex:
// MD5(user:realm:password) and SHA-256(user:realm:password) (RFC 7616 §3.4.2). Either may be
// empty when only the other is known (a users file can carry an MD5 HA1 only).
type Credential struct {
	HA1MD5    string `json:"ha1_md5,omitempty"`
	HA1SHA256 string `json:"ha1_sha256,omitempty"`
}
