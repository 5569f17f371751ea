package server

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fixtureMessage is one message of a capture in testdata/fixtures.
type fixtureMessage struct {
	File      string
	N         string // "#3"
	Transport string // UDP or TCP
	From, To  string
	Text      string // the message with CRLF line ends, as sent
}

var blockHead = regexp.MustCompile(`^=== (#\d+) t=\S+ (UDP|TCP) (\S+) -> (\S+) ===$`)

// fixtureDir is the SIP traffic captured from real clients (testdata/fixtures; its README
// lists each client's quirks).
func fixtureDir(t testing.TB) string {
	t.Helper()
	const d = "testdata/fixtures"
	if _, err := os.Stat(filepath.Join(d, "README.md")); err != nil {
		t.Fatalf("fixtures: %v", err)
	}
	return d
}

// loadFixtures parses every capture file matching glob.
func loadFixtures(t testing.TB, glob string) []fixtureMessage {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fixtureDir(t), glob))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures for %s: %v", glob, err)
	}
	var out []fixtureMessage
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cur *fixtureMessage
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
		for _, line := range strings.Split(string(data), "\n") {
			if m := blockHead.FindStringSubmatch(line); m != nil {
				flush()
				cur = &fixtureMessage{File: filepath.Base(f), N: m[1], Transport: m[2], From: m[3], To: m[4]}
				continue
			}
			if cur != nil {
				lines = append(lines, line)
			}
		}
		flush()
	}
	return out
}

// Method returns the request method of a fixture message, "" for a response.
func (m fixtureMessage) Method() string {
	if strings.HasPrefix(m.Text, "SIP/2.0") {
		return ""
	}
	method, _, _ := strings.Cut(m.Text, " ")
	return method
}

// header returns the first value of header name in the message (case-insensitive), or "".
func (m fixtureMessage) header(name string) string {
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

// setHeader replaces (value != "") or removes (value == "") every header name.
func setHeader(text, name, value string) string {
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

// digestMD5 computes an RFC 2617 digest response (with qop=auth when cnonce != "") the way a
// client does, independently of auth.
func digestMD5(user, realm, password, method, uri, nonce, nc, cnonce string) string {
	h := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	ha1 := h(user + ":" + realm + ":" + password)
	ha2 := h(method + ":" + uri)
	if cnonce == "" {
		return h(ha1 + ":" + nonce + ":" + ha2)
	}
	return h(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
}

// challengeParams extracts the parameters of an MD5 challenge among the WWW-Authenticate or
// Proxy-Authenticate values.
func challengeParams(values []string) map[string]string {
	for _, v := range values {
		if !strings.Contains(v, "MD5") {
			continue
		}
		out := map[string]string{}
		for _, m := range regexp.MustCompile(`(\w+)=("[^"]*"|[^,\s]+)`).FindAllStringSubmatch(v, -1) {
			out[strings.ToLower(m[1])] = strings.Trim(m[2], `"`)
		}
		return out
	}
	return nil
}
