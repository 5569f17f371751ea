package transport

import (
	"net/netip"
	"testing"

	"github.com/simpled/simpled/storage"
)

// TestFlows: a token names the flow a request came over and reads back on any node sharing the
// secret; a flow ends here only at one of our listeners; a binding whose token was written under
// another key falls back to the source and transport it recorded.
func TestFlows(t *testing.T) {
	listeners := func() []Listener {
		return []Listener{{Transport: "udp", Addr: netip.MustParseAddrPort("127.0.0.1:5060")},
			{Transport: "tcp", Addr: netip.MustParseAddrPort("0.0.0.0:5060")}}
	}
	fs := NewFlows([]byte("secret"), listeners)
	other := NewFlows([]byte("secret"), func() []Listener { return nil })
	tok := fs.Token("TCP", "127.0.0.1:40000")
	if tok == "" {
		t.Fatal("no token for a flow over a listener of ours")
	}
	f, ok := other.Parse(tok)
	want := Flow{Transport: "tcp", Remote: netip.MustParseAddrPort("127.0.0.1:40000"), Local: netip.MustParseAddrPort("127.0.0.1:5060")}
	if !ok || f != want {
		t.Fatalf("Parse = %+v, %v; want %+v", f, ok, want)
	}
	if !fs.Holds(f) || other.Holds(f) {
		t.Error("Holds: the flow ends at our (wildcard) TCP listener, and at no listener of the other node")
	}
	if fs.Token("ws", "127.0.0.1:40000") != "" || fs.Token("udp", "not an address") != "" {
		t.Error("a token for a transport we do not listen on, or a source that is no address")
	}
	if _, ok := NewFlows([]byte("another"), listeners).Parse(tok); ok {
		t.Error("a token read under another secret")
	}
	b := storage.Binding{Flow: NewFlows(nil, listeners).Token("udp", "127.0.0.1:40001"), Transport: "udp", Received: "127.0.0.1:40001"}
	got, token, ok := fs.OfBinding(&b)
	if !ok || got.Remote != netip.MustParseAddrPort("127.0.0.1:40001") || token != fs.TokenOf(got) {
		t.Errorf("OfBinding = %+v, %q, %v", got, token, ok)
	}
}

// TestFlowsClosed: a closed connection is told to every OnClosed hook.
func TestFlowsClosed(t *testing.T) {
	fs := NewFlows([]byte("secret"), func() []Listener { return nil })
	fs.Closed("tcp", "127.0.0.1:40000") // no hook yet: nothing to do
	var got1, got2 []string
	fs.OnClosed(func(tp, remote string) { got1 = append(got1, tp+" "+remote) })
	fs.OnClosed(func(tp, remote string) { got2 = append(got2, tp+" "+remote) })
	fs.Closed("tcp", "127.0.0.1:40000")
	if len(got1) != 1 || got1[0] != "tcp 127.0.0.1:40000" || len(got2) != 1 || got2[0] != got1[0] {
		t.Fatalf("hooks saw %q and %q, want [tcp 127.0.0.1:40000] each", got1, got2)
	}
}
