package sipx

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// leanMax is the message limit both parsers get in the differential tests: small enough that
// the fuzzer reaches it, larger than one shared conversion (shareMax).
const leanMax = 5000

// leanCorpus returns every message of the captured client traffic (testdata/fixtures at the
// repository root) and of the RFC 4475 and RFC 5118 torture tests, by name.
func leanCorpus(tb testing.TB) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	root := filepath.Join("..", "..")
	captures, _ := filepath.Glob(filepath.Join(root, "testdata", "fixtures", "*.txt"))
	for _, f := range captures {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		for i, m := range captureMessages(string(data)) {
			out[fmt.Sprintf("%s#%d", filepath.Base(f), i+1)] = []byte(m)
		}
	}
	torture, _ := filepath.Glob(filepath.Join(root, "internal", "server", "testdata", "torture", "*", "*.dat"))
	for _, f := range torture {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(f)] = data
	}
	if len(captures) == 0 || len(torture) < 60 {
		tb.Fatalf("corpus incomplete: %d captures, %d torture messages", len(captures), len(torture))
	}
	return out
}

var captureHead = regexp.MustCompile(`^=== #\d+ t=\S+ (UDP|TCP) \S+ -> \S+ ===$`)

// captureMessages splits a capture file (testdata/fixtures/README.md) into its messages with
// CRLF line ends, as internal/servertest reads them.
func captureMessages(data string) []string {
	var out, lines []string
	in := false
	flush := func() {
		if !in {
			return
		}
		for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
			lines = lines[:len(lines)-1]
		}
		text := strings.Join(lines, "\r\n")
		if !strings.Contains(text, "\r\n\r\n") {
			text += "\r\n\r\n"
		}
		out = append(out, text)
		lines = nil
	}
	for _, line := range strings.Split(data, "\n") {
		if captureHead.MatchString(line) {
			flush()
			in = true
			continue
		}
		if in {
			lines = append(lines, line)
		}
	}
	flush()
	return out
}

// leanEdgeCases are hand-written messages for the rules the corpus does not reach: folding,
// compact and odd-case names, comma lists, bare CR, missing colon or empty line, Content-Length
// against the body and the limit, a header section longer than one shared conversion.
var leanEdgeCases = []string{
	"",
	"\r\n",
	"\r\n\r\n",
	"OPTIONS sip:a@b SIP/2.0\r\n\r\n",
	"OPTIONS sip:a@b SIP/2.0\r\n",
	"OPTIONS sip:a@b SIP/2.0",
	"OPTIONS sip:a@b SIP/2.0\rX\n\r\n",
	"OPTIONS * SIP/2.0\r\n\r\n",
	"options sip:a@b;transport=tcp?h=v SIP/2.0\r\n\r\n",
	"OPTIONS sip:a@b  SIP/2.0\r\n\r\n",
	"OPTIONS sip:a@b SIP/2.0 \r\n\r\n",
	"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n",
	"SIP/2.0 99999 Big\r\n\r\n",
	"SIP/2.0 200 SIP\r\n\r\n",
	"SIP/2.0 200\r\n\r\n",
	"sip/2.0 180 Ringing now\r\nl: 3\r\n\r\nabcdef",
	"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/TCP g;branch=z9hG4bK2\r\n" +
		"f: <sip:x@y>;tag=1\r\nT: sip:a@b\r\ni: c\r\nCSEQ: 1 MESSAGE\r\nMAX-FORWARDS: 70\r\n" +
		"c: text/plain\r\nL: 5\r\n\r\nhello",
	"MESSAGE sip:a@b SIP/2.0\r\nSubject: a\r\n  b \r\n\tc\r\nContact: <sip:a@b>,\r\n <sip:c@d>;q=0.5\r\n\r\n",
	"MESSAGE sip:a@b SIP/2.0\r\nSubject: a\r\n b",
	"MESSAGE sip:a@b SIP/2.0\r\nSubject: a\r\n b\rc\r\n\r\n",
	"MESSAGE sip:a@b SIP/2.0\r\nNoColon\r\n\r\n",
	"MESSAGE sip:a@b SIP/2.0\r\n : empty name\r\nX-Y:\r\n\r\n",
	"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nshort",
	"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\nbody",
	"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 2\r\nContent-Length: 4\r\n\r\nbody",
	"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 9999\r\n\r\nbody",
	"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\nbody",
	"MESSAGE sip:a@b SIP/2.0\r\nContact: *\r\nRoute: <sip:a;lr>, <sip:b;lr>\r\nRecord-Route: x\r\n\r\n",
	"MESSAGE sip:a@b SIP/2.0\r\nFrom: Bell, Alexander <sip:a@b>;tag=1\r\nTo: \"x\" < sip:a@b >\r\n\r\n",
	"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP / 2.0 / UDP [::1]:5060 ; branch = x\r\n\r\n",
	"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=\"a,b\"\r\n\r\n",
	"MESSAGE sip:a@b SIP/2.0\r\n\u00a0Subject\u00a0: \u0085x\u0085\r\n\r\n",
	"MESSAGE sip:a@b SIP/2.0\r\nA-Header-Name-Longer-Than-Thirty-Two-Bytes: v\r\n\r\n",
	"MESSAGE sip:a@b SIP/2.0\r\nX: " + strings.Repeat("v", 4500) + "\r\nCall-ID: after\r\n" +
		strings.Repeat("Y-Pad: 0123\r\n", 20) + "l: 2\r\n\r\nok",
	"MESSAGE sip:a@b SIP/2.0\r\n" + strings.Repeat("Y-Pad: 0123456789012345678901234567890123456789\r\n", 90) +
		"l: 2\r\n\r\nok",
}

