// Package memory is simpled's embedded storage backend, the default: every table lives in this
// process and is lost when it exits. It implements registrar.Store, auth.Store,
// offline.MessageStore, presence's PublicationStore, SubscriptionStore and RuleStore,
// storage.Credentials and storage.Backend with the semantics storage/storagetest checks (the
// Redis backend passes the same suite).
//
// Like all of storage, it imports no stage: memory_test.go asserts the suite's contracts
// (storagetest.Store, the same method sets written with storage types), and the wiring that
// hands the store to the stages checks their own interfaces at compile time.
//
// # Locks
//
// Nine mutexes guard nine tables:
//
//	regMu    bindings by AOR and the expiry heap over all bindings
//	credMu   credentials
//	nonceMu  nonce-count records and their expiry heap
//	msgMu    offline mailboxes, their expiry heap and the message ID sequence
//	knownMu  known users and their heap
//	pubs.mu  publications and their expiry heap (presence.go)
//	subs.mu  subscriptions and their expiry heap
//	ruleMu   authorization rules
//	dialogs.mu  the call tracker's dialogs (dialog.go)
//
// Lock order: regMu before msgMu, the one nesting. UpdateBindings reads msgMu while it holds
// regMu, to report the mailbox with the update (storage.BindingResult.Mailbox); nothing takes
// regMu while holding msgMu. Every other method holds at most one of the locks at a time and
// calls nothing that could block or call back while holding it (ExpireMessages takes knownMu,
// releases it, then takes msgMu).
//
// # Expiry
//
// Every stored binding has exactly one entry in a min-heap ordered by expiry (its heap index
// is kept in the binding's entry), so SweepExpired pops only expired bindings and never scans
// the AORs. Offline messages work the same way: one heap entry each, popped by
// ExpireMessages; so do publications and subscriptions (ExpirePublications,
// ExpireSubscriptions). Nonce records sit in another heap and are dropped when they expire,
// lazily at the next UseNonceCount; memory is bounded by the records used within one ttl. The
// nonce epoch is drawn once per store (so per process): nonces issued under another process's
// store are refused, as their counts are not here. Known users (one record per AOR) are
// forgotten by ExpireMessages an hour after their until.
//
// Message IDs are a store-wide sequence, zero-padded to 16 digits, so their string order is
// store order.
package memory

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/storage"
)

// Store is the in-memory backend. The zero value is not usable; call New. It is safe for
// concurrent use.
type Store struct {
	closed atomic.Bool

	regMu sync.RWMutex
	aors  map[string]map[string]*entry // aor → binding key → entry
	exp   minHeap[*entry]              // every entry, earliest expiry first

	credMu sync.RWMutex
	creds  map[string]map[string]storage.Credential // aor → realm → credential

	nonceEpoch uint64 // random, non-zero, fixed at New
	nonceMu    sync.Mutex
	nonces     map[string]*nonceRecord
	nonceExp   minHeap[*nonceRecord]

	msgMu  sync.RWMutex
	boxes  map[string]*mailbox // aor → offline messages; no empty mailbox is kept
	msgExp minHeap[*msgEntry]  // every stored message, earliest expiry first
	msgSeq uint64              // the last message ID handed out

	knownMu  sync.RWMutex
	known    map[string]*knownEntry // aor → known until
	knownExp minHeap[*knownEntry]   // every known record, earliest until first

	presenceTables             // publications, subscriptions and rules (presence.go)
	mwi            summaries   // message summaries (mwi.go)
	dialogs        dialogTable // the call tracker's dialogs (dialog.go)
}

// New returns an empty store.
func New() *Store {
	return &Store{
		aors:       make(map[string]map[string]*entry),
		creds:      make(map[string]map[string]storage.Credential),
		nonceEpoch: storage.NewNonceEpoch(),
		nonces:     make(map[string]*nonceRecord),
		boxes:      make(map[string]*mailbox),
		known:      make(map[string]*knownEntry),
	}
}

