package memory

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/storage"
)

// presenceTables are the tables of presence's stores, embedded in Store: publications and
// subscriptions in expiring tables (each with its own lock and expiry heap), rules in a plain
// map under ruleMu. The zero value is ready to use.
type presenceTables struct {
	pubs kindTable[storage.Publication]  // aor → entity tag → publication
	subs kindTable[storage.Subscription] // aor → subscription ID → subscription

	ruleMu sync.RWMutex
	rules  map[string]map[string]string // aor → watcher → rule; no empty map is kept
}

// kindTable is one kind of expiring per-AOR items (publications, subscriptions): the items by
// AOR and key, and one expiry heap over all of them, so a sweep pops only expired items. mu
// guards both; the methods expect the caller to hold it. Stored values hold whole-second UTC
// times and private slices; they are never modified in place (a refresh stores a new value
// that may share the old one's slices).
type kindTable[V any] struct {
	mu   sync.RWMutex
	aors map[string]map[string]*item[V] // no empty map is kept
	exp  minHeap[*item[V]]
}

// item is one stored value of a kindTable.
type item[V any] struct {
	aor, key string
	v        V
	exp      int64 // the value's ExpiresAt in unix seconds
	idx      int   // position in kindTable.exp
}

// before orders items by expiry, then AOR and key (the heap of the sweeps).
func (e *item[V]) before(o *item[V]) bool {
	if e.exp != o.exp {
		return e.exp < o.exp
	}
	return e.aor < o.aor || (e.aor == o.aor && e.key < o.key)
}

func (e *item[V]) heapIndex() *int { return &e.idx }

// get returns the item of aor with key, or nil.
func (t *kindTable[V]) get(aor, key string) *item[V] { return t.aors[aor][key] }

// put stores v as aor's item key (inserting or replacing it) expiring at exp.
func (t *kindTable[V]) put(aor, key string, v V, exp int64) {
	m := t.aors[aor]
	if e := m[key]; e != nil {
		e.v, e.exp = v, exp
		heap.Fix(&t.exp, e.idx)
		return
	}
	if m == nil {
		if t.aors == nil {
			t.aors = make(map[string]map[string]*item[V])
		}
		m = make(map[string]*item[V])
		aor = strings.Clone(aor) // a key of the table's own (detach.go)
		t.aors[aor] = m
	} else {
		aor = anyAOR(m, aor)
	}
	key = strings.Clone(key)
	e := &item[V]{aor: aor, key: key, v: v, exp: exp}
	m[key] = e
	heap.Push(&t.exp, e)
}

// anyAOR is the AOR string an item of m holds (the table's own), or aor when m is empty.
func anyAOR[V any](m map[string]*item[V], aor string) string {
	for _, e := range m {
		return e.aor
	}
	return strings.Clone(aor)
}

// remove deletes e from the table and the heap.
func (t *kindTable[V]) remove(e *item[V]) {
	heap.Remove(&t.exp, e.idx)
	m := t.aors[e.aor]
	delete(m, e.key)
	if len(m) == 0 {
		delete(t.aors, e.aor)
	}
}

// dropExpired removes aor's items expired at n (unix seconds).
func (t *kindTable[V]) dropExpired(aor string, n int64) {
	for _, e := range t.aors[aor] {
		if e.exp <= n {
			t.remove(e)
		}
	}
}

// countLive returns how many of aor's items are live at n (unix seconds).
func (t *kindTable[V]) countLive(aor string, n int64) int {
	c := 0
	for _, e := range t.aors[aor] {
		if e.exp > n {
			c++
		}
	}
	return c
}

// live returns copies (made by clone) of aor's items live at n, sorted by order; nil when
// there are none. It sorts the items before copying them: moving pointers is cheaper than
// moving values.
func (t *kindTable[V]) live(aor string, n int64, order func(a, b V) int, clone func(V) V) []V {
	var items []*item[V]
	for _, e := range t.aors[aor] {
		if e.exp > n {
			items = append(items, e)
		}
	}
	if len(items) == 0 {
		return nil
	}
	slices.SortFunc(items, func(a, b *item[V]) int { return order(a.v, b.v) })
	out := make([]V, len(items))
	for i, e := range items {
		out[i] = clone(e.v)
	}
	return out
}

