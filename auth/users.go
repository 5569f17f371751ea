package auth

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/simpled/simpled/storage"
)

// Users is the set of credentials loaded from a users file (-users FILE). It is safe for
// concurrent use; Reload (on SIGHUP) replaces the whole set at once, so a lookup sees either
// the old file or the new one, never a mix.
//
// File format, one entry per line:
//
//	# comment
//	alice@example.test:secret-alice
//	bob@example.test:example.test:1f3870be274f6c49b3e31a0c6728957f
//
// The first form gives a password (both the MD5 and the SHA-256 HA1 are computed from it, the
// realm being the domain in lower case); the second gives the realm and the MD5 HA1
// (32 hex digits), so such a user can only use MD5. Rules:
//
//   - Blank lines are ignored. "#" starts a comment at the start of a line or after a space or
//     tab; a "#" inside a word (pa#ss) is part of it. Leading and trailing whitespace of each
//     line is dropped, so a password cannot begin or end with whitespace.
//   - The AOR is user@domain; the user part is kept as written (it is case-sensitive and is the
//     digest username), the domain is compared in lower case. The AOR has no ':'.
//   - After the AOR's ':', the rest is read as realm:HA1 exactly when it holds one more ':'
//     and what follows it is 32 hex digits; otherwise the whole rest is the password, which
//     may then contain ':' (e.g. "a:b:c"). A password that itself looks like "x:<32 hex>"
//     cannot be written in the first form: write its HA1 with the second form.
//   - The realm of the second form must be the AOR's domain in lower case, since simpled
//     challenges with that realm; anything else could never verify.
//   - An AOR may appear once.
//
// Every error is reported, each with its line number (see LineError).
type Users struct {
	m atomic.Pointer[map[userKey]storage.Credential]
}

type userKey struct{ aor, realm string }

// LineError is one error in a users file, at a 1-based line.
type LineError struct {
	Name string // file name, or "" when parsed from a reader
	Line int
	Err  error
}

// Error returns "name:line: err" (or "line N: err" without a name).
func (e *LineError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("%s:%d: %v", e.Name, e.Line, e.Err)
}

// Unwrap returns the cause.
func (e *LineError) Unwrap() error { return e.Err }

// maxUsersLine bounds one line of a users file.
const maxUsersLine = 64 * 1024

// LoadUsers reads the users file at path. The error joins one *LineError per bad line.
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: load users: %w", err)
	}
	defer f.Close()
	return ParseUsers(f, path)
}

// ParseUsers reads a users file from r; name labels the errors (it may be ""). The error wraps
// errors.Join of one *LineError per bad line (use errors.As to reach them).
func ParseUsers(r io.Reader, name string) (*Users, error) {
	m := make(map[userKey]storage.Credential)
	firstLine := make(map[userKey]int)
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxUsersLine)
	line := 0
	for sc.Scan() {
		line++
		aor, realm, cred, err := parseUsersLine(sc.Text())
		if err != nil {
			errs = append(errs, &LineError{Name: name, Line: line, Err: err})
			continue
		}
		if aor == "" { // blank or comment
			continue
		}
		k := userKey{aor: aor, realm: realm}
		if first, dup := firstLine[k]; dup {
			errs = append(errs, &LineError{Name: name, Line: line,
				Err: fmt.Errorf("duplicate entry for %s (first on line %d)", aor, first)})
			continue
		}
		firstLine[k] = line
		m[k] = cred
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, &LineError{Name: name, Line: line + 1, Err: err})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("auth: load users: %w", errors.Join(errs...))
	}
	u := &Users{}
	u.m.Store(&m)
	return u, nil
}

