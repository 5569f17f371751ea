package proxy

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

// ErrBadMessage: Send was given something that cannot become a MESSAGE (the error says what).
var ErrBadMessage = errors.New("proxy: bad message")

// Send sends a MESSAGE that simpled originates (admin API, bots) from `from` (a SIP URI; ""
// means sip:system@<first domain>) to the local user `to` ("user@domain" or a SIP URI), the
// way any MESSAGE to a local user goes: to every registered device, or into the offline store.
// It returns the final SIP status: 2xx delivered, 202 stored, 404 unknown user, 415 type not
// allowed, 413 too big, 480 unreachable or mailbox full.
func (p *Proxy) Send(ctx context.Context, from, to, contentType string, body []byte) (int, error) {
	if from == "" {
		from = "sip:system@" + p.defaultDom
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
	if !p.domains[domain] {
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
	req.AppendHeader(sip.NewHeader("Date", p.opts.Now().UTC().Format(http.TimeFormat)))
	req.AppendHeader(&ct)
	req.SetBody(body)
	if len(body) > p.opts.MaxBodySize {
		return 413, nil
	}
	// simpled's own message: a CPIM body in it may only name the From it is sent as.
	if status, _, _ := p.checkMessage(&sipx.State{Rule: sipx.RuleOpen}, req); status != 0 {
		return status, nil
	}

	bindings, err := p.opts.Locator.Lookup(ctx, aor)
	if err != nil {
		return 0, err
	}
	if len(bindings) > 0 {
		status := p.request(ctx, req, p.targets(ctx, bindings))
		if status >= 200 && status < 300 || p.offline == nil || !unreachable([]int{status}) {
			return status, nil
		}
	} else if known, err := p.known(ctx, aor); err != nil {
		return 0, err
	} else if !known {
		return 404, nil
	}
	if p.offline == nil {
		return 480, nil
	}
	// simpled's own message: a local sender, whatever its From.
	code, _, err := p.offline.keep(ctx, req, aor, sender{id: p.fromAOR(req)}, "", len(bindings) > 0, p.log)
	return code, err
}