// expireDue removes at most limit items of tbl expired at now, earliest first, over all AORs,
// and returns them made into T by wrap: the sweep of ExpirePublications and
// ExpireSubscriptions. A removed item is gone, so it is returned once.
func expireDue[V, T any](s *Store, ctx context.Context, step string, tbl *kindTable[V], now time.Time, limit int, wrap func(aor string, v V) T) ([]T, error) {
	if err := s.check(ctx, step); err != nil {
		return nil, err
	}
	if err := storage.CheckLimit(limit); err != nil {
		return nil, fmt.Errorf("memory: %s: %w", step, err)
	}
	n := now.Unix()
	tbl.mu.Lock()
	defer tbl.mu.Unlock()
	var out []T
	for len(out) < limit && len(tbl.exp) > 0 && tbl.exp[0].exp <= n {
		e := tbl.exp[0]
		tbl.remove(e)
		out = append(out, wrap(e.aor, e.v)) // gone: no copy needed
	}
	return out, nil
}

// copyPublication returns a copy of a stored publication that the caller may modify.
func copyPublication(p storage.Publication) storage.Publication {
	p.Body = cloneBody(p.Body)
	return p
}

// Publish applies op to aor's publications atomically, with the semantics of
// storage.PublishOp (MaxPublications included: the count and the write are under one lock).
// On an error nothing changed.
func (s *Store) Publish(ctx context.Context, aor string, op storage.PublishOp) (storage.Publication, error) {
	const step = "publish"
	if err := s.check(ctx, step); err != nil {
		return storage.Publication{}, err
	}
	if err := op.Validate(); err != nil {
		return storage.Publication{}, fmt.Errorf("memory: %s: %s: %w", step, aor, err)
	}
	n := op.Now.Unix()
	s.pubs.mu.Lock()
	defer s.pubs.mu.Unlock()
	var old *item[storage.Publication]
	if op.IfMatch != "" {
		old = s.pubs.get(aor, op.IfMatch)
		if old == nil || old.exp <= n {
			return storage.Publication{}, fmt.Errorf("memory: %s: %s: %q: %w", step, aor, op.IfMatch, storage.ErrETagMismatch)
		}
	}
	if op.IfMatch == "" && op.MaxPublications > 0 {
		// A new publication, unless NewETag is live already (a retried op replaces it).
		if e := s.pubs.get(aor, op.NewETag); e == nil || e.exp <= n {
			if live := s.pubs.countLive(aor, n); live >= op.MaxPublications {
				return storage.Publication{}, fmt.Errorf("memory: %s: %s: %d live publications, at most %d: %w",
					step, aor, live, op.MaxPublications, storage.ErrTooManyPublications)
			}
		}
	}
	s.pubs.dropExpired(aor, n)
	if op.Remove {
		s.pubs.remove(old)
		return old.v, nil // gone: no copy needed
	}
	var p storage.Publication
	if old != nil && op.Body == nil {
		p = old.v // a refresh keeps the body, its type, UpdatedAt and Source
	} else {
		p = storage.Publication{ContentType: op.ContentType, Body: cloneBody(op.Body), UpdatedAt: seconds(op.Now), Source: op.Source}
	}
	p.ETag = op.NewETag
	p.ExpiresAt = seconds(op.ExpiresAt)
	detachPublication(&p)
	if old != nil {
		s.pubs.remove(old)
	}
	s.pubs.put(aor, p.ETag, p, p.ExpiresAt.Unix())
	return copyPublication(p), nil
}

// Publications returns aor's publications live at now, oldest UpdatedAt first (ties by
// ETag); nil when there are none.
func (s *Store) Publications(ctx context.Context, aor string, now time.Time) ([]storage.Publication, error) {
	if err := s.check(ctx, "publications"); err != nil {
		return nil, err
	}
	s.pubs.mu.RLock()
	defer s.pubs.mu.RUnlock()
	return s.pubs.live(aor, now.Unix(), storage.ComparePublications, copyPublication), nil
}

