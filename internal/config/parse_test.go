package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(o *Options) // applied to Default() to get the expected options
	}{
		{name: "empty document", yaml: "", want: func(*Options) {}},
		{name: "comments only", yaml: "# nothing\n", want: func(*Options) {}},
		{name: "null document", yaml: "~\n", want: func(*Options) {}},
		{
			name: "top-level keys",
			yaml: "listen: [\"udp://[::1]:0\", ws://0.0.0.0:8088]\nstore: rediss://u:p@r:6380/2\nhttp: \"\"\nlog_level: debug\nlog_format: json\nnode_id: n1\n",
			want: func(o *Options) {
				o.Listen = []string{"udp://[::1]:0", "ws://0.0.0.0:8088"}
				o.Store = "rediss://u:p@r:6380/2"
				o.HTTP = ""
				o.LogLevel = "debug"
				o.LogFormat = "json"
				o.NodeID = "n1"
			},
		},
		{
			name: "domain as one string, lowercased",
			yaml: "domain: Example.TEST\n",
			want: func(o *Options) { o.Domains = []string{"example.test"} },
		},
		{
			name: "sections",
			yaml: "registrar:\n  min_expires: 30\n  max_contacts: 2\n  on_max_contacts: reject\n  sweep_interval: 500ms\nauth:\n  mode: off\n  nonce_lifetime: 30s\n  nonce_secret: 0123456789abcdef\nlimits: {max_message_size: 2048, max_body_size: 1024}\n",
			want: func(o *Options) {
				o.Registrar.MinExpires = 30
				o.Registrar.MaxContacts = 2
				o.Registrar.OnMaxContacts = "reject"
				o.Registrar.SweepInterval = 500 * time.Millisecond
				o.Auth.Mode = "off"
				o.Auth.NonceLifetime = 30 * time.Second
				o.Auth.NonceSecret = "0123456789abcdef"
				o.Limits.MaxMessageSize = 2048
				o.Limits.MaxBodySize = 1024
			},
		},
		{
			name: "empty section keeps defaults",
			yaml: "registrar:\nauth: {}\n",
			want: func(*Options) {},
		},
		{
			name: "numbers taken as strings where strings are wanted",
			yaml: "node_id: 7\n",
			want: func(o *Options) { o.NodeID = "7" },
		},
		{
			name: "anchors and aliases",
			yaml: "listen: &l [\"tcp://127.0.0.1:5070\"]\nregistrar: {min_expires: &m 120, default_expires: *m}\n",
			want: func(o *Options) {
				o.Listen = []string{"tcp://127.0.0.1:5070"}
				o.Registrar.MinExpires = 120
				o.Registrar.DefaultExpires = 120
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseString(tt.yaml)
			if err != nil {
				t.Fatalf("ParseString: %v", err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestParseErrors checks that each error is reported at the line and column of the key or
// value at fault, with its message (as nats config_check_test.go does).
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string
		key       string
		err       string // substring of Msg
		line, col int
	}{
		{name: "yaml syntax", yaml: "listen: [udp://127.0.0.1:5060\n", err: "did not find expected ',' or ']'", line: 1},
		{name: "tab indentation", yaml: "registrar:\n\tmin_expires: 1\n", err: "found character that cannot start any token", line: 2},
		{name: "top level not a mapping", yaml: "- a\n- b\n", err: "want a mapping of keys to values for the configuration, got a list", line: 1, col: 1},
		{name: "second document", yaml: "http: \"\"\n---\nhttp: x\n", err: "only one YAML document is allowed", line: 2, col: 1},
		{name: "unknown key with suggestion", yaml: "domains: [a.test]\n", key: "domains", err: "unknown key (did you mean domain?)", line: 1, col: 1},
		{name: "unknown key, dashes for underscores", yaml: "log_level: info\nlog-format: json\n", key: "log-format", err: "did you mean log_format?", line: 2, col: 1},
		{name: "unknown key in section", yaml: "registrar:\n  min_expire: 10\n", key: "registrar.min_expire", err: "did you mean min_expires?", line: 2, col: 3},
		{name: "key in the wrong section", yaml: "max_contacts: 3\n", key: "max_contacts", err: "did you mean registrar.max_contacts?", line: 1, col: 1},
		{name: "top-level key inside a section", yaml: "auth:\n  log_level: debug\n", key: "auth.log_level", err: "did you mean log_level at the top level?", line: 2, col: 3},
		{name: "unknown key, nothing close", yaml: "frobnicate: 1\n", key: "frobnicate", err: "unknown key", line: 1, col: 1},
		{name: "duplicate key", yaml: "store: memory\nhttp: \"\"\nstore: memory\n", key: "store", err: "duplicate key, first set at line 1", line: 3, col: 1},
		{name: "int wanted", yaml: "registrar:\n  max_contacts: many\n", key: "registrar.max_contacts", err: `want an integer, got "many"`, line: 2, col: 17},
		{name: "int overflow", yaml: "limits:\n  max_body_size: 99999999999999999999\n", key: "limits.max_body_size", err: "want an integer, got number", line: 2, col: 18},
		{name: "bool wanted", yaml: "pprof: sometimes\n", key: "pprof", err: `want true or false, got "sometimes"`, line: 1, col: 8},
		{name: "auth mode", yaml: "auth:\n  mode: sometimes\n", key: "auth.mode", err: `"sometimes": want required`, line: 2, col: 9},
		{name: "public listener without credentials", yaml: "listen: [udp://0.0.0.0:5060]\n", key: "listen", err: `udp://0.0.0.0:5060 is beyond loopback and auth.mode is required, but there is no credential source`, line: 1, col: 10},
		{name: "duration wanted", yaml: "auth:\n  nonce_lifetime: 300\n", key: "auth.nonce_lifetime", err: `want a duration such as "1s" or "500ms", got integer 300`, line: 2, col: 19},
		{name: "bad duration", yaml: "registrar:\n  sweep_interval: 1 second\n", key: "registrar.sweep_interval", err: `got "1 second"`, line: 2, col: 19},
		{name: "string wanted", yaml: "store: {redis: x}\n", key: "store", err: "want a string, got a mapping", line: 1, col: 8},
		{name: "list element not a string", yaml: "listen:\n  - udp://127.0.0.1:5060\n  - [a]\n", key: "listen", err: "want a string, got a list", line: 3, col: 5},
		{name: "section not a mapping", yaml: "limits: 5\n", key: "limits", err: "want a mapping of keys to values for limits, got integer 5", line: 1, col: 9},
		{name: "bad listener at its element", yaml: "listen:\n  - udp://127.0.0.1:5060\n  - http://127.0.0.1:80\n", key: "listen", err: `unknown scheme "http"`, line: 3, col: 5},
		{name: "listener port out of range", yaml: "listen: [\"udp://127.0.0.1:70000\"]\n", key: "listen", err: "port 70000 out of range 0..65535", line: 1, col: 10},
		{name: "unbracketed IPv6 listener", yaml: "listen: [\"udp://::1:5060\"]\n", key: "listen", err: "too many colons", line: 1, col: 10},
		{name: "empty listen", yaml: "listen: []\n", key: "listen", err: "at least one listener is required", line: 1, col: 9},
		{name: "duplicate listener", yaml: "listen:\n  - udp://127.0.0.1:5060\n  - UDP://127.0.0.1:5060\n", key: "listen", err: "udp://127.0.0.1:5060 given twice", line: 3, col: 5},
		{name: "two stream listeners on one port", yaml: "listen:\n  - tcp://127.0.0.1:5060\n  - ws://127.0.0.1:5060\n", key: "listen", err: "tcp://127.0.0.1:5060 and ws://127.0.0.1:5060 both bind tcp port 127.0.0.1:5060", line: 3, col: 5},
		{name: "tls listener without cert", yaml: "listen:\n  - tls://127.0.0.1:5061\n", key: "listen", err: "tls://127.0.0.1:5061 needs tls_cert and tls_key", line: 2, col: 5},
		{name: "bad domain", yaml: "domain:\n  - ok.test\n  - bad_domain\n", key: "domain", err: `"bad_domain" is not a host name or IP address`, line: 3, col: 5},
		{name: "duplicate domain", yaml: "domain: [a.test, A.test]\n", key: "domain", err: `"a.test" given twice`, line: 1, col: 18},
		{name: "no domain", yaml: "domain: []\n", key: "domain", err: "at least one domain is required", line: 1, col: 9},
		{name: "store scheme", yaml: "store: postgres://db/0\n", key: "store", err: `unknown scheme "postgres"`, line: 1, col: 8},
		{name: "store database", yaml: "store: redis://127.0.0.1:6379/x\n", key: "store", err: `database "x" is not a number`, line: 1, col: 8},
		{name: "store error masks password", yaml: "store: redis://u:hunter2@127.0.0.1:6379/x\n", key: "store", err: `"redis://u:***@127.0.0.1:6379/x"`, line: 1, col: 8},
		{name: "http without port", yaml: "http: localhost\n", key: "http", err: `"localhost": missing port in address`, line: 1, col: 7},
		{name: "users file missing", yaml: "users: /nonexistent/users.txt\n", key: "users", err: "no such file or directory", line: 1, col: 8},
		{name: "log level", yaml: "log_level: verbose\n", key: "log_level", err: `"verbose": want one of debug, info, warn, error`, line: 1, col: 12},
		{name: "log format", yaml: "log_format: text\n", key: "log_format", err: `"text": want console, json or ""`, line: 1, col: 13},
		{name: "node id", yaml: "node_id: \"node 1\"\n", key: "node_id", err: "want at most 64 letters, digits", line: 1, col: 10},
		{name: "min expires below 1", yaml: "registrar:\n  min_expires: 0\n", key: "registrar.min_expires", err: "0: must be at least 1 second", line: 2, col: 16},
		{name: "default below min", yaml: "registrar:\n  min_expires: 600\n  default_expires: 300\n", key: "registrar.default_expires", err: "300: must be at least min_expires (600)", line: 3, col: 20},
		{name: "max below default", yaml: "registrar:\n  max_expires: 1800\n", key: "registrar.max_expires", err: "1800: must be at least default_expires (3600)", line: 2, col: 16},
		{name: "max contacts", yaml: "registrar: {max_contacts: 0}\n", key: "registrar.max_contacts", err: "0: must be at least 1", line: 1, col: 27},
		{name: "on max contacts", yaml: "registrar: {on_max_contacts: drop}\n", key: "registrar.on_max_contacts", err: `"drop": want evict`, line: 1, col: 30},
		{name: "sweep interval", yaml: "registrar: {sweep_interval: 0s}\n", key: "registrar.sweep_interval", err: "0s: must be more than 0", line: 1, col: 29},
		{name: "nonce lifetime", yaml: "auth: {nonce_lifetime: -1m}\n", key: "auth.nonce_lifetime", err: "-1m0s: must be more than 0", line: 1, col: 24},
		{name: "lockout", yaml: "auth: {lockout: -1m}\n", key: "auth.lockout", err: "-1m0s: must not be negative (0 disables lockouts)", line: 1, col: 17},
		{name: "lockout threshold", yaml: "auth: {lockout_threshold: 0}\n", key: "auth.lockout_threshold", err: "0: must be at least 1", line: 1, col: 27},
		{name: "short nonce secret is not printed", yaml: "auth:\n  nonce_secret: s3cret\n", key: "auth.nonce_secret", err: "too short (6 bytes)", line: 2, col: 17},
		{name: "message size", yaml: "limits: {max_message_size: 0, max_body_size: 0}\n", key: "limits.max_message_size", err: "0: must be at least 1 byte", line: 1, col: 28},
		{name: "body larger than message", yaml: "limits:\n  max_message_size: 1000\n  max_body_size: 2000\n", key: "limits.max_body_size", err: "2000: must be at most max_message_size (1000)", line: 3, col: 18},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "simpled.yaml")
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error = %v, want *Errors", err)
			}
			if len(errs.List) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs.List), err)
			}
			e := errs.List[0]
			if e.File != "simpled.yaml" || e.Line != tt.line || e.Col != tt.col {
				t.Errorf("position = %s:%d:%d, want simpled.yaml:%d:%d (%v)", e.File, e.Line, e.Col, tt.line, tt.col, e)
			}
			if e.Key != tt.key {
				t.Errorf("key = %q, want %q (%v)", e.Key, tt.key, e)
			}
			if !strings.Contains(e.Msg, tt.err) {
				t.Errorf("message = %q, want it to contain %q", e.Msg, tt.err)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

// TestParseSeveralErrors checks that every error of a file is reported at once, in file order.
func TestParseSeveralErrors(t *testing.T) {
	const doc = `listen:
  - udp://127.0.0.1:5060
  - smtp://127.0.0.1:25
domains: [a.test]
registrar:
  min_expires: ten
  max_expires: 30
log_level: loud
limits:
  max_body_size: 1000000
`
	_, err := Parse([]byte(doc), "bad.yaml")
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error = %v, want *Errors", err)
	}
	want := []string{
		`bad.yaml:3:5: listen: "smtp://127.0.0.1:25": unknown scheme "smtp", want one of udp, tcp, tls, ws, wss`,
		`bad.yaml:4:1: domains: unknown key (did you mean domain?)`,
		`bad.yaml:6:16: registrar.min_expires: want an integer, got "ten"`,
		`bad.yaml:7:16: registrar.max_expires: 30: must be at least default_expires (3600)`,
		`bad.yaml:8:12: log_level: "loud": want one of debug, info, warn, error`,
		`bad.yaml:10:18: limits.max_body_size: 1000000: must be at most max_message_size (262144)`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("error:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if len(errs.Unwrap()) != len(want) {
		t.Errorf("Unwrap gives %d errors, want %d", len(errs.Unwrap()), len(want))
	}
	var one *Error
	if !errors.As(err, &one) || one.Line != 3 {
		t.Errorf("errors.As(*Error) = %v, want the first error", one)
	}
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "simpled.yaml")
	if err := os.WriteFile(path, []byte("domain: a.test\nlog_level: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ParseFile(path)
	if want := path + `:2:12: log_level: "nope": want one of debug, info, warn, error`; err == nil || err.Error() != want {
		t.Errorf("ParseFile error = %v, want %s", err, want)
	}

	_, err = ParseFile(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("ParseFile(missing) error = %v, want config: ... not exist", err)
	}
}

// TestParseFileRelativePaths checks that paths in a file are relative to the file, not to the
// working directory.
func TestParseFileRelativePaths(t *testing.T) {
	dir := t.TempDir()
	writeTLSFiles(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte("alice@a.test:pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "simpled.yaml")
	doc := "listen: [\"tls://127.0.0.1:0\"]\nusers: users.txt\ntls_cert: ./cert.pem\ntls_key: " + filepath.Join(dir, "key.pem") + "\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := ParseFile(path)
	if err != nil {
		t.Fatalf("ParseFile: %v", err)
	}
	want := []string{filepath.Join(dir, "users.txt"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	if got := []string{o.UsersFile, o.TLSCert, o.TLSKey}; !reflect.DeepEqual(got, want) {
		t.Errorf("paths = %q, want %q", got, want)
	}
}

func TestParseTLSListeners(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTLSFiles(t, dir)
	doc := "listen: [\"tls://127.0.0.1:0\", \"wss://127.0.0.1:0\"]\ntls_cert: " + cert + "\ntls_key: " + key + "\n"
	o, err := ParseString(doc)
	if err != nil {
		t.Fatalf("ParseString: %v", err)
	}
	if o.TLSCert != cert || o.TLSKey != key {
		t.Errorf("tls = %q %q, want %q %q", o.TLSCert, o.TLSKey, cert, key)
	}
}

// writeTLSFiles creates placeholder certificate and key files; validation only checks that
// they exist, the server loads them.
func writeTLSFiles(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, p := range []string{cert, key} {
		if err := os.WriteFile(p, []byte("placeholder\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, key
}

func TestSuggest(t *testing.T) {
	tests := []struct {
		name, prefix, key, want string
	}{
		{name: "typo", key: "lisen", want: " (did you mean listen?)"},
		{name: "plural", key: "domains", want: " (did you mean domain?)"},
		{name: "flag spelling", key: "tls-cert", want: " (did you mean tls_cert?)"},
		{name: "upper case", key: "HTTP", want: " (did you mean http?)"},
		{name: "other section", key: "nonce_secret", want: " (did you mean auth.nonce_secret?)"},
		{name: "in section", prefix: "limits.", key: "max_body", want: ""},
		{name: "in section typo", prefix: "limits.", key: "max_bodysize", want: " (did you mean max_body_size?)"},
		{name: "short key, far", key: "xyz", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := suggest(tt.prefix, tt.key); got != tt.want {
				t.Errorf("suggest(%q, %q) = %q, want %q", tt.prefix, tt.key, got, tt.want)
			}
		})
	}
}

// FuzzParse checks that no input makes Parse panic and that every error has a message and
// a position inside the document.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"", "listen: [udp://127.0.0.1:5060]\n", "registrar: {min_expires: 1}\n", "a: &a [*a]\n",
		"domain: x\n---\n", "auth:\n  nonce_lifetime: 1h\n", "store: redis+cluster://:p@a:1,b\n",
	} {
		f.Add(seed)
	}
	if files, _ := filepath.Glob("../../examples/*.yaml"); len(files) > 0 {
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(string(data))
			}
		}
	}
	f.Fuzz(func(t *testing.T, doc string) {
		_, err := Parse([]byte(doc), "f.yaml")
		if err == nil {
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) || len(errs.List) == 0 {
			t.Fatalf("error %v (%T), want a non-empty *Errors", err, err)
		}
		// YAML breaks lines at \n, \r and \r\n: testdata/fuzz/FuzzParse/515614f152456b39
		// ("\r\r0", an error on line 3) caught a bound that counted \n only.
		lines := strings.Count(doc, "\n") + strings.Count(doc, "\r") + 1
		for _, e := range errs.List {
			if e.Msg == "" || e.Line < 0 || e.Line > lines+1 {
				t.Errorf("bad error %+v for %d lines", e, lines)
			}
		}
	})
}
