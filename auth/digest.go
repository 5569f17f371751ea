// Package auth is simpled's identity stage (docs/security.md) and its digest authentication (RFC 3261 §22, RFC 7616, RFC 8760):
// it challenges requests from the served domains' own users (401 for REGISTER, 407 for other
// requests), verifies their credentials against a users file or the store, guards against
// replayed nonce counts, and records the authenticated AOR in the request state for the
// stages after it.
//
// The package has four parts: digest.go parses Authorization / Proxy-Authorization values,
// builds challenges and computes responses (MD5, SHA-256 and their -sess variants); nonce.go
// issues and checks stateless, HMAC-protected nonces; users.go loads the -users file; auth.go
// is the chain stage.
package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Limits on what ParseCredentials accepts. Real credentials are a few hundred bytes; the limits
// bound the work an attacker can cause and what ends up in logs and the store.
const (
	// MaxCredentialsLength is the longest header value accepted, in bytes.
	MaxCredentialsLength = 4096
	// MaxParamValueLength is the longest parameter value accepted, in bytes (after unquoting).
	MaxParamValueLength = 1024
	// MaxParams is the largest number of parameters accepted in one value.
	MaxParams = 32
	// maxParamName bounds a parameter name, which error texts and reason phrases repeat.
	maxParamName = 64
)

// Errors of ParseCredentials and Credentials.Validate, wrapped in a *ParseError that names the
// parameter at fault. Test with errors.Is.
var (
	// ErrNotDigest: the value uses another scheme (Basic, Bearer, ...); it is not for us.
	ErrNotDigest = errors.New("not a Digest credential")
	// ErrSyntax: the value does not follow the auth-param grammar.
	ErrSyntax = errors.New("syntax error")
	// ErrDuplicateParam: a parameter appears twice.
	ErrDuplicateParam = errors.New("duplicate parameter")
	// ErrTooLong: the value, one parameter value, or the parameter count is over its limit.
	ErrTooLong = errors.New("too long")
	// ErrMissingParam: a parameter the credentials need is absent or empty.
	ErrMissingParam = errors.New("missing")
	// ErrBadValue: a parameter has a value its syntax does not allow (nc not hex, ...).
	ErrBadValue = errors.New("bad value")
)

// ParseError is an error of ParseCredentials or Credentials.Validate. Param is the parameter at
// fault ("" when the fault is not in one parameter), Err one of the sentinel errors above.
type ParseError struct {
	Param string
	Err   error
}

// Error returns "auth: credentials: <param>: <err>".
func (e *ParseError) Error() string {
	if e.Param == "" {
		return "auth: credentials: " + e.Err.Error()
	}
	return "auth: credentials: " + e.Param + ": " + e.Err.Error()
}

// Unwrap returns the sentinel error.
func (e *ParseError) Unwrap() error { return e.Err }

// Problem describes the fault for a SIP reason phrase: "missing nonce", "duplicate realm",
// "syntax error". It never contains a parameter value.
func (e *ParseError) Problem() string {
	switch {
	case e.Param == "":
		return e.Err.Error()
	case errors.Is(e.Err, ErrMissingParam):
		return "missing " + e.Param
	case errors.Is(e.Err, ErrDuplicateParam):
		return "duplicate " + e.Param
	}
	return e.Param + " " + e.Err.Error()
}

// Param is one parameter Credentials does not model (auth-param, userhash, username*, ...).
// Name is in lower case.
type Param struct {
	Name  string
	Value string
}

// Credentials is one parsed Authorization or Proxy-Authorization value with the Digest scheme
// (RFC 3261 §25 digest-response, RFC 7616 §3.4). Values are unquoted and unescaped; an absent
// parameter is "". Parameters with no field of their own are in Other, in order.
type Credentials struct {
	Username  string
	Realm     string
	Nonce     string
	URI       string
	Response  string
	Algorithm string // as sent; "" means MD5
	CNonce    string
	Opaque    string
	QOP       string // "", "auth" or "auth-int"
	NC        string // nonce count as sent: 8 hex digits (1 to 8 accepted)
	Other     []Param
}

