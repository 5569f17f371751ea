package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
)

// challenge is what a digest answer needs from a WWW-Authenticate or Proxy-Authenticate value.
type challenge struct {
	realm, nonce, opaque []byte
	qopAuth              bool // qop offers "auth"
	md5                  bool // algorithm absent or MD5
}

// parseChallenge reads a Digest challenge: realm, nonce, opaque, qop and algorithm. It
// reports false for another scheme or a challenge without realm or nonce.
func parseChallenge(v []byte) (challenge, bool) {
	var ch challenge
	v = trim(v)
	if len(v) < 7 || !eqFold(v[:6], "digest") || (v[6] != ' ' && v[6] != '\t') {
		return ch, false
	}
	v = v[7:]
	ch.md5 = true
	for len(v) > 0 {
		v = trim(v)
		eq := bytes.IndexByte(v, '=')
		if eq <= 0 {
			break
		}
		name := trim(v[:eq])
		val, rest, ok := paramValue(trim(v[eq+1:]))
		if !ok {
			return ch, false
		}
		switch {
		case eqFold(name, "realm"):
			ch.realm = val
		case eqFold(name, "nonce"):
			ch.nonce = val
		case eqFold(name, "opaque"):
			ch.opaque = val
		case eqFold(name, "algorithm"):
			ch.md5 = eqFold(val, "md5")
		case eqFold(name, "qop"):
			ch.qopAuth = hasToken(val, "auth")
		}
		v = trim(rest)
		if len(v) > 0 && v[0] == ',' {
			v = v[1:]
		}
	}
	return ch, len(ch.realm) > 0 && len(ch.nonce) > 0
}

// paramValue reads a token or a quoted string (escapes kept as sent: challenges here never
// carry any) and returns the rest after it.
func paramValue(v []byte) (val, rest []byte, ok bool) {
	if len(v) > 0 && v[0] == '"' {
		for i := 1; i < len(v); i++ {
			if v[i] == '\\' {
				i++
				continue
			}
			if v[i] == '"' {
				return v[1:i], v[i+1:], true
			}
		}
		return nil, nil, false
	}
	i := bytes.IndexByte(v, ',')
	if i < 0 {
		return trim(v), nil, true
	}
	return trim(v[:i]), v[i:], true
}

// hasToken reports whether the comma-separated list v holds tok.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		if i < 0 {
			return eqFold(trim(v), tok)
		}
		if eqFold(trim(v[:i]), tok) {
			return true
		}
		v = v[i+1:]
	}
	return false
}

// md5Hex returns the lower-case hex MD5 of the parts joined by ':'.
func md5Hex(parts ...[]byte) [32]byte {
	h := md5.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write(p)
	}
	var sum [md5.Size]byte
	var out [32]byte
	hex.Encode(out[:], h.Sum(sum[:0]))
	return out
}

// digestResponse computes the response of RFC 2617 §3.2.2 (RFC 3261 §22.4) for MD5: with
// qop=auth when the challenge offers it (nc and cnonce then count), else the RFC 2069 form.
func digestResponse(ch *challenge, user, pass, method, uri, nc, cnonce []byte) [32]byte {
	ha1 := md5Hex(user, ch.realm, pass)
	ha2 := md5Hex(method, uri)
	if ch.qopAuth {
		return md5Hex(ha1[:], ch.nonce, nc, cnonce, []byte("auth"), ha2[:])
	}
	return md5Hex(ha1[:], ch.nonce, ha2[:])
}

// appendAuthorization appends the Authorization header answering ch for user/pass, with
// nonce count 00000001 and the given client nonce.
func appendAuthorization(b []byte, ch *challenge, user, pass, uri, cnonce []byte) []byte {
	nc := []byte("00000001")
	resp := digestResponse(ch, user, pass, []byte("REGISTER"), uri, nc, cnonce)
	b = append(b, "Authorization: Digest username=\""...)
	b = append(b, user...)
	b = append(b, "\", realm=\""...)
	b = append(b, ch.realm...)
	b = append(b, "\", nonce=\""...)
	b = append(b, ch.nonce...)
	b = append(b, "\", uri=\""...)
	b = append(b, uri...)
	b = append(b, "\", response=\""...)
	b = append(b, resp[:]...)
	b = append(b, "\", algorithm=MD5"...)
	if ch.qopAuth {
		b = append(b, ", cnonce=\""...)
		b = append(b, cnonce...)
		b = append(b, "\", qop=auth, nc="...)
		b = append(b, nc...)
	}
	if len(ch.opaque) > 0 {
		b = append(b, ", opaque=\""...)
		b = append(b, ch.opaque...)
		b = append(b, '"')
	}
	return append(b, "\r\n"...)
}
