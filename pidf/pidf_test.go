package pidf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, b []byte) *Document {
	t.Helper()
	d, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, b)
	}
	return d
}

// view is what a user of a document sees.
type view struct {
	Entity  string
	Tuples  []Tuple
	Persons []Person
	Devices []Device
	Notes   []Note
}

func viewOf(d *Document) view {
	return view{d.Entity(), d.Tuples(), d.Persons(), d.Devices(), d.Notes()}
}

// roundTrip checks Parse(d.Bytes()) reads the same document and writes the same bytes.
func roundTrip(t testing.TB, d *Document) *Document {
	t.Helper()
	out := d.Bytes()
	if !bytes.HasPrefix(out, []byte(`<?xml version="1.0" encoding="UTF-8"?>`)) {
		t.Fatalf("output without XML declaration:\n%s", out)
	}
	d2, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Bytes()): %v\n%s", err, out)
	}
	if v1, v2 := viewOf(d), viewOf(d2); !reflect.DeepEqual(v1, v2) {
		t.Fatalf("round trip changed the document:\n%+v\n%+v", v1, v2)
	}
	if out2 := d2.Bytes(); !bytes.Equal(out, out2) {
		t.Fatalf("second serialisation differs:\n%s\n%s", out, out2)
	}
	return d2
}

func TestFixtures(t *testing.T) {
	dave := "sip:dave@example.test"
	tests := []struct {
		file       string
		entity     string
		tuples     []Tuple
		activities [][]string // per person
		literal    []string   // must appear in Bytes()
	}{
		{
			file: "publish-baresip-open.xml", entity: "sip:alice@example.test",
			tuples:     []Tuple{{ID: "t4109", Basic: "open", Contact: "sip:alice@example.test"}},
			activities: [][]string{nil},
			literal:    []string{`<dm:person id="p4159"><rpid:activities/></dm:person>`, `<basic>open</basic>`},
		},
		{
			file: "publish-baresip-closed.xml", entity: "sip:alice@example.test",
			tuples:     []Tuple{{ID: "t4109", Basic: "closed", Contact: "sip:alice@example.test"}},
			activities: [][]string{nil},
			literal:    []string{`<rpid:activities/>`, `<basic>closed</basic>`},
		},
		{
			file: "notify-kamailio-baresip-open.xml", entity: "sip:alice@example.test",
			tuples:     []Tuple{{ID: "t4109", Basic: "open", Contact: "sip:alice@example.test"}},
			activities: [][]string{nil},
			literal:    []string{`<rpid:activities/>`},
		},
		{
			file: "publish-liblinphone-away.xml", entity: dave,
			tuples:     []Tuple{{ID: "s1ip4j", Basic: "open", Contact: dave, Priority: "0.8", Timestamp: "2026-11-22T12:40:45Z"}},
			activities: [][]string{{"away"}},
			literal:    []string{"<rpid:away/>", `<contact priority="0.8">sip:dave@example.test</contact>`, `<dm:person id="dmzkdl">`},
		},
		{
			file: "notify-kamailio-liblinphone-away.xml", entity: dave,
			tuples:     []Tuple{{ID: "s1ip4j", Basic: "open", Contact: dave, Priority: "0.8", Timestamp: "2026-11-22T12:40:45Z"}},
			activities: [][]string{{"away"}},
			literal:    []string{"<rpid:away/>"},
		},
		{
			file: "publish-liblinphone-busy.xml", entity: dave,
			tuples:     []Tuple{{ID: "f9abrr", Basic: "open", Contact: dave, Priority: "0.8", Timestamp: "2026-11-22T12:40:46Z"}},
			activities: [][]string{{"busy"}},
			literal:    []string{"<rpid:busy/>"},
		},
		{
			file: "publish-liblinphone-donotdisturb.xml", entity: dave,
			tuples:     []Tuple{{ID: "vb.h6s", Basic: "closed", Contact: dave, Priority: "0.8", Timestamp: "2026-11-22T12:40:46Z"}},
			activities: [][]string{{"busy"}},
			literal:    []string{"<rpid:busy>Do not disturb</rpid:busy>"},
		},
		{
			file: "publish-liblinphone-on-the-phone.xml", entity: dave,
			tuples:     []Tuple{{ID: "edikzd", Basic: "open", Contact: dave, Priority: "0.8", Timestamp: "2026-11-22T12:40:46Z"}},
			activities: [][]string{{"on-the-phone"}},
			literal:    []string{"<rpid:on-the-phone/>"},
		},
		{
			file: "publish-linphonec-online.xml", entity: "sip:bob@example.test",
			tuples:  []Tuple{{ID: "x5.6nj", Basic: "open", Contact: "sip:bob@example.test", Priority: "0.8", Timestamp: "2026-11-22T12:40:44Z"}},
			literal: []string{"<pidfonline:online/>", `xmlns:pidfonline="http://www.linphone.org/xsds/pidfonline.xsd"`},
		},
		{
			file: "notify-kamailio-linphonec-after-unpublish.xml", entity: "sip:bob@example.test",
			tuples:  []Tuple{{ID: "x5.6nj", Basic: "closed"}},
			literal: []string{"<pidfonline:online/>", `<status xmlns="urn:ietf:params:xml:ns:pidf" xmlns:pidfonline=`},
		},
	}
	files, _ := filepath.Glob("testdata/*.xml")
	if len(files) != len(tests) {
		t.Errorf("%d fixtures in testdata, %d tested", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d := mustParse(t, readFixture(t, tt.file))
			if got := d.Entity(); got != tt.entity {
				t.Errorf("Entity() = %q, want %q", got, tt.entity)
			}
			if got := d.Tuples(); !reflect.DeepEqual(got, tt.tuples) {
				t.Errorf("Tuples() = %+v\nwant %+v", got, tt.tuples)
			}
			persons := d.Persons()
			if len(persons) != len(tt.activities) {
				t.Fatalf("%d persons, want %d", len(persons), len(tt.activities))
			}
			for i, p := range persons {
				if !reflect.DeepEqual(p.Activities, tt.activities[i]) {
					t.Errorf("person %d activities %q, want %q", i, p.Activities, tt.activities[i])
				}
			}
			out := d.Bytes()
			for _, l := range tt.literal {
				if !bytes.Contains(out, []byte(l)) {
					t.Errorf("output lacks %s:\n%s", l, out)
				}
			}
			d2 := roundTrip(t, d)
			for _, l := range tt.literal {
				if !bytes.Contains(d2.Bytes(), []byte(l)) {
					t.Errorf("output after round trip lacks %s", l)
				}
			}
		})
	}
}

