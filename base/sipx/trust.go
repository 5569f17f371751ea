package sipx

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Rule is why simpled accepted a request: the trust model of docs/security.md. The identity
// stage (auth) sets exactly one on every request it lets through; the later stages
// read it and never decide trust themselves. The zero value, RuleNone, means no rule has
// accepted the request: it may only be answered, never relayed, stored or delivered.
type Rule uint8

const (
	// RuleNone: no rule accepted the request (yet).
	RuleNone Rule = iota
	// RuleUser: a local user proved its identity with digest authentication (State.AuthUser).
	RuleUser
	// RulePeer: a trusted peer sent it: a configured address, a TLS client certificate
	// naming a configured peer, or another node of this deployment (NodeProof).
	RulePeer
	// RuleDialog: an in-dialog request of a dialog simpled record-routed, proven by the
	// token in our Record-Route (State.Dialog), or of a subscription simpled holds.
	RuleDialog
	// RuleFederation: a request from a foreign domain to a local user (inbound federation).
	RuleFederation
	// RuleOpen: auth.mode is off and the request claims a local identity it did not prove.
	RuleOpen
)

var ruleNames = [...]string{"none", "user", "peer", "dialog", "federation", "open"}

// String names the rule as docs/security.md and the logs do.
func (r Rule) String() string {
	if int(r) < len(ruleNames) {
		return ruleNames[r]
	}
	return "rule(" + strconv.Itoa(int(r)) + ")"
}

// MayRelay reports whether a request accepted under r may leave simpled for a host that is not
// one of ours outside a dialog: only authenticated users and trusted peers may, so simpled is
// never an open relay.
func (r Rule) MayRelay() bool { return r == RuleUser || r == RulePeer }

// Direction is which way an in-dialog request travels relative to the request that created the
// dialog: Forward from the dialog's caller to its callee, Backward from the callee.
type Direction uint8

const (
	Forward Direction = iota + 1
	Backward
)

// DialogProof is what the identity stage learned from the token in one of our Record-Routes:
// the dialog it names, and which way this request travels. The proxy checks, once it knows
// the next hop, that the request goes to the dialog's other endpoint (Seals.Hop).
type DialogProof struct {
	Token     string // the rrParam value as received
	Direction Direction
	CallerTag string
}

// Seals makes and checks the MACs simpled writes into what it hands out and expects back: the
// dialog tokens of its Record-Routes and the proofs one node gives another. Nodes that share a
// secret (auth.nonce_secret) accept each other's. Safe for concurrent use.
type Seals struct {
	key []byte
}

// NewSeals derives the keys from secret.
func NewSeals(secret []byte) *Seals {
	h := sha256.Sum256(append([]byte("simpled dialog token\x00"), secret...))
	return &Seals{key: h[:]}
}

// macLen is the bytes of each MAC in a token: 64 bits, hex-encoded (tokens survive clients
// that lower-case URIs, and a forgery must be tried online, one request each).
const macLen = 8

func (k *Seals) mac(parts ...string) string {
	m := hmac.New(sha256.New, k.key)
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		m.Write(n[:])
		m.Write([]byte(p))
	}
	return hex.EncodeToString(m.Sum(nil)[:macLen])
}

// Dialog is the dialog a Record-Route token is issued for, as the dialog-creating request
// shows it: its Call-ID, the caller's From tag and the AORs of both ends (From and To URIs as
// user@host, host in lower case).
type Dialog struct {
	CallID    string
	CallerTag string
	CallerAOR string
	CalleeAOR string
}

// Issue returns the token of one Record-Route for d: three MACs joined by dots. The first binds
// the dialog (Call-ID, caller tag, both AORs); the second its forward next hop (callee, where
// this branch goes); the third its backward next hop (caller) and — when the caller was not
// vouched for (source non-empty) — the address backward requests must come from, which is the
// callee's. So a token shown to one end cannot send a request anywhere but to the other end,
// and only the callee may send towards the address the caller chose.
func (k *Seals) Issue(d Dialog, callee, caller, source string) string {
	return k.mac("d", d.CallID, d.CallerTag, d.CallerAOR, d.CalleeAOR) + "." +
		k.mac("f", d.CallID, d.CallerTag, callee) + "." +
		k.mac("b", d.CallID, d.CallerTag, caller, source)
}

// Verify checks token against an in-dialog request's Call-ID and its From and To (tag and
// AOR): the request belongs to the dialog when one orientation matches, which also tells its
// direction (From is the caller: Forward).
func (k *Seals) Verify(token, callID, fromTag, fromAOR, toTag, toAOR string) (DialogProof, bool) {
	base, _, ok := strings.Cut(token, ".")
	if !ok || len(base) != 2*macLen {
		return DialogProof{}, false
	}
	if hmac.Equal([]byte(base), []byte(k.mac("d", callID, fromTag, fromAOR, toAOR))) {
		return DialogProof{Token: token, Direction: Forward, CallerTag: fromTag}, true
	}
	if hmac.Equal([]byte(base), []byte(k.mac("d", callID, toTag, toAOR, fromAOR))) {
		return DialogProof{Token: token, Direction: Backward, CallerTag: toTag}, true
	}
	return DialogProof{}, false
}

