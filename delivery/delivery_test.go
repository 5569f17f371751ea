package delivery

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/base/sipgox/sipgoxtest"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/base/transport"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
)

// mapLocator serves fixed bindings.
type mapLocator map[string][]storage.Binding

func (l mapLocator) Lookup(_ context.Context, aor string) ([]storage.Binding, error) {
	return l[aor], nil
}

// harness is a Delivery on a sipgo user agent listening on loopback UDP, its stray responses
// routed to its client transactions as in the server, with the bindings of loc.
func harness(t *testing.T, loc mapLocator) *Delivery {
	t.Helper()
	a := sipgoxtest.NewAgent(t)
	flows := transport.NewFlows(nil, func() []transport.Listener { return []transport.Listener{{Transport: "udp", Addr: a.Addr()}} })
	d, err := New(Options{Domains: []string{"example.test"}, Flows: flows, Locator: loc, Client: a.Client, Seals: sipx.NewSeals(nil), UDPMTU: 1300})
	if err != nil {
		t.Fatal(err)
	}
	a.Strays.Handle(d.ClientTxs().Deliver)
	return d
}

// device is a UDP socket standing for a registered device, and its binding.
func device(t *testing.T, user string, q int, updated time.Time) (net.PacketConn, storage.Binding) {
	t.Helper()
	pc := sipgoxtest.Listen(t)
	uri := fmt.Sprintf("sip:%s@%s", user, pc.LocalAddr())
	return pc, storage.Binding{Key: uri, Contact: "<" + uri + ">", URI: uri, Q: q, Transport: "udp",
		ExpiresAt: updated.Add(time.Hour), UpdatedAt: updated}
}

func message(to string) *sip.Request {
	var u sip.Uri
	_ = sip.ParseUri(to, &u)
	req := sip.NewRequest(sip.MESSAGE, u)
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "system", Host: "example.test"}, Params: sip.HeaderParams{{K: "tag", V: "1"}}})
	req.AppendHeader(&sip.ToHeader{Address: u})
	cid := sip.CallIDHeader("delivery-test")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.MESSAGE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody([]byte("hi"))
	return req
}

// TestSendToUser: a request simpled originates reaches the user's device through Reach and
// Send; the final status is the device's (a 503 counts as 500), and the request given is not
// modified (each branch gets its own copy with our Via).
func TestSendToUser(t *testing.T) {
	for _, tt := range []struct {
		code string
		want int
	}{{"200 OK", 200}, {"486 Busy Here", 486}, {"503 Service Unavailable", 500}} {
		dev, b := device(t, "carol", -1, time.Now())
		d := harness(t, mapLocator{"carol@example.test": {b}})
		got := sipgoxtest.Answer(dev, tt.code)
		devices, err := d.Reach(t.Context(), "carol@example.test")
		if err != nil || devices.Bindings != 1 || len(devices.Groups) != 1 {
			t.Fatalf("Reach = %+v, %v", devices, err)
		}
		req := message("sip:carol@example.test")
		if status := d.Send(t.Context(), req, devices); status != tt.want {
			t.Errorf("device answering %s: Send = %d, want %d", tt.code, status, tt.want)
		}
		if msg := <-got; !strings.HasPrefix(msg, "MESSAGE sip:carol@127.0.0.1:") || !strings.Contains(msg, "branch="+BranchMagic+"0.") {
			t.Errorf("the device got:\n%s", msg)
		}
		if req.Via() != nil {
			t.Error("Send modified the request it was given")
		}
	}
}

// TestSendForks: with devices at two q-values, the higher one is tried first and a 2xx there
// ends it; when every device of the first group fails, the next group is tried, and the best
// failure (lowest class) is the answer when none succeeds.
func TestSendForks(t *testing.T) {
	now := time.Now()
	high1, b1 := device(t, "a", 900, now)
	high2, b2 := device(t, "b", 900, now)
	low, b3 := device(t, "c", 100, now)
	d := harness(t, mapLocator{"u@example.test": {b3, b1, b2}})
	sipgoxtest.Answer(high1, "486 Busy Here")
	sipgoxtest.Answer(high2, "404 Not Found")
	lowGot := sipgoxtest.Answer(low, "302 Moved Temporarily")
	devices, err := d.Reach(t.Context(), "u@example.test")
	if err != nil || len(devices.Groups) != 2 || len(devices.Groups[0]) != 2 {
		t.Fatalf("Reach = %+v, %v", devices, err)
	}
	if status := d.Send(t.Context(), message("sip:u@example.test"), devices); status != 302 {
		t.Errorf("Send = %d, want 302 (the lowest class of all branches)", status)
	}
	select {
	case <-lowGot:
	default:
		t.Error("the lower q-value was never tried")
	}
}

