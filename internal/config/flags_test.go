package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeConfig writes doc to a simpled.yaml in a temporary directory and returns its path.
func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "simpled.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFromArgs(t *testing.T) {
	file := writeConfig(t, `listen:
  - udp://127.0.0.1:5070
  - tcp://127.0.0.1:5070
domain: [file.test]
store: redis://127.0.0.1:6379/1
http: 127.0.0.1:9090
log_level: warn
registrar:
  max_contacts: 3
`)
	tests := []struct {
		name      string
		args      []string
		want      func(o *Options) // applied to Default()
		wantFlags Flags
	}{
		{name: "no args", args: nil, want: func(*Options) {}},
		{
			name: "flags without file",
			args: []string{"-listen", "udp://127.0.0.1:0", "-domain", "Example.TEST", "-store", "rediss://r:6380/0", "-http", "", "-log-level", "debug", "-log-format", "json", "-node-id", "n2"},
			want: func(o *Options) {
				o.Listen = []string{"udp://127.0.0.1:0"}
				o.Domains = []string{"example.test"}
				o.Store = "rediss://r:6380/0"
				o.HTTP = ""
				o.LogLevel = "debug"
				o.LogFormat = "json"
				o.NodeID = "n2"
			},
		},
		{
			name: "file only",
			args: []string{"-config", file},
			want: func(o *Options) {
				o.Listen = []string{"udp://127.0.0.1:5070", "tcp://127.0.0.1:5070"}
				o.Domains = []string{"file.test"}
				o.Store = "redis://127.0.0.1:6379/1"
				o.HTTP = "127.0.0.1:9090"
				o.LogLevel = "warn"
				o.Registrar.MaxContacts = 3
			},
			wantFlags: Flags{ConfigFile: file},
		},
		{
			name: "flags override the file, the rest stays",
			args: []string{"-config", file, "-store", "memory", "-log-level", "error", "-http", ""},
			want: func(o *Options) {
				o.Listen = []string{"udp://127.0.0.1:5070", "tcp://127.0.0.1:5070"}
				o.Domains = []string{"file.test"}
				o.Store = "memory"
				o.HTTP = ""
				o.LogLevel = "error"
				o.Registrar.MaxContacts = 3
			},
			wantFlags: Flags{ConfigFile: file},
		},
		{
			name: "-listen and -domain replace the file's lists, not append",
			args: []string{"-listen", "ws://127.0.0.1:8088", "-config", file, "-listen", "udp://127.0.0.1:5080", "-domain", "a.test", "-domain", "b.test"},
			want: func(o *Options) {
				o.Listen = []string{"ws://127.0.0.1:8088", "udp://127.0.0.1:5080"}
				o.Domains = []string{"a.test", "b.test"}
				o.Store = "redis://127.0.0.1:6379/1"
				o.HTTP = "127.0.0.1:9090"
				o.LogLevel = "warn"
				o.Registrar.MaxContacts = 3
			},
			wantFlags: Flags{ConfigFile: file},
		},
		{
			name: "-listen replaces the default list",
			args: []string{"-listen", "tcp://127.0.0.1:0"},
			want: func(o *Options) { o.Listen = []string{"tcp://127.0.0.1:0"} },
		},
		{
			name:      "-t",
			args:      []string{"-t", "-config", file, "-log-level", "info"},
			wantFlags: Flags{Check: true, ConfigFile: file},
			want: func(o *Options) {
				o.Listen = []string{"udp://127.0.0.1:5070", "tcp://127.0.0.1:5070"}
				o.Domains = []string{"file.test"}
				o.Store = "redis://127.0.0.1:6379/1"
				o.HTTP = "127.0.0.1:9090"
				o.Registrar.MaxContacts = 3
			},
		},
		{
			name:      "-version reads no file",
			args:      []string{"-version", "-config", "/nonexistent.yaml"},
			wantFlags: Flags{Version: true, ConfigFile: "/nonexistent.yaml"},
			want:      func(*Options) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got, flags, err := FromArgs(tt.args, &stderr)
			if err != nil {
				t.Fatalf("FromArgs: %v", err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("options\n got %+v\nwant %+v", got, want)
			}
			if flags != tt.wantFlags {
				t.Errorf("flags = %+v, want %+v", flags, tt.wantFlags)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr = %q, want nothing", stderr.String())
			}
		})
	}
}