// Hop reports whether a request of the dialog p proves, sent from source, may go to hop (the
// Hop names of the next hop): forward only to the callee the token was issued for; backward
// only to the caller, and — unless the caller was vouched for — only from the callee.
func (k *Seals) Hop(p DialogProof, callID, hop, source, sourceIP string) bool {
	parts := strings.Split(p.Token, ".")
	if len(parts) != 3 {
		return false
	}
	switch p.Direction {
	case Forward:
		return hmac.Equal([]byte(parts[1]), []byte(k.mac("f", callID, p.CallerTag, hop)))
	case Backward:
		for _, src := range [...]string{"", source, sourceIP} {
			if hmac.Equal([]byte(parts[2]), []byte(k.mac("b", callID, p.CallerTag, hop, src))) {
				return true
			}
		}
	}
	return false
}

// HopURI names a next hop reached through a URI (a Route or a Request-URI): its host in lower
// case and its port, 5060 (5061 for sips) when absent.
func HopURI(scheme, host string, port int) string {
	if port == 0 {
		port = 5060
		if strings.EqualFold(scheme, "sips") {
			port = 5061
		}
	}
	return "u/" + strings.ToLower(strings.TrimSuffix(host, ".")) + ":" + strconv.Itoa(port)
}

// HopFlow names a next hop that is a client's flow (its transport and address as seen here).
func HopFlow(transport, remote string) string {
	return "f/" + strings.ToLower(transport) + "/" + remote
}

// NodeProofLifetime is how long a node proof is accepted. A node proof (NodeProof) is the proof
// one node of a deployment gives another that it accepted a request it forwards there (a Route
// naming a flow the other node holds): a time and a MAC over the request's Call-ID, CSeq and
// From tag. The receiving node accepts it as a trusted peer's for this long.
const NodeProofLifetime = 32 * time.Second

// NodeProof returns the proof for a request at now.
func (k *Seals) NodeProof(callID string, cseq uint32, fromTag string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 36)
	return ts + "." + k.mac("n", ts, callID, strconv.FormatUint(uint64(cseq), 10), fromTag)
}

// CheckNodeProof reports whether proof was made by a node of this deployment for this request
// within NodeProofLifetime of now.
func (k *Seals) CheckNodeProof(proof, callID string, cseq uint32, fromTag string, now time.Time) bool {
	ts, m, ok := strings.Cut(proof, ".")
	if !ok {
		return false
	}
	sec, err := strconv.ParseInt(ts, 36, 64)
	if err != nil {
		return false
	}
	at := time.Unix(sec, 0)
	if now.Sub(at) > NodeProofLifetime || at.Sub(now) > 5*time.Second {
		return false
	}
	return hmac.Equal([]byte(m), []byte(k.mac("n", ts, callID, strconv.FormatUint(uint64(cseq), 10), fromTag)))
}

// DialogParam carries the dialog token in the URIs of simpled's Record-Routes.
const DialogParam = "sd"

// NodeProofParam carries, in the Route one node writes towards another (a flow the other node
// holds), the proof that it accepted the request (Seals.NodeProof).
const NodeProofParam = "np"

// ProveDialog looks for a dialog token of this deployment in req's Route headers (or in its
// Request-URI, where a strict-routing peer put our Record-Route) and checks it against req's
// Call-ID, From and To. It is the whole of rule (c) for requests simpled record-routed: the
// identity stage and the ACK path call it; the proxy then checks the next hop (Hop).
func (k *Seals) ProveDialog(req *sip.Request) (DialogProof, bool) {
	callID, from, to := req.CallID(), req.From(), req.To()
	if callID == nil || from == nil || to == nil {
		return DialogProof{}, false
	}
	fromTag, _ := from.Params.Get("tag")
	toTag, _ := to.Params.Get("tag")
	fromAOR, toAOR := AOR(&from.Address), AOR(&to.Address)
	try := func(u *sip.Uri) (DialogProof, bool) {
		tok, ok := u.UriParams.Get(DialogParam)
		if !ok {
			return DialogProof{}, false
		}
		return k.Verify(tok, callID.Value(), fromTag, fromAOR, toTag, toAOR)
	}
	if p, ok := try(&req.Recipient); ok {
		return p, true
	}
	for _, h := range Headers(req, "Route") {
		if r, ok := h.(*sip.RouteHeader); ok {
			if p, ok := try(&r.Address); ok {
				return p, true
			}
		}
	}
	return DialogProof{}, false
}
