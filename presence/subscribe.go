package presence

import (
	"context"
	"errors"
	"mime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// subscribe handles an initial SUBSCRIBE to a presentity of ours (RFC 6665 §4.2.1, RFC 3856
// §6): the event package (489), the presentity (404), Expires (423), Accept (406),
// authorization (403 for a blocked watcher, and winfo only for the presentity itself), then
// the dialog is stored, the 200 sent with our To tag, Contact and Expires, and the first
// NOTIFY follows at once (after the 200: JsSIP drops a NOTIFY that arrives before its
// dialog exists). Expires 0 is a fetch: 200, then one NOTIFY with the state and
// Subscription-State terminated.
func (p *Presence) subscribe(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	st := sipx.StateFrom(ctx)
	aor := sipx.AOR(&req.Recipient)
	event := eventPackage(req)
	pkg := p.packages[event]
	if event != EventPresence && event != EventWinfo && pkg == nil {
		return p.count("subscribe", "bad_event")(sipx.Respond(tx, req, 489, "",
			sip.NewHeader("Allow-Events", p.allowEvents)))
	}
	secs, ok, err := p.expiry(req)
	if err != nil {
		return sipx.Respond(tx, req, 400, "Malformed Expires")
	}
	if !ok {
		return sipx.Respond(tx, req, 423, "", sip.NewHeader("Min-Expires", strconv.Itoa(p.opts.MinExpires)))
	}
	docType := TypePIDF
	switch {
	case pkg != nil:
		docType = pkg.Type()
	case event == EventWinfo:
		docType = TypeWatcherInfo
	}
	if !accepts(req, docType) {
		return p.count("subscribe", "not_acceptable")(sipx.Respond(tx, req, 406, "", sip.NewHeader("Accept", docType)))
	}
	contact, ok := remoteTarget(req)
	if !ok {
		return sipx.Respond(tx, req, 400, "Missing or Malformed Contact")
	}
	from := req.From()
	watcher := sipx.AOR(&from.Address)
	if st.AuthUser != "" {
		watcher = st.AuthUser
	}
	if exists, err := p.exists(ctx, aor); err != nil {
		return sipx.RespondError(tx, req, err)
	} else if !exists {
		return p.count("subscribe", "not_found")(sipx.Respond(tx, req, 404, ""))
	}
	state, status, reason, err := p.authorize(ctx, pkg, &Subscribe{State: st, Request: req, AOR: aor, Watcher: watcher})
	if err != nil {
		return sipx.RespondError(tx, req, err)
	}
	if status != 0 {
		outcome := "forbidden"
		if event == EventPresence {
			outcome = "blocked"
		}
		return p.count("subscribe", outcome)(sipx.Respond(tx, req, status, reason))
	}
	group := sipx.SourceGroup(st.SourceIP())
	if secs > 0 && !p.sources.take(group, p.opts.MaxSubscriptionsPerSource) {
		p.refused(st, limitSubscriptionsPerSource, group)
		return p.count("subscribe", "limited")(sipx.Respond(tx, req, 503, "Too Many Subscriptions",
			sip.NewHeader("Retry-After", "60")))
	}
	now := p.opts.Now()
	sub := newSubscription(st, req, aor, event, watcher, docType, contact, state, secs, now)
	sub.Node, sub.NotifyCSeq = p.opts.NodeID, cseqBlock // this node's first reservation
	if secs > 0 {
		limited, err := p.keep(ctx, st, &sub, group)
		if err != nil {
			return sipx.RespondError(tx, req, err)
		}
		if limited {
			return p.count("subscribe", "limited")(sipx.Respond(tx, req, 403, "Too Many Watchers"))
		}
	}
	status, err = p.respondSubscribe(tx, req, &sub, secs)
	if status != 200 {
		p.notifier.release(sub.AOR, sub.ID)
		return status, err
	}
	p.metrics.requests.WithLabelValues("subscribe", "accepted_"+state).Inc()
	if secs == 0 {
		p.notifier.final(&sub, "timeout", now)
		return status, err
	}
	p.notifier.track(&sub, now)
	p.watchersChanged(&sub, now)
	return status, err
}

// authorize decides a new subscription: by its package, or for presence.winfo (only the
// presentity itself, RFC 3857 §5.1) and presence (the presentity's rules). It returns the
// subscription's state, or the status and reason that refuse it.
func (p *Presence) authorize(ctx context.Context, pkg Package, s *Subscribe) (state string, status int, reason string, err error) {
	event := eventPackage(s.Request)
	switch {
	case pkg != nil:
		d, err := pkg.Authorize(ctx, s)
		if err != nil || d.State != "" {
			return d.State, 0, "", err
		}
		if d.Status == 0 {
			d.Status = 403
		}
		return "", d.Status, d.Reason, nil
	case event == EventWinfo:
		if s.Watcher != s.AOR || !s.SelfProven() {
			return "", 403, "Only the presentity may watch its watchers", nil
		}
		return storage.SubActive, 0, "", nil
	}
	d, _, err := p.DecideAsPresence(ctx, s)
	if err != nil || d.State != "" {
		return d.State, 0, "", err
	}
	return "", d.Status, d.Reason, nil
}

// watchersChanged tells every node that sub, a subscription to aor, was created, ended or
// changed state: they forget that aor has no subscription, and for presence the
// presentity's presence.winfo subscriptions are notified.
func (p *Presence) watchersChanged(sub *storage.Subscription, now time.Time) {
	ev := storage.Event{Kind: storage.WatchersChanged, AOR: sub.AOR, At: now}
	if sub.Event != EventPresence {
		ev.Package = sub.Event
	}
	if p.opts.Bus != nil {
		p.opts.Bus.Publish(ev)
		return
	}
	p.onEvent(context.Background(), &ev)
}

// newSubscription is the dialog an initial SUBSCRIBE creates (RFC 6665 §4.1.2.1): our To tag
// as its ID, the watcher's identity and target, the route set (RFC 3261 §12.1.1).
func newSubscription(st *sipx.State, req *sip.Request, aor, event, watcher, docType, contact, state string, secs int, now time.Time) storage.Subscription {
	from := req.From()
	sub := storage.Subscription{
		ID:           newTag(),
		AOR:          aor,
		Event:        event,
		Watcher:      watcher,
		WatcherURI:   from.Address.String(),
		WatcherName:  sanitizeName(from.DisplayName),
		CallID:       req.CallID().Value(),
		FromTag:      tagOf(from.Params),
		Accept:       []string{docType},
		RouteSet:     sipx.AddressList(req, "Record-Route"), // the UAS route set, RFC 3261 §12.1.1
		RemoteTarget: contact,
		RemoteCSeq:   req.CSeq().SeqNo,
		Transport:    st.Transport,
		Source:       st.Source,
		State:        state,
		ExpiresAt:    seconds(now).Add(time.Duration(secs) * time.Second),
		CreatedAt:    seconds(now),
	}
	sub.Detach() // it outlives the request by hours
	return sub
}

// keep admits a new subscription against the watcher limits (limited: refused, 403) and
// stores it. The source's slot (group) is given back when it is refused or not stored.
func (p *Presence) keep(ctx context.Context, st *sipx.State, sub *storage.Subscription, group string) (limited bool, err error) {
	if sub.Event != EventWinfo {
		// Watchers per presentity and package, and per foreign domain: a flood of
		// subscriptions to one user, or from one other domain, cannot take every slot (issue
		// 15). A presentity's own winfo subscriptions are not watchers.
		if limit := p.notifier.admit(sub.AOR, sub.ID, sub.Event, p.foreignDomain(sub.Watcher), p.opts.MaxWatchers,
			p.opts.MaxWatchersPerDomain); limit != "" {
			p.sources.release(group)
			p.refused(st, limit, sub.AOR)
			return true, nil
		}
	} else {
		p.notifier.hold(sub.AOR, sub.ID)
	}
	st.HoldFlow(sub.ExpiresAt) // NOTIFYs go down this connection (the listener keeps it)
	if err := p.opts.Store.PutSubscription(ctx, *sub, 0); err != nil {
		p.notifier.release(sub.AOR, sub.ID)
		p.sources.release(group)
		return false, err
	}
	return false, nil
}

// resubscribe handles a SUBSCRIBE within one of our subscription dialogs: a refresh (200 and
// a NOTIFY with the full state, RFC 6665 §4.2.1.4) or, with Expires 0, the end of the
// subscription (200 and a final NOTIFY terminated). A dialog we do not hold gets 481; a CSeq
// not above the last one 500 (RFC 3261 §12.2.2).
func (p *Presence) resubscribe(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	to := req.To()
	aor := sipx.AOR(&to.Address)
	id := tagOf(to.Params)
	now := p.opts.Now()
	// The notifier's copy of a subscription this node holds saves a store read; the dialog's
	// identifiers never change, and the store still guards the CSeq order (PutSubscription)
	// and the removal (DeleteSubscription).
	sub, ok := p.notifier.snapshot(aor, id, now)
	if !ok {
		var err error
		sub, err = p.opts.Store.Subscription(ctx, aor, id, now)
		if errors.Is(err, storage.ErrNotFound) {
			return p.count("resubscribe", "no_dialog")(sipx.Respond(tx, req, 481, ""))
		}
		if err != nil {
			return sipx.RespondError(tx, req, err)
		}
	}
	if sub.CallID != req.CallID().Value() || sub.FromTag != tagOf(req.From().Params) {
		return p.count("resubscribe", "no_dialog")(sipx.Respond(tx, req, 481, ""))
	}
	// A subscription dialog this presence agent holds: rule (c) of docs/security.md.
	if st := sipx.StateFrom(ctx); st.Rule == sipx.RuleNone {
		st.Rule = sipx.RuleDialog
	}
	if ev := eventPackage(req); ev != sub.Event {
		return p.count("resubscribe", "bad_event")(sipx.Respond(tx, req, 489, "",
			sip.NewHeader("Allow-Events", p.allowEvents)))
	}
	cseq := req.CSeq().SeqNo
	if cseq <= sub.RemoteCSeq {
		return sipx.Respond(tx, req, 500, "CSeq Out of Order")
	}
	secs, ok, err := p.expiry(req)
	if err != nil {
		return sipx.Respond(tx, req, 400, "Malformed Expires")
	}
	if !ok {
		return sipx.Respond(tx, req, 423, "", sip.NewHeader("Min-Expires", strconv.Itoa(p.opts.MinExpires)))
	}
	if secs == 0 {
		old, err := p.opts.Store.DeleteSubscription(ctx, aor, id, now)
		if err == nil && !p.owns(old.Node) {
			p.moved(&old) // its owner forgets it; the final NOTIFY goes from here
		}
		if errors.Is(err, storage.ErrNotFound) {
			return sipx.Respond(tx, req, 481, "")
		}
		if err != nil {
			return sipx.RespondError(tx, req, err)
		}
		old.RemoteCSeq = cseq
		status, err := p.respondSubscribe(tx, req, &old, 0)
		p.metrics.requests.WithLabelValues("resubscribe", "unsubscribed").Inc()
		p.ended(&old, "timeout", true)
		if old.Event == EventPresence {
			p.watchersChanged(&old, now)
		}
		return status, err
	}
	sub.RemoteCSeq = cseq
	sub.ExpiresAt = seconds(now).Add(time.Duration(secs) * time.Second)
	if c, ok := remoteTarget(req); ok && c != sub.RemoteTarget {
		sub.RemoteTarget = strings.Clone(c) // a target refresh (RFC 6665 §4.1.2.1), kept for hours
	}
	// The watcher's latest flow: a client that reconnected (new TCP connection, new NAT
	// binding) refreshes its subscription over the new one (RFC 5626 §4.2.1).
	if st := sipx.StateFrom(ctx); st.Source != "" && len(sub.RouteSet) == 0 {
		sub.Transport, sub.Source = st.Transport, st.Source
		st.HoldFlow(sub.ExpiresAt)
	}
	// The node a watcher refreshes through owns its subscription from now on (for a stream
	// transport that is the node holding its connection).
	from := sub.Node
	sub.Node = p.opts.NodeID
	if err := p.opts.Store.PutSubscription(ctx, sub, cseq); errors.Is(err, storage.ErrStale) {
		return sipx.Respond(tx, req, 500, "CSeq Out of Order")
	} else if err != nil {
		return sipx.RespondError(tx, req, err)
	}
	status, err := p.respondSubscribe(tx, req, &sub, secs)
	if status == 200 {
		p.metrics.requests.WithLabelValues("resubscribe", "refreshed").Inc()
		if !p.owns(from) {
			p.moved(&storage.Subscription{AOR: aor, ID: id, Node: from})
		}
		p.notifier.refresh(&sub, !p.owns(from), now)
	}
	return status, err
}

// respondSubscribe sends the 200 of a SUBSCRIBE: our tag in To (the subscription's ID),
// Contact (JsSIP ends a subscription whose 2xx has none) and the granted Expires.
func (p *Presence) respondSubscribe(tx sip.ServerTransaction, req *sip.Request, sub *storage.Subscription, secs int) (int, error) {
	res := sipx.NewResponse(req, 200, "", sip.NewHeader("Expires", strconv.Itoa(secs)))
	if to := res.To(); to != nil {
		to.Params.Add("tag", sub.ID)
	}
	res.AppendHeader(sip.NewHeader("Contact", "<"+p.opts.Contact(sub.Transport, sub.Source)+">"))
	return sipx.RespondWith(tx, res)
}

// ended forgets a subscription that was removed from the store (un-SUBSCRIBE, expiry,
// a failed NOTIFY, a rule) and sends its final NOTIFY when wanted.
func (p *Presence) ended(sub *storage.Subscription, reason string, notify bool) {
	p.sources.release(sipx.SourceGroup(hostOf(sub.Source)))
	p.metrics.ended.WithLabelValues(reason).Inc()
	if notify {
		p.notifier.final(sub, reason, p.opts.Now())
	} else {
		p.notifier.forget(sub.AOR, sub.ID)
	}
}

// exists reports whether aor is a presentity someone may subscribe to: a registered user,
// one with a live publication, or a known one (credentials, or a recent registration). The
// cheapest answers are asked first: bindings are the registrar's batched, cached read.
func (p *Presence) exists(ctx context.Context, aor string) (bool, error) {
	if p.opts.Known == nil || p.docs.known(aor) {
		return true, nil
	}
	ok, err := p.lookupExists(ctx, aor)
	if ok {
		p.docs.markKnown(aor)
	}
	return ok, err
}

func (p *Presence) lookupExists(ctx context.Context, aor string) (bool, error) {
	if bs, err := p.opts.Locator.Lookup(ctx, aor); err != nil || len(bs) > 0 {
		return len(bs) > 0, err
	}
	if pubs, err := p.opts.Store.Publications(ctx, aor, p.opts.Now()); err != nil || len(pubs) > 0 {
		return len(pubs) > 0, err
	}
	return p.opts.Known(ctx, aor)
}

// selfProven reports whether the sender of a request stands for its From: it authenticated
// (RuleUser), is a trusted peer, or auth.mode is off (RuleOpen).
func (p *Presence) selfProven(_ context.Context, st *sipx.State) bool {
	return (&Subscribe{State: st}).SelfProven()
}

// accepts reports whether req's Accept headers allow docType: no Accept means the package's
// default type (RFC 6665 §4.2.1, RFC 3856 §6.7 — neither baresip nor linphone sends one).
func accepts(req *sip.Request, docType string) bool {
	types := sipx.Tokens(req, "Accept")
	if len(types) == 0 {
		return true
	}
	major, _, _ := strings.Cut(docType, "/")
	for _, t := range types {
		mt, _, err := mime.ParseMediaType(t)
		if err != nil {
			continue
		}
		if mt == docType || mt == "*/*" || mt == major+"/*" {
			return true
		}
	}
	return false
}

// remoteTarget returns the URI of req's Contact (one, a SIP URI).
func remoteTarget(req *sip.Request) (string, bool) {
	c := req.Contact()
	if c == nil || !sipx.IsSIPScheme(c.Address.Scheme) || !sipx.ValidHost(c.Address.Host) {
		return "", false
	}
	s := c.Address.String()
	return s, sipx.Sanitize(s)
}

func tagOf(params sip.HeaderParams) string {
	t, _ := params.Get("tag")
	return t
}

// sanitizeName turns a display name as sipgo parsed it into its text (quoted-pairs resolved),
// kept only when fit for an XML attribute and, quoted again (sipx.QuoteDisplayName), a header.
func sanitizeName(s string) string {
	s = sipx.DisplayNameText(s)
	if !sipx.Sanitize(s) || len(s) > 128 {
		return ""
	}
	return s
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

// Limit names of the presence agent in simpled_limited_total{limit}.
const (
	limitSubscriptionsPerSource = "subscriptions_per_source"
	limitWatchers               = "watchers"
	limitWatchersPerDomain      = "watchers_per_domain"
	limitUnansweredNotify       = "unanswered_notify"
)

// refused counts a refusal by limit and logs it at most once a minute per limit and key (a
// source group, a presentity); the state's logger names the source.
func (p *Presence) refused(st *sipx.State, limit, key string) {
	p.opts.Limited.Inc(limit)
	if p.logGate.Allow(limit+" "+key, time.Now()) {
		st.Logger().Warn("presence limit reached (logged once a minute)",
			zap.String(logging.KeyReason, limit), zap.String("limited", key))
	}
}

// foreignDomain is the domain of watcher (an AOR) when it is not one of ours, else "".
func (p *Presence) foreignDomain(watcher string) string {
	_, d := splitAOR(watcher)
	d = strings.ToLower(d)
	if p.domains[d] || p.opts.IsOurs(d) {
		return ""
	}
	return d
}

// sourceCounts counts the live subscriptions this node accepted per source group (an IPv4
// address, an IPv6 /64: sipx.SourceGroup), so one source cannot fill the store with
// subscriptions.
type sourceCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *sourceCounts) take(ip string, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ip] >= limit {
		return false
	}
	c.n[ip]++
	return true
}

func (c *sourceCounts) release(ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ip] <= 1 {
		delete(c.n, ip)
		return
	}
	c.n[ip]--
}