func TestFromArgsErrors(t *testing.T) {
	file := writeConfig(t, "listen: [\"udp://127.0.0.1:5060\"]\nlog_level: loud\nregistrar:\n  max_contacts: 0\n")
	tests := []struct {
		name  string
		args  []string
		usage bool     // errors.Is(err, ErrUsage): exit 2
		help  bool     // errors.Is(err, flag.ErrHelp): exit 0
		lines []string // the error, line by line, when not a usage error
	}{
		{name: "unknown flag", args: []string{"-port", "5060"}, usage: true},
		{name: "flag without value", args: []string{"-listen"}, usage: true},
		{name: "stray argument", args: []string{"simpled.yaml"}, usage: true},
		{name: "help", args: []string{"-h"}, usage: true, help: true},
		{
			name:  "bad flag value names the flag",
			args:  []string{"-listen", "sctp://127.0.0.1:5060"},
			lines: []string{`-listen: "sctp://127.0.0.1:5060": unknown scheme "sctp", want one of udp, tcp, tls, ws, wss`},
		},
		{
			name: "every flag error at once",
			args: []string{"-http", "nowhere", "-log-format", "xml", "-domain", "a..b", "-store", "redis://:pw@h:6379/9/9"},
			lines: []string{
				`-domain: "a..b" is not a host name or IP address`,
				`-store: "redis://:***@h:6379/9/9": database "9/9" is not a number >= 0`,
				`-http: "nowhere": missing port in address; want HOST:PORT, or "" to disable the HTTP endpoints`,
				`-log-format: "xml": want console, json or "" (console on a terminal, json otherwise)`,
			},
		},
		{
			name: "file and flag errors together, a flag fixing a file error",
			args: []string{"-config", file, "-log-level", "debug", "-tls-cert", "/nonexistent/cert.pem"},
			lines: []string{
				file + ":4:17: registrar.max_contacts: 0: must be at least 1",
				"-tls-cert: stat /nonexistent/cert.pem: no such file or directory",
				"-tls-cert: tls_cert is set but tls_key is not",
			},
		},
		{
			name:  "file positions of a list replaced by a flag are forgotten",
			args:  []string{"-config", writeConfig(t, "listen:\n  - udp://127.0.0.1:5060\n"), "-listen", "udp://127.0.0.1:5060", "-listen", "udp://127.0.0.1:5060"},
			lines: []string{"-listen: udp://127.0.0.1:5060 given twice"},
		},
		{
			name:  "pprof without the HTTP listener",
			args:  []string{"-pprof", "-http", ""},
			lines: []string{`-pprof: needs the HTTP listener, which http "" disables`},
		},
		{
			name: "http on every interface and pprof without a token",
			args: []string{"-http", "0.0.0.0:8080", "-pprof"},
			lines: []string{
				`-http: "0.0.0.0:8080" is not a loopback address and the admin API has no token: set admin.token_file (-admin-token-file FILE), or listen on 127.0.0.1`,
				"-pprof: the profiler shows stacks and memory: it needs admin.token_file (-admin-token-file FILE)",
			},
		},
		{
			name:  "admin token file missing",
			args:  []string{"-admin-token-file", "/nonexistent/token"},
			lines: []string{"-admin-token-file: open /nonexistent/token: no such file or directory"},
		},
		{
			name:  "missing config file",
			args:  []string{"-config", "/nonexistent/simpled.yaml"},
			lines: []string{"-config: open /nonexistent/simpled.yaml: no such file or directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			_, _, err := FromArgs(tt.args, &stderr)
			if err == nil {
				t.Fatal("FromArgs succeeded, want an error")
			}
			if got := errors.Is(err, ErrUsage); got != tt.usage {
				t.Errorf("errors.Is(%v, ErrUsage) = %v, want %v", err, got, tt.usage)
			}
			if got := errors.Is(err, flag.ErrHelp); got != tt.help {
				t.Errorf("errors.Is(%v, flag.ErrHelp) = %v, want %v", err, got, tt.help)
			}
			if tt.usage {
				if !strings.Contains(stderr.String(), "Usage: simpled [flags]") {
					t.Errorf("stderr = %q, want the usage", stderr.String())
				}
				return
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr = %q, want nothing (the caller prints the error)", stderr.String())
			}
			if got, want := err.Error(), strings.Join(tt.lines, "\n"); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Errorf("error %T, want *Errors", err)
			}
		})
	}
}

func TestFromArgsFileErrorFixedByFlag(t *testing.T) {
	file := writeConfig(t, "log_level: loud\n")
	o, _, err := FromArgs([]string{"-config", file, "-log-level", "debug"}, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("FromArgs: %v", err)
	}
	if o.LogLevel != "debug" {
		t.Errorf("log level = %q, want debug", o.LogLevel)
	}
}

func TestUsage(t *testing.T) {
	var stderr bytes.Buffer
	_, _, err := FromArgs([]string{"-help"}, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("error = %v, want flag.ErrHelp", err)
	}
	usage := stderr.String()
	for _, want := range []string{
		"-config FILE", "-listen URI", "-domain NAME", "-store URL", "-http HOST:PORT", "-users FILE",
		"-tls-cert FILE", "-tls-key FILE", "-log-level LEVEL", "-log-format FORMAT", "-node-id ID", "-admin-token-file FILE", "-pprof", "-t", "-version",
		"(default udp://127.0.0.1:5060, tcp://127.0.0.1:5060)", "(default localhost)", `(default "memory")`, `(default "127.0.0.1:8080")`, `(default "info")`,
	} {
		if !strings.Contains(usage, want) {
			t.Errorf("usage lacks %q:\n%s", want, usage)
		}
	}
}