func TestPersonFields(t *testing.T) {
	d := mustParse(t, readFixture(t, "publish-liblinphone-away.xml"))
	want := []Person{{ID: "dmzkdl", Activities: []string{"away"}, Timestamp: "2026-11-22T12:40:45Z"}}
	if got := d.Persons(); !reflect.DeepEqual(got, want) {
		t.Errorf("Persons() = %+v, want %+v", got, want)
	}
}

const richDoc = `<?xml version="1.0" encoding="UTF-8"?>
<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
  xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" xmlns:x="urn:example:x" entity="pres:someone@example.com">
  <!-- a comment -->
  <p:tuple id="a1">
    <p:status><p:basic> open </p:basic><x:mood>fine</x:mood></p:status>
    <dm:deviceID>mac:8asd7d7d70</dm:deviceID>
    <p:contact priority="1.0">sip:someone@example.com</p:contact>
    <p:note xml:lang="en">Don't Disturb &amp; Please!</p:note>
    <p:note xml:lang="fr">Ne d&#233;rangez pas, s'il vous plait</p:note>
    <p:timestamp>2001-10-27T16:49:29Z</p:timestamp>
  </p:tuple>
  <p:note>I'll be in Tokyo next week</p:note>
  <dm:person id="p1">
    <rpid:activities><rpid:note>meeting</rpid:note><rpid:meeting/><rpid:on-the-phone/></rpid:activities>
    <dm:note>in a meeting</dm:note>
    <dm:timestamp>2005-05-30T22:00:29Z</dm:timestamp>
  </dm:person>
  <dm:device id="pc122">
    <dm:deviceID>mac:8asd7d7d70</dm:deviceID>
    <dm:note>PC</dm:note>
  </dm:device>
  <x:ext a="1&#xD;&#xA;2&#9;3"><![CDATA[<raw>]]> tab&#9;cr&#13;</x:ext>
</p:presence>`

