package auth

import (
	"context"
	"strings"

	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
)

// Mode says whether claims of a local identity must be proven (auth.mode).
type Mode string

const (
	// ModeRequired: every request that claims a local identity proves it with digest
	// authentication; a user without credentials gets 403. What the store holds never turns
	// it off.
	ModeRequired Mode = "required"
	// ModeOff: claims of a local identity are taken at their word (RuleOpen). Only for test
	// servers on loopback; config refuses it on a public address unless set explicitly.
	ModeOff Mode = "off"
)

// serve is the stage's ServeSIP: it decides which rule of the trust model accepts req, in this
// order (docs/security.md):
//
//  1. CANCEL passes: it only ends a transaction of the same client, which the proxy matches
//     (RFC 3261 §16.10); a CANCEL is never challenged (§22.1).
//  2. REGISTER for a local AOR: digest authentication (401), rule (a) — even from a trusted
//     peer, which may relay but not bind anybody's phone. Mode off: RuleOpen.
//  3. A trusted peer (b): a configured address, a TLS certificate naming one, or another node
//     of this deployment proving itself in the Route it wrote.
//  4. A request with a To tag (c): a dialog token of ours proves the dialog (RuleDialog);
//     else no rule accepts it here — the presence agent may still find it is one of its
//     subscriptions, and everyone else answers 481. Credentials in it are not checked.
//  5. A From that claims a local identity — one of our domains, with or without a trailing
//     dot, or one of our addresses: digest authentication (407), rule (a). Mode off: RuleOpen.
//  6. A foreign From to a local user: inbound federation (d).
//  7. Anything else passes with RuleNone: the proxy refuses to relay it (403).
func (a *Auth) serve(ctx context.Context, next sipx.Handler, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	st := sipx.StateFrom(ctx)
	if req.Method == sip.CANCEL {
		return sipx.Next(ctx, next, tx, req)
	}
	if req.Method == sip.REGISTER {
		to := req.To()
		if to == nil { // the sanity stage answers this first; never let it through unchecked
			return sipx.Respond(tx, req, 400, missingOrMalformed(req, "To"))
		}
		if domain, ours := a.Canonical(to.Address.Host); ours {
			if a.mode == ModeOff {
				st.Rule = sipx.RuleOpen
				return sipx.Next(ctx, next, tx, req)
			}
			return a.authenticate(ctx, next, tx, req, registrarKind, &to.Address, domain)
		}
		if a.trusted(st, req) {
			st.Rule = sipx.RulePeer
		}
		return sipx.Next(ctx, next, tx, req)
	}
	if a.trusted(st, req) {
		st.Rule = sipx.RulePeer
		return sipx.Next(ctx, next, tx, req)
	}
	from := req.From()
	if from == nil {
		return sipx.Respond(tx, req, 400, missingOrMalformed(req, "From"))
	}
	domain, local := a.Canonical(from.Address.Host)
	if to := req.To(); to != nil && to.Params.Has("tag") {
		if proof, ok := a.seals.ProveDialog(req); ok {
			st.Rule, st.Dialog = sipx.RuleDialog, proof
			a.removeCredentials(req, proxyKind.authz)
			return sipx.Next(ctx, next, tx, req)
		}
		// Credentials a client re-sends in a dialog (linphone does, with the uri of the
		// request that created it) prove nothing about this one: they go no further, and no
		// rule accepts the request here. The presence agent may find it is one of its
		// subscriptions; everyone else answers 481.
		a.removeCredentials(req, proxyKind.authz)
		return sipx.Next(ctx, next, tx, req)
	}
	if local {
		if a.mode == ModeOff {
			st.Rule = sipx.RuleOpen
			return sipx.Next(ctx, next, tx, req)
		}
		return a.authenticate(ctx, next, tx, req, proxyKind, &from.Address, domain)
	}
	if _, ours := a.Canonical(req.Recipient.Host); ours && req.Recipient.User != "" {
		st.Rule = sipx.RuleFederation
	}
	return sipx.Next(ctx, next, tx, req)
}

// Canonical returns the local domain host stands for, and whether it is ours: one of our
// domains (any case, with or without the trailing dot of a fully qualified name), or one of our
// addresses, which stands for the first domain. A look-alike of a local identity is local.
func (a *Auth) Canonical(host string) (string, bool) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if a.domains[h] {
		return h, true
	}
	if a.isOurs != nil && host != "" && a.isOurs(h) {
		return a.defaultDomain, a.defaultDomain != ""
	}
	return "", false
}

// trusted reports whether req comes from a trusted peer: a configured address or certificate
// name, or another node of this deployment that proved, in the Route towards us it wrote,
// that it accepted this very request.
func (a *Auth) trusted(st *sipx.State, req *sip.Request) bool {
	if a.trustedPeer != nil && a.trustedPeer(st) {
		return true
	}
	for _, h := range sipx.Headers(req, "Route") {
		r, ok := h.(*sip.RouteHeader)
		if !ok {
			continue
		}
		proof, ok := r.Address.UriParams.Get(sipx.NodeProofParam)
		if !ok {
			continue
		}
		callID, cseq, from := req.CallID(), req.CSeq(), req.From()
		if callID == nil || cseq == nil || from == nil {
			return false
		}
		tag, _ := from.Params.Get("tag")
		return a.seals.CheckNodeProof(proof, callID.Value(), cseq.SeqNo, tag, a.now())
	}
	return false
}
