package offline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
)

// ErrBadMessage means Send was given something that cannot become a MESSAGE (the error says what).
var ErrBadMessage = errors.New("offline: bad message")

// Send sends a MESSAGE that simpled originates (admin API, bots) from `from` (a SIP URI; ""
// means sip:system@<first domain>) to the local user `to` ("user@domain" or a SIP URI), the
// way any MESSAGE to a local user goes: checked as the proxy checks what it relays, then to
// every registered device, or into the store.
// It returns the final SIP status: 2xx delivered, 202 stored, 404 unknown user, 415 type not
// allowed, 413 too big, 480 unreachable or mailbox full.
func (o *Offline) Send(ctx context.Context, from, to, contentType string, body []byte) (int, error) {
	if from == "" {
		from = "sip:system@" + o.opts.Domains[0]
	}
	var fromURI, ruri sip.Uri
	if err := sip.ParseUri(from, &fromURI); err != nil || !sipx.IsSIPScheme(fromURI.Scheme) || !sipx.Sanitize(from) {
		return 0, fmt.Errorf("%w: from %q is not a SIP URI", ErrBadMessage, from)
	}
	if !strings.Contains(to, ":") {
		to = "sip:" + to
	}
	if err := sip.ParseUri(to, &ruri); err != nil || ruri.User == "" || !sipx.Sanitize(to) {
		return 0, fmt.Errorf("%w: to %q is not user@domain", ErrBadMessage, to)
	}
	domain := strings.ToLower(ruri.Host)
	if !o.domains[domain] {
		return 0, fmt.Errorf("%w: %s is not a local domain", ErrBadMessage, domain)
	}
	if contentType == "" || !sipx.Sanitize(contentType) {
		return 0, fmt.Errorf("%w: content type %q", ErrBadMessage, contentType)
	}
	aor := ruri.User + "@" + domain
	req := sip.NewRequest(sip.MESSAGE, sip.Uri{Scheme: "sip", User: ruri.User, Host: domain})
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	fromHdr := &sip.FromHeader{Address: fromURI, Params: sip.HeaderParams{{K: "tag", V: hex.EncodeToString(rnd[:4])}}}
	toHdr := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: ruri.User, Host: domain}}
	callID := sip.CallIDHeader(hex.EncodeToString(rnd[4:]) + "@simpled")
	mf := sip.MaxForwardsHeader(70)
	ct := sip.ContentTypeHeader(contentType)
	req.AppendHeader(fromHdr)
	req.AppendHeader(toHdr)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.MESSAGE})
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("Date", o.opts.Now().UTC().Format(http.TimeFormat)))
	req.AppendHeader(&ct)
	req.SetBody(body)
	if len(body) > o.opts.MaxBodySize {
		return 413, nil
	}
	// simpled's own message: a CPIM body in it may only name the From it is sent as.
	if status, _, _ := o.rules.Check(&sipx.State{Rule: sipx.RuleOpen}, req); status != 0 {
		return status, nil
	}

	devices, err := o.sender.Reach(ctx, aor)
	if err != nil {
		return 0, err
	}
	registered := devices.Bindings > 0
	if registered {
		status := o.sender.Send(ctx, req, devices)
		if status >= 200 && status < 300 || !unreachable(status) {
			return status, nil
		}
	} else if known, err := o.Known(ctx, aor); err != nil {
		return 0, err
	} else if !known {
		return 404, nil
	}
	// simpled's own message: a local sender, whatever its From.
	code, _, err := o.keep(ctx, req, aor, sender{id: o.rules.FromAOR(req)}, "", registered, o.log)
	return code, err
}

// unreachable reports whether a status means "no device got it": 408 (timeout), 480
// (unavailable, or transport failure), 503.
func unreachable(status int) bool { return status == 408 || status == 480 || status == 503 }