func TestParseRich(t *testing.T) {
	d := mustParse(t, []byte(richDoc))
	wantT := []Tuple{{
		ID: "a1", Basic: "open", Contact: "sip:someone@example.com", Priority: "1.0",
		Timestamp: "2001-10-27T16:49:29Z", DeviceID: "mac:8asd7d7d70",
		Notes: []Note{{"Don't Disturb & Please!", "en"}, {"Ne dérangez pas, s'il vous plait", "fr"}},
	}}
	if got := d.Tuples(); !reflect.DeepEqual(got, wantT) {
		t.Errorf("Tuples() = %+v\nwant %+v", got, wantT)
	}
	wantP := []Person{{ID: "p1", Activities: []string{"meeting", "on-the-phone"}, Timestamp: "2005-05-30T22:00:29Z", Notes: []Note{{Text: "in a meeting"}}}}
	if got := d.Persons(); !reflect.DeepEqual(got, wantP) {
		t.Errorf("Persons() = %+v\nwant %+v", got, wantP)
	}
	wantD := []Device{{ID: "pc122", DeviceID: "mac:8asd7d7d70", Notes: []Note{{Text: "PC"}}}}
	if got := d.Devices(); !reflect.DeepEqual(got, wantD) {
		t.Errorf("Devices() = %+v\nwant %+v", got, wantD)
	}
	if got, want := d.Notes(), []Note{{Text: "I'll be in Tokyo next week"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Notes() = %+v, want %+v", got, want)
	}
	out := string(d.Bytes())
	for _, l := range []string{`<p:presence xmlns:p=`, `<p:basic> open </p:basic>`, `<x:mood>fine</x:mood>`,
		`a="1&#xD;&#xA;2&#x9;3"`, `&lt;raw&gt; tab	cr&#xD;</x:ext>`, `xml:lang="fr"`} {
		if !strings.Contains(out, l) {
			t.Errorf("output lacks %s:\n%s", l, out)
		}
	}
	if strings.Contains(out, "comment") {
		t.Errorf("comment kept:\n%s", out)
	}
	roundTrip(t, d)
}

func TestPersonOnly(t *testing.T) {
	doc := `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
	 xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@b"><dm:person id="p"><rpid:activities><rpid:away/></rpid:activities></dm:person></presence>`
	d := mustParse(t, []byte(doc))
	if len(d.Tuples()) != 0 || len(d.Persons()) != 1 {
		t.Fatalf("tuples %v persons %v", d.Tuples(), d.Persons())
	}
	roundTrip(t, d)
}

func nested(depth int) string {
	return `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple id="t"><status><basic>open</basic></status>` +
		strings.Repeat("<e>", depth) + strings.Repeat("</e>", depth) + `</tuple></presence>`
}

const billionLaughs = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple id="t"><status><basic>open</basic></status><note>&lol9;</note></tuple></presence>`

// pres wraps tuples and other children in a valid presence root.
func pres(inner string) string {
	return `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:a@b">` + inner + `</presence>`
}

const okTuple = `<tuple id="t"><status><basic>open</basic></status></tuple>`