// errClosed is returned, wrapped with the step, after Close.
var errClosed = fmt.Errorf("store closed: %w", storage.ErrUnavailable)

// check returns the error that stops a call before it starts: a closed store or a done ctx.
func (s *Store) check(ctx context.Context, step string) error {
	if s.closed.Load() {
		return fmt.Errorf("memory: %s: %w", step, errClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s: %w", step, err)
	}
	return nil
}

// Ping reports whether the store is open.
func (s *Store) Ping(ctx context.Context) error { return s.check(ctx, "ping") }

// Close marks the store closed; later calls fail with storage.ErrUnavailable. The data is
// dropped with the Store.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// entry is one stored binding. b holds whole-second UTC times and a private Path.
type entry struct {
	aor string
	b   storage.Binding
	exp int64 // b.ExpiresAt in unix seconds
	upd int64 // b.UpdatedAt in unix seconds
	idx int   // position in Store.exp
}

// seconds is the whole-second UTC form the backends store times in.
func seconds(t time.Time) time.Time { return time.Unix(t.Unix(), 0).UTC() }

// normalize returns a copy of b as stored: times in whole seconds, a private Path (nil when
// empty).
func normalize(b storage.Binding) storage.Binding {
	b.ExpiresAt = seconds(b.ExpiresAt)
	b.UpdatedAt = seconds(b.UpdatedAt)
	if len(b.Path) == 0 {
		b.Path = nil
	} else {
		b.Path = slices.Clone(b.Path)
	}
	return b
}

// clone returns a copy of a stored binding that the caller may modify.
func clone(b storage.Binding) storage.Binding {
	b.Path = slices.Clone(b.Path)
	return b
}

// UpdateBindings applies one REGISTER to aor atomically, with the semantics of
// storage.BindingUpdate. On an error nothing changed: the update is planned in full before
// anything is written.
func (s *Store) UpdateBindings(ctx context.Context, aor string, u storage.BindingUpdate) (storage.BindingResult, error) {
	if err := s.check(ctx, "update bindings"); err != nil {
		return storage.BindingResult{}, err
	}
	if err := u.Validate(); err != nil {
		return storage.BindingResult{}, fmt.Errorf("memory: update bindings: %w", err)
	}

	s.regMu.Lock()
	defer s.regMu.Unlock()
	p, err := planBindings(s.aors[aor], &u)
	if err != nil {
		return storage.BindingResult{}, fmt.Errorf("memory: update bindings: %w", err)
	}
	res := p.res
	res.Bindings = s.commitBindings(aor, &p)
	for _, l := range [][]storage.Binding{res.Bindings, res.Removed, res.Expired, res.Evicted, res.Added, res.Refreshed} {
		slices.SortFunc(l, storage.CompareBindings)
	}
	s.msgMu.RLock() // the one nesting of two locks: regMu, then msgMu (package doc)
	res.Mailbox = storage.MailboxOf(s.boxes[aor] != nil)
	s.msgMu.RUnlock()
	return res, nil
}

// bindingPlan is what one update does to an AOR's bindings, worked out without touching the
// table. res holds the bindings removed, expired, evicted, added and refreshed (unsorted).
// An AOR holds a handful of bindings and a REGISTER a contact or two: the plan keeps slices,
// not maps (four maps per REGISTER were a tenth of the memory store's REGISTER CPU).
type bindingPlan struct {
	res     storage.BindingResult
	old     map[string]*entry // the AOR's stored entries (nil: none)
	now     int64
	live    int               // stored entries live at now and not removed by the update
	seen    keySet            // keys the changes name (stored or removed by the update)
	next    []storage.Binding // the bindings the update stores, as stored, one per key
	dropped []*entry          // expired, removed and evicted entries
}

// planBindings applies the rules of storage.BindingUpdate to old, the AOR's entries, in
// order: expired bindings dropped (rule 1), then RemoveAll (2) or the changes (3), then
// MaxBindings (4). It fails with ErrStale or ErrTooManyBindings as the rules say.
func planBindings(old map[string]*entry, u *storage.BindingUpdate) (bindingPlan, error) {
	p := bindingPlan{old: old, now: u.Now.Unix()}
	for _, e := range old {
		if e.exp <= p.now {
			p.res.Expired = append(p.res.Expired, clone(e.b))
			p.dropped = append(p.dropped, e)
			continue
		}
		p.live++
	}
	var err error
	if u.RemoveAll {
		err = p.removeAll(u)
	} else {
		err = p.change(u)
	}
	if err != nil {
		return bindingPlan{}, err
	}
	return p, p.evict(u)
}

// liveEntry is the stored entry of key when it is live at the plan's now.
func (p *bindingPlan) liveEntry(key string) *entry {
	if e := p.old[key]; e != nil && e.exp > p.now {
		return e
	}
	return nil
}

// removeAll is rule 2: every live binding goes, unless one has the update's Call-ID and a
// CSeq not below its CSeq (ErrStale).
func (p *bindingPlan) removeAll(u *storage.BindingUpdate) error {
	for _, e := range p.old {
		if e.exp > p.now && e.b.CallID == u.CallID && e.b.CSeq >= u.CSeq {
			return fmt.Errorf("remove all: binding %q has CSeq %d >= %d: %w", e.b.Key, e.b.CSeq, u.CSeq, storage.ErrStale)
		}
	}
	for _, e := range p.old {
		if e.exp > p.now {
			p.res.Removed = append(p.res.Removed, clone(e.b))
			p.dropped = append(p.dropped, e)
		}
	}
	p.live = 0
	return nil
}

// change is rule 3: the stale check of every change first, then each key's last change
// removes (expiry at or before now) or stores its binding. The changes are applied last to
// first, so a key's earlier changes, already seen, are skipped.
func (p *bindingPlan) change(u *storage.BindingUpdate) error {
	for i := range u.Changes {
		c := &u.Changes[i].Binding
		if e := p.liveEntry(c.Key); e != nil && e.b.CallID == c.CallID && e.b.CSeq >= c.CSeq {
			return fmt.Errorf("binding %q has CSeq %d >= %d: %w", c.Key, e.b.CSeq, c.CSeq, storage.ErrStale)
		}
	}
	p.seen = newKeySet(len(u.Changes))
	for i := len(u.Changes) - 1; i >= 0; i-- {
		c := &u.Changes[i].Binding
		if !p.seen.add(c.Key) {
			continue
		}
		e := p.liveEntry(c.Key)
		if c.ExpiresAt.Unix() <= p.now {
			if e != nil {
				p.res.Removed = append(p.res.Removed, clone(e.b))
				p.dropped = append(p.dropped, e)
				p.live--
			}
			continue
		}
		nb := normalize(*c)
		if e != nil {
			detachBinding(&nb, &e.b)
		} else {
			detachBinding(&nb, nil)
		}
		if e != nil {
			p.res.Refreshed = append(p.res.Refreshed, clone(nb))
		} else {
			p.res.Added = append(p.res.Added, clone(nb))
		}
		p.next = append(p.next, nb)
	}
	return nil
}

// evict is rule 4: above MaxBindings, the untouched bindings with the earliest UpdatedAt (then
// Key) go when EvictOldest allows it; otherwise, or when they are not enough, the update fails
// with ErrTooManyBindings.
func (p *bindingPlan) evict(u *storage.BindingUpdate) error {
	count := p.live
	for i := range p.next {
		if p.liveEntry(p.next[i].Key) == nil {
			count++
		}
	}
	if u.MaxBindings <= 0 || count <= u.MaxBindings {
		return nil
	}
	if !u.EvictOldest {
		return fmt.Errorf("%d bindings, at most %d: %w", count, u.MaxBindings, storage.ErrTooManyBindings)
	}
	var cand []*entry
	for k, e := range p.old {
		if e.exp > p.now && !p.seen.has(k) {
			cand = append(cand, e)
		}
	}
	need := count - u.MaxBindings
	if need > len(cand) {
		return fmt.Errorf("%d bindings, at most %d, %d evictable: %w", count, u.MaxBindings, len(cand), storage.ErrTooManyBindings)
	}
	slices.SortFunc(cand, func(a, b *entry) int {
		if c := cmp.Compare(a.upd, b.upd); c != 0 {
			return c
		}
		return bytes.Compare([]byte(a.b.Key), []byte(b.b.Key))
	})
	for _, e := range cand[:need] {
		p.res.Evicted = append(p.res.Evicted, clone(e.b))
		p.dropped = append(p.dropped, e)
	}
	p.live -= need
	return nil
}

// keySet is a set of the keys one update names: an array in place for the usual one or two
// (no allocation), a map past smallKeys so that a REGISTER with many contacts stays linear.
type keySet struct {
	small [smallKeys]string
	n     int
	big   map[string]struct{}
}

const smallKeys = 8

func newKeySet(n int) keySet {
	if n > smallKeys {
		return keySet{big: make(map[string]struct{}, n)}
	}
	return keySet{}
}

// add adds k and reports whether it was new.
func (s *keySet) add(k string) bool {
	if s.has(k) {
		return false
	}
	if s.big == nil && s.n == smallKeys {
		s.big = make(map[string]struct{}, 2*smallKeys)
		for _, k := range s.small {
			s.big[k] = struct{}{}
		}
	}
	if s.big != nil {
		s.big[k] = struct{}{}
	} else {
		s.small[s.n] = k
		s.n++
	}
	return true
}

func (s *keySet) has(k string) bool {
	if s.big != nil {
		_, ok := s.big[k]
		return ok
	}
	return slices.Contains(s.small[:s.n], k)
}

// commitBindings writes plan p for aor into the table and its expiry heap and returns copies
// of the bindings left (unsorted). s.regMu is held.
func (s *Store) commitBindings(aor string, p *bindingPlan) []storage.Binding {
	old := p.old
	for _, e := range p.dropped {
		heap.Remove(&s.exp, e.idx)
		delete(old, e.b.Key)
	}
	for _, nb := range p.next {
		k := nb.Key
		if e := old[k]; e != nil {
			e.b, e.exp, e.upd = nb, nb.ExpiresAt.Unix(), nb.UpdatedAt.Unix()
			heap.Fix(&s.exp, e.idx)
			continue
		}
		if old == nil {
			old = make(map[string]*entry)
			aor = strings.Clone(aor) // a key of the table's own (detach.go)
			s.aors[aor] = old
		} else {
			aor = anyEntryAOR(old, aor)
		}
		e := &entry{aor: aor, b: nb, exp: nb.ExpiresAt.Unix(), upd: nb.UpdatedAt.Unix()}
		old[k] = e
		heap.Push(&s.exp, e)
	}
	if old != nil && len(old) == 0 {
		delete(s.aors, aor)
	}
	out := make([]storage.Binding, 0, len(old))
	for _, e := range old {
		out = append(out, clone(e.b))
	}
	return out
}

// anyEntryAOR is the AOR string an entry of m holds (the table's own), or a copy of aor when
// m is empty.
func anyEntryAOR(m map[string]*entry, aor string) string {
	for _, e := range m {
		return e.aor
	}
	return strings.Clone(aor)
}

// Bindings returns aor's bindings live at now, ordered by Key.
func (s *Store) Bindings(ctx context.Context, aor string, now time.Time) ([]storage.Binding, error) {
	if err := s.check(ctx, "bindings"); err != nil {
		return nil, err
	}
	n := now.Unix()
	s.regMu.RLock()
	defer s.regMu.RUnlock()
	out := make([]storage.Binding, 0, len(s.aors[aor]))
	for _, e := range s.aors[aor] {
		if e.exp > n {
			out = append(out, clone(e.b))
		}
	}
	slices.SortFunc(out, storage.CompareBindings)
	return out, nil
}

// RemoveBindings removes every binding of aor, expired or not, and returns them ordered by
// Key.
func (s *Store) RemoveBindings(ctx context.Context, aor string) ([]storage.Binding, error) {
	if err := s.check(ctx, "remove bindings"); err != nil {
		return nil, err
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	m := s.aors[aor]
	out := make([]storage.Binding, 0, len(m))
	for _, e := range m {
		heap.Remove(&s.exp, e.idx)
		out = append(out, e.b) // the entry is gone: no copy needed
	}
	delete(s.aors, aor)
	slices.SortFunc(out, storage.CompareBindings)
	return out, nil
}

// RemoveFlowBindings removes aor's bindings live at now that are bound to flow and returns
// them ordered by Key; expired ones stay for SweepExpired.
func (s *Store) RemoveFlowBindings(ctx context.Context, aor, flow string, now time.Time) ([]storage.Binding, error) {
	if err := s.check(ctx, "remove flow bindings"); err != nil {
		return nil, err
	}
	if err := storage.CheckFlow(flow); err != nil {
		return nil, fmt.Errorf("memory: remove flow bindings: %w", err)
	}
	n := now.Unix()
	s.regMu.Lock()
	defer s.regMu.Unlock()
	m := s.aors[aor]
	var out []storage.Binding
	for k, e := range m {
		if e.b.Flow == flow && e.exp > n {
			heap.Remove(&s.exp, e.idx)
			delete(m, k)
			out = append(out, e.b) // the entry is gone: no copy needed
		}
	}
	if m != nil && len(m) == 0 {
		delete(s.aors, aor)
	}
	slices.SortFunc(out, storage.CompareBindings)
	return out, nil
}

// SweepExpired removes at most limit bindings that expired at now, earliest first, and
// returns them. A removed binding is gone, so it is returned once.
func (s *Store) SweepExpired(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredBinding, error) {
	if err := s.check(ctx, "sweep expired"); err != nil {
		return nil, err
	}
	if err := storage.CheckLimit(limit); err != nil {
		return nil, fmt.Errorf("memory: sweep expired: %w", err)
	}
	n := now.Unix()
	s.regMu.Lock()
	defer s.regMu.Unlock()
	var out []storage.ExpiredBinding
	for len(out) < limit && len(s.exp) > 0 && s.exp[0].exp <= n {
		e := heap.Pop(&s.exp).(*entry)
		m := s.aors[e.aor]
		delete(m, e.b.Key)
		if len(m) == 0 {
			delete(s.aors, e.aor)
		}
		out = append(out, storage.ExpiredBinding{AOR: e.aor, Binding: e.b})
	}
	return out, nil
}

// Credential returns the secrets of aor for realm, or storage.ErrNotFound.
func (s *Store) Credential(ctx context.Context, aor, realm string) (storage.Credential, error) {
	if err := s.check(ctx, "credential"); err != nil {
		return storage.Credential{}, err
	}
	s.credMu.RLock()
	defer s.credMu.RUnlock()
	c, ok := s.creds[aor][realm]
	if !ok {
		return storage.Credential{}, fmt.Errorf("memory: credential %s realm %q: %w", aor, realm, storage.ErrNotFound)
	}
	return c, nil
}

// SetCredential stores (replaces) the secrets of aor for realm.
func (s *Store) SetCredential(ctx context.Context, aor, realm string, c storage.Credential) error {
	if err := s.check(ctx, "set credential"); err != nil {
		return err
	}
	s.credMu.Lock()
	defer s.credMu.Unlock()
	m := s.creds[aor]
	if m == nil {
		m = make(map[string]storage.Credential)
		s.creds[aor] = m
	}
	m[realm] = c
	return nil
}

// DeleteCredential removes every credential of aor and reports whether there was any.
func (s *Store) DeleteCredential(ctx context.Context, aor string) (bool, error) {
	if err := s.check(ctx, "delete credential"); err != nil {
		return false, err
	}
	s.credMu.Lock()
	defer s.credMu.Unlock()
	_, ok := s.creds[aor]
	delete(s.creds, aor)
	return ok, nil
}

// ListCredentials returns the AORs that have a credential, sorted.
func (s *Store) ListCredentials(ctx context.Context) ([]string, error) {
	if err := s.check(ctx, "list credentials"); err != nil {
		return nil, err
	}
	s.credMu.RLock()
	out := make([]string, 0, len(s.creds))
	for aor := range s.creds {
		out = append(out, aor)
	}
	s.credMu.RUnlock()
	slices.Sort(out)
	return out, nil
}

// HasCredentials reports whether any credential is stored.
func (s *Store) HasCredentials(ctx context.Context) (bool, error) {
	if err := s.check(ctx, "has credentials"); err != nil {
		return false, err
	}
	s.credMu.RLock()
	defer s.credMu.RUnlock()
	return len(s.creds) > 0, nil
}

// nonceRecord is the highest nonce count accepted for one nonce.
type nonceRecord struct {
	nonce    string
	nc       uint32
	deadline time.Time // forgotten at this time
	idx      int       // position in Store.nonceExp
}

// NonceEpoch returns the store's nonce epoch, drawn when the store was made.
func (s *Store) NonceEpoch(ctx context.Context) (uint64, error) {
	if err := s.check(ctx, "nonce epoch"); err != nil {
		return 0, err
	}
	return s.nonceEpoch, nil
}

// UseNonceCount records nc for nonce and reports whether it is higher than every count
// accepted for that nonce within ttl; a nonce of another epoch is refused without a record.
// Expired records are dropped on the way.
func (s *Store) UseNonceCount(ctx context.Context, epoch uint64, nonce string, nc uint32, ttl time.Duration) (bool, uint64, error) {
	if err := s.check(ctx, "use nonce count"); err != nil {
		return false, 0, err
	}
	if err := storage.CheckTTL(ttl); err != nil {
		return false, 0, fmt.Errorf("memory: use nonce count: %w", err)
	}
	if epoch != s.nonceEpoch {
		return false, s.nonceEpoch, nil
	}
	now := time.Now()
	s.nonceMu.Lock()
	defer s.nonceMu.Unlock()
	for len(s.nonceExp) > 0 && !now.Before(s.nonceExp[0].deadline) {
		r := heap.Pop(&s.nonceExp).(*nonceRecord)
		delete(s.nonces, r.nonce)
	}
	r := s.nonces[nonce]
	if r != nil && r.nc >= nc {
		return false, s.nonceEpoch, nil
	}
	if r == nil {
		nonce = strings.Clone(nonce) // a client's echo, parsed from its request (detach.go)
		r = &nonceRecord{nonce: nonce, nc: nc, deadline: now.Add(ttl)}
		s.nonces[nonce] = r
		heap.Push(&s.nonceExp, r)
		return true, s.nonceEpoch, nil
	}
	r.nc, r.deadline = nc, now.Add(ttl)
	heap.Fix(&s.nonceExp, r.idx)
	return true, s.nonceEpoch, nil
}

// before orders bindings by expiry, then AOR and key (the heap of SweepExpired).
func (e *entry) before(o *entry) bool {
	if e.exp != o.exp {
		return e.exp < o.exp
	}
	return e.aor < o.aor || (e.aor == o.aor && e.b.Key < o.b.Key)
}

func (e *entry) heapIndex() *int { return &e.idx }

// before orders nonce records by deadline.
func (r *nonceRecord) before(o *nonceRecord) bool { return r.deadline.Before(o.deadline) }

func (r *nonceRecord) heapIndex() *int { return &r.idx }
