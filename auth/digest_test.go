package auth

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParseCredentials(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    *Credentials
		wantErr error
		param   string // parameter named by the error
	}{
		{
			name: "baresip",
			in:   `Digest username="alice", realm="example.test", nonce="awLkQWsC4xUB4nvS3KXDWWYUvitWgHKo", uri="sip:example.test;transport=udp", response="6efc52b1eb5e3de319e5760f19f43c4c"`,
			want: &Credentials{Username: "alice", Realm: "example.test", Nonce: "awLkQWsC4xUB4nvS3KXDWWYUvitWgHKo",
				URI: "sip:example.test;transport=udp", Response: "6efc52b1eb5e3de319e5760f19f43c4c"},
		},
		{
			name: "linphone double spaces",
			in:   ` Digest realm="example.test", nonce="awLkQmsC4xYa3KjIv6SiRv01GaSltkHd", username="alice",  uri="sip:example.test", response="a42cc68595da9fc78483b9c6c11ab220"`,
			want: &Credentials{Username: "alice", Realm: "example.test", Nonce: "awLkQmsC4xYa3KjIv6SiRv01GaSltkHd",
				URI: "sip:example.test", Response: "a42cc68595da9fc78483b9c6c11ab220"},
		},
		{
			name: "rfc 7616 with qop, compact spacing, upper-case names",
			in:   `DIGEST USERNAME="Mufasa",Realm="http-auth@example.org",uri="/dir/index.html",algorithm=SHA-256,nonce="n",nc=00000001,cnonce="c",qop=auth,response="r",opaque="o"`,
			want: &Credentials{Username: "Mufasa", Realm: "http-auth@example.org", URI: "/dir/index.html",
				Algorithm: "SHA-256", Nonce: "n", NC: "00000001", CNonce: "c", QOP: "auth", Response: "r", Opaque: "o"},
		},
		{
			name: "tabs and spaces around = and ,",
			in:   "digest\tusername = \"bob\" ,\trealm\t=\t\"example.test\" , nc = 0000000a",
			want: &Credentials{Username: "bob", Realm: "example.test", NC: "0000000a"},
		},
		{
			name: "escaped quote and backslash",
			in:   `Digest username="a\"b\\c", realm="r"`,
			want: &Credentials{Username: `a"b\c`, Realm: "r"},
		},
		{
			name: "unknown params kept in order, empty elements skipped",
			in:   `Digest username="u",, userhash=false, x-foo="bar, baz",`,
			want: &Credentials{Username: "u", Other: []Param{{Name: "userhash", Value: "false"}, {Name: "x-foo", Value: "bar, baz"}}},
		},
		{
			name: "unquoted uri",
			in:   `Digest uri=sip:bob@example.test;transport=udp, username=alice`,
			want: &Credentials{URI: "sip:bob@example.test;transport=udp", Username: "alice"},
		},
		{name: "scheme only", in: "Digest", want: &Credentials{}},
		{name: "basic scheme", in: `Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==`, wantErr: ErrNotDigest},
		{name: "empty", in: "", wantErr: ErrSyntax},
		{name: "scheme glued to param", in: `Digest,username="a"`, wantErr: ErrSyntax},
		{name: "duplicate", in: `Digest username="a", realm="r", USERNAME="b"`, wantErr: ErrDuplicateParam, param: "username"},
		{name: "unterminated quote", in: `Digest username="alice`, wantErr: ErrSyntax, param: "username"},
		{name: "missing equals", in: `Digest username "alice"`, wantErr: ErrSyntax, param: "username"},
		{name: "missing value", in: `Digest username=, realm="r"`, wantErr: ErrSyntax, param: "username"},
		{name: "no comma", in: `Digest username="a" realm="r"`, wantErr: ErrSyntax, param: "username"},
		{name: "control char", in: "Digest username=\"a\x01\"", wantErr: ErrSyntax, param: "username"},
		{name: "CRLF injection", in: "Digest username=\"a\r\nVia: x\"", wantErr: ErrSyntax, param: "username"},
		{name: "quote in token", in: `Digest nc=00"01`, wantErr: ErrSyntax, param: "nc"},
		{name: "garbage", in: `Digest ===`, wantErr: ErrSyntax},
		{name: "value too long", in: `Digest uri="` + strings.Repeat("a", MaxParamValueLength+1) + `"`, wantErr: ErrTooLong, param: "uri"},
		{name: "unquoted value too long", in: `Digest uri=` + strings.Repeat("a", MaxParamValueLength+1), wantErr: ErrTooLong, param: "uri"},
		{name: "header too long", in: `Digest x="` + strings.Repeat("a", MaxCredentialsLength) + `"`, wantErr: ErrTooLong},
		{name: "name too long", in: `Digest ` + strings.Repeat("n", 65) + `=1`, wantErr: ErrTooLong},
		{name: "too many params", in: "Digest " + manyParams(MaxParams+1), wantErr: ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCredentials(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseCredentials error = %v, want %v", err, tt.wantErr)
				}
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Param != tt.param {
					t.Fatalf("ParseCredentials error = %#v, want param %q", err, tt.param)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCredentials: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseCredentials =\n%+v\nwant\n%+v", got, tt.want)
			}
			again, err := ParseCredentials(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip of %q: %+v, %v", got.String(), again, err)
			}
		})
	}
}