// leanView renders everything a caller can read from what ParseSIP returned: the error, the
// start line, the message as text, its headers in order with their Go type, the body, the
// sanity stage's verdict and the received text of each Via. A panic is part of the result.
func leanView(msg sip.Message, err error) (view string) {
	var b strings.Builder
	defer func() {
		if p := recover(); p != nil {
			view = b.String() + fmt.Sprintf("\npanic: %v", p)
		}
	}()
	fmt.Fprintf(&b, "error: %v\nmessage: %T\n", err, msg)
	switch m := msg.(type) {
	case *sip.Request:
		if m == nil {
			return b.String()
		}
		fmt.Fprintf(&b, "request: %q %q %q\n", m.Method, m.Recipient.String(), m.SipVersion)
		fmt.Fprintf(&b, "malformed: %q\n", Malformed(m, "Via", "From", "To", "Call-ID", "CSeq",
			"Max-Forwards", "Contact", "Content-Type", "Content-Length", "Route", "Record-Route"))
	case *sip.Response:
		if m == nil {
			return b.String()
		}
		fmt.Fprintf(&b, "response: %d %q %q\n", m.StatusCode, m.Reason, m.SipVersion)
	default:
		return b.String()
	}
	for _, h := range msg.(Message).Headers() {
		fmt.Fprintf(&b, "header %T %q: %q\n", h, h.Name(), h.Value())
		if v, ok := h.(*sip.ViaHeader); ok {
			raw, kept := RawVia(v)
			fmt.Fprintf(&b, "  raw via %v %q\n", kept, raw)
		}
	}
	fmt.Fprintf(&b, "body: %q\nstring: %q\n", msg.Body(), msg.String())
	return b.String()
}

// parseView parses data with parse and renders the result (leanView), a panic included.
func parseView(parse func([]byte) (sip.Message, error), data []byte) (view string) {
	defer func() {
		if p := recover(); p != nil {
			view = fmt.Sprintf("parser panic: %v", p)
		}
	}()
	msg, err := parse(data)
	return leanView(msg, err)
}

// leanDiff returns how LeanParser's result for data differs from sipgo's with NewParser's
// header rules, or "" when they agree. LeanParser parses data twice: as built, and converting
// at most 23 bytes at a time, so that short inputs too cross from one conversion to the next.
func leanDiff(data []byte) string {
	want := parseView(NewParser(leanMax).ParseSIP, data)
	got := parseView(NewLeanParser(leanMax).ParseSIP, data)
	if got == want {
		small := NewLeanParser(leanMax)
		small.share = 23
		got = parseView(small.ParseSIP, data)
	}
	if got == want {
		return ""
	}
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(wl), len(gl)) {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("first difference, line %d:\nsipgo: %s\nlean:  %s", i+1, w, g)
		}
	}
	return "results differ"
}

// TestLeanParserMatchesSipgo: for every captured client message and every torture message, as
// sent, with LF line ends and cut short after each line, both parsers accept or refuse alike
// and give the same message.
func TestLeanParserMatchesSipgo(t *testing.T) {
	corpus := leanCorpus(t)
	for i, s := range leanEdgeCases {
		corpus[fmt.Sprintf("edge-%d", i)] = []byte(s)
	}
	names := make([]string, 0, len(corpus))
	for name := range corpus {
		names = append(names, name)
	}
	sort.Strings(names)
	accepted := 0
	for _, name := range names {
		data := corpus[name]
		if d := leanDiff(data); d != "" {
			t.Errorf("%s: %s", name, d)
		}
		if _, err := NewLeanParser(leanMax).ParseSIP(data); err == nil {
			accepted++
		}
		if d := leanDiff(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))); d != "" {
			t.Errorf("%s with LF line ends: %s", name, d)
		}
		for cut := bytes.IndexByte(data, '\n'); cut >= 0 && cut+1 < len(data); {
			if d := leanDiff(data[:cut]); d != "" {
				t.Errorf("%s cut at %d: %s", name, cut, d)
			}
			next := bytes.IndexByte(data[cut+1:], '\n')
			if next < 0 {
				break
			}
			cut += 1 + next
		}
	}
	// The corpus must exercise the accepting path, not only refusals.
	if accepted < len(names)*3/4 {
		t.Errorf("only %d of %d messages accepted", accepted, len(names))
	}
}

