package presence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/pidf"
	"github.com/simpled/simpled/storage"

	"go.uber.org/zap"
)

// The document a watcher gets is composed from all the presentity's live publications,
// oldest first, by pidf.Compose: tuples by id with the newest publication winning for an
// identical id, the newest person element; a publication a newer one from the same source
// restates whole is a lost duplicate and is removed (dropStale: baresip's duplicate initial
// PUBLISH).
// With no publication, presence comes from registration: one open tuple per registered
// device, or one closed tuple when the presentity has no device.
//
// One composition serves every watcher of a presentity until its state changes: the cache
// keeps the composed document and the presentity's rules, dropped on every change event. A
// watcher's view of the presentity is one of two documents, both shared by every watcher
// with that view: the composed one (an allowed watcher) or the neutral closed one (a
// politely blocked watcher, built once per presentity); a pending watcher gets no body.

// docCache holds composed documents and rules per presentity. A generation per presentity
// keeps a composition that raced with a change from being cached.
type docCache struct {
	mu sync.Mutex
	m  map[string]*cached
}

type cached struct {
	existsUntil time.Time // the presentity was found to exist; taken as existing until then
	gen         uint64
	doc         []byte
	hasDoc      bool
	building    chan struct{} // closed when the composition under way ends
	rules       map[string]string
	hasRules    bool
	closed      []byte // the neutral closed document politely blocked watchers get
}

// maxCached bounds the cache; past it the cache starts over.
const maxCached = 50000

func newDocCache() *docCache { return &docCache{m: map[string]*cached{}} }

func (c *docCache) entry(aor string) *cached {
	e := c.m[aor]
	if e == nil {
		if len(c.m) >= maxCached {
			c.m = map[string]*cached{}
		}
		e = &cached{}
		c.m[aor] = e
	}
	return e
}

// existsFor is how long a presentity found to exist (registered, publishing or known) is
// taken to exist without asking again: a user does not stop existing between two SUBSCRIBEs.
const existsFor = time.Minute

// known reports whether aor was found to exist within existsFor.
func (c *docCache) known(aor string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[aor]
	return ok && time.Now().Before(e.existsUntil)
}

// markKnown records that aor exists.
func (c *docCache) markKnown(aor string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entry(aor).existsUntil = time.Now().Add(existsFor)
}

// invalidate drops aor's composed document. A presentity without an entry has nothing
// cached and nothing being composed or read (both start by making its entry), so none is
// made for it: every registration would otherwise leave one behind.
func (c *docCache) invalidate(aor string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[aor]; e != nil {
		e.gen++
		e.doc, e.hasDoc = nil, false
	}
}

// invalidateRules drops aor's cached rules (as invalidate, only for an entry there is).
func (c *docCache) invalidateRules(aor string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[aor]; e != nil {
		e.gen++
		e.rules, e.hasRules = nil, false
	}
}

