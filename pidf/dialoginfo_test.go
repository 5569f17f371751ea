package pidf

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const dialogDoc = `<?xml version="1.0" encoding="UTF-8"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="partial" entity="sip:bob@example.com">
  <dialog id="d1" call-id="c1@h" local-tag="lt" remote-tag="rt" direction="recipient"><state event="remote-bye" code="200">terminated</state><duration>12</duration><local><identity display="Bob">sip:bob@example.com</identity><target uri="sip:bob@192.0.2.1"/></local><remote><identity>sip:alice@example.com</identity></remote></dialog>
  <dialog id="d2"><state>Trying</state><x:other xmlns:x="urn:x"/></dialog>
</dialog-info>`

func TestParseDialogInfo(t *testing.T) {
	d, err := ParseDialogInfo([]byte(dialogDoc))
	if err != nil {
		t.Fatal(err)
	}
	want := &DialogInfo{Version: 3, State: "partial", Entity: "sip:bob@example.com", Dialogs: []DialogEntry{
		{ID: "d1", CallID: "c1@h", LocalTag: "lt", RemoteTag: "rt", Direction: "recipient", State: "terminated",
			Event: "remote-bye", Code: 200, Duration: 12,
			Local:  &Participant{Identity: "sip:bob@example.com", Display: "Bob", Target: "sip:bob@192.0.2.1"},
			Remote: &Participant{Identity: "sip:alice@example.com"}},
		{ID: "d2", State: "trying", Duration: -1}, // Kamailio 5.6 capitalises Trying
	}}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("got %+v\nwant %+v", d, want)
	}
	again, err := ParseDialogInfo(d.Bytes())
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("round trip: %v\n%s", err, d.Bytes())
	}
}

func TestParseDialogInfoRefuses(t *testing.T) {
	doc := func(dialogs string) string {
		return `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:a@b">` + dialogs + `</dialog-info>`
	}
	for _, c := range []struct {
		name, doc string
		err       error
		fault     string
	}{
		{"namespace", `<dialog-info xmlns="urn:x" version="1" state="full" entity="sip:a@b"/>`, ErrNamespace, "namespace"},
		{"root", `<presence xmlns="urn:ietf:params:xml:ns:dialog-info"/>`, ErrInvalid, "root element"},
		{"version", strings.Replace(doc(""), `version="1"`, `version="-1"`, 1), ErrInvalid, "version"},
		{"state", strings.Replace(doc(""), `state="full"`, `state="half"`, 1), ErrInvalid, "state"},
		{"entity", strings.Replace(doc(""), `entity="sip:a@b"`, ``, 1), ErrInvalid, "entity"},
		{"no id", doc(`<dialog><state>early</state></dialog>`), ErrInvalid, "without id"},
		{"no state", doc(`<dialog id="x"/>`), ErrInvalid, "without state"},
		{"bad state", doc(`<dialog id="x"><state>ringing</state></dialog>`), ErrInvalid, "state"},
		{"bad event", doc(`<dialog id="x"><state event="hangup">terminated</state></dialog>`), ErrInvalid, "event"},
		{"bad code", doc(`<dialog id="x"><state code="99">terminated</state></dialog>`), ErrInvalid, "code"},
		{"direction", doc(`<dialog id="x" direction="sideways"><state>early</state></dialog>`), ErrInvalid, "direction"},
		{"duration", doc(`<dialog id="x"><state>confirmed</state><duration>long</duration></dialog>`), ErrInvalid, "duration"},
		{"twice", doc(`<dialog id="x"><state>early</state></dialog><dialog id="x"><state>early</state></dialog>`), ErrInvalid, "twice"},
		{"doctype", `<!DOCTYPE x [<!ENTITY a "b">]>` + doc(""), ErrDoctype, ""},
		{"huge", doc(strings.Repeat(" ", MaxSize)), ErrTooLarge, ""},
	} {
		_, err := ParseDialogInfo([]byte(c.doc))
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.fault) {
			t.Errorf("%s: got %v, want %v naming %q", c.name, err, c.err, c.fault)
		}
	}
}

// TestDialogInfoEscapes: values from the network (display names, URIs, tags) cannot break out
// of their element or attribute, and characters XML cannot carry are dropped.
func TestDialogInfoEscapes(t *testing.T) {
	evil := `"/><dialog id="forged"><state>confirmed</state></dialog><x a="` + "\x01\xff&<>"
	d := &DialogInfo{Entity: evil, Dialogs: []DialogEntry{{ID: evil, CallID: evil, LocalTag: evil, RemoteTag: evil,
		State: "early", Duration: -1, Local: &Participant{Identity: evil, Display: evil, Target: evil},
		Remote: &Participant{Identity: "</identity>" + evil}}}}
	b := d.Bytes()
	got, err := ParseDialogInfo(b)
	if err != nil {
		t.Fatalf("written document does not parse: %v\n%s", err, b)
	}
	clean := strings.NewReplacer("\x01", "", "\xff", "").Replace(evil)
	if len(got.Dialogs) != 1 || got.Dialogs[0].ID != clean || got.Dialogs[0].Local.Display != clean ||
		got.Dialogs[0].Remote.Identity != "</identity>"+clean || got.Entity != clean {
		t.Fatalf("values changed or escaped their place:\n%s\n%+v", b, got.Dialogs)
	}
}

// FuzzDialogInfo checks ParseDialogInfo never panics and that whatever it accepts it writes
// back to a document that parses to the same thing and the same bytes.
func FuzzDialogInfo(f *testing.F) {
	f.Add([]byte(dialogDoc))
	f.Add([]byte(billionLaughs))
	f.Add([]byte(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" entity="sip:a@b"/>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDialogInfo(data)
		if err != nil {
			return
		}
		out := d.Bytes()
		d2, err := ParseDialogInfo(out)
		if err != nil {
			t.Fatalf("ParseDialogInfo(Bytes()) = %v\n%q\n%q", err, data, out)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip changed the document:\n%+v\n%+v", d, d2)
		}
		if out2 := d2.Bytes(); !bytes.Equal(out, out2) {
			t.Fatalf("second serialisation differs:\n%q\n%q", out, out2)
		}
	})
}
