package servertest

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Fixture is one message of a capture in testdata/fixtures.
type Fixture struct {
	File      string
	N         string // "#3"
	Transport string // UDP or TCP
	From, To  string
	Text      string // the message with CRLF line ends, as sent
}

var blockHead = regexp.MustCompile(`^=== (#\d+) t=\S+ (UDP|TCP) (\S+) -> (\S+) ===$`)

// RepoDir is the repository's root (the folder of go.mod), found from the test's working
// directory, which go test sets to the package's folder.
func RepoDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// FixtureDir is the SIP traffic captured from real clients (testdata/fixtures at the
// repository's root; its README lists each client's quirks).
func FixtureDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join(RepoDir(t), "testdata", "fixtures")
	if _, err := os.Stat(filepath.Join(d, "README.md")); err != nil {
		t.Fatalf("fixtures: %v", err)
	}
	return d
}

// LoadFixtures parses every capture file matching glob in FixtureDir.
func LoadFixtures(t testing.TB, glob string) []Fixture {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(FixtureDir(t), glob))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures for %s: %v", glob, err)
	}
	var out []Fixture
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, parseCapture(filepath.Base(f), string(data))...)
	}
	return out
}

// parseCapture splits one capture file into its messages.
func parseCapture(file, data string) []Fixture {
	var out []Fixture
	var cur *Fixture
	var lines []string
	flush := func() {
		if cur == nil {
			return
		}
		for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
			lines = lines[:len(lines)-1]
		}
		// A message without body ends with its empty line; a body follows it otherwise.
		text := strings.Join(lines, "\r\n")
		if !strings.Contains(text, "\r\n\r\n") {
			text += "\r\n\r\n"
		}
		cur.Text = text
		out = append(out, *cur)
		cur, lines = nil, nil
	}
	for _, line := range strings.Split(data, "\n") {
		if m := blockHead.FindStringSubmatch(line); m != nil {
			flush()
			cur = &Fixture{File: file, N: m[1], Transport: m[2], From: m[3], To: m[4]}
			continue
		}
		if cur != nil {
			lines = append(lines, line)
		}
	}
	flush()
	return out
}

// Method returns the request method of a fixture message, "" for a response.
func (m Fixture) Method() string {
	if strings.HasPrefix(m.Text, "SIP/2.0") {
		return ""
	}
	method, _, _ := strings.Cut(m.Text, " ")
	return method
}

// Header returns the first value of header name in the message (case-insensitive), or "".
func (m Fixture) Header(name string) string {
	for _, line := range strings.Split(m.Text, "\r\n") {
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// SetHeader replaces (value != "") or removes (value == "") every header name of a message
// with CRLF line ends.
func SetHeader(text, name, value string) string {
	head, body, _ := strings.Cut(text, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	out := lines[:1]
	done := false
	for _, line := range lines[1:] {
		k, _, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			if value != "" && !done {
				out = append(out, name+": "+value)
				done = true
			}
			continue
		}
		out = append(out, line)
	}
	if value != "" && !done {
		out = append(out, name+": "+value)
	}
	return strings.Join(out, "\r\n") + "\r\n\r\n" + body
}

// DigestMD5 computes an RFC 2617 digest response (with qop=auth when cnonce != "") the way a
// client does, independently of package auth.
func DigestMD5(user, realm, password, method, uri, nonce, nc, cnonce string) string {
	ha1 := MD5Hex(user + ":" + realm + ":" + password)
	ha2 := MD5Hex(method + ":" + uri)
	if cnonce == "" {
		return MD5Hex(ha1 + ":" + nonce + ":" + ha2)
	}
	return MD5Hex(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
}

// MD5Hex is the hex MD5 of s.
func MD5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

var challengeParam = regexp.MustCompile(`(\w+)=("[^"]*"|[^,\s]+)`)

// ChallengeParams extracts the parameters of an MD5 challenge among the WWW-Authenticate or
// Proxy-Authenticate values (nil when none is MD5).
func ChallengeParams(values []string) map[string]string {
	for _, v := range values {
		if !strings.Contains(v, "MD5") {
			continue
		}
		out := map[string]string{}
		for _, m := range challengeParam.FindAllStringSubmatch(v, -1) {
			out[strings.ToLower(m[1])] = strings.Trim(m[2], `"`)
		}
		return out
	}
	return nil
}

// QuotedParam is the value of param="…" in a header value, "" when absent.
func QuotedParam(h, param string) string {
	_, rest, ok := strings.Cut(h, param+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}
