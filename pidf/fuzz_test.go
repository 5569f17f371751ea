package pidf

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse checks Parse never panics and that whatever it accepts it writes back to a
// document that parses to the same thing and the same bytes.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.xml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{richDoc, billionLaughs, nested(5), pres(`<dm:person id="p"/>`),
		pres(okTuple + `<x:e xmlns:x="urn:x" x:a="1&#9;"><![CDATA[]]></x:e>`)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			return
		}
		out := d.Bytes()
		d2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Bytes()) = %v\n%q\n%q", err, data, out)
		}
		if v1, v2 := viewOf(d), viewOf(d2); !reflect.DeepEqual(v1, v2) {
			t.Fatalf("round trip changed the document:\n%+v\n%+v", v1, v2)
		}
		if out2 := d2.Bytes(); !bytes.Equal(out, out2) {
			t.Fatalf("second serialisation differs:\n%q\n%q", out, out2)
		}
		// Composition keeps tuples and writes a document that parses.
		c := Compose("sip:x@y", d, d2)
		if v1, v2 := d.Tuples(), c.Tuples(); !reflect.DeepEqual(v1, v2) {
			t.Fatalf("Compose changed tuples:\n%+v\n%+v", v1, v2)
		}
		if c2, err := Parse(c.Bytes()); err != nil {
			t.Fatalf("Parse(Compose()) = %v\n%s", err, c.Bytes())
		} else if !reflect.DeepEqual(viewOf(c), viewOf(c2)) {
			t.Fatalf("composed round trip differs")
		}
	})
}

// FuzzWatcherInfo does the same for ParseWatcherInfo.
func FuzzWatcherInfo(f *testing.F) {
	f.Add([]byte(rfc3858Example))
	f.Add((&WatcherInfo{Version: 3, State: "partial", Lists: []WatcherList{{Resource: "sip:a@b", Package: "presence",
		Watchers: []Watcher{{ID: "x", Status: "active", Event: "approved", URI: "sip:c@d", DisplayName: "C\tD", DurationSubscribed: 5, Expiration: -1}}}}}).Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := ParseWatcherInfo(data)
		if err != nil {
			return
		}
		out := w.Bytes()
		w2, err := ParseWatcherInfo(out)
		if err != nil {
			t.Fatalf("ParseWatcherInfo(Bytes()) = %v\n%q\n%q", err, data, out)
		}
		if !reflect.DeepEqual(w, w2) {
			t.Fatalf("round trip changed the document:\n%+v\n%+v", w, w2)
		}
		if out2 := w2.Bytes(); !bytes.Equal(out, out2) {
			t.Fatalf("second serialisation differs:\n%q\n%q", out, out2)
		}
	})
}
