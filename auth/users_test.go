package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simpled/simpled/storage"
)

func TestParseUsers(t *testing.T) {
	const file = `# simpled users
alice@example.test:secret-alice
  Bob@Example.TEST:pa:ss:word   # a comment after a space
carol@example.test:example.test:0123456789ABCDEF0123456789abcdef

dave@example.test:pa#ss
erin@example.test:x:y:0123456789abcdef0123456789abcdef
`
	u, err := ParseUsers(strings.NewReader(file), "users")
	if err != nil {
		t.Fatal(err)
	}
	if u.Len() != 5 {
		t.Fatalf("Len = %d, want 5", u.Len())
	}
	tests := []struct {
		name  string
		aor   string
		realm string
		want  storage.Credential
		found bool
	}{
		{name: "password", aor: "alice@example.test", realm: "example.test", found: true, want: storage.Credential{
			HA1MD5: HA1(MD5, "alice", "example.test", "secret-alice"), HA1SHA256: HA1(SHA256, "alice", "example.test", "secret-alice")}},
		{name: "password with colons, domain lowered", aor: "Bob@EXAMPLE.test", realm: "example.test", found: true, want: storage.Credential{
			HA1MD5: HA1(MD5, "Bob", "example.test", "pa:ss:word"), HA1SHA256: HA1(SHA256, "Bob", "example.test", "pa:ss:word")}},
		{name: "HA1 form, lowered", aor: "carol@example.test", realm: "example.test", found: true,
			want: storage.Credential{HA1MD5: "0123456789abcdef0123456789abcdef"}},
		{name: "hash inside a word", aor: "dave@example.test", realm: "example.test", found: true, want: storage.Credential{
			HA1MD5: HA1(MD5, "dave", "example.test", "pa#ss"), HA1SHA256: HA1(SHA256, "dave", "example.test", "pa#ss")}},
		{name: "two colons then hex is a password", aor: "erin@example.test", realm: "example.test", found: true, want: storage.Credential{
			HA1MD5:    HA1(MD5, "erin", "example.test", "x:y:0123456789abcdef0123456789abcdef"),
			HA1SHA256: HA1(SHA256, "erin", "example.test", "x:y:0123456789abcdef0123456789abcdef")}},
		{name: "user part is case-sensitive", aor: "bob@example.test", realm: "example.test"},
		{name: "other realm", aor: "alice@example.test", realm: "other.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := u.Lookup(tt.aor, tt.realm)
			if found != tt.found || got != tt.want {
				t.Fatalf("Lookup = %+v, %v; want %+v, %v", got, found, tt.want, tt.found)
			}
		})
	}
	if d := u.Domains(); len(d) != 1 || d[0] != "example.test" {
		t.Fatalf("Domains = %v", d)
	}
}

func TestParseUsersErrors(t *testing.T) {
	const file = `alice@example.test:secret
no-colon-here
@example.test:pw
alice@:pw
alice@example.test:again
bob@example.test:
carol@example.test:Example.Test:0123456789abcdef0123456789abcdef
dave:pw
# fine
eve@example.test:ok
`
	_, err := ParseUsers(strings.NewReader(file), "users.txt")
	if err == nil {
		t.Fatal("ParseUsers accepted a bad file")
	}
	want := []struct {
		line int
		text string
	}{
		{line: 2, text: "want user@domain:password"},
		{line: 3, text: "empty user"},
		{line: 4, text: "empty domain"},
		{line: 5, text: "duplicate entry for alice@example.test (first on line 1)"},
		{line: 6, text: "empty password"},
		{line: 7, text: `realm "Example.Test": must be the domain "example.test"`},
		{line: 8, text: "want user@domain"},
	}
	var got []*LineError
	for _, e := range err.(interface{ Unwrap() error }).Unwrap().(interface{ Unwrap() []error }).Unwrap() {
		var le *LineError
		if !errors.As(e, &le) {
			t.Fatalf("not a *LineError: %v", e)
		}
		got = append(got, le)
	}
	if len(got) != len(want) {
		t.Fatalf("%d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		t.Run(w.text, func(t *testing.T) {
			if got[i].Line != w.line || !strings.Contains(got[i].Error(), w.text) || got[i].Name != "users.txt" {
				t.Fatalf("error %d = %q (line %d), want line %d with %q", i, got[i].Error(), got[i].Line, w.line, w.text)
			}
		})
	}
	if !strings.HasPrefix(err.Error(), "auth: load users: users.txt:2: ") {
		t.Fatalf("error text %q", err.Error())
	}
}

func TestLoadUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("alice@example.test:secret-alice\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.Lookup("alice@example.test", "example.test"); !ok {
		t.Fatal("alice not found (CRLF line ending)")
	}
	if _, err := LoadUsers(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadUsers(missing) = %v", err)
	}
	var nilUsers *Users
	if _, ok := nilUsers.Lookup("alice@example.test", "example.test"); ok || nilUsers.Len() != 0 {
		t.Fatal("nil *Users has entries")
	}
}

// TestUsersReload: SIGHUP's reload makes a user added to the file known and a removed one
// unknown, through the same *Users the digest stage holds; a file that no longer parses
// changes nothing.
func TestUsersReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("alice@example.test:secret-alice\ncarol@example.test:old\n")
	u, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	has := func(aor string) bool {
		_, ok := u.Lookup(aor, "example.test")
		return ok
	}

	// Lookups keep running during the reloads (the race detector watches).
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				u.Lookup("alice@example.test", "example.test")
				_ = u.Len()
			}
		}
	}()
	defer func() { close(stop); <-done }()

	write("bob@example.test:secret-bob\ncarol@example.test:new\n")
	d, err := u.Reload(path)
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !has("bob@example.test") || has("alice@example.test") {
		t.Fatalf("after reload: bob known %v (want true), alice known %v (want false)", has("bob@example.test"), has("alice@example.test"))
	}
	want := UsersDiff{Added: []string{"bob@example.test"}, Removed: []string{"alice@example.test"}, Changed: []string{"carol@example.test"}}
	if strings.Join(d.Added, ",") != strings.Join(want.Added, ",") || strings.Join(d.Removed, ",") != strings.Join(want.Removed, ",") ||
		strings.Join(d.Changed, ",") != strings.Join(want.Changed, ",") {
		t.Errorf("diff = %+v, want %+v", d, want)
	}
	if c, _ := u.Lookup("carol@example.test", "example.test"); c.HA1MD5 != HA1(MD5, "carol", "example.test", "new") {
		t.Errorf("carol's password not replaced")
	}

	write("dave@example.test:secret-dave\nthis line is broken\n")
	if _, err := u.Reload(path); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("Reload of a broken file: err = %v, want one naming line 2", err)
	}
	if !has("bob@example.test") || has("dave@example.test") || u.Len() != 2 {
		t.Fatalf("a broken file changed the users: bob %v, dave %v, %d entries", has("bob@example.test"), has("dave@example.test"), u.Len())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Reload(path); err == nil || !has("bob@example.test") {
		t.Fatalf("Reload of a missing file: err = %v, bob known %v; want an error and bob kept", err, has("bob@example.test"))
	}
	if got := strings.Join(u.AORs(), ","); got != "bob@example.test,carol@example.test" {
		t.Errorf("AORs = %s", got)
	}
}
