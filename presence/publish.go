package presence

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/pidf"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// publish handles PUBLISH for a presentity of ours (RFC 3903 §6, the steps in order):
// Event (489), the publisher's right to publish (403), Expires (423, 400), SIP-If-Match
// (412), the body (415, 413, 400), then the store, and 200 with SIP-ETag and Expires.
//
// A publication is replaced by its entity tag, never merged with itself by tuple id: linphone
// draws a new tuple id for every PUBLISH of the same publication.
func (p *Presence) publish(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	st := sipx.StateFrom(ctx)
	aor := sipx.AOR(&req.Recipient)
	event := eventPackage(req)
	pkg, _ := p.packages[event].(Publisher)
	if event != EventPresence && pkg == nil {
		return p.count("publish", "bad_event")(sipx.Respond(tx, req, 489, "",
			sip.NewHeader("Allow-Events", p.publishable())))
	}
	if pkg != nil {
		if !pkg.MayPublish(ctx, st, req, aor) {
			return p.count("publish", "forbidden")(sipx.Respond(tx, req, 403, "Not Allowed to Publish "+event))
		}
	} else if ok, err := p.mayPublish(ctx, st, req, aor); err != nil {
		return sipx.RespondError(tx, req, err)
	} else if !ok {
		return p.count("publish", "forbidden")(sipx.Respond(tx, req, 403, "Only the presentity may publish"))
	}
	secs, ok, err := p.expiry(req)
	if err != nil {
		return sipx.Respond(tx, req, 400, "Malformed Expires")
	}
	if !ok {
		return sipx.Respond(tx, req, 423, "", sip.NewHeader("Min-Expires", strconv.Itoa(p.opts.MinExpires)))
	}
	ifMatch := ""
	if hs := sipx.Headers(req, "SIP-If-Match"); len(hs) > 1 {
		return sipx.Respond(tx, req, 400, "More than one SIP-If-Match")
	} else if len(hs) == 1 {
		ifMatch = strings.TrimSpace(hs[0].Value())
		if ifMatch == "" || !sipx.Sanitize(ifMatch) {
			return sipx.Respond(tx, req, 400, "Malformed SIP-If-Match")
		}
	}
	body := req.Body()
	now := p.opts.Now()
	op := storage.PublishOp{
		Now:       seconds(now),
		IfMatch:   ifMatch,
		NewETag:   newETag(),
		ExpiresAt: seconds(now).Add(time.Duration(secs) * time.Second),
		Source:    st.Transport + ":" + st.Source,
		// Each initial PUBLISH adds a publication that lives until it expires: bounded per
		// presentity, or one client could fill the store.
		MaxPublications: maxPublications,
	}
	kind := "initial"
	switch {
	case secs == 0:
		if ifMatch == "" {
			return sipx.Respond(tx, req, 400, "Expires 0 without SIP-If-Match")
		}
		op.Remove, kind = true, "remove"
	case len(body) == 0:
		if ifMatch == "" {
			return sipx.Respond(tx, req, 400, "Initial PUBLISH without body")
		}
		kind = "refresh"
	default:
		if ifMatch != "" {
			kind = "modify"
		}
		if status, reason, hdrs := p.checkPublished(ctx, pkg, req, body); status != 0 {
			st.Logger().Info("published document refused", zap.String("event", event), zap.Int("status", status), zap.String("reason", reason))
			return p.count("publish", "invalid")(sipx.Respond(tx, req, status, reason, hdrs...))
		}
		op.ContentType, op.Body = TypePIDF, body
		if pkg != nil {
			op.ContentType = pkg.Type()
		}
	}
	if op.Remove || kind == "refresh" {
		// A removal or refresh may carry a body (it is ignored, RFC 3903 §6 step 5 asks for
		// none on a refresh): keep the stored document.
		op.Body, op.ContentType = nil, ""
	}
	pub, err := p.opts.Store.Publish(ctx, storage.PublicationKey(event, aor), op)
	if errors.Is(err, storage.ErrETagMismatch) {
		return p.count("publish", "unknown_etag")(sipx.Respond(tx, req, 412, ""))
	}
	if errors.Is(err, storage.ErrTooManyPublications) {
		st.Logger().Warn("publications per presentity limit reached", zap.Int("limit", maxPublications))
		return p.count("publish", "limited")(sipx.Respond(tx, req, 403, "Too Many Publications"))
	}
	if err != nil {
		return sipx.RespondError(tx, req, err)
	}
	p.metrics.publications.WithLabelValues(kind).Inc()
	if op.Remove {
		status, err := sipx.Respond(tx, req, 200, "", sip.NewHeader("SIP-ETag", ifMatch),
			sip.NewHeader("Expires", "0"))
		p.published(aor, event, now)
		return status, err
	}
	status, err := sipx.Respond(tx, req, 200, "", sip.NewHeader("SIP-ETag", pub.ETag),
		sip.NewHeader("Expires", strconv.Itoa(secs)))
	if kind != "refresh" {
		p.published(aor, event, now)
	}
	return status, err
}

