package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/auth"
	"github.com/simpled/simpled/registrar"
)

// TestYAMLRoundTrip checks that what -t prints parses back to the same Options.
func TestYAMLRoundTrip(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTLSFiles(t, dir)
	tests := []struct {
		name   string
		change func(o *Options)
	}{
		{name: "default", change: func(*Options) {}},
		{
			name: "everything changed",
			change: func(o *Options) {
				o.Listen = []string{"udp://[::1]:0", "tls://0.0.0.0:5061", "ws://127.0.0.1:8088", "wss://127.0.0.1:8089"}
				o.Domains = []string{"example.test", "127.0.0.1", "true"}
				o.Store = "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
				o.HTTP = ""
				o.UsersFile = cert // any existing file
				o.TLSCert, o.TLSKey = cert, key
				o.LogLevel = "debug"
				o.LogFormat = "json"
				o.NodeID = "5060"
				o.Registrar = registrar.Config{MinExpires: 1, DefaultExpires: 2, MaxExpires: 3, MaxContacts: 1, OnMaxContacts: "reject", SweepInterval: 1500 * time.Millisecond}
				o.Auth = auth.Config{Mode: "off", NonceLifetime: 90 * time.Minute, Algorithms: []string{"SHA-256", "MD5"},
					RequireQOP: true, Lockout: 0, LockoutThreshold: 3}
				o.Limits = LimitOptions{MaxMessageSize: 1, MaxBodySize: 0, SourceRate: 5, SourceBurst: 6, MaxInflight: 7, MaxInflightPerSource: 7}
			},
		},
		{name: "redis user without password", change: func(o *Options) { o.Store = "rediss://app@h:6379/2" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := Default()
			tt.change(&want)
			text := want.YAML()
			got, err := ParseString(text)
			if err != nil {
				t.Fatalf("ParseString(YAML()): %v\n%s", err, text)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip\n got %+v\nwant %+v\nyaml:\n%s", got, want, text)
			}
		})
	}
}

func TestYAMLHasEveryKey(t *testing.T) {
	text := Default().YAML()
	src := sources{}
	o := Default()
	errs := &Errors{}
	decode([]byte(text), "", &o, src, errs)
	if err := errs.err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range allKeys("", optionFields) {
		if _, ok := src[k]; !ok {
			t.Errorf("YAML() lacks key %s", k)
		}
	}
}

func TestYAMLMasksSecrets(t *testing.T) {
	o := Default()
	o.Store = "redis://simpled:hunter2@127.0.0.1:6379/0"
	o.Auth.NonceSecret = "correct horse battery staple"
	text := o.YAML()
	for _, secret := range []string{"hunter2", "correct horse"} {
		if strings.Contains(text, secret) {
			t.Errorf("YAML() shows secret %q:\n%s", secret, text)
		}
	}
	for _, want := range []string{"store: redis://simpled:***@127.0.0.1:6379/0\n", "nonce_secret: '***'\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("YAML() lacks %q:\n%s", want, text)
		}
	}
	// The masked output still parses; the masked values are what it says.
	got, err := ParseString(strings.Replace(text, "'***'", "'****************'", 1))
	if err != nil {
		t.Fatalf("ParseString(masked YAML): %v", err)
	}
	if got.Store != "redis://simpled:***@127.0.0.1:6379/0" {
		t.Errorf("store = %q", got.Store)
	}
	if o.Store != "redis://simpled:hunter2@127.0.0.1:6379/0" || o.Auth.NonceSecret != "correct horse battery staple" {
		t.Error("YAML() changed its receiver")
	}
}