// parseUsersLine parses one line; a blank or comment line gives aor "".
func parseUsersLine(s string) (aor, realm string, cred storage.Credential, err error) {
	s = stripComment(s)
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", cred, nil
	}
	at := strings.IndexByte(s, '@')
	colon := strings.IndexByte(s, ':')
	if colon < 0 {
		return "", "", cred, errors.New("want user@domain:password or user@domain:realm:HA1")
	}
	if at < 0 || at > colon {
		return "", "", cred, errors.New("AOR: want user@domain")
	}
	user, domain, rest := s[:at], s[at+1:colon], s[colon+1:]
	switch {
	case user == "":
		return "", "", cred, errors.New("AOR: empty user")
	case domain == "":
		return "", "", cred, errors.New("AOR: empty domain")
	case strings.ContainsAny(user, " \t@") || strings.ContainsAny(domain, " \t@"):
		return "", "", cred, errors.New("AOR: whitespace or second '@'")
	case rest == "":
		return "", "", cred, errors.New("empty password")
	}
	domain = strings.ToLower(domain)
	aor = user + "@" + domain
	if r, ha1, ok := strings.Cut(rest, ":"); ok && !strings.Contains(ha1, ":") && isHexLen(ha1, 32) {
		if r != domain {
			return "", "", cred, fmt.Errorf("realm %q: must be the domain %q", r, domain)
		}
		return aor, domain, storage.Credential{HA1MD5: strings.ToLower(ha1)}, nil
	}
	return aor, domain, storage.Credential{
		HA1MD5:    HA1(MD5, user, domain, rest),
		HA1SHA256: HA1(SHA256, user, domain, rest),
	}, nil
}

// stripComment cuts s at a '#' that starts the line or follows a space or tab.
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || isSpace(s[i-1])) {
			return s[:i]
		}
	}
	return s
}

func isHexLen(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Lookup returns the credential of aor ("user@domain", domain compared in lower case) for
// realm. A nil *Users has none.
func (u *Users) Lookup(aor, realm string) (storage.Credential, bool) {
	if u == nil {
		return storage.Credential{}, false
	}
	c, ok := u.entries()[userKey{aor: normalizeAOR(aor), realm: realm}]
	return c, ok
}

// Len returns the number of entries. A nil *Users has none.
func (u *Users) Len() int {
	return len(u.entries())
}

// Domains returns the distinct domains of the entries, sorted.
func (u *Users) Domains() []string {
	if u == nil {
		return nil
	}
	set := make(map[string]bool)
	for k := range u.entries() {
		if _, d, ok := strings.Cut(k.aor, "@"); ok {
			set[d] = true
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// entries returns the current set; nil for a nil *Users.
func (u *Users) entries() map[userKey]storage.Credential {
	if u == nil {
		return nil
	}
	if m := u.m.Load(); m != nil {
		return *m
	}
	return nil
}

// AORs returns the AORs of the entries, sorted, without their secrets.
func (u *Users) AORs() []string {
	m := u.entries()
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k.aor)
	}
	sort.Strings(out)
	return out
}

// UsersDiff is what a Reload changed, each list sorted: AORs that appeared, disappeared, or
// whose secrets changed.
type UsersDiff struct {
	Added, Removed, Changed []string
}

// Reload reads the users file at path again and, when it parses, makes u hold its entries
// from now on. When it does not (a missing file, any bad line), u keeps the entries it had
// and the error says why (see LoadUsers). u must not be nil.
func (u *Users) Reload(path string) (UsersDiff, error) {
	n, err := LoadUsers(path)
	if err != nil {
		return UsersDiff{}, err
	}
	next := n.entries()
	old := u.entries()
	u.m.Store(&next)
	var d UsersDiff
	for k, c := range next {
		if was, ok := old[k]; !ok {
			d.Added = append(d.Added, k.aor)
		} else if was != c {
			d.Changed = append(d.Changed, k.aor)
		}
	}
	for k := range old {
		if _, ok := next[k]; !ok {
			d.Removed = append(d.Removed, k.aor)
		}
	}
	sort.Strings(d.Added)
	sort.Strings(d.Removed)
	sort.Strings(d.Changed)
	return d, nil
}

// normalizeAOR lowers the domain part of "user@domain".
func normalizeAOR(aor string) string {
	i := strings.LastIndexByte(aor, '@')
	if i < 0 {
		return aor
	}
	return aor[:i+1] + strings.ToLower(aor[i+1:])
}