// document returns aor's composed PIDF document. When a change reaches a thousand
// watchers at once, one of them composes and the others wait for its result.
func (p *Presence) document(ctx context.Context, aor string) ([]byte, error) {
	for {
		p.docs.mu.Lock()
		e := p.docs.entry(aor)
		if e.hasDoc {
			doc := e.doc
			p.docs.mu.Unlock()
			return doc, nil
		}
		if wait := e.building; wait != nil {
			p.docs.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		gen, done := e.gen, make(chan struct{})
		e.building = done
		p.docs.mu.Unlock()

		doc, err := p.compose(ctx, aor)
		p.docs.mu.Lock()
		if e := p.docs.entry(aor); e.building == done {
			e.building = nil
			if err == nil && e.gen == gen {
				e.doc, e.hasDoc = doc, true
			}
		}
		p.docs.mu.Unlock()
		close(done)
		return doc, err
	}
}

// compose builds aor's document from the store.
func (p *Presence) compose(ctx context.Context, aor string) ([]byte, error) {
	entity := "sip:" + aor
	pubs, err := p.opts.Store.Publications(ctx, aor, p.opts.Now())
	if err != nil {
		return nil, err
	}
	docs := make([]*pidf.Document, 0, len(pubs))
	from := make([]*storage.Publication, 0, len(pubs))
	for i := range pubs {
		d, err := pidf.Parse(pubs[i].Body)
		if err != nil {
			// Checked when published; a document stored by an older version that no longer
			// parses is skipped rather than failing every watcher.
			p.log.Debug("stored publication skipped")
			continue
		}
		docs = append(docs, d)
		from = append(from, &pubs[i])
	}
	docs = p.dropStale(ctx, aor, docs, from)
	if len(docs) > 0 {
		return pidf.Compose(entity, docs...).Bytes(), nil
	}
	bindings, err := p.opts.Locator.Lookup(ctx, aor)
	if err != nil {
		return nil, err
	}
	return registrationDocument(entity, bindings), nil
}

// dropStale leaves out, and removes from the store, every publication that a newer one from
// the same source entirely restates: all its tuple ids again, and a person element if it had
// one. Such a publication is a duplicate its client lost track of — baresip 1.0.0 under load
// sends two initial PUBLISHes and keeps the ETag of one (fixtures quirk 11) — and composing
// it would undo the client's later changes: when the client removes the publication it
// knows, the forgotten one (still "open") would speak for it until it expires. docs and from
// are parallel, oldest first.
func (p *Presence) dropStale(ctx context.Context, aor string, docs []*pidf.Document, from []*storage.Publication) []*pidf.Document {
	if len(docs) < 2 {
		return docs
	}
	keep := docs[:0:0]
	for i, d := range docs {
		stale := false
		for j := i + 1; j < len(docs) && !stale; j++ {
			stale = from[i].Source != "" && from[i].Source == from[j].Source && restates(docs[j], d)
		}
		if !stale {
			keep = append(keep, d)
			continue
		}
		_, err := p.opts.Store.Publish(ctx, aor, storage.PublishOp{Now: p.opts.Now(), IfMatch: from[i].ETag, Remove: true})
		if err != nil && !errors.Is(err, storage.ErrETagMismatch) {
			p.log.Warn("stale publication not removed", zap.String(logging.KeyAOR, aor), zap.Error(err))
			continue
		}
		p.metrics.publications.WithLabelValues("superseded").Inc()
		p.log.Info("stale duplicate publication removed", zap.String(logging.KeyAOR, aor), zap.String("source", from[i].Source))
	}
	return keep
}

// restates reports whether newer carries every tuple id of older, and a person if older has
// one.
func restates(newer, older *pidf.Document) bool {
	ot := older.Tuples()
	if len(ot) == 0 {
		return false
	}
	ids := make(map[string]bool, len(ot))
	for _, t := range newer.Tuples() {
		ids[t.ID] = true
	}
	for _, t := range ot {
		if !ids[t.ID] {
			return false
		}
	}
	return len(older.Persons()) == 0 || len(newer.Persons()) > 0
}

// registrationDocument is presence derived from registration: a tuple per registered
// device, open, with the AOR as contact (device addresses are not the watchers' business);
// with no device one closed tuple.
func registrationDocument(entity string, bindings []storage.Binding) []byte {
	if len(bindings) == 0 {
		return pidf.Closed(entity).Bytes()
	}
	d := pidf.New(entity)
	for _, b := range bindings {
		sum := sha256.Sum256([]byte(b.Key))
		_ = d.AddTuple("r"+hex.EncodeToString(sum[:6]), "open", entity) // an id and "open": never pidf.ErrBadTuple
	}
	return d.Bytes()
}

// rules returns aor's authorization rules (cached until they change).
func (p *Presence) rules(ctx context.Context, aor string) (map[string]string, error) {
	p.docs.mu.Lock()
	e := p.docs.entry(aor)
	if e.hasRules {
		r := e.rules
		p.docs.mu.Unlock()
		return r, nil
	}
	gen := e.gen
	p.docs.mu.Unlock()
	r, err := p.opts.Store.Rules(ctx, aor)
	if err != nil {
		return nil, err
	}
	p.docs.mu.Lock()
	if e := p.docs.entry(aor); e.gen == gen {
		e.rules, e.hasRules = r, true
	}
	p.docs.mu.Unlock()
	return r, nil
}

// body returns the content type and body of sub's next NOTIFY: the composed document for an
// active presence subscription, the neutral closed document for a politely blocked watcher,
// nothing while pending (RFC 3856 §6.6.2), and the watcher list for presence.winfo.
func (p *Presence) body(ctx context.Context, sub *storage.Subscription, version uint32) (string, []byte, error) {
	if sub.Event == EventWinfo {
		b, err := p.watcherInfo(ctx, sub.AOR, version)
		return TypeWatcherInfo, b, err
	}
	if sub.State != storage.SubActive {
		return "", nil, nil
	}
	rule, err := p.decide(ctx, sub.AOR, sub.Watcher)
	if err != nil {
		return "", nil, err
	}
	if rule == storage.RulePoliteBlock {
		return TypePIDF, p.closedDocument(sub.AOR), nil
	}
	doc, err := p.document(ctx, sub.AOR)
	return TypePIDF, doc, err
}

// closedDocument returns the neutral closed document of aor that politely blocked watchers
// get; it names only the presentity, so it is built once and kept.
func (p *Presence) closedDocument(aor string) []byte {
	p.docs.mu.Lock()
	defer p.docs.mu.Unlock()
	e := p.docs.entry(aor)
	if e.closed == nil {
		e.closed = pidf.Closed("sip:" + aor).Bytes()
	}
	return e.closed
}