// ExpirePublications removes at most limit publications that expired at now, earliest
// first, over all AORs, and returns them. A removed publication is gone, so it is returned
// once.
func (s *Store) ExpirePublications(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredPublication, error) {
	return expireDue(s, ctx, "expire publications", &s.pubs, now, limit, func(aor string, p storage.Publication) storage.ExpiredPublication {
		return storage.ExpiredPublication{AOR: aor, Publication: p}
	})
}

// normalizeSubscription returns a copy of sub as stored: times in whole seconds, private
// slices (nil when empty).
func normalizeSubscription(sub storage.Subscription) storage.Subscription {
	sub.ExpiresAt = seconds(sub.ExpiresAt)
	sub.CreatedAt = seconds(sub.CreatedAt)
	sub = copySubscription(sub)
	sub.Detach()
	return sub
}

// copySubscription returns a copy of a stored subscription that the caller may modify.
func copySubscription(sub storage.Subscription) storage.Subscription {
	sub.Accept = cloneStrings(sub.Accept)
	sub.RouteSet = cloneStrings(sub.RouteSet)
	return sub
}

// cloneStrings copies l; an empty list is nil.
func cloneStrings(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return slices.Clone(l)
}

// PutSubscription stores sub whole under sub.AOR and sub.ID; with minCSeq > 0 only if no
// subscription with that ID is stored (expired or not) whose RemoteCSeq is minCSeq or more,
// else it fails with storage.ErrStale and writes nothing.
func (s *Store) PutSubscription(ctx context.Context, sub storage.Subscription, minCSeq uint32) error {
	const step = "put subscription"
	if err := s.check(ctx, step); err != nil {
		return err
	}
	if err := sub.Validate(); err != nil {
		return fmt.Errorf("memory: %s: %s: %w", step, sub.AOR, err)
	}
	v := normalizeSubscription(sub)
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	if e := s.subs.get(sub.AOR, sub.ID); minCSeq > 0 && e != nil && e.v.RemoteCSeq >= minCSeq {
		return fmt.Errorf("memory: %s: %s: %q has CSeq %d >= %d: %w", step, sub.AOR, sub.ID, e.v.RemoteCSeq, minCSeq, storage.ErrStale)
	}
	s.subs.put(sub.AOR, sub.ID, v, v.ExpiresAt.Unix())
	return nil
}

// Subscription returns aor's subscription id live at now, or storage.ErrNotFound.
func (s *Store) Subscription(ctx context.Context, aor, id string, now time.Time) (storage.Subscription, error) {
	const step = "subscription"
	if err := s.check(ctx, step); err != nil {
		return storage.Subscription{}, err
	}
	s.subs.mu.RLock()
	defer s.subs.mu.RUnlock()
	e, err := s.liveSubscription(step, aor, id, now)
	if err != nil {
		return storage.Subscription{}, err
	}
	return copySubscription(e.v), nil
}

// liveSubscription returns the item of aor's subscription id if it is live at now, else
// storage.ErrNotFound. s.subs.mu is held.
func (s *Store) liveSubscription(step, aor, id string, now time.Time) (*item[storage.Subscription], error) {
	e := s.subs.get(aor, id)
	if e == nil || e.exp <= now.Unix() {
		return nil, fmt.Errorf("memory: %s: %s: %q: %w", step, aor, id, storage.ErrNotFound)
	}
	return e, nil
}

// Subscriptions returns aor's subscriptions live at now, ordered by ID; nil when there are
// none.
func (s *Store) Subscriptions(ctx context.Context, aor string, now time.Time) ([]storage.Subscription, error) {
	if err := s.check(ctx, "subscriptions"); err != nil {
		return nil, err
	}
	s.subs.mu.RLock()
	defer s.subs.mu.RUnlock()
	return s.subs.live(aor, now.Unix(), storage.CompareSubscriptions, copySubscription), nil
}