func manyParams(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = "p" + strings.Repeat("x", i) + "=1"
	}
	return strings.Join(parts, ", ")
}

func TestCredentialsValidate(t *testing.T) {
	full := func(f func(c *Credentials)) *Credentials {
		c := &Credentials{Username: "u", Realm: "r", Nonce: "n", URI: "sip:r", Response: "x"}
		f(c)
		return c
	}
	tests := []struct {
		name    string
		c       *Credentials
		param   string // "" = valid
		problem string
	}{
		{name: "rfc 2069", c: full(func(*Credentials) {})},
		{name: "qop auth", c: full(func(c *Credentials) { c.QOP, c.NC, c.CNonce = "auth", "00000001", "c" })},
		{name: "missing username", c: full(func(c *Credentials) { c.Username = "" }), param: "username", problem: "missing username"},
		{name: "missing realm", c: full(func(c *Credentials) { c.Realm = "" }), param: "realm", problem: "missing realm"},
		{name: "missing nonce", c: full(func(c *Credentials) { c.Nonce = "" }), param: "nonce", problem: "missing nonce"},
		{name: "missing uri", c: full(func(c *Credentials) { c.URI = "" }), param: "uri", problem: "missing uri"},
		{name: "missing response", c: full(func(c *Credentials) { c.Response = "" }), param: "response", problem: "missing response"},
		{name: "qop without nc", c: full(func(c *Credentials) { c.QOP, c.CNonce = "auth", "c" }), param: "nc", problem: "missing nc"},
		{name: "qop without cnonce", c: full(func(c *Credentials) { c.QOP, c.NC = "auth", "1" }), param: "cnonce", problem: "missing cnonce"},
		{name: "nc not hex", c: full(func(c *Credentials) { c.QOP, c.NC, c.CNonce = "auth", "0000000g", "c" }), param: "nc", problem: "nc bad value"},
		{name: "nc too long", c: full(func(c *Credentials) { c.QOP, c.NC, c.CNonce = "auth", "000000001", "c" }), param: "nc", problem: "nc bad value"},
		{name: "sess without cnonce", c: full(func(c *Credentials) { c.Algorithm = "MD5-sess" }), param: "cnonce", problem: "missing cnonce"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.param == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Param != tt.param || pe.Problem() != tt.problem {
				t.Fatalf("Validate = %v, want param %q problem %q", err, tt.param, tt.problem)
			}
		})
	}
}

