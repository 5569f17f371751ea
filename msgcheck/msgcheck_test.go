package msgcheck

import (
	"bytes"
	"compress/zlib"
	"strings"
	"testing"
)

func TestCPIMAddress(t *testing.T) {
	tests := []struct {
		in         string
		user, host string
		ok         bool
	}{
		{in: `"Alice" <sip:alice@example.test>`, user: "alice", host: "example.test", ok: true},
		{in: `<sips:alice@Example.Test;transport=tls>`, user: "alice", host: "Example.Test", ok: true},
		{in: `sip:alice@example.test`, user: "alice", host: "example.test", ok: true},
		{in: `<im:alice@example.test>`, user: "alice", host: "example.test", ok: true},
		{in: `<pres:alice@example.test?x=y>`, user: "alice", host: "example.test", ok: true},
		{in: `<sip:example.test>`},                // nobody
		{in: `<mailto:alice@example.test>`},       // another scheme
		{in: `"Alice" <sip:alice@example.test`},   // unterminated
		{in: `Alice`},                             // no URI
		{in: `<im:@example.test>`},                // no user
		{in: `sip:00@`},                           // no host (found by FuzzCPIMAddress)
		{in: `<sip:alice@example.test> <im:x@y>`}, // the last address counts
	}
	for _, tt := range tests {
		user, host, ok := cpimAddress(tt.in)
		if tt.in == `<sip:alice@example.test> <im:x@y>` {
			if !ok || user != "x" || host != "y" {
				t.Errorf("cpimAddress(%q) = %q %q %v", tt.in, user, host, ok)
			}
			continue
		}
		if ok != tt.ok || ok && (user != tt.user || host != tt.host) {
			t.Errorf("cpimAddress(%q) = %q, %q, %v; want %q, %q, %v", tt.in, user, host, ok, tt.user, tt.host, tt.ok)
		}
	}
}

// A deflated CPIM body is inflated to be checked, never beyond the limit: a deflate bomb is
// refused, not expanded.
func TestInflateBounded(t *testing.T) {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	_, _ = w.Write([]byte(strings.Repeat("a", 1<<20)))
	_ = w.Close()
	if _, err := inflate("deflate", b.Bytes(), 64<<10); err == nil {
		t.Fatal("1 MiB inflated under a 64 KiB limit")
	}
	out, err := inflate("deflate", b.Bytes(), 2<<20)
	if err != nil || len(out) != 1<<20 {
		t.Fatalf("inflate within the limit: %d bytes, %v", len(out), err)
	}
	if _, err := inflate("gzip", []byte("not gzip"), 1024); err == nil {
		t.Fatal("garbage gzip inflated")
	}
}

// FuzzCPIMAddress: any CPIM From a sender writes is read without a panic, and an address it
// accepts names a user and a host.
func FuzzCPIMAddress(f *testing.F) {
	for _, s := range []string{`"Alice" <sip:alice@example.test>`, `<im:a@b>`, `<sip:`, `<>`, `sip:@`, `"<" <sip:a@b;x=">"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if user, host, ok := cpimAddress(v); ok && (user == "" || host == "") {
			t.Fatalf("cpimAddress(%q) accepted user %q host %q", v, user, host)
		}
	})
}
