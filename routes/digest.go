package routes

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/simpled/simpled/auth"

	"github.com/emiago/sipgo/sip"
)

// ErrNoChallenge means a 401 or 407 carried no Digest challenge simpled can answer (no
// WWW-Authenticate or Proxy-Authenticate, another scheme, an unknown algorithm, only
// qop=auth-int).
var ErrNoChallenge = errors.New("routes: no digest challenge to answer")

// Answer builds the header answering res, a next hop's 401 (WWW-Authenticate →
// Authorization) or 407 (Proxy-Authenticate → Proxy-Authorization) to req, the request as it
// was forwarded to that hop (RFC 3261 §22.2, §22.3; RFC 7616). Of several challenges it
// answers the first with SHA-256, else the first with another algorithm it knows (MD5 and the
// -sess variants); qop auth when offered, the RFC 2069 form when the challenge offers no qop.
func (c Credentials) Answer(res *sip.Response, req *sip.Request) (sip.Header, error) {
	in, out := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		in, out = "Proxy-Authenticate", "Proxy-Authorization"
	}
	var pick *auth.Credentials
	var pickAlg auth.Algorithm
	for _, h := range res.GetHeaders(in) {
		ch, err := auth.ParseCredentials(h.Value())
		if err != nil || ch.Nonce == "" {
			continue
		}
		alg, ok := auth.ParseAlgorithm(ch.Algorithm)
		if !ok || (ch.QOP != "" && !offers(ch.QOP, "auth")) {
			continue
		}
		if pick == nil || (alg.SHA256() && !pickAlg.SHA256()) {
			pick, pickAlg = ch, alg
		}
	}
	if pick == nil {
		return nil, ErrNoChallenge
	}
	cr := &auth.Credentials{Username: c.Username, Realm: pick.Realm, Nonce: pick.Nonce,
		URI: req.Recipient.String(), Algorithm: pickAlg.String(), Opaque: pick.Opaque}
	if pick.QOP != "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		cr.QOP, cr.NC, cr.CNonce = "auth", "00000001", hex.EncodeToString(b[:])
	}
	resp, err := cr.Compute(auth.HA1(pickAlg, c.Username, pick.Realm, c.Password), string(req.Method), nil)
	if err != nil {
		return nil, fmt.Errorf("routes: answer challenge: %w", err)
	}
	cr.Response = resp
	return sip.NewHeader(out, cr.String()), nil
}

// offers reports whether a challenge's qop list ("auth,auth-int") offers q.
func offers(list, q string) bool {
	return slices.ContainsFunc(strings.Split(list, ","), func(s string) bool { return strings.TrimSpace(s) == q })
}