// TestComputeRFC7616 checks the worked example of RFC 7616 §3.9.1, for both algorithms.
func TestComputeRFC7616(t *testing.T) {
	tests := []struct {
		name string
		alg  Algorithm
		want string
	}{
		{name: "MD5", alg: MD5, want: "8ca523f5e9506fed4657c9700eebdbec"},
		{name: "SHA-256", alg: SHA256, want: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Credentials{
				Username:  "Mufasa",
				Realm:     "http-auth@example.org",
				URI:       "/dir/index.html",
				Algorithm: tt.alg.String(),
				Nonce:     "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
				NC:        "00000001",
				CNonce:    "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
				QOP:       "auth",
				Opaque:    "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
			}
			ha1 := HA1(tt.alg, "Mufasa", "http-auth@example.org", "Circle of Life")
			got, err := c.Compute(ha1, "GET", nil)
			if err != nil || got != tt.want {
				t.Fatalf("Compute = %q, %v; want %q", got, err, tt.want)
			}
			c.Response = strings.ToUpper(tt.want)
			if !c.Verify(ha1, "GET", nil) {
				t.Fatal("Verify rejects the RFC response (upper-case hex)")
			}
			if c.Verify(ha1, "POST", nil) {
				t.Fatal("Verify accepts the response for another method")
			}
		})
	}
}

// TestComputeVariants checks the -sess and auth-int forms against the RFC 7616 §3.4 formulas
// written out by hand.
func TestComputeVariants(t *testing.T) {
	base := Credentials{Username: "u", Realm: "r", Nonce: "n", URI: "sip:r", NC: "00000002", CNonce: "cn"}
	body := []byte("hello")
	tests := []struct {
		name string
		alg  Algorithm
		qop  string
		want func() string
	}{
		{name: "MD5-sess auth", alg: MD5Sess, qop: "auth", want: func() string {
			ha1 := MD5.hashHex(MD5.hashHex("u", "r", "p"), "n", "cn")
			return MD5.hashHex(ha1, "n", "00000002", "cn", "auth", MD5.hashHex("MESSAGE", "sip:r"))
		}},
		{name: "SHA-256-sess no qop", alg: SHA256Sess, qop: "", want: func() string {
			ha1 := SHA256.hashHex(SHA256.hashHex("u", "r", "p"), "n", "cn")
			return SHA256.hashHex(ha1, "n", SHA256.hashHex("MESSAGE", "sip:r"))
		}},
		{name: "SHA-256 auth-int", alg: SHA256, qop: "auth-int", want: func() string {
			ha2 := SHA256.hashHex("MESSAGE", "sip:r", SHA256.hashHex("hello"))
			return SHA256.hashHex(SHA256.hashHex("u", "r", "p"), "n", "00000002", "cn", "auth-int", ha2)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			c.Algorithm, c.QOP = tt.alg.String(), tt.qop
			got, err := c.Compute(HA1(tt.alg, "u", "r", "p"), "MESSAGE", body)
			if err != nil || got != tt.want() {
				t.Fatalf("Compute = %q, %v; want %q", got, err, tt.want())
			}
		})
	}
	c := base
	c.Algorithm = "SHA-512-256"
	if _, err := c.Compute("x", "MESSAGE", nil); err == nil {
		t.Fatal("Compute accepted an unknown algorithm")
	}
	c.Algorithm, c.QOP = "MD5", "auth-conf"
	if _, err := c.Compute("x", "MESSAGE", nil); err == nil {
		t.Fatal("Compute accepted an unknown qop")
	}
}

// TestFixtureBaresipRegister is baresip's REGISTER #3 of register-udp-auth-msilo.txt (no qop,
// RFC 2069 form), verified with the real inputs.
func TestFixtureBaresipRegister(t *testing.T) {
	c, err := ParseCredentials(`Digest username="alice", realm="example.test", nonce="awLkQWsC4xUB4nvS3KXDWWYUvitWgHKo", uri="sip:example.test;transport=udp", response="6efc52b1eb5e3de319e5760f19f43c4c"`)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ha1 := HA1(MD5, "alice", "example.test", "secret-alice")
	if !c.Verify(ha1, "REGISTER", nil) {
		t.Fatal("baresip's response does not verify with secret-alice")
	}
	if c.Verify(HA1(MD5, "alice", "example.test", "secret-bob"), "REGISTER", nil) {
		t.Fatal("baresip's response verifies with a wrong password")
	}
}