// DeleteSubscription removes aor's subscription id and returns it as it was, or fails with
// storage.ErrNotFound when it is not stored or has expired at now (an expired one is left for
// ExpireSubscriptions to report).
func (s *Store) DeleteSubscription(ctx context.Context, aor, id string, now time.Time) (storage.Subscription, error) {
	const step = "delete subscription"
	if err := s.check(ctx, step); err != nil {
		return storage.Subscription{}, err
	}
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	e, err := s.liveSubscription(step, aor, id, now)
	if err != nil {
		return storage.Subscription{}, err
	}
	s.subs.remove(e)
	return e.v, nil // gone: no copy needed
}

// ExpireSubscriptions removes at most limit subscriptions that expired at now, earliest
// first, over all AORs, and returns them. A removed subscription is gone, so it is returned
// once.
func (s *Store) ExpireSubscriptions(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredSubscription, error) {
	return expireDue(s, ctx, "expire subscriptions", &s.subs, now, limit, func(aor string, sub storage.Subscription) storage.ExpiredSubscription {
		return storage.ExpiredSubscription{AOR: aor, Subscription: sub}
	})
}

// SetRule sets aor's rule for watcher.
func (s *Store) SetRule(ctx context.Context, aor, watcher, rule string) error {
	const step = "set rule"
	if err := s.check(ctx, step); err != nil {
		return err
	}
	if err := storage.CheckRule(watcher, rule); err != nil {
		return fmt.Errorf("memory: %s: %s: %w", step, aor, err)
	}
	s.ruleMu.Lock()
	defer s.ruleMu.Unlock()
	m := s.rules[aor]
	if m == nil {
		if s.rules == nil {
			s.rules = make(map[string]map[string]string)
		}
		m = make(map[string]string)
		s.rules[strings.Clone(aor)] = m
	}
	m[strings.Clone(watcher)] = strings.Clone(rule)
	return nil
}

// DeleteRule removes aor's rule for watcher, or fails with storage.ErrNotFound.
func (s *Store) DeleteRule(ctx context.Context, aor, watcher string) error {
	const step = "delete rule"
	if err := s.check(ctx, step); err != nil {
		return err
	}
	s.ruleMu.Lock()
	defer s.ruleMu.Unlock()
	m := s.rules[aor]
	if _, ok := m[watcher]; !ok {
		return fmt.Errorf("memory: %s: %s: %q: %w", step, aor, watcher, storage.ErrNotFound)
	}
	delete(m, watcher)
	if len(m) == 0 {
		delete(s.rules, aor)
	}
	return nil
}

// Rules returns a copy of aor's rules, watcher → rule; an empty (non-nil) map when there are
// none.
func (s *Store) Rules(ctx context.Context, aor string) (map[string]string, error) {
	if err := s.check(ctx, "rules"); err != nil {
		return nil, err
	}
	s.ruleMu.RLock()
	defer s.ruleMu.RUnlock()
	out := make(map[string]string, len(s.rules[aor]))
	for w, r := range s.rules[aor] {
		out[w] = r
	}
	return out, nil
}

// ClaimSubscription makes node the owner of aor's subscription id if its owner is expect or
// node, and raises its NotifyCSeq by block; see presence.SubscriptionStore.
func (s *Store) ClaimSubscription(ctx context.Context, aor, id, expect, node string, block uint32, now time.Time) (storage.Subscription, error) {
	const step = "claim subscription"
	if err := s.check(ctx, step); err != nil {
		return storage.Subscription{}, err
	}
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	e, err := s.liveSubscription(step, aor, id, now)
	if err != nil {
		return storage.Subscription{}, err
	}
	if e.v.Node != expect && e.v.Node != node {
		return storage.Subscription{}, fmt.Errorf("memory: %s: %s: %q is owned by %q, not %q: %w", step, aor, id, e.v.Node, expect, storage.ErrStale)
	}
	e.v.Node = node
	e.v.NotifyCSeq = storage.RaiseCSeq(e.v.NotifyCSeq, block)
	return copySubscription(e.v), nil
}