// ParseCredentials parses an Authorization or Proxy-Authorization header value:
//
//	Digest username="alice", realm="example.test", nonce="...", uri="sip:example.test", response="..."
//
// The scheme and parameter names are case-insensitive, whitespace (spaces and tabs) around
// "=" and "," is free, empty list elements are skipped, quoted strings may hold \" and \\.
// It rejects a duplicated parameter, a value over MaxParamValueLength, more than MaxParams
// parameters, a header over MaxCredentialsLength and control characters. A scheme other than
// Digest gives an error wrapping ErrNotDigest. It only checks syntax: see Validate.
func ParseCredentials(value string) (*Credentials, error) {
	if len(value) > MaxCredentialsLength {
		return nil, &ParseError{Err: ErrTooLong}
	}
	p := paramParser{s: value}
	p.skipSpace()
	scheme := p.token()
	if scheme == "" {
		return nil, &ParseError{Err: ErrSyntax}
	}
	if !strings.EqualFold(scheme, "digest") {
		return nil, &ParseError{Err: ErrNotDigest}
	}
	if p.i < len(p.s) && !isSpace(p.s[p.i]) {
		return nil, &ParseError{Err: ErrSyntax}
	}
	c := &Credentials{}
	seen := make(map[string]bool, 8)
	n := 0
	for {
		p.skipSpace()
		if p.eof() {
			return c, nil
		}
		if p.s[p.i] == ',' { // empty list element
			p.i++
			continue
		}
		name, val, err := p.param()
		if err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, &ParseError{Param: name, Err: ErrDuplicateParam}
		}
		seen[name] = true
		if n++; n > MaxParams {
			return nil, &ParseError{Err: ErrTooLong}
		}
		c.set(name, val)
		p.skipSpace()
		if p.eof() {
			return c, nil
		}
		if p.s[p.i] != ',' {
			return nil, &ParseError{Param: name, Err: ErrSyntax}
		}
		p.i++
	}
}

func (c *Credentials) set(name, val string) {
	switch name {
	case "username":
		c.Username = val
	case "realm":
		c.Realm = val
	case "nonce":
		c.Nonce = val
	case "uri":
		c.URI = val
	case "response":
		c.Response = val
	case "algorithm":
		c.Algorithm = val
	case "cnonce":
		c.CNonce = val
	case "opaque":
		c.Opaque = val
	case "qop":
		c.QOP = val
	case "nc":
		c.NC = val
	default:
		c.Other = append(c.Other, Param{Name: name, Value: val})
	}
}

// paramParser walks an auth-param list.
type paramParser struct {
	s string
	i int
}

func (p *paramParser) eof() bool { return p.i >= len(p.s) }

func (p *paramParser) skipSpace() {
	for p.i < len(p.s) && isSpace(p.s[p.i]) {
		p.i++
	}
}