// fixtureCredential is one Authorization or Proxy-Authorization line of a capture.
type fixtureCredential struct {
	file, header, value, method string
	line                        int
}

// fixtureCredentials returns every credentials line of the captures in testdata, with the
// method of the request it belongs to.
func fixtureCredentials(tb testing.TB) []fixtureCredential {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*-auth-msilo.txt"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no fixtures in testdata: %v", err)
	}
	var out []fixtureCredential
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		method, startNext, n := "", false, 0
		for sc.Scan() {
			n++
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "=== "):
				startNext = true
				continue
			case startNext:
				method, _, _ = strings.Cut(line, " ")
				startNext = false
				continue
			}
			name, value, ok := strings.Cut(line, ":")
			if !ok || (!strings.EqualFold(name, "Authorization") && !strings.EqualFold(name, "Proxy-Authorization")) {
				continue
			}
			out = append(out, fixtureCredential{file: filepath.Base(f), line: n, header: name,
				value: strings.TrimSpace(value), method: method})
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// TestFixtureCredentials parses and verifies every credential the real clients sent in the
// captures: each must verify with secret-<user> and fail with another password.
func TestFixtureCredentials(t *testing.T) {
	fcs := fixtureCredentials(t)
	if len(fcs) < 20 {
		t.Fatalf("only %d credentials found in the fixtures", len(fcs))
	}
	for _, fc := range fcs {
		t.Run(fc.file+":"+strconv.Itoa(fc.line), func(t *testing.T) {
			c, err := ParseCredentials(fc.value)
			if err != nil {
				t.Fatalf("%s: %v", fc.value, err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if !c.Verify(HA1(MD5, c.Username, c.Realm, "secret-"+c.Username), fc.method, nil) {
				t.Fatalf("%s %s by %s does not verify", fc.method, fc.header, c.Username)
			}
			if c.Verify(HA1(MD5, c.Username, c.Realm, "secret-nobody"), fc.method, nil) {
				t.Fatal("verifies with a wrong password")
			}
		})
	}
}

func TestChallengeString(t *testing.T) {
	tests := []struct {
		name string
		ch   Challenge
		want string
	}{
		{
			name: "sha-256 with qop",
			ch:   Challenge{Realm: "example.test", Nonce: "abc", Algorithm: SHA256, QOP: []string{"auth"}},
			want: `Digest realm="example.test", nonce="abc", algorithm=SHA-256, qop="auth"`,
		},
		{
			name: "stale md5 with opaque",
			ch:   Challenge{Realm: "example.test", Nonce: "abc", Opaque: "o", Algorithm: MD5, QOP: []string{"auth", "auth-int"}, Stale: true},
			want: `Digest realm="example.test", nonce="abc", opaque="o", algorithm=MD5, qop="auth,auth-int", stale=true`,
		},
		{
			name: "rfc 2069, escaped realm",
			ch:   Challenge{Realm: `a"b`, Nonce: "n"},
			want: `Digest realm="a\"b", nonce="n"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ch.String(); got != tt.want {
				t.Fatalf("String = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParseAlgorithm(t *testing.T) {
	tests := []struct {
		in   string
		want Algorithm
		ok   bool
	}{
		{in: "", want: MD5, ok: true},
		{in: "md5", want: MD5, ok: true},
		{in: "MD5-SESS", want: MD5Sess, ok: true},
		{in: "sha-256", want: SHA256, ok: true},
		{in: "SHA-256-sess", want: SHA256Sess, ok: true},
		{in: "SHA-512-256", ok: false},
		{in: "AKAv1-MD5", ok: false},
	}
	for _, tt := range tests {
		t.Run("alg "+tt.in, func(t *testing.T) {
			got, ok := ParseAlgorithm(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseAlgorithm(%q) = %v, %v", tt.in, got, ok)
			}
			if ok {
				if back, _ := ParseAlgorithm(got.String()); back != got {
					t.Fatalf("String round trip: %v", back)
				}
			}
		})
	}
}
