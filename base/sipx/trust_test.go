package sipx

import (
	"strings"
	"testing"
	"time"
)

func TestSealsDialogHop(t *testing.T) {
	k := NewSeals([]byte("a secret of this deployment"))
	d := Dialog{CallID: "c1", CallerTag: "ct", CallerAOR: "mallory@evil.example", CalleeAOR: "bob@example.test"}
	const callee, caller, calleeSrc = "a/127.0.0.1:5070", "u/192.0.2.1:5060", "127.0.0.1:5070"
	unvouched := k.Issue(d, callee, caller, calleeSrc)
	vouched := k.Issue(d, callee, caller, "")

	fwd, ok := k.Verify(unvouched, "c1", "ct", "mallory@evil.example", "bt", "bob@example.test")
	if !ok || fwd.Direction != Forward {
		t.Fatalf("caller's request: %v %+v", ok, fwd)
	}
	back, ok := k.Verify(unvouched, "c1", "bt", "bob@example.test", "ct", "mallory@evil.example")
	if !ok || back.Direction != Backward {
		t.Fatalf("callee's request: %v %+v", ok, back)
	}
	tests := []struct {
		name        string
		p           DialogProof
		hop, source string
		want        bool
	}{
		{"forward to the callee", fwd, callee, "192.0.2.9:1", true},
		{"forward elsewhere", fwd, "a/127.0.0.3:9", "192.0.2.9:1", false},
		{"forward to the caller's hop", fwd, caller, "192.0.2.9:1", false},
		{"backward from the callee", back, caller, calleeSrc, true},
		{"backward from someone else", back, caller, "127.0.0.2:5060", false},
		{"backward elsewhere from the callee", back, "u/127.0.0.3:9", calleeSrc, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip := tt.source[:len(tt.source)-len(":5070")]
			if got := k.Hop(tt.p, "c1", tt.hop, tt.source, ip); got != tt.want {
				t.Fatalf("Hop = %v, want %v", got, tt.want)
			}
		})
	}
	// A vouched caller's Contact may be reached by anyone in the dialog.
	vback, _ := k.Verify(vouched, "c1", "bt", "bob@example.test", "ct", "mallory@evil.example")
	if !k.Hop(vback, "c1", caller, "127.0.0.2:5060", "127.0.0.2") {
		t.Fatal("backward to a vouched caller refused")
	}
	// Another deployment's secret proves nothing.
	if _, ok := NewSeals([]byte("another secret")).Verify(unvouched, "c1", "ct", "mallory@evil.example", "bt", "bob@example.test"); ok {
		t.Fatal("a token verified under another secret")
	}
	for _, bad := range []string{"", "x", "0123456789abcdef", unvouched[:10]} {
		if _, ok := k.Verify(bad, "c1", "ct", "mallory@evil.example", "bt", "bob@example.test"); ok {
			t.Fatalf("token %q verified", bad)
		}
	}
}

func TestNodeProof(t *testing.T) {
	k := NewSeals([]byte("a secret of this deployment"))
	now := time.Unix(1_800_000_000, 0)
	p := k.NodeProof("call", 7, "tag", now)
	if !k.CheckNodeProof(p, "call", 7, "tag", now.Add(NodeProofLifetime-time.Second)) {
		t.Fatal("fresh proof refused")
	}
	for name, ok := range map[string]bool{
		"expired":         k.CheckNodeProof(p, "call", 7, "tag", now.Add(NodeProofLifetime+time.Second)),
		"other CSeq":      k.CheckNodeProof(p, "call", 8, "tag", now),
		"other Call-ID":   k.CheckNodeProof(p, "other", 7, "tag", now),
		"other secret":    NewSeals([]byte("x")).CheckNodeProof(p, "call", 7, "tag", now),
		"from the future": k.CheckNodeProof(k.NodeProof("call", 7, "tag", now.Add(time.Minute)), "call", 7, "tag", now),
		"garbage":         k.CheckNodeProof("zz.zz", "call", 7, "tag", now),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHopURI(t *testing.T) {
	for _, tt := range []struct {
		scheme, host string
		port         int
		want         string
	}{
		{"sip", "Example.Test.", 0, "u/example.test:5060"},
		{"sips", "example.test", 0, "u/example.test:5061"},
		{"sip", "[::1]", 5070, "u/[::1]:5070"},
	} {
		if got := HopURI(tt.scheme, tt.host, tt.port); got != tt.want {
			t.Errorf("HopURI(%q, %q, %d) = %q, want %q", tt.scheme, tt.host, tt.port, got, tt.want)
		}
	}
}

// FuzzSeals: any token or proof a peer writes into a Route is checked without a panic, and
// nothing made up verifies.
func FuzzSeals(f *testing.F) {
	k := NewSeals([]byte("a secret of this deployment"))
	d := Dialog{CallID: "c1", CallerTag: "ct", CallerAOR: "a@x", CalleeAOR: "b@y"}
	f.Add(k.Issue(d, "a/127.0.0.1:5060", "u/x:5060", ""), "1x.00")
	f.Add("..", ".")
	f.Add("0123456789abcdef.0123456789abcdef.0123456789abcdef", "zz.zz")
	base, _, _ := strings.Cut(k.Issue(d, "", "", ""), ".")
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, token, proof string) {
		// Only a token whose dialog MAC is the one issued for this dialog verifies.
		if _, ok := k.Verify(token, "c1", "ct", "a@x", "bt", "b@y"); ok && !strings.HasPrefix(token, base+".") {
			t.Fatalf("made-up token %q verified", token)
		}
		if k.Hop(DialogProof{Token: token, Direction: Forward, CallerTag: "ct"}, "c1", "a/1.2.3.4:5", "1.2.3.4:5", "1.2.3.4") {
			t.Fatalf("made-up token %q opened a hop", token)
		}
		if k.CheckNodeProof(proof, "c1", 1, "ct", now) {
			t.Fatalf("made-up proof %q accepted", proof)
		}
	})
}
