package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"strconv"
	"strings"
)

var sipVersion = []byte("SIP/2.0 ")

// statusOf returns the status code of a SIP response, 0 when msg is not one.
func statusOf(msg []byte) int {
	if len(msg) < 11 || !bytes.HasPrefix(msg, sipVersion) {
		return 0
	}
	c := msg[8:11]
	if c[0] < '1' || c[0] > '6' || c[1] < '0' || c[1] > '9' || c[2] < '0' || c[2] > '9' {
		return 0
	}
	return int(c[0]-'0')*100 + int(c[1]-'0')*10 + int(c[2]-'0')
}

// param returns the value of name="value" or name=value in a header value (a challenge,
// To's tag), "" when absent.
func param(v, name string) string {
	low := strings.ToLower(v)
	for i := 0; ; {
		j := strings.Index(low[i:], name+"=")
		if j < 0 {
			return ""
		}
		j += i
		if j > 0 && low[j-1] != ' ' && low[j-1] != ',' && low[j-1] != ';' {
			i = j + len(name)
			continue
		}
		rest := v[j+len(name)+1:]
		if strings.HasPrefix(rest, `"`) {
			if k := strings.IndexByte(rest[1:], '"'); k >= 0 {
				return rest[1 : 1+k]
			}
			return ""
		}
		if k := strings.IndexAny(rest, ",; >\r\n"); k >= 0 {
			return rest[:k]
		}
		return rest
	}
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// nonce is one digest challenge the client answers, with its own nonce count: one request
// at a time uses it (the server refuses a count not above the last, and two requests in
// flight could arrive out of order).
type nonce struct {
	realm, nonce, opaque string
	qop                  bool
	nc                   int
}

// parseChallenge reads a WWW-Authenticate or Proxy-Authenticate value.
func parseChallenge(v string) *nonce {
	if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(v)), "digest") {
		return nil
	}
	n := &nonce{realm: param(v, "realm"), nonce: param(v, "nonce"), opaque: param(v, "opaque")}
	n.qop = strings.Contains(strings.ToLower(param(v, "qop")), "auth")
	if n.nonce == "" {
		return nil
	}
	return n
}

// authorization returns the Digest credentials (MD5) answering n for method and uri.
func (n *nonce) authorization(user, password, method, uri string) string {
	ha1 := md5hex(user + ":" + n.realm + ":" + password)
	ha2 := md5hex(method + ":" + uri)
	n.nc++
	var b strings.Builder
	b.WriteString(`Digest username="` + user + `",realm="` + n.realm + `",nonce="` + n.nonce + `",uri="` + uri + `",algorithm=MD5`)
	if n.qop {
		nc := strconv.FormatInt(int64(n.nc), 16)
		nc = strings.Repeat("0", 8-len(nc)) + nc
		cnonce := "c" + strconv.Itoa(n.nc)
		b.WriteString(`,qop=auth,nc=` + nc + `,cnonce="` + cnonce + `",response="` +
			md5hex(ha1+":"+n.nonce+":"+nc+":"+cnonce+":auth:"+ha2) + `"`)
	} else {
		b.WriteString(`,response="` + md5hex(ha1+":"+n.nonce+":"+ha2) + `"`)
	}
	if n.opaque != "" {
		b.WriteString(`,opaque="` + n.opaque + `"`)
	}
	return b.String()
}