// TestLeanParserKeepsNoReferenceToData: the datagram buffer can be reused for the next read
// as soon as ParseSIP returns.
func TestLeanParserKeepsNoReferenceToData(t *testing.T) {
	data := []byte(leanBenchMessage)
	msg, err := NewLeanParser(0).ParseSIP(data)
	if err != nil {
		t.Fatal(err)
	}
	before := msg.String()
	for i := range data {
		data[i] = 'x'
	}
	if after := msg.String(); after != before {
		t.Errorf("message changed with its buffer:\n%s", after)
	}
}

// TestLeanParserLimit: a message over the limit is refused before it is read, and a body that
// would take the message over it is refused with the headers parsed, as sipgo does.
func TestLeanParserLimit(t *testing.T) {
	p := NewLeanParser(100)
	if msg, err := p.ParseSIP(make([]byte, 101)); !errors.Is(err, sip.ErrMessageTooLarge) || msg != nil {
		t.Errorf("101 bytes: %v %v, want ErrMessageTooLarge", msg, err)
	}
	msg, err := p.ParseSIP([]byte("MESSAGE sip:a@b SIP/2.0\r\nl: 90\r\n\r\nbody"))
	if !errors.Is(err, sip.ErrMessageTooLarge) || msg == nil || msg.ContentLength() == nil {
		t.Errorf("Content-Length over the limit: %v %v, want the headers and ErrMessageTooLarge", msg, err)
	}
}

// FuzzLeanParser: LeanParser and sipgo's parser with NewParser's header rules agree on every
// input (leanDiff). Seeds: the captured client messages, the torture messages, the edge cases
// and the corpus in testdata/fuzz.
func FuzzLeanParser(f *testing.F) {
	for _, data := range leanCorpus(f) {
		f.Add(data)
	}
	for _, s := range leanEdgeCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if d := leanDiff(data); d != "" {
			t.Fatal(d)
		}
	})
}

const leanBenchMessage = "MESSAGE sip:bob@example.test SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n" +
	"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=49583\r\n" +
	"To: <sip:bob@example.test>\r\nCall-ID: asd88asd77a@1.2.3.4\r\nCSeq: 1 MESSAGE\r\n" +
	"Route: <sip:127.0.0.1:5060;transport=udp;lr>\r\nDate: Sat, 13 Nov 2010 23:29:00 GMT\r\n" +
	"User-Agent: linphone/5.1.65\r\nSupported: replaces, outbound, gruu\r\n" +
	"Content-Type: text/plain\r\nContent-Length: 18\r\n\r\nWatson, come here."

const leanBenchInvite = "INVITE sip:bob@example.test SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n" +
	"Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.test>;tag=9fxced76sl\r\n" +
	"To: Bob <sip:bob@example.test>\r\nCall-ID: 3848276298220188511@atlanta.example.test\r\n" +
	"CSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1:5060;transport=udp>\r\n" +
	"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n" +
	"Supported: replaces, outbound, gruu\r\nUser-Agent: baresip v1.0.0 (x86_64/linux)\r\n" +
	"Content-Type: application/sdp\r\nContent-Length: 137\r\n\r\n" +
	"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\ns=-\r\n" +
	"c=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 97\r\na=rtpmap:0 PCMU/8000\r\n"

// BenchmarkParse: sipgo's parser with NewParser's header rules against LeanParser, on a
// REGISTER, a MESSAGE with a body and an INVITE with SDP.
func BenchmarkParse(b *testing.B) {
	messages := []struct{ name, text string }{
		{"register", benchRequest}, {"message", leanBenchMessage}, {"invite", leanBenchInvite},
	}
	parsers := []struct {
		name  string
		parse func([]byte) (sip.Message, error)
	}{
		{"sipgo", NewParser(0).ParseSIP}, {"lean", NewLeanParser(0).ParseSIP},
	}
	for _, m := range messages {
		data := []byte(m.text)
		for _, p := range parsers {
			b.Run(m.name+"/"+p.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := p.parse(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
