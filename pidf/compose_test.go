package pidf

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func ids(ts []Tuple) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.ID+"="+t.Basic)
	}
	return out
}

func TestComposeBaresipDuplicates(t *testing.T) {
	open := mustParse(t, readFixture(t, "publish-baresip-open.xml"))
	closed := mustParse(t, readFixture(t, "publish-baresip-closed.xml"))
	for _, tt := range []struct {
		docs []*Document
		want string
	}{
		{[]*Document{open, closed}, "closed"}, // stale "open" duplicate, then /presence_offline
		{[]*Document{closed, open}, "open"},
		{[]*Document{open, open, closed, nil}, "closed"},
	} {
		d := Compose("sip:alice@example.test", tt.docs...)
		if got := ids(d.Tuples()); !reflect.DeepEqual(got, []string{"t4109=" + tt.want}) {
			t.Errorf("tuples %q, want t4109=%s", got, tt.want)
		}
		out := d.Bytes()
		for _, l := range []string{`<dm:person id="p4159"><rpid:activities/></dm:person>`, "<basic>" + tt.want + "</basic>"} {
			if !bytes.Contains(out, []byte(l)) {
				t.Errorf("output lacks %s:\n%s", l, out)
			}
		}
		roundTrip(t, d)
	}
}

func TestComposeLinphone(t *testing.T) {
	online := mustParse(t, readFixture(t, "publish-linphonec-online.xml"))
	away := mustParse(t, readFixture(t, "publish-liblinphone-away.xml"))
	busy := mustParse(t, readFixture(t, "publish-liblinphone-busy.xml"))

	// Distinct tuple ids are merged (dropping the replaced publication is the caller's job).
	d := Compose("sip:dave@example.test", away, online, busy)
	if got, want := ids(d.Tuples()), []string{"s1ip4j=open", "x5.6nj=open", "f9abrr=open"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tuples %q, want %q", got, want)
	}
	// Newest person wins.
	ps := d.Persons()
	if len(ps) != 1 || ps[0].ID != "yvb-j6" || !reflect.DeepEqual(ps[0].Activities, []string{"busy"}) {
		t.Errorf("persons %+v, want busy only", ps)
	}
	out := d.Bytes()
	for _, l := range []string{"<rpid:busy/>", "<pidfonline:online/>", `entity="sip:dave@example.test"`,
		`xmlns:pidfonline="http://www.linphone.org/xsds/pidfonline.xsd"`} {
		if !bytes.Contains(out, []byte(l)) {
			t.Errorf("output lacks %s:\n%s", l, out)
		}
	}
	if bytes.Contains(out, []byte("<rpid:away/>")) {
		t.Errorf("older person kept:\n%s", out)
	}
	roundTrip(t, d)

	// The newest doc without person does not erase the person.
	d = Compose("sip:dave@example.test", away, online)
	if ps := d.Persons(); len(ps) != 1 || ps[0].Activities[0] != "away" {
		t.Errorf("persons %+v, want away", ps)
	}
	if !bytes.Contains(d.Bytes(), []byte("<rpid:away/>")) {
		t.Errorf("lacks <rpid:away/>:\n%s", d.Bytes())
	}
}

func TestComposeOrder(t *testing.T) {
	a := mustParse(t, []byte(pres(`<tuple id="t1"><status><basic>open</basic></status></tuple><tuple id="t2"><status><basic>open</basic></status></tuple>`)))
	b := mustParse(t, []byte(pres(`<tuple id="t3"><status><basic>open</basic></status></tuple><tuple id="t2"><status><basic>closed</basic></status></tuple>`)))
	d := Compose("sip:a@b", a, b)
	// First appearance decides the position, the newest doc the content.
	if got, want := ids(d.Tuples()), []string{"t1=open", "t2=closed", "t3=open"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tuples %q, want %q", got, want)
	}
	roundTrip(t, d)
}

func TestComposeManyTuples(t *testing.T) {
	var sa, sb strings.Builder
	for i := range 40 {
		id := string(rune('a'+i%26)) + string(rune('a'+i/26))
		sa.WriteString(`<tuple id="` + id + `"><status><basic>open</basic></status></tuple>`)
		if i%2 == 0 {
			sb.WriteString(`<tuple id="` + id + `"><status><basic>closed</basic></status></tuple>`)
		}
	}
	d := Compose("sip:a@b", mustParse(t, []byte(pres(sa.String()))), mustParse(t, []byte(pres(sb.String()))))
	ts := d.Tuples()
	if len(ts) != 40 {
		t.Fatalf("%d tuples", len(ts))
	}
	for i, tu := range ts {
		if want := map[bool]string{true: "closed", false: "open"}[i%2 == 0]; tu.Basic != want {
			t.Errorf("tuple %d %s = %s, want %s", i, tu.ID, tu.Basic, want)
		}
	}
}

func TestComposeNotesDevicesExtensions(t *testing.T) {
	a := mustParse(t, []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
	  xmlns:x="urn:x" entity="sip:a@b">`+okTuple+`<note>old note</note><dm:device id="d1"><dm:note>a1</dm:note></dm:device>
	  <dm:device id="d2"><dm:note>a2</dm:note></dm:device><x:e>a</x:e><x:f>a</x:f></presence>`))
	b := mustParse(t, []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
	  xmlns:y="urn:x" entity="sip:a@b">`+okTuple+`<dm:device id="d2"><dm:note>b2</dm:note></dm:device><y:e>b1</y:e><y:e>b2</y:e></presence>`))
	c := mustParse(t, []byte(pres(okTuple+`<note xml:lang="en">new note</note>`)))
	d := Compose("sip:a@b", a, b, c)
	if got, want := d.Notes(), []Note{{"new note", "en"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("notes %+v, want %+v", got, want)
	}
	devs := d.Devices()
	if len(devs) != 2 || devs[0].Notes[0].Text != "a1" || devs[1].Notes[0].Text != "b2" {
		t.Errorf("devices %+v", devs)
	}
	out := string(d.Bytes())
	// urn:x:e from b (newest carrying it, two of them, with b's prefix), urn:x:f from a.
	for _, l := range []string{"<y:e>b1</y:e>\n  <y:e>b2</y:e>\n  <x:f>a</x:f>", `xmlns:y="urn:x" xmlns:x="urn:x"`} {
		if !strings.Contains(out, l) {
			t.Errorf("output lacks %s:\n%s", l, out)
		}
	}
	if strings.Contains(out, "<x:e>") || strings.Contains(out, "old note") {
		t.Errorf("older elements kept:\n%s", out)
	}
	roundTrip(t, d)
}