// published announces that aor's publications in event changed.
func (p *Presence) published(aor, event string, now time.Time) {
	if event == EventPresence {
		p.changed(aor, storage.PresenceChanged, now)
		return
	}
	p.Changed(aor, event)
}

// publishable lists the event packages that take PUBLISH (Allow-Events of a 489).
func (p *Presence) publishable() string {
	evs := []string{EventPresence}
	for _, ev := range p.Events() {
		if _, ok := p.packages[ev].(Publisher); ok {
			evs = append(evs, ev)
		}
	}
	return strings.Join(evs, ", ")
}

// checkPublished validates a published document: a PIDF one, or pkg's (its size first).
func (p *Presence) checkPublished(ctx context.Context, pkg Publisher, req *sip.Request, body []byte) (int, string, []sip.Header) {
	if pkg == nil {
		return p.checkDocument(sipx.StateFrom(ctx).Logger(), req, body)
	}
	if len(body) > p.opts.MaxBodySize {
		return 413, "", nil
	}
	return pkg.Check(ctx, req, body)
}

// maxPublications bounds the live publications of one presentity: a few devices, each
// perhaps with a stale duplicate, fit many times over.
const maxPublications = 32

// mayPublish reports whether the sender of req may publish aor's state: only aor itself,
// authenticated (sipx.RuleUser); a trusted peer or, with auth.mode off, a request whose From
// names aor (a foreign or mistaken publisher still cannot overwrite someone's presence).
func (p *Presence) mayPublish(ctx context.Context, st *sipx.State, req *sip.Request, aor string) (bool, error) {
	if st.AuthUser != "" {
		return st.AuthUser == aor, nil
	}
	from := req.From()
	if from == nil || sipx.AOR(&from.Address) != aor {
		return false, nil
	}
	return p.selfProven(ctx, st), nil
}

// checkDocument validates a PUBLISH body: its type (415 with Accept), size (413) and PIDF
// (400 naming the fault, logged).
func (p *Presence) checkDocument(log *zap.Logger, req *sip.Request, body []byte) (int, string, []sip.Header) {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !strings.EqualFold(mt, TypePIDF) {
		return 415, "", []sip.Header{sip.NewHeader("Accept", TypePIDF)}
	}
	if h := sipx.Header(req, "Content-Encoding"); h != nil && strings.TrimSpace(h.Value()) != "" &&
		!strings.EqualFold(strings.TrimSpace(h.Value()), "identity") {
		return 415, "Unsupported Content-Encoding", []sip.Header{sip.NewHeader("Accept-Encoding", "identity")}
	}
	if len(body) > p.opts.MaxBodySize {
		return 413, "", nil
	}
	if _, err := pidf.Parse(body); err != nil {
		log.Info("invalid PIDF refused", zap.Error(err))
		return 400, "Invalid PIDF: " + sipx.ReasonText(err.Error()), nil
	}
	return 0, "", nil
}

// newETag draws an entity tag: the time in nanoseconds as 16 hex digits, then 72 random
// bits. Stores keep UpdatedAt in whole seconds and order publications of the same second by
// entity tag, so the time prefix makes that order the order of the PUBLISHes: of two
// publications a second apart or less (baresip's duplicate initial PUBLISH), the later one
// still wins composition.
func newETag() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%016x", uint64(time.Now().UnixNano())) + base64.RawURLEncoding.EncodeToString(b[:])
}

// newTag draws a dialog tag for a subscription (its ID): 64 random bits.
func newTag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// count returns a function that counts a request's outcome and passes its result through.
func (p *Presence) count(method, outcome string) func(int, error) (int, error) {
	return func(status int, err error) (int, error) {
		p.metrics.requests.WithLabelValues(method, outcome).Inc()
		return status, err
	}
}