func TestParseErrors(t *testing.T) {
	big := pres(okTuple + "<note>" + strings.Repeat("x", 1<<20) + "</note>")
	tests := []struct {
		name string
		in   string
		want error
		msg  string // in the error message
	}{
		{"empty", "", ErrSyntax, "no root"},
		{"garbage", "hello", ErrSyntax, "text outside"},
		{"unclosed", `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple id="t">`, ErrSyntax, ""},
		{"mismatched", pres(`<tuple id="t"></status></tuple>`), ErrSyntax, ""},
		{"two roots", pres(okTuple) + pres(okTuple), ErrSyntax, "more than one root"},
		{"trailing text", pres(okTuple) + "junk", ErrSyntax, "text outside"},
		{"unquoted attribute", `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity=x>` + okTuple + `</presence>`, ErrSyntax, "line 1"},
		{"undefined entity", pres(`<tuple id="t"><status><basic>&open;</basic></status></tuple>`), ErrSyntax, "entity"},
		{"invalid UTF-8", pres(okTuple + "<note>\xff\xfe</note>"), ErrSyntax, "UTF-8"},
		{"latin1", `<?xml version="1.0" encoding="ISO-8859-1"?>` + pres(okTuple), ErrSyntax, "UTF-8"},
		{"duplicate attribute", `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="a" entity="b">` + okTuple + `</presence>`, ErrSyntax, "duplicate attribute"},
		{"duplicate expanded attribute", pres(`<tuple id="t" xmlns:a="urn:x" xmlns:b="urn:x" a:k="1" b:k="2"><status/></tuple>`), ErrSyntax, "duplicate attribute"},
		{"doctype", `<!DOCTYPE presence>` + pres(okTuple), ErrDoctype, ""},
		{"doctype after comment", `<?xml version="1.0"?><!-- x --><!DOCTYPE presence SYSTEM "http://example.com/x.dtd">` + pres(okTuple), ErrDoctype, ""},
		{"billion laughs", billionLaughs, ErrDoctype, ""},
		{"external entity", `<!DOCTYPE p [<!ENTITY e SYSTEM "file:///etc/passwd">]>` + pres(`<tuple id="t"><note>&e;</note></tuple>`), ErrDoctype, ""},
		{"entity inside", pres(`<!ENTITY x "y">` + okTuple), ErrDoctype, ""},
		{"too deep", nested(40), ErrTooComplex, "deeper than 32"},
		{"too many elements", pres(strings.Repeat(okTuple[:len(okTuple)-8]+"</tuple>", 1) + strings.Repeat("<n/>", MaxElements)), ErrTooComplex, "more than 10000 elements"},
		{"1 MB", big, ErrTooLarge, "limit"},
		{"too many attributes", pres(`<tuple id="t"` + manyAttrs(" a%d=''", maxAttrs) + `/>`), ErrTooComplex, "attributes"},
		{"too many namespaces", pres(`<tuple id="t"` + manyAttrs(" xmlns:a%d='urn:x'", maxBindings/2) + `><status` +
			manyAttrs(" xmlns:b%d='urn:x'", maxBindings/2) + `/></tuple>`), ErrTooComplex, "namespace declarations"},
		{"no namespace", `<presence entity="sip:a@b">` + okTuple + `</presence>`, ErrNamespace, `""`},
		{"wrong namespace", `<presence xmlns="urn:ietf:params:xml:ns:cpim-pidf" entity="sip:a@b">` + okTuple + `</presence>`, ErrNamespace, "cpim-pidf"},
		{"wrong root", `<tuple xmlns="urn:ietf:params:xml:ns:pidf" id="t"/>`, ErrInvalid, "want presence"},
		{"undeclared prefix", pres(`<tuple id="t"><status><basic>open</basic></status><rpid:x/></tuple>`), ErrNamespace, "undeclared prefix \"rpid\""},
		{"undeclared attribute prefix", pres(`<tuple id="t" q:x="1"><status/></tuple>`), ErrNamespace, "undeclared prefix"},
		{"empty prefix binding", pres(`<tuple id="t" xmlns:q=""><status/></tuple>`), ErrNamespace, "empty namespace"},
		{"xmlns prefix", pres(`<tuple id="t" xmlns:xmlns="urn:x"><status/></tuple>`), ErrNamespace, "xmlns"},
		{"no entity", `<presence xmlns="urn:ietf:params:xml:ns:pidf">` + okTuple + `</presence>`, ErrNoEntity, ""},
		{"empty entity", `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="">` + okTuple + `</presence>`, ErrNoEntity, ""},
		{"prefixed entity only", `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:x="urn:x" x:entity="sip:a@b">` + okTuple + `</presence>`, ErrNoEntity, ""},
		{"no tuple", pres(`<note>nothing</note>`), ErrNoTuple, ""},
		{"empty presence", pres(``), ErrNoTuple, ""},
		{"tuple without id", pres(`<tuple><status><basic>open</basic></status></tuple>`), ErrInvalid, "tuple without id"},
		{"bad basic", pres(`<tuple id="t"><status><basic>maybe</basic></status></tuple>`), ErrInvalid, `basic "maybe" is neither open nor closed`},
		{"empty basic", pres(`<tuple id="t"><status><basic/></status></tuple>`), ErrInvalid, "neither open nor closed"},
		{"basic with element", pres(`<tuple id="t"><status><basic>open<b/></basic></status></tuple>`), ErrInvalid, "neither open nor closed"},
		{"two basics", pres(`<tuple id="t"><status><basic>open</basic><basic>closed</basic></status></tuple>`), ErrInvalid, "more than one basic"},
		{"two statuses", pres(`<tuple id="t"><status/><status/></tuple>`), ErrInvalid, "more than one status"},
		{"duplicate tuple id", pres(`<tuple id="t4109"><status><basic>open</basic></status></tuple><tuple id="t4109"><status><basic>closed</basic></status></tuple>`), ErrInvalid, `duplicate tuple id "t4109"`},
		{"person without id", pres(okTuple + `<dm:person/>`), ErrInvalid, "person without id"},
		{"device without id", pres(okTuple + `<dm:device/>`), ErrInvalid, "device without id"},
		{"duplicate device id", pres(okTuple + `<dm:device id="d"/><dm:device id="d"/>`), ErrInvalid, "duplicate device id"},
		{"hostile id in message", pres(`<tuple id="a&#13;&#10;Via: x"><status><basic>open</basic></status></tuple><tuple id="a&#13;&#10;Via: x"/>`), ErrInvalid, `"a\r\nVia: x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse() = %v, %v; want %v", d, err, tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.msg) {
				t.Errorf("error %q does not contain %q", msg, tt.msg)
			}
			for _, c := range []byte(msg) {
				if c < 0x20 || c >= 0x7f {
					t.Errorf("error %q is not printable ASCII", msg)
					break
				}
			}
		})
	}
}

func manyAttrs(format string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, format, i)
	}
	return b.String()
}

func TestParseAccepts(t *testing.T) {
	for name, in := range map[string]string{
		"depth 32":        nested(32 - 3),
		"10000 elements":  pres(strings.Repeat("<n/>", MaxElements-4) + okTuple),
		"BOM":             "\xef\xbb\xbf" + pres(okTuple),
		"utf-8 uppercase": `<?xml version="1.0" encoding="UTF-8" standalone="no"?>` + pres(okTuple),
		"no declaration":  pres(okTuple),
		"lt in comment":   pres(`<!-- <!DOCTYPE x> -->` + okTuple),
		"lt in CDATA":     pres(`<note><![CDATA[<!DOCTYPE x> <a>]]></note>` + okTuple),
		"basic spaces": pres(`<tuple id="t"><status><basic> closed
</basic></status></tuple>`),
		"tuple without status":    pres(`<tuple id="t"><contact>sip:a@b</contact></tuple>`),
		"xml prefix":              pres(`<tuple id="t" xml:lang="en"><status/></tuple>`),
		"xmlns undeclared":        pres(`<tuple id="t"><status/><foo xmlns=""><bar/></foo></tuple>`),
		"same tuple id as person": pres(`<tuple id="x"><status/></tuple><dm:person id="x"/>`),
	} {
		t.Run(name, func(t *testing.T) {
			roundTrip(t, mustParse(t, []byte(in)))
		})
	}
}

// TestBillionLaughsMemory checks the refusal costs no expansion.
func TestBillionLaughsMemory(t *testing.T) {
	in := []byte(billionLaughs)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		if _, err := Parse(in); !errors.Is(err, ErrDoctype) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("100 refusals allocated %d bytes", n)
	}
}

func TestTooLargeIsCheap(t *testing.T) {
	in := bytes.Repeat([]byte("<"), MaxSize+1)
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := Parse(in); !errors.Is(err, ErrTooLarge) {
			t.Fatal(err)
		}
	})
	if allocs > 10 { // a few for the wrapped error (more under -race)
		t.Errorf("%v allocations to refuse an oversized document", allocs)
	}
}

func TestNewAddTuple(t *testing.T) {
	d := New("sip:carol@example.test")
	if _, err := Parse(d.Bytes()); !errors.Is(err, ErrNoTuple) {
		t.Errorf("empty document: %v", err)
	}
	mustAddTuple(t, d, "r1", "open", "sip:carol@example.test")
	mustAddTuple(t, d, "r2", "closed", "")
	mustAddTuple(t, d, "r3", "", "")
	mustAddTuple(t, d, "r1", "closed", "sip:carol@example.test") // replaces, keeps the position
	want := []Tuple{
		{ID: "r1", Basic: "closed", Contact: "sip:carol@example.test"},
		{ID: "r2", Basic: "closed"},
		{ID: "r3"},
	}
	if got := d.Tuples(); !reflect.DeepEqual(got, want) {
		t.Errorf("Tuples() = %+v, want %+v", got, want)
	}
	const wantXML = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:carol@example.test">
  <tuple id="r1"><status><basic>closed</basic></status><contact>sip:carol@example.test</contact></tuple>
  <tuple id="r2"><status><basic>closed</basic></status></tuple>
  <tuple id="r3"><status/></tuple>
</presence>`
	if got := string(d.Bytes()); got != wantXML {
		t.Errorf("Bytes() =\n%s\nwant\n%s", got, wantXML)
	}
	roundTrip(t, d)
}

func TestAddTupleToParsed(t *testing.T) {
	// After the last tuple, with the root's prefix.
	d := mustParse(t, []byte(richDoc))
	mustAddTuple(t, d, "b2", "closed", "")
	if ts := d.Tuples(); len(ts) != 2 || ts[1].ID != "b2" || ts[1].Basic != "closed" {
		t.Errorf("Tuples() = %+v", ts)
	}
	if !bytes.Contains(d.Bytes(), []byte(`<p:tuple id="b2"><p:status><p:basic>closed</p:basic></p:status></p:tuple>`)) {
		t.Errorf("added tuple not written with prefix p:\n%s", d.Bytes())
	}
	roundTrip(t, d)

	// Person-only document: the tuple goes first.
	d = mustParse(t, []byte(pres(`<dm:person id="p"/>`)))
	mustAddTuple(t, d, "t", "open", "")
	if got := string(d.Bytes()); !strings.Contains(got, `<tuple id="t"><status><basic>open</basic></status></tuple>`+"\n  <dm:person") {
		t.Errorf("tuple not first:\n%s", got)
	}
	roundTrip(t, d)
}

func TestAddTupleRefuses(t *testing.T) {
	for _, args := range [][3]string{{"", "open", ""}, {"t", "busy", ""}} {
		d := New("sip:a@b")
		before := string(d.Bytes())
		if err := d.AddTuple(args[0], args[1], args[2]); !errors.Is(err, ErrBadTuple) {
			t.Errorf("AddTuple%q = %v, want ErrBadTuple", args, err)
		}
		if got := string(d.Bytes()); got != before {
			t.Errorf("AddTuple%q changed the document:\n%s", args, got)
		}
	}
}

func TestSetEntity(t *testing.T) {
	d := mustParse(t, readFixture(t, "publish-liblinphone-away.xml"))
	d.SetEntity("sip:dave@example.org")
	if got := d.Entity(); got != "sip:dave@example.org" {
		t.Errorf("Entity() = %q", got)
	}
	if !bytes.Contains(d.Bytes(), []byte(`entity="sip:dave@example.org" xmlns="urn:ietf:params:xml:ns:pidf"`)) {
		t.Errorf("entity not rewritten in place:\n%s", d.Bytes())
	}
	roundTrip(t, d)
}

func TestClosed(t *testing.T) {
	d := Closed("sip:alice@example.test")
	const want = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.test">
  <tuple id="closed"><status><basic>closed</basic></status></tuple>
</presence>`
	if got := string(d.Bytes()); got != want {
		t.Errorf("Closed() =\n%s\nwant\n%s", got, want)
	}
	roundTrip(t, d)
}

func TestEscaping(t *testing.T) {
	d := New("sip:a@b?x=1&y=\"2\"")
	mustAddTuple(t, d, "t<1>", "open", "sip:<a>&b")
	d2 := roundTrip(t, d)
	if d2.Entity() != "sip:a@b?x=1&y=\"2\"" || d2.Tuples()[0].ID != "t<1>" || d2.Tuples()[0].Contact != "sip:<a>&b" {
		t.Errorf("escaping lost: %+v", viewOf(d2))
	}
}

func mustAddTuple(t *testing.T, d *Document, id, basic, contact string) {
	t.Helper()
	if err := d.AddTuple(id, basic, contact); err != nil {
		t.Fatal(err)
	}
}