func (p *paramParser) token() string {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// param reads name SWS "=" SWS (token / quoted-string) and returns the lower-case name and the
// unquoted value.
func (p *paramParser) param() (name, val string, err error) {
	name = p.token()
	if name == "" {
		return "", "", &ParseError{Err: ErrSyntax}
	}
	if len(name) > maxParamName {
		return "", "", &ParseError{Err: ErrTooLong}
	}
	name = strings.ToLower(name)
	p.skipSpace()
	if p.eof() || p.s[p.i] != '=' {
		return "", "", &ParseError{Param: name, Err: ErrSyntax}
	}
	p.i++
	p.skipSpace()
	if p.eof() {
		return "", "", &ParseError{Param: name, Err: ErrSyntax}
	}
	if p.s[p.i] == '"' {
		val, err = p.quoted(name)
		return name, val, err
	}
	// Unquoted: RFC 7616 wants a token, but clients send URIs and base64 unquoted too:
	// take anything printable up to a comma or whitespace.
	start := p.i
	for p.i < len(p.s) {
		b := p.s[p.i]
		if b == ',' || isSpace(b) {
			break
		}
		if b == '"' || b == '\\' || isCtl(b) {
			return "", "", &ParseError{Param: name, Err: ErrSyntax}
		}
		p.i++
	}
	if p.i == start {
		return "", "", &ParseError{Param: name, Err: ErrSyntax}
	}
	if p.i-start > MaxParamValueLength {
		return "", "", &ParseError{Param: name, Err: ErrTooLong}
	}
	return name, p.s[start:p.i], nil
}

// quoted reads a quoted-string starting at the opening quote.
func (p *paramParser) quoted(name string) (string, error) {
	p.i++ // opening quote
	var b strings.Builder
	escaped := false
	for p.i < len(p.s) {
		ch := p.s[p.i]
		p.i++
		switch {
		case isCtl(ch):
			return "", &ParseError{Param: name, Err: ErrSyntax}
		case escaped:
			b.WriteByte(ch)
			escaped = false
		case ch == '\\':
			escaped = true
			continue
		case ch == '"':
			if b.Len() > MaxParamValueLength {
				return "", &ParseError{Param: name, Err: ErrTooLong}
			}
			return b.String(), nil
		default:
			b.WriteByte(ch)
		}
		if b.Len() > MaxParamValueLength {
			return "", &ParseError{Param: name, Err: ErrTooLong}
		}
	}
	return "", &ParseError{Param: name, Err: ErrSyntax} // unterminated
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' }

// isCtl reports ASCII control characters other than horizontal tab (RFC 3261 qdtext allows
// LWS, which unfolds to spaces and tabs).
func isCtl(b byte) bool { return (b < 0x20 && b != '\t') || b == 0x7f }

// isTokenChar reports RFC 3261 token characters.
func isTokenChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", b) >= 0
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// String serialises c as a header value: "Digest " and the parameters present, quoted except
// algorithm, qop and nc when they are tokens (RFC 7616 §3.4: those are sent unquoted).
// ParseCredentials(c.String()) gives c back.
func (c *Credentials) String() string {
	var b strings.Builder
	b.WriteString("Digest")
	first := true
	add := func(name, val string, unquoted bool) {
		if first {
			b.WriteByte(' ')
			first = false
		} else {
			b.WriteString(", ")
		}
		b.WriteString(name)
		b.WriteByte('=')
		if unquoted && isToken(val) {
			b.WriteString(val)
			return
		}
		writeQuoted(&b, val)
	}
	for _, f := range []struct {
		name, val string
		unquoted  bool
	}{
		{"username", c.Username, false},
		{"realm", c.Realm, false},
		{"nonce", c.Nonce, false},
		{"uri", c.URI, false},
		{"response", c.Response, false},
		{"algorithm", c.Algorithm, true},
		{"cnonce", c.CNonce, false},
		{"opaque", c.Opaque, false},
		{"qop", c.QOP, true},
		{"nc", c.NC, true},
	} {
		if f.val != "" {
			add(f.name, f.val, f.unquoted)
		}
	}
	for _, o := range c.Other {
		add(o.Name, o.Value, false)
	}
	return b.String()
}

func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

// Validate checks that c carries what a digest verification needs: username, realm, nonce,
// uri and response; with qop, both nc (1 to 8 hex digits) and cnonce; with a -sess algorithm,
// cnonce. The error is a *ParseError naming the parameter.
func (c *Credentials) Validate() error {
	for _, f := range []struct{ name, val string }{
		{"username", c.Username},
		{"realm", c.Realm},
		{"nonce", c.Nonce},
		{"uri", c.URI},
		{"response", c.Response},
	} {
		if f.val == "" {
			return &ParseError{Param: f.name, Err: ErrMissingParam}
		}
	}
	if c.QOP != "" {
		if c.NC == "" {
			return &ParseError{Param: "nc", Err: ErrMissingParam}
		}
		if c.CNonce == "" {
			return &ParseError{Param: "cnonce", Err: ErrMissingParam}
		}
	}
	if c.NC != "" {
		if _, err := c.NonceCount(); err != nil {
			return err
		}
	}
	if len(c.Algorithm) > 5 && strings.EqualFold(c.Algorithm[len(c.Algorithm)-5:], "-sess") && c.CNonce == "" {
		return &ParseError{Param: "cnonce", Err: ErrMissingParam}
	}
	return nil
}

// NonceCount returns nc as a number: 1 to 8 hex digits, else a *ParseError.
func (c *Credentials) NonceCount() (uint32, error) {
	if c.NC == "" || len(c.NC) > 8 {
		return 0, &ParseError{Param: "nc", Err: ErrBadValue}
	}
	n, err := strconv.ParseUint(c.NC, 16, 32)
	if err != nil {
		return 0, &ParseError{Param: "nc", Err: ErrBadValue}
	}
	return uint32(n), nil
}

// Algorithm is a digest algorithm (RFC 7616 §3.2, RFC 8760 for SIP). The zero value is invalid.
type Algorithm int

// The algorithms simpled computes. SHA-512-256 is not among them: the store keeps MD5 and
// SHA-256 HA1s only.
const (
	MD5 Algorithm = iota + 1
	MD5Sess
	SHA256
	SHA256Sess
)

// ParseAlgorithm returns the algorithm named s (case-insensitive); "" is MD5 (RFC 7616 §3.3).
func ParseAlgorithm(s string) (Algorithm, bool) {
	switch {
	case s == "", strings.EqualFold(s, "MD5"):
		return MD5, true
	case strings.EqualFold(s, "MD5-sess"):
		return MD5Sess, true
	case strings.EqualFold(s, "SHA-256"):
		return SHA256, true
	case strings.EqualFold(s, "SHA-256-sess"):
		return SHA256Sess, true
	}
	return 0, false
}

// String returns the algorithm's name as sent in a challenge.
func (a Algorithm) String() string {
	switch a {
	case MD5:
		return "MD5"
	case MD5Sess:
		return "MD5-sess"
	case SHA256:
		return "SHA-256"
	case SHA256Sess:
		return "SHA-256-sess"
	}
	return "Algorithm(" + strconv.Itoa(int(a)) + ")"
}

// Valid reports whether a is one of the defined algorithms.
func (a Algorithm) Valid() bool { return a >= MD5 && a <= SHA256Sess }

// Sess reports whether a is a -sess variant (HA1 bound to nonce and cnonce).
func (a Algorithm) Sess() bool { return a == MD5Sess || a == SHA256Sess }

// SHA256 reports whether a uses SHA-256 (and so the SHA-256 HA1).
func (a Algorithm) SHA256() bool { return a == SHA256 || a == SHA256Sess }

func (a Algorithm) newHash() hash.Hash {
	if a.SHA256() {
		return sha256.New()
	}
	return md5.New()
}

// hashHex returns the lower-case hex digest of the parts joined by ':'.
func (a Algorithm) hashHex(parts ...string) string {
	h := a.newHash()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// HA1 returns H(username:realm:password) in lower-case hex for a's hash (RFC 7616 §3.4.2;
// the -sess variants start from the same value).
func HA1(a Algorithm, username, realm, password string) string {
	return a.hashHex(username, realm, password)
}

// Compute returns the response c should carry for a request with the given method and body,
// from ha1 = H(username:realm:password) for c's algorithm (RFC 7616 §3.4.1; RFC 2069 form when
// qop is absent). It fails on an unknown algorithm or qop.
func (c *Credentials) Compute(ha1, method string, body []byte) (string, error) {
	alg, ok := ParseAlgorithm(c.Algorithm)
	if !ok {
		return "", fmt.Errorf("auth: compute response: %w", &ParseError{Param: "algorithm", Err: ErrBadValue})
	}
	if alg.Sess() {
		ha1 = alg.hashHex(ha1, c.Nonce, c.CNonce)
	}
	var ha2 string
	switch c.QOP {
	case "", "auth":
		ha2 = alg.hashHex(method, c.URI)
	case "auth-int":
		bh := alg.newHash()
		bh.Write(body)
		ha2 = alg.hashHex(method, c.URI, hex.EncodeToString(bh.Sum(nil)))
	default:
		return "", fmt.Errorf("auth: compute response: %w", &ParseError{Param: "qop", Err: ErrBadValue})
	}
	if c.QOP == "" {
		return alg.hashHex(ha1, c.Nonce, ha2), nil
	}
	return alg.hashHex(ha1, c.Nonce, c.NC, c.CNonce, c.QOP, ha2), nil
}

// Verify reports whether c's response is right for ha1, method and body. The comparison takes
// the same time whatever the response (hex case ignored).
func (c *Credentials) Verify(ha1, method string, body []byte) bool {
	want, err := c.Compute(ha1, method, body)
	if err != nil {
		return false
	}
	got := strings.ToLower(c.Response)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Challenge is one WWW-Authenticate or Proxy-Authenticate value (RFC 7616 §3.3).
type Challenge struct {
	Realm     string
	Nonce     string
	Opaque    string    // sent when not ""
	Algorithm Algorithm // sent explicitly, even MD5
	QOP       []string  // e.g. {"auth"}; none: RFC 2069 challenge
	Stale     bool
}

// String serialises ch: Digest realm="...", nonce="...", algorithm=SHA-256, qop="auth".
func (ch Challenge) String() string {
	var b strings.Builder
	b.WriteString("Digest realm=")
	writeQuoted(&b, ch.Realm)
	b.WriteString(", nonce=")
	writeQuoted(&b, ch.Nonce)
	if ch.Opaque != "" {
		b.WriteString(", opaque=")
		writeQuoted(&b, ch.Opaque)
	}
	if ch.Algorithm.Valid() {
		b.WriteString(", algorithm=")
		b.WriteString(ch.Algorithm.String())
	}
	if len(ch.QOP) > 0 {
		b.WriteString(", qop=")
		writeQuoted(&b, strings.Join(ch.QOP, ","))
	}
	if ch.Stale {
		b.WriteString(", stale=true")
	}
	return b.String()
}