// TestSendNoDevice: no device at all answers 480; a device that cannot be sent to (no
// listener for its transport) counts as unreachable (480) too.
func TestSendNoDevice(t *testing.T) {
	d := harness(t, mapLocator{})
	if status := d.Send(t.Context(), message("sip:u@example.test"), Devices{}); status != 480 {
		t.Errorf("no device: %d", status)
	}
	tcp := Target{URI: sip.Uri{Scheme: "sip", Host: "127.0.0.1"}, Dest: netip.MustParseAddrPort("127.0.0.1:9"), Transport: "tcp", Contact: true}
	if status := d.Send(t.Context(), message("sip:u@example.test"), Devices{Groups: [][]Target{{tcp}}, Bindings: 1}); status != 480 {
		t.Errorf("unsendable device: %d", status)
	}
}

// TestSendInDialogOverFlow: a request of a dialog whose peer is not ours goes to the UDP flow
// the dialog came over, whatever the remote target says.
func TestSendInDialogOverFlow(t *testing.T) {
	dev, _ := device(t, "w", -1, time.Now())
	d := harness(t, mapLocator{})
	got := sipgoxtest.Answer(dev, "200 OK")
	req := message("sip:w@watcher.invalid")
	req.Method = sip.NOTIFY
	req.CSeq().MethodName = sip.NOTIFY
	status, err := d.SendInDialog(t.Context(), req, Dialog{RemoteTarget: "sip:w@watcher.invalid", Transport: "UDP",
		Source: dev.LocalAddr().String()})
	if err != nil || status != 200 {
		t.Fatalf("SendInDialog = %d, %v", status, err)
	}
	if msg := <-got; !strings.HasPrefix(msg, "NOTIFY sip:w@watcher.invalid ") {
		t.Errorf("the watcher got:\n%s", msg)
	}
}

// TestTargetsOrder: bindings become groups by q-value (none counts as 1.0), highest first; a
// device registered over several flows is one target, its freshest flow first.
func TestTargetsOrder(t *testing.T) {
	d := harness(t, mapLocator{})
	now := time.Now()
	b := func(uri string, q int, inst string, reg int, age time.Duration) storage.Binding {
		return storage.Binding{Key: uri, URI: uri, Q: q, InstanceID: inst, RegID: reg, UpdatedAt: now.Add(-age)}
	}
	groups := d.Targets(t.Context(), []storage.Binding{
		b("sip:low@127.0.0.1:5001", 100, "", 0, 0),
		b("sip:old@127.0.0.1:5002", 1000, "<urn:a>", 1, time.Minute),
		b("sip:new@127.0.0.1:5003", 1000, "<urn:a>", 2, 0),
		b("sip:noq@127.0.0.1:5004", -1, "", 0, 0),
	})
	var got []string
	for _, g := range groups {
		var names []string
		for _, t := range g {
			name := t.URI.User
			for _, a := range t.Alts {
				name += "+" + a.URI.User
			}
			names = append(names, name)
		}
		got = append(got, strings.Join(names, ","))
	}
	if want := "new+old,noq|low"; strings.Join(got, "|") != want {
		t.Errorf("groups %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestBestStatus(t *testing.T) {
	for _, tt := range []struct {
		finals, synthetic []int
		want              int
	}{
		{nil, nil, 480},
		{[]int{486, 404}, nil, 486},
		{[]int{486, 302}, nil, 302},
		{[]int{486, 603, 302}, []int{408}, 603},
		{[]int{503}, nil, 500},
		{[]int{486}, []int{408, 503}, 486},
		{[]int{503}, []int{480}, 480},
		{nil, []int{503, 408}, 503},
	} {
		if got := bestStatus(tt.finals, tt.synthetic); got != tt.want {
			t.Errorf("bestStatus(%v, %v) = %d, want %d", tt.finals, tt.synthetic, got, tt.want)
		}
	}
}

func TestContactURI(t *testing.T) {
	d := harness(t, mapLocator{})
	l := d.Flows().Listener("udp")
	if got, want := d.ContactURI("TCP", "127.0.0.1:5060"), fmt.Sprintf("sip:127.0.0.1:%d", l.Port()); got != want {
		t.Errorf("ContactURI = %q, want %q (no tcp listener: udp's)", got, want)
	}
}