func TestComposePrefixes(t *testing.T) {
	// Prefix x bound to two namespaces; pidf under a prefix with another default namespace;
	// a prefix declared on the copied element itself.
	a := mustParse(t, []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:x="urn:a" entity="sip:a@b">
	  <tuple id="t1"><status><basic>open</basic><x:s/></status></tuple></presence>`))
	b := mustParse(t, []byte(`<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" xmlns="urn:other" xmlns:x="urn:b" entity="sip:a@b">
	  <p:tuple id="t2" x:attr="v"><p:status><p:basic>closed</p:basic><x:s/></p:status><ext/></p:tuple></p:presence>`))
	c := mustParse(t, []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">
	  <tuple id="t3" xmlns:x="urn:c"><status><basic>open</basic><x:s/></status><nons xmlns=""><x:z/></nons></tuple></presence>`))
	before := [][]byte{a.Bytes(), b.Bytes(), c.Bytes()}
	d := Compose("sip:z@b", a, b, c)
	for i, doc := range []*Document{a, b, c} {
		if !bytes.Equal(doc.Bytes(), before[i]) {
			t.Errorf("Compose modified its input %d:\n%s", i, doc.Bytes())
		}
	}
	out := string(d.Bytes())
	for _, l := range []string{
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:x="urn:a" xmlns:p="urn:ietf:params:xml:ns:pidf" entity="sip:z@b">`,
		`<tuple id="t1"><status><basic>open</basic><x:s/></status></tuple>`,
		`<p:tuple xmlns="urn:other" xmlns:x="urn:b" id="t2" x:attr="v"><p:status><p:basic>closed</p:basic><x:s/></p:status><ext/></p:tuple>`,
		`<tuple id="t3" xmlns:x="urn:c">`,
	} {
		if !strings.Contains(out, l) {
			t.Errorf("output lacks %s:\n%s", l, out)
		}
	}
	if got, want := ids(d.Tuples()), []string{"t1=open", "t2=closed", "t3=open"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tuples %q, want %q", got, want)
	}
	roundTrip(t, d)
	// The namespaces resolve as in the publications.
	root, err := load(d.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"t1": "urn:a", "t2": "urn:b", "t3": "urn:c"}
	for tu := range root.ChildElementsSeq() {
		id, _ := attr(tu, "", "id")
		s := tu.FindElement(".//s")
		if got := nsURI(s); got != want[id] {
			t.Errorf("tuple %s: x:s in %q, want %q", id, got, want[id])
		}
		if id == "t2" {
			if got := nsURI(tu.FindElement("ext")); got != "urn:other" {
				t.Errorf("ext in %q, want urn:other", got)
			}
		}
		if id == "t3" {
			if got := nsURI(tu.FindElement("nons")); got != "" {
				t.Errorf("nons in %q, want none", got)
			}
		}
	}
}

func TestComposeEmpty(t *testing.T) {
	d := Compose("sip:a@b")
	if len(d.Tuples()) != 0 || d.Entity() != "sip:a@b" {
		t.Errorf("Compose() = %s", d.Bytes())
	}
	if _, err := Parse(d.Bytes()); !errors.Is(err, ErrNoTuple) {
		t.Errorf("Parse(Compose()) = %v, want ErrNoTuple", err)
	}
	d = Compose("sip:a@b", nil, nil)
	if got := string(d.Bytes()); !strings.HasSuffix(got, `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"/>`) {
		t.Errorf("Compose(nil, nil) = %s", got)
	}
}

func TestComposeEntity(t *testing.T) {
	src := mustParse(t, readFixture(t, "publish-liblinphone-away.xml"))
	d := Compose("sip:dave@example.org", src)
	if d.Entity() != "sip:dave@example.org" || src.Entity() != "sip:dave@example.test" {
		t.Errorf("entities %q %q", d.Entity(), src.Entity())
	}
	// A composed document composes again to the same bytes.
	if a, b := d.Bytes(), Compose("sip:dave@example.org", d).Bytes(); !bytes.Equal(a, b) {
		t.Errorf("recomposition differs:\n%s\n%s", a, b)
	}
}

// TestComposeConcurrent runs readers of shared documents together, for -race.
func TestComposeConcurrent(t *testing.T) {
	docs := []*Document{
		mustParse(t, readFixture(t, "publish-baresip-open.xml")),
		mustParse(t, readFixture(t, "publish-liblinphone-away.xml")),
		mustParse(t, readFixture(t, "publish-linphonec-online.xml")),
	}
	want := Compose("sip:x@y", docs...).Bytes()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if got := Compose("sip:x@y", docs...).Bytes(); !bytes.Equal(got, want) {
					t.Error("concurrent Compose differs")
					return
				}
				_ = docs[1].Tuples()
				_ = docs[1].Persons()
				_ = docs[0].Bytes()
			}
		})
	}
	wg.Wait()
}
