package reg

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
)

// TestMarshalEscapes: values from the network cannot change the document's structure.
func TestMarshalEscapes(t *testing.T) {
	hostile := `sip:x@h"><contact id="evil`
	secs := uint32(5)
	info := &Info{Version: 1, State: Full, Registrations: []Registration{{AOR: "sip:a@b", ID: "r1", State: RegActive,
		Contacts: []Contact{{ID: "c1", State: ContactActive, Event: EvRegistered, Expires: &secs, CallID: "<&>\x01",
			URI: hostile, Params: []Param{{Name: "+sip.instance", Value: `"<urn:uuid:1></unknown-param>"`}}}}}}}
	body, err := Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(body)
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	c := back.Registrations[0].Contacts
	if len(c) != 1 || c[0].URI != hostile || c[0].Params[0].Value != info.Registrations[0].Contacts[0].Params[0].Value || c[0].CallID != "<&>\uFFFD" {
		t.Fatalf("values not kept as text:\n%s\n%+v", body, c)
	}
	if !strings.HasPrefix(string(body), `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">`) {
		t.Fatalf("root element:\n%s", body)
	}
}

// TestParseRefuses: a DTD, another namespace, a bad state, a registration without aor, and
// a document over MaxSize are refused.
func TestParseRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"doctype":   `<!DOCTYPE r [<!ENTITY a "b">]><reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full"/>`,
		"namespace": `<reginfo xmlns="urn:example" version="0" state="full"/>`,
		"state":     `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="some"/>`,
		"no aor":    `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full"><registration id="r" state="init"/></reginfo>`,
		"too large": `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">` + strings.Repeat(" ", MaxSize) + `</reginfo>`,
		"syntax":    `<reginfo`,
	} {
		if _, err := Parse([]byte(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
}

// FuzzReginfo: Parse never panics; what it accepts survives Marshal and Parse unchanged.
func FuzzReginfo(f *testing.F) {
	f.Add([]byte(`<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="3" state="partial"><registration aor="sip:a@b" id="r" state="active"><contact id="c" state="active" event="refreshed" expires="60" q="0.5" callid="x" cseq="2"><uri>sip:a@h</uri><unknown-param name="+sip.instance">"&lt;urn:uuid:1&gt;"</unknown-param></contact></registration></reginfo>`))
	f.Add([]byte(`<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full"><registration aor="sip:a@b" id="r" state="init"/></reginfo>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Parse(data)
		if err != nil {
			return
		}
		body, err := Marshal(info)
		if err != nil {
			t.Fatalf("Marshal of a parsed document: %v", err)
		}
		again, err := Parse(body)
		if err != nil {
			t.Fatalf("Parse of Marshal's output: %v\n%s", err, body)
		}
		if !reflect.DeepEqual(info, again) {
			t.Fatalf("round trip changed the document:\n%+v\n%+v\n%s", info, again, body)
		}
	})
}

// TestReasonsBounded: the memory of removals keeps at most maxReasons contacts and forgets
// them after reasonTTL, however often one contact goes.
func TestReasonsBounded(t *testing.T) {
	r := newReasons()
	now := time.Unix(1000, 0)
	for i := range maxReasons + 100 {
		r.put("a@b", strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), EvExpired, now)
	}
	if n, q := r.size(); n > maxReasons || q > 2*maxReasons {
		t.Fatalf("%d remembered, %d queued: want at most %d", n, q, maxReasons)
	}
	for range 5 * maxReasons {
		r.put("a@b", "same", EvUnregistered, now)
	}
	if n, q := r.size(); n > maxReasons || q > 2*maxReasons+1 {
		t.Fatalf("one contact removed again and again: %d remembered, %d queued", n, q)
	}
	if got := r.get("a@b", "same", now); got != EvUnregistered {
		t.Fatalf("get = %q", got)
	}
	later := now.Add(reasonTTL + time.Second)
	if got := r.get("a@b", "same", later); got != "" {
		t.Fatalf("remembered after reasonTTL: %q", got)
	}
	r.put("a@b", "new", EvExpired, later)
	if n, _ := r.size(); n != 1 {
		t.Fatalf("old reasons kept past reasonTTL: %d", n)
	}
}

// TestRemovalEvents is the table of docs/pbx.md.
func TestRemovalEvents(t *testing.T) {
	for _, c := range []struct {
		kind   storage.EventKind
		reason string
		want   string
	}{
		{storage.BindingRemoved, "", EvUnregistered},
		{storage.BindingRemoved, storage.RemovedFlowClosed, EvDeactivated},
		{storage.BindingRemoved, storage.RemovedFlowDead, EvDeactivated},
		{storage.BindingRemoved, storage.RemovedByAdmin, EvDeactivated},
		{storage.BindingExpired, "", EvExpired},
		{storage.BindingEvicted, "", EvRejected},
		{storage.BindingAdded, "", ""},
		{storage.BindingRefreshed, "", ""},
	} {
		if got := removalEvent(storage.Event{Kind: c.kind, Reason: c.reason}); got != c.want {
			t.Errorf("%s %q: %q, want %q", c.kind, c.reason, got, c.want)
		}
	}
}
