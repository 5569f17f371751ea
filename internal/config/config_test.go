package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/registrar"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

// TestDefaultMatchesCLI pins the defaults that docs/cli.md promises to clients and tests.
func TestDefaultMatchesCLI(t *testing.T) {
	o := Default()
	tests := []struct {
		name      string
		got, want any
	}{
		{name: "listen", got: o.Listen, want: []string{"udp://127.0.0.1:5060", "tcp://127.0.0.1:5060"}},
		{name: "domain", got: o.Domains, want: []string{"localhost"}},
		{name: "store", got: o.Store, want: "memory"},
		{name: "http", got: o.HTTP, want: "127.0.0.1:8080"},
		{name: "log level", got: o.LogLevel, want: "info"},
		{name: "log format", got: o.LogFormat, want: ""},
		{name: "min expires", got: o.Registrar.MinExpires, want: 60},
		{name: "default expires", got: o.Registrar.DefaultExpires, want: 3600},
		{name: "max expires", got: o.Registrar.MaxExpires, want: 7200},
		{name: "max contacts", got: o.Registrar.MaxContacts, want: 10},
		{name: "on max contacts", got: o.Registrar.OnMaxContacts, want: "evict"},
		{name: "sweep interval", got: o.Registrar.SweepInterval, want: time.Second},
		{name: "auth mode", got: o.Auth.Mode, want: ""},
		{name: "nonce lifetime", got: o.Auth.NonceLifetime, want: 5 * time.Minute},
		{name: "digest algorithms", got: o.Auth.Algorithms, want: []string{"MD5"}},
		{name: "require qop", got: o.Auth.RequireQOP, want: false},
		{name: "lockout", got: o.Auth.Lockout, want: 5 * time.Minute},
		{name: "lockout threshold", got: o.Auth.LockoutThreshold, want: 10},
		{name: "max message size", got: o.Limits.MaxMessageSize, want: 256 * 1024},
		{name: "max body size", got: o.Limits.MaxBodySize, want: 64 * 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("default = %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestDefaultReturnsFreshSlices(t *testing.T) {
	a := Default()
	a.Listen[0] = "changed"
	a.Domains[0] = "changed"
	if b := Default(); b.Listen[0] == "changed" || b.Domains[0] == "changed" {
		t.Fatal("Default shares its slices between calls")
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTLSFiles(t, dir)
	token, short := filepath.Join(dir, "token"), filepath.Join(dir, "short")
	if err := os.WriteFile(token, []byte("  0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte("secret1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(o *Options)
		errs   []string // every error, in order; nil: valid
	}{
		{name: "default", change: func(*Options) {}},
		{
			name:   "digest algorithms",
			change: func(o *Options) { o.Auth.Algorithms = []string{"SHA-256", "md5", "SHA-512", "MD5"} },
			errs: []string{
				`auth.algorithms: "SHA-512": want MD5, SHA-256, MD5-sess or SHA-256-sess`,
				`auth.algorithms: "MD5" listed twice`,
			},
		},
		{
			name: "tls listeners with cert and key",
			change: func(o *Options) {
				o.Listen = append(o.Listen, "tls://127.0.0.1:5061", "wss://[::1]:0")
				o.TLSCert, o.TLSKey = cert, key
			},
		},
		{
			name:   "tls material without tls listener is fine",
			change: func(o *Options) { o.TLSCert, o.TLSKey = cert, key },
		},
		{
			name:   "udp and tcp share a port, :0 twice is fine",
			change: func(o *Options) { o.Listen = []string{"udp://127.0.0.1:0", "udp://127.0.0.1:0", "ws://127.0.0.1:0"} },
		},
		{
			name:   "IP literal domains",
			change: func(o *Options) { o.Domains = []string{"127.0.0.1", "::1", "[2001:db8::1]"} },
		},
		{name: "empty http disables", change: func(o *Options) { o.HTTP = "" }},
		{name: "http on every interface with a token", change: func(o *Options) { o.HTTP, o.Admin.TokenFile = ":8080", token }},
		{name: "http on localhost and ::1 without a token", change: func(o *Options) { o.HTTP = "localhost:8080" }},
		{name: "pprof and send_as_users with a token", change: func(o *Options) {
			o.Pprof, o.Admin.TokenFile, o.Admin.SendAsUsers, o.Admin.Hosts = true, token, true, []string{"admin.example.test", "admin.example.test:8443", "[::1]:8080"}
		}},
		{
			name:   "http on every interface without a token",
			change: func(o *Options) { o.HTTP = ":8080" },
			errs:   []string{`http: ":8080" is not a loopback address and the admin API has no token: set admin.token_file (-admin-token-file FILE), or listen on 127.0.0.1`},
		},
		{
			name:   "http on 0.0.0.0 without a token",
			change: func(o *Options) { o.HTTP = "0.0.0.0:8080" },
			errs:   []string{`http: "0.0.0.0:8080" is not a loopback address and the admin API has no token: set admin.token_file (-admin-token-file FILE), or listen on 127.0.0.1`},
		},
		{
			name:   "http on [::] without a token",
			change: func(o *Options) { o.HTTP = "[::]:8080" },
			errs:   []string{`http: "[::]:8080" is not a loopback address and the admin API has no token: set admin.token_file (-admin-token-file FILE), or listen on 127.0.0.1`},
		},
		{
			name:   "pprof and send_as_users without a token",
			change: func(o *Options) { o.Pprof, o.Admin.SendAsUsers = true, true },
			errs: []string{
				"pprof: the profiler shows stacks and memory: it needs admin.token_file (-admin-token-file FILE)",
				"admin.send_as_users: needs admin.token_file: without a token nobody is identified to send as a user",
			},
		},
		{
			name:   "short token, bad host",
			change: func(o *Options) { o.Admin.TokenFile, o.Admin.Hosts = short, []string{"bad host"} },
			errs: []string{
				"admin.token_file: " + short + ": too short (7 bytes): want at least 16 (e.g. head -c 32 /dev/urandom | base64)",
				`admin.hosts: "bad host": want a host name, an IP address, or either with :port`,
			},
		},
		{
			name:   "mailbox shares out of range",
			change: func(o *Options) { o.Messages.OfflineMaxPerSender, o.Messages.OfflineForeignShare = -1, 1.5 },
			errs: []string{
				"messages.offline_max_per_sender: -1: must be 0 (no bound) or more",
				"messages.offline_foreign_share: 1.5: must be above 0 and at most 1",
			},
		},
		{name: "no mailbox shares", change: func(o *Options) { o.Messages.OfflineMaxPerSender, o.Messages.OfflineForeignShare = 0, 1 }},
		{
			name:   "missing token file",
			change: func(o *Options) { o.Admin.TokenFile = dir + "/none" },
			errs:   []string{"admin.token_file: open " + dir + "/none: no such file or directory"},
		},
		{name: "min = default = max", change: func(o *Options) {
			o.Registrar = registrar.Config{MinExpires: 1, DefaultExpires: 1, MaxExpires: 1, MaxContacts: 1, OnMaxContacts: "reject", SweepInterval: time.Millisecond}
		}},
		{
			name: "state limits",
			change: func(o *Options) {
				o.Registrar.MaxNewAORsPerSource = -1
				o.Presence.MaxWatchersPerDomain = o.Presence.MaxWatchers + 1
			},
			errs: []string{
				"registrar.max_new_aors_per_source: -1: must be 0 (no limit) or more",
				"presence.max_watchers_per_domain: 1001: want 1 to presence.max_watchers (1000)",
			},
		},
		{name: "body = message size", change: func(o *Options) { o.Limits.MaxBodySize = o.Limits.MaxMessageSize }},
		{
			name:   "zero value is not valid: start from Default",
			change: func(o *Options) { *o = Options{} },
			errs: []string{
				"listen: at least one listener is required",
				"domain: at least one domain is required",
				`store: "": want memory, redis://HOST:PORT/DB, rediss://HOST:PORT/DB or redis+cluster://HOST:PORT,HOST:PORT`,
				`log_level: "": want one of debug, info, warn, error`,
				"registrar.min_expires: 0: must be at least 1 second",
				"registrar.max_contacts: 0: must be at least 1",
				`registrar.on_max_contacts: "": want evict (remove the oldest binding) or reject (403)`,
				"registrar.sweep_interval: 0s: must be more than 0",
				"auth.nonce_lifetime: 0s: must be more than 0",
				"auth.lockout_threshold: 0: must be at least 1",
				"auth.algorithms: empty: want at least one of MD5, SHA-256, MD5-sess, SHA-256-sess",
				"limits.max_message_size: 0: must be at least 1 byte",
				"limits.source_rate: 0: must be at least 1 message per second",
				"limits.max_inflight: 0: must be at least 1",
				"limits.max_inflight_per_source: 0: want 1 to max_inflight (0)",
				"proxy.udp_mtu: 0: must be at least 500 bytes",
				"proxy.invite_timeout: 0s: must be at least 1s",
				"messages.offline_max_count: 0: must be at least 1",
				"messages.offline_max_bytes: 0: must be at least 1",
				"messages.offline_foreign_share: 0: must be above 0 and at most 1",
				"messages.offline_max_age: 0s: must be at least 1m",
				`presence.policy: "": want allow, same-domain or confirm`,
				"presence.max_subscriptions_per_source: 0: must be at least 1",
				"presence.max_watchers: 0: must be at least 1",
				"presence.max_watchers_per_domain: 0: want 1 to presence.max_watchers (0)",
				"transport.max_connections: 0: must be at least 1",
				"transport.max_connections_per_ip: 0: must be at least 1",
				"transport.idle_timeout: 0s: must be at least 1s",
				"transport.message_timeout: 0s: must be at least 100ms",
				"transport.handshake_timeout: 0s: must be at least 100ms",
				"cluster.lease: 0s: must be between 1s and 5m",
				`dialog.remote_identity: "": want same-domain, always or never`,
				"dialog.max_duration: 0s: must be at least 1m",
				"dialog.max_dialogs: 0: must be at least 1",
			},
		},
		{
			name:   "cluster lease too long",
			change: func(o *Options) { o.Cluster.Lease = 6 * time.Minute },
			errs:   []string{"cluster.lease: 6m0s: must be between 1s and 5m"},
		},
		{
			name: "proxy and messages settings",
			change: func(o *Options) {
				o.Proxy.DNS = "127.0.0.1"
				o.Proxy.TrustedPeers = []string{"10.0.0.0/8", "192.0.2.1", "pbx.example", "10.0.0.300", "pbx_1.example"}
				o.Transport.WSOrigins = []string{"https://chat.example.com", "chat.example.com", "https://x.example/app"}
				o.Messages.ContentTypes = []string{"application/json", "*", "text"}
			},
			errs: []string{
				`proxy.dns: "127.0.0.1": missing port in address; want HOST:PORT, or "" for the system's resolver`,
				`proxy.trusted_peers: "pbx.example": a name is only proven by a client certificate: set tls_client_ca (-tls-client-ca)`,
				`proxy.trusted_peers: "10.0.0.300": want an IP address, a CIDR prefix or a DNS name (matched against client certificates)`,
				`proxy.trusted_peers: "pbx_1.example": want an IP address, a CIDR prefix or a DNS name (matched against client certificates)`,
				`messages.content_types: "text": want type/subtype (e.g. application/json) or "*"`,
				`transport.ws_origins: "chat.example.com": want an origin, SCHEME://HOST[:PORT] (e.g. https://chat.example.com)`,
				`transport.ws_origins: "https://x.example/app": want an origin, SCHEME://HOST[:PORT] (e.g. https://chat.example.com)`,
			},
		},
		{
			name: "tls listener, key missing, cert file missing",
			change: func(o *Options) {
				o.Listen = []string{"tls://127.0.0.1:5061"}
				o.TLSCert = dir + "/none.pem"
			},
			errs: []string{
				"listen: tls://127.0.0.1:5061 needs tls_cert and tls_key (-tls-cert, -tls-key)",
				"tls_cert: stat " + dir + "/none.pem: no such file or directory",
				"tls_cert: tls_cert is set but tls_key is not",
			},
		},
		{
			name:   "users is a directory",
			change: func(o *Options) { o.UsersFile = dir },
			errs:   []string{"users: " + dir + " is a directory"},
		},
		{
			name:   "domain in brackets that is not IPv6",
			change: func(o *Options) { o.Domains = []string{"[example.test]"} },
			errs:   []string{`domain: "[example.test]": brackets are for IPv6 addresses only`},
		},
		{
			name:   "negative body size",
			change: func(o *Options) { o.Limits.MaxBodySize = -1 },
			errs:   []string{"limits.max_body_size: -1: must be 0 or more"},
		},
		{
			name:   "node id too long",
			change: func(o *Options) { o.NodeID = strings.Repeat("n", 65) },
			errs:   []string{`node_id: "` + strings.Repeat("n", 65) + `": want at most 64 letters, digits, '.', '-' or '_'`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Default()
			tt.change(&o)
			err := o.Validate()
			if tt.errs == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Validate() = %v, want *Errors", err)
			}
			if got, want := err.Error(), strings.Join(tt.errs, "\n"); got != want {
				t.Errorf("Validate():\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestValidateErrorsUnwrap(t *testing.T) {
	o := Default()
	o.UsersFile = "/nonexistent/users"
	err := o.Validate()
	if !errors.Is(err, errNotExist()) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false, want true", err)
	}
}
