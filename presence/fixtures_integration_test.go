package presence_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/servertest"
	"github.com/simpled/simpled/pidf"

	"github.com/emiago/sipgo/sip"
)

// Corpus tests of the presence agent from the real captures in testdata/fixtures
// (presence-*.txt, pidf/*.xml): every PUBLISH and SUBSCRIBE baresip and linphone sent is
// replayed against simpled as the client would send it, every NOTIFY Kamailio sent must parse,
// and each watcher must get from simpled a NOTIFY it can read, carrying the state Kamailio's
// NOTIFY carried at the same point of the capture.

// TestFixturePresenceReplay replays each presence capture in order against its own simpled:
// one socket per client (Via, Contact and the pre-loaded Route rewritten to the socket and
// the server, Content-Length left out where the client left it out on UDP), Kamailio's
// entity tags, dialog tags and nonces replaced by the ones simpled gave. Each request and
// each NOTIFY of the capture is a subtest named after its message number.
//
//   - PUBLISH: a SIP-If-Match is first sent as captured: simpled never issued that tag, so
//     412 (Kamailio answered 200 because it had issued it in its own run); then with the tag
//     simpled gave for the publication: 200 with a new SIP-ETag and the Expires asked for,
//     Expires 0 included (linphone's un-PUBLISH has no Content-Length over UDP).
//   - SUBSCRIBE (no Accept, both clients): 200 with To tag, Contact and Expires, then a
//     NOTIFY with application/pidf+xml and Content-Length; un-SUBSCRIBE: 200 and a final
//     NOTIFY terminated.
//   - With digest (the auth-msilo capture, users file with the capture's passwords): a
//     request the capture shows challenged gets 407; its retry, and every later request on
//     which the client re-sent its credentials, carries a response computed for simpled's
//     nonce the way the client computed it (no qop, as in the capture).
//   - Each NOTIFY of the capture: the NOTIFY simpled sent in the same dialog at that point
//     must give that watcher what Kamailio's gave it (pfxCompareNotify).
func TestFixturePresenceReplay(t *testing.T) {
	dir := servertest.FixtureDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "presence-*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no presence capture in %s: %v", dir, err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			r := newPfxReplay(t, name)
			r.run(t)
		})
	}
}

// TestFixtureKamailioNotifiesParse: every NOTIFY of the captures, as it was on the wire,
// parses with sipgo, has a Content-Length equal to its body, and its PIDF body parses with
// pidf.Parse and says something (a tuple or a person).
func TestFixtureKamailioNotifiesParse(t *testing.T) {
	n := 0
	for _, m := range servertest.LoadFixtures(t, "presence-*.txt") {
		if m.Method() != "NOTIFY" {
			continue
		}
		n++
		t.Run(m.File+m.N, func(t *testing.T) {
			req := pfxParseFixture(t, m)
			if cl := pfxContentLength(req); cl != len(req.Body()) {
				t.Errorf("Content-Length %d for a %d-byte body", cl, len(req.Body()))
			}
			if h := req.GetHeader("Event"); h == nil || h.Value() != "presence" {
				t.Errorf("Event %v", h)
			}
			if req.GetHeader("Subscription-State") == nil {
				t.Errorf("no Subscription-State")
			}
			if len(req.Body()) == 0 {
				return
			}
			if ct := pfxContentType(req); ct != pidf.MediaType {
				t.Errorf("Content-Type %q", ct)
			}
			doc, err := pidf.Parse(req.Body())
			if err != nil {
				t.Fatalf("pidf.Parse: %v\n%s", err, req.Body())
			}
			if len(doc.Tuples()) == 0 && len(doc.Persons()) == 0 {
				t.Errorf("neither tuple nor person:\n%s", req.Body())
			}
		})
	}
	if n == 0 {
		t.Fatal("no NOTIFY in the presence captures")
	}
}

// TestFixturePIDFThroughSimpled publishes each testdata/fixtures/pidf/*.xml as its entity
// (the body byte for byte) and checks that a watcher subscribed before the PUBLISH and one
// subscribed after it both get the same document back: tuples, persons, devices, notes and
// their activities as pidf.Parse reads them, every element under the prefix it was published
// with, rpid activities still empty elements (baresip matches the literal <rpid:away/>), and
// the status baresip derives from it unchanged.
func TestFixturePIDFThroughSimpled(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(servertest.FixtureDir(t), "pidf", "*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no pidf/*.xml fixture: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := pidf.Parse(body)
			if err != nil {
				t.Fatalf("the fixture does not parse: %v", err)
			}
			aor := strings.TrimPrefix(doc.Entity(), "sip:")
			user, domain, _ := strings.Cut(aor, "@")
			if domain != "example.test" || user == "" {
				t.Fatalf("entity %q is not a user of example.test", doc.Entity())
			}
			srv := servertest.Start(t, func(o *servertest.Options) { o.Presence.MinNotifyInterval = time.Millisecond })
			servertest.MakeKnown(t, srv, user)

			before := servertest.Dial(t, "udp", srv.Listener("udp"))
			_, n := before.Watch(servertest.Subscribe("carol@example.test", user, "pf-before", 1, "presence", 600))
			if !strings.Contains(string(n.Body()), "<basic>closed</basic>") {
				t.Fatalf("before the PUBLISH: want the closed document:\n%s", n.Body())
			}

			pub := servertest.Dial(t, "udp", srv.Listener("udp"))
			pub.Send(pfxPublish(user, "pf-pub", body))
			if res := pub.Expect(`^SIP/2.0 200 `); res.GetHeader("SIP-ETag") == nil {
				t.Fatalf("200 without SIP-ETag:\n%s", res)
			}
			got := before.Notify()
			pfxSameDocument(t, "NOTIFY after the PUBLISH", body, got.Body(), aor)

			after := servertest.Dial(t, "tcp", srv.Listener("tcp"))
			_, got = after.Watch(servertest.Subscribe("bob@example.test", user, "pf-after", 1, "presence", 600))
			pfxCheckFraming(t, got)
			pfxSameDocument(t, "initial NOTIFY of a later watcher", body, got.Body(), aor)
		})
	}
}

// pfxPublish is an initial PUBLISH of user's presence with body as it is (CRLF in the header
// only, so that the body arrives byte for byte).
func pfxPublish(user, callID string, body []byte) string {
	return strings.ReplaceAll(
		"PUBLISH sip:"+user+"@example.test SIP/2.0\n"+
			"Via: SIP/2.0/{transport} {local};branch=z9hG4bK"+pfxBranch("pf")+";rport\n"+
			"Max-Forwards: 70\n"+
			"From: <sip:"+user+"@example.test>;tag=p"+callID+"\n"+
			"To: <sip:"+user+"@example.test>\n"+
			"Call-ID: "+callID+"\n"+
			"CSeq: 1 PUBLISH\n"+
			"Event: presence\n"+
			"Expires: 600\n"+
			"Content-Type: application/pidf+xml\n"+
			"Content-Length: "+strconv.Itoa(len(body))+"\n\n", "\n", "\r\n") + string(body)
}

var pfxBranchSeq atomic.Int64

// pfxBranch returns a branch suffix never used before in this process.
func pfxBranch(hint string) string {
	return "pfx" + hint + strconv.FormatInt(pfxBranchSeq.Add(1), 36) + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
}

// pfxReplay is the state of one capture's replay.
type pfxReplay struct {
	parent  *testing.T // owns the sockets, which outlive each message's subtest
	file    string
	tp      string // udp or tcp
	auth    bool
	srv     *servertest.Server
	msgs    []servertest.Fixture
	answers map[string]servertest.Fixture // the capture's final response, by Call-ID and CSeq
	clients map[string]*pfxClient         // by the client's address in the capture
	etags   map[string]string             // Kamailio's SIP-ETag → simpled's
	nonces  map[string]string             // Kamailio's nonce → simpled's
	dialogs map[string]*pfxDialog         // subscriptions, by Call-ID
}

// pfxDialog is a subscription of the replay.
type pfxDialog struct {
	client  *pfxClient
	tag     string // simpled's To tag
	contact string // simpled's Contact: the Request-URI of in-dialog requests
}

func newPfxReplay(t *testing.T, file string) *pfxReplay {
	t.Helper()
	r := &pfxReplay{
		parent: t, file: file, msgs: servertest.LoadFixtures(t, file),
		answers: map[string]servertest.Fixture{}, clients: map[string]*pfxClient{},
		etags: map[string]string{}, nonces: map[string]string{}, dialogs: map[string]*pfxDialog{},
	}
	r.auth = strings.Contains(file, "auth")
	for _, m := range r.msgs {
		if r.tp == "" {
			r.tp = strings.ToLower(m.Transport)
		}
		if m.Method() != "" {
			continue
		}
		key := m.Header("Call-ID") + "|" + m.Header("CSeq")
		if _, ok := r.answers[key]; !ok && pfxStatus(m) >= 200 {
			r.answers[key] = m
		}
	}
	mod := func(o *servertest.Options) { o.Presence.MinNotifyInterval = time.Millisecond }
	if r.auth {
		users := filepath.Join(t.TempDir(), "users")
		var lines []string
		for _, u := range []string{"alice", "bob", "carol", "dave"} {
			lines = append(lines, u+"@example.test:secret-"+u)
		}
		if err := os.WriteFile(users, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		mod = func(o *servertest.Options) { o.Presence.MinNotifyInterval = time.Millisecond; o.UsersFile = users }
	}
	r.srv = servertest.Start(t, mod)
	return r
}

// run replays the capture in order.
func (r *pfxReplay) run(t *testing.T) {
	seen := map[string]int{}
	requests, notifies := 0, 0
	for _, m := range r.msgs {
		name := m.N
		if seen[m.N]++; seen[m.N] > 1 {
			name += "." + strconv.Itoa(seen[m.N]) // two messages in one TCP segment
		}
		switch m.Method() {
		case "PUBLISH", "SUBSCRIBE":
			requests++
			t.Run(name+" "+m.Method(), func(t *testing.T) { r.Request(t, m) })
		case "NOTIFY":
			notifies++
			t.Run(name+" NOTIFY", func(t *testing.T) { r.Notify(t, m) })
		}
	}
	if requests == 0 || notifies == 0 {
		t.Fatalf("%s: %d PUBLISH/SUBSCRIBE, %d NOTIFY", r.file, requests, notifies)
	}
	// simpled must not have sent NOTIFYs that the capture has no counterpart for.
	time.Sleep(150 * time.Millisecond)
	for _, c := range r.clients {
		for _, n := range c.pending() {
			t.Errorf("%s got a NOTIFY the capture has no counterpart for (Call-ID %s, %s):\n%s",
				c.key, n.CallID().Value(), servertest.SubState(n), n.Body())
		}
		for _, e := range c.errors() {
			t.Errorf("%s: %s", c.key, e)
		}
	}
}

// client returns the socket replaying the client that sent m.
func (r *pfxReplay) client(t *testing.T, m servertest.Fixture) *pfxClient {
	t.Helper()
	c := r.clients[m.From]
	if c == nil {
		c = pfxDial(r.parent, r.tp, r.srv.Listener(r.tp), m.From)
		r.clients[m.From] = c
		c.aliases = append(c.aliases, m.From)
		switch ua := m.Header("User-Agent"); {
		case strings.Contains(ua, "baresip"):
			c.kind = "baresip"
		case strings.Contains(strings.ToLower(ua), "linphone"):
			c.kind = "linphone"
		default:
			t.Fatalf("unknown client %q", ua)
		}
	}
	// The address the client advertises (Via sent-by) may differ from its source: baresip
	// over TCP advertises its listening port.
	if via := pfxViaSentBy.FindStringSubmatch(m.Header("Via")); via != nil && !pfxContains(c.aliases, via[1]) {
		c.aliases = append(c.aliases, via[1])
	}
	return c
}

func pfxContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var (
	pfxViaSentBy = regexp.MustCompile(`^SIP/2\.0/\w+ ([^;\s]+)`)
	pfxBranchRe  = regexp.MustCompile(`branch=[^;,\s]+`)
	pfxTagRe     = regexp.MustCompile(`;\s*tag=([^;>\s]+)`)
)

// request replays one PUBLISH or SUBSCRIBE of a client.
func (r *pfxReplay) Request(t *testing.T, m servertest.Fixture) {
	c := r.client(t, m)
	head, body, hasCL := pfxWire(t, m)
	method := m.Method()
	callID, cseq := m.Header("Call-ID"), m.Header("CSeq")
	answer, ok := r.answers[callID+"|"+cseq]
	if !ok {
		t.Fatalf("the capture has no answer to %s %s", method, cseq)
	}

	// The client's addresses become the socket's, the server's address simpled's.
	lines := strings.Split(head, "\r\n")
	for i := range lines {
		for _, a := range c.aliases {
			lines[i] = strings.ReplaceAll(lines[i], a, "{local}")
		}
		lines[i] = strings.ReplaceAll(lines[i], m.To, r.srv.Listener(r.tp))
	}
	text := strings.Join(lines, "\r\n") + "\r\n\r\n"
	if !r.auth {
		text = servertest.SetHeader(text, "Proxy-Authorization", "") // this simpled has no credentials
	}
	if hasCL || !c.UDP {
		text = servertest.SetHeader(text, "Content-Length", strconv.Itoa(len(body)))
	}
	expires := m.Header("Expires")

	// In-dialog: simpled's tag and Contact instead of Kamailio's.
	if tag := pfxTagRe.FindStringSubmatch(m.Header("To")); tag != nil {
		d := r.dialogs[callID]
		if d == nil {
			t.Fatalf("in-dialog %s in a dialog the replay did not create (Call-ID %s)", method, callID)
		}
		to := strings.Replace(m.Header("To"), "tag="+tag[1], "tag="+d.tag, 1)
		text = servertest.SetHeader(text, "To", to)
		_, rest, _ := strings.Cut(text, "\r\n")
		text = method + " " + d.contact + " SIP/2.0\r\n" + rest
	}

	// Challenged in the capture (no credentials yet): simpled challenges too.
	if r.auth && m.Header("Proxy-Authorization") == "" && pfxStatus(answer) == 407 {
		res := c.do(t, text, body, "")
		if res.StatusCode != 407 {
			t.Fatalf("%d, want 407 (the capture's answer to a request without credentials)", res.StatusCode)
		}
		var ours []string
		for _, h := range res.GetHeaders("Proxy-Authenticate") {
			ours = append(ours, h.Value())
		}
		theirs := servertest.QuotedParam(answer.Header("Proxy-Authenticate"), "nonce")
		nonce := servertest.QuotedParam(strings.Join(ours, ", "), "nonce")
		if nonce == "" || theirs == "" {
			t.Fatalf("no nonce to chain: ours %q, the capture's %q", ours, answer.Header("Proxy-Authenticate"))
		}
		r.nonces[theirs] = nonce
		return
	}
	if r.auth {
		if pa := m.Header("Proxy-Authorization"); pa != "" {
			text = servertest.SetHeader(text, "Proxy-Authorization", r.credentials(t, method, pa))
		}
	}

	switch method {
	case "PUBLISH":
		r.publish(t, c, m, text, body, answer, expires)
	case "SUBSCRIBE":
		r.subscribe(t, c, m, text, body, expires)
	}
}

// credentials recomputes a client's Proxy-Authorization for simpled's nonce, as the client
// computed it for Kamailio's (RFC 2069, no qop: the capture's challenges offered none).
func (r *pfxReplay) credentials(t *testing.T, method, pa string) string {
	t.Helper()
	user, realm, uri := servertest.QuotedParam(pa, "username"), servertest.QuotedParam(pa, "realm"), servertest.QuotedParam(pa, "uri")
	nonce, ok := r.nonces[servertest.QuotedParam(pa, "nonce")]
	if !ok {
		t.Fatalf("credentials for a nonce no replayed challenge gave: %s", pa)
	}
	resp := servertest.DigestMD5(user, realm, "secret-"+user, method, uri, nonce, "", "")
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s"`, user, realm, nonce, uri, resp)
}

// publish replays a PUBLISH: a captured SIP-If-Match first as is (412), then the tag simpled
// gave (200).
func (r *pfxReplay) publish(t *testing.T, c *pfxClient, m servertest.Fixture, text string, body []byte, answer servertest.Fixture, expires string) {
	t.Helper()
	ours := ""
	if ifMatch := m.Header("SIP-If-Match"); ifMatch != "" {
		// Kamailio answered 200: it had issued this tag. simpled never did: 412 (RFC 3903
		// §6 step 4), and baresip then starts over without a tag.
		if res := c.do(t, text, body, "412"); res.StatusCode != 412 {
			t.Errorf("SIP-If-Match %s that simpled never issued: %d, want 412", ifMatch, res.StatusCode)
		}
		var ok bool
		if ours, ok = r.etags[ifMatch]; !ok {
			return // a tag from before the capture: 412 was the whole answer
		}
		text = servertest.SetHeader(text, "SIP-If-Match", ours)
	}
	res := c.do(t, text, body, "")
	if res.StatusCode != 200 {
		t.Fatalf("%d, want 200 (the capture: %s)", res.StatusCode, servertest.FirstLine(answer.Text))
	}
	etag := res.GetHeader("SIP-ETag")
	if etag == nil || etag.Value() == "" {
		t.Fatalf("200 without SIP-ETag:\n%s", res)
	}
	if h := res.GetHeader("Expires"); h == nil || h.Value() != expires {
		t.Errorf("200 Expires %v, want %s", h, expires)
	}
	if expires != "0" && ours != "" && etag.Value() == ours {
		t.Errorf("a modification kept the entity tag %s", ours)
	}
	if theirs := answer.Header("SIP-ETag"); theirs != "" {
		r.etags[theirs] = etag.Value()
	}
}

// subscribe replays a SUBSCRIBE, initial or in-dialog, and checks the NOTIFY it causes.
func (r *pfxReplay) subscribe(t *testing.T, c *pfxClient, m servertest.Fixture, text string, body []byte, expires string) {
	t.Helper()
	callID := m.Header("Call-ID")
	res := c.do(t, text, body, "")
	if res.StatusCode != 200 {
		t.Fatalf("%d, want 200", res.StatusCode)
	}
	if h := res.GetHeader("Expires"); h == nil || h.Value() != expires {
		t.Errorf("200 Expires %v, want %s", h, expires)
	}
	d := r.dialogs[callID]
	if d == nil {
		tag, _ := res.To().Params.Get("tag")
		if tag == "" || res.Contact() == nil {
			t.Fatalf("200 without To tag or Contact:\n%s", res)
		}
		d = &pfxDialog{client: c, tag: tag, contact: res.Contact().Address.String()}
		r.dialogs[callID] = d
		if m.Header("Accept") != "" {
			t.Logf("the client sent Accept: %s", m.Header("Accept"))
		}
		// No Accept: application/pidf+xml (RFC 3856 §6.7), with Content-Length.
		n := c.peek(t, callID, func(*sip.Request) bool { return true })
		if !strings.HasPrefix(servertest.SubState(n), "active") {
			t.Errorf("first NOTIFY Subscription-State %q, want active", servertest.SubState(n))
		}
		pfxCheckFraming(t, n)
		if len(n.Body()) == 0 {
			t.Errorf("first NOTIFY without body")
		}
		return
	}
	if expires == "0" {
		n := c.peek(t, callID, func(n *sip.Request) bool { return strings.HasPrefix(servertest.SubState(n), "terminated") })
		pfxCheckFraming(t, n)
	}
}

// notify checks the NOTIFY simpled sent in the dialog of a NOTIFY of the capture.
func (r *pfxReplay) Notify(t *testing.T, m servertest.Fixture) {
	d := r.dialogs[m.Header("Call-ID")]
	if d == nil {
		t.Fatalf("a NOTIFY in a dialog the replay did not create (Call-ID %s)", m.Header("Call-ID"))
	}
	kam := pfxParseFixture(t, m)
	got := d.client.take(t, m.Header("Call-ID"))
	pfxCompareNotify(t, d.client.kind, kam, got)
}

// pfxCheckFraming checks what every watcher needs of a NOTIFY: Content-Length always (baresip
// 1.0.0 dereferences it), matching the body; Content-Type application/pidf+xml with a body,
// with no parameter (baresip compares the whole value).
func pfxCheckFraming(t *testing.T, n *sip.Request) {
	t.Helper()
	if cl := pfxContentLength(n); cl != len(n.Body()) {
		t.Errorf("Content-Length %d (-1: none) for a %d-byte body", cl, len(n.Body()))
	}
	if len(n.Body()) == 0 {
		return
	}
	if ct := pfxContentType(n); !strings.EqualFold(ct, pidf.MediaType) {
		t.Errorf("Content-Type %q, want exactly %s", ct, pidf.MediaType)
	}
}

// pfxContentLength returns a message's Content-Length, -1 without one.
func pfxContentLength(m sip.Message) int {
	if cl := m.ContentLength(); cl != nil {
		return int(*cl)
	}
	return -1
}

// pfxContentType returns a message's Content-Type, "" without one.
func pfxContentType(m interface{ GetHeader(string) sip.Header }) string {
	if ct := m.GetHeader("Content-Type"); ct != nil {
		return ct.Value()
	}
	return ""
}

// pfxCompareNotify checks that simpled's NOTIFY got gives a watcher of kind what Kamailio's
// NOTIFY kam gave it: the same subscription state, and a body the client reads the same way —
// for baresip the status its regexes find and the literal <rpid:…/> elements, for linphone the
// tuples and persons with their activities.
func pfxCompareNotify(t *testing.T, kind string, kam, got *sip.Request) {
	t.Helper()
	pfxCheckFraming(t, got)
	kamState, _, _ := strings.Cut(servertest.SubState(kam), ";")
	gotState, _, _ := strings.Cut(servertest.SubState(got), ";")
	if (kamState == "terminated") != (gotState == "terminated") {
		t.Errorf("Subscription-State %q, the capture %q", servertest.SubState(got), servertest.SubState(kam))
	}
	kb, gb := kam.Body(), got.Body()
	if len(kb) > 0 && len(gb) == 0 {
		t.Fatalf("NOTIFY without body where the capture's has one:\n%s", kb)
	}
	if len(kb) == 0 || len(gb) == 0 {
		return // Kamailio sent no state (a final NOTIFY): nothing to compare
	}
	gd, err := pidf.Parse(gb)
	if err != nil {
		t.Fatalf("simpled's PIDF does not parse: %v\n%s", err, gb)
	}
	kd, err := pidf.Parse(kb)
	if err != nil {
		t.Fatalf("the capture's PIDF does not parse: %v", err)
	}
	if gd.Entity() != kd.Entity() {
		t.Errorf("entity %q, the capture %q", gd.Entity(), kd.Entity())
	}
	if g, k := pfxTupleIDs(gd), pfxTupleIDs(kd); !reflect.DeepEqual(g, k) {
		t.Logf("simpled's document is not Kamailio's: tuples %v, Kamailio %v\n%s", g, k, gb)
	}
	switch kind {
	case "baresip":
		if !pfxBasic.Match(gb) {
			t.Errorf("no literal <basic>open</basic> or <basic>closed</basic> for baresip's regexes:\n%s", gb)
		}
		if got, want := pfxBaresipStatus(gb), pfxBaresipStatus(kb); got != want {
			t.Errorf("baresip shows %s, with Kamailio's NOTIFY %s:\n%s", got, want, gb)
		}
		if got, want := pfxEmptyRPID(gb), pfxEmptyRPID(kb); !reflect.DeepEqual(got, want) {
			t.Errorf("empty rpid elements %q, the capture %q:\n%s", got, want, gb)
		}
	case "linphone":
		if !reflect.DeepEqual(gd.Tuples(), kd.Tuples()) {
			t.Errorf("tuples\n%+v\nthe capture\n%+v", gd.Tuples(), kd.Tuples())
		}
		if !reflect.DeepEqual(gd.Persons(), kd.Persons()) {
			t.Errorf("persons\n%+v\nthe capture\n%+v", gd.Persons(), kd.Persons())
		}
		if strings.Contains(string(kb), "<dm:person") && !strings.Contains(string(gb), "<dm:person") {
			t.Errorf("no <dm:person>:\n%s", gb)
		}
	}
}

var (
	pfxBasic      = regexp.MustCompile(`<basic>(open|closed)</basic>`)
	pfxBasicOpen  = regexp.MustCompile(`<basic>[^<]*open[^<]*</basic>`)
	pfxEmptyRPIDs = regexp.MustCompile(`<rpid:[A-Za-z-]+/>`)
	pfxStartTag   = regexp.MustCompile(`<([A-Za-z_][\w.:-]*)`)
)

// pfxBaresipStatus is the status baresip 1.0.0 shows for a PIDF body (fixtures quirk 10):
// regexes on the text, the literal rpid prefix and empty elements only.
func pfxBaresipStatus(body []byte) string {
	status := "Offline"
	if len(body) == 0 {
		return "Unknown"
	}
	if pfxBasicOpen.Match(body) {
		status = "Online"
	}
	s := string(body)
	switch {
	case strings.Contains(s, "<rpid:away/>"):
		status = "Offline"
	case strings.Contains(s, "<rpid:busy/>"), strings.Contains(s, "<rpid:on-the-phone/>"):
		status = "Busy"
	}
	return status
}

func pfxTupleIDs(d *pidf.Document) []string {
	var out []string
	for _, tu := range d.Tuples() {
		out = append(out, tu.ID+"="+tu.Basic)
	}
	return out
}

// pfxEmptyRPID lists the empty rpid elements of a body, as baresip's regexes see them.
func pfxEmptyRPID(body []byte) []string {
	return pfxEmptyRPIDs.FindAllString(string(body), -1)
}

// pfxSameDocument checks that got is the published document want as a watcher reads it.
func pfxSameDocument(t *testing.T, what string, want, got []byte, aor string) {
	t.Helper()
	wd, err := pidf.Parse(want)
	if err != nil {
		t.Fatalf("%s: the fixture does not parse: %v", what, err)
	}
	gd, err := pidf.Parse(got)
	if err != nil {
		t.Fatalf("%s: does not parse: %v\n%s", what, err, got)
	}
	if gd.Entity() != "sip:"+aor {
		t.Errorf("%s: entity %q, want sip:%s", what, gd.Entity(), aor)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"tuples", gd.Tuples(), wd.Tuples()},
		{"persons", gd.Persons(), wd.Persons()},
		{"devices", gd.Devices(), wd.Devices()},
		{"notes", gd.Notes(), wd.Notes()},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %s\n%+v\nwant\n%+v", what, c.name, c.got, c.want)
		}
	}
	if g, w := pfxTagCounts(got), pfxTagCounts(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s: elements by prefix:name %v, published %v\n%s", what, g, w, got)
	}
	if g, w := pfxEmptyRPID(got), pfxEmptyRPID(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s: empty rpid elements %q, published %q", what, g, w)
	}
	if g, w := pfxBaresipStatus(got), pfxBaresipStatus(want); g != w {
		t.Errorf("%s: baresip would show %s, %s for the published document", what, g, w)
	}
}

// pfxTagCounts counts the start tags of an XML text by qualified name (prefix:local).
func pfxTagCounts(body []byte) map[string]int {
	out := map[string]int{}
	for _, m := range pfxStartTag.FindAllStringSubmatch(string(body), -1) {
		out[m[1]]++
	}
	return out
}

// pfxWire returns the header section of a fixture message and its body as it was on the wire:
// the captures render line ends as CRLF, so the body is the one of its line-end variants that
// has the declared Content-Length. hasCL reports whether the message had one.
func pfxWire(t *testing.T, m servertest.Fixture) (head string, body []byte, hasCL bool) {
	t.Helper()
	head, text, _ := strings.Cut(m.Text, "\r\n\r\n")
	cl := m.Header("Content-Length")
	if cl == "" {
		cl = m.Header("l")
	}
	if cl == "" {
		return head, []byte(text), false
	}
	n, err := strconv.Atoi(cl)
	if err != nil {
		t.Fatalf("Content-Length %q", cl)
	}
	lf := strings.ReplaceAll(text, "\r\n", "\n")
	for _, b := range []string{text, text + "\r\n", lf, lf + "\n"} {
		if len(b) == n {
			return head, []byte(b), true
		}
	}
	t.Fatalf("no rendering of the %d-byte body has its Content-Length %d", len(text), n)
	return "", nil, false
}

// pfxParseFixture parses a fixture request as it was on the wire with sipgo.
func pfxParseFixture(t *testing.T, m servertest.Fixture) *sip.Request {
	t.Helper()
	head, body, _ := pfxWire(t, m)
	msg, err := sip.ParseMessage(append([]byte(head+"\r\n\r\n"), body...))
	if err != nil {
		t.Fatalf("sipgo does not parse it: %v\n%s", err, m.Text)
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("not a request")
	}
	return req
}

func pfxStatus(m servertest.Fixture) int {
	f := strings.Fields(m.Text)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// pfxClient replays one client of a capture from a socket of its own. A reader answers each
// NOTIFY with 200 at once, as both clients do (linphone's 481s in the captures answer final
// NOTIFYs only, where the answer changes nothing), and queues it for the test; responses go
// to the test in order.
type pfxClient struct {
	key     string   // the client's address in the capture
	aliases []string // the client's addresses in the capture, rewritten to the socket's
	kind    string   // baresip or linphone
	UDP     bool
	Conn    net.Conn
	resps   chan *sip.Response
	arrived chan struct{}
	wg      sync.WaitGroup

	mu       sync.Mutex
	notifies []*sip.Request
	seen     map[string]bool // NOTIFY branches, to drop retransmissions
	errs     []string
}

func pfxDial(t *testing.T, network, addr, key string) *pfxClient {
	t.Helper()
	conn, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	c := &pfxClient{key: key, UDP: network == "udp", Conn: conn, resps: make(chan *sip.Response, 64),
		arrived: make(chan struct{}, 1), seen: map[string]bool{}}
	c.wg.Add(1)
	go c.Read()
	t.Cleanup(func() {
		conn.Close()
		c.wg.Wait()
	})
	return c
}

func (c *pfxClient) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
}

func (c *pfxClient) errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

func (c *pfxClient) Read() {
	defer c.wg.Done()
	rd := bufio.NewReaderSize(c.Conn, 1<<16)
	buf := make([]byte, 65535)
	for {
		var data []byte
		if c.UDP {
			n, err := c.Conn.Read(buf)
			if err != nil {
				return
			}
			data = append([]byte(nil), buf[:n]...)
		} else {
			d, err := pfxReadStream(rd)
			if err != nil {
				return
			}
			data = d
		}
		if strings.TrimSpace(string(data)) == "" {
			continue // keepalive
		}
		msg, err := sip.ParseMessage(data)
		if err != nil {
			c.fail("a message from simpled does not parse: %v\n%s", err, data)
			continue
		}
		switch msg := msg.(type) {
		case *sip.Response:
			select {
			case c.resps <- msg:
			default:
				c.fail("response queue full")
			}
		case *sip.Request:
			c.answer(msg)
		}
	}
}

// pfxReadStream reads one message from a stream, framed by its Content-Length.
func pfxReadStream(rd *bufio.Reader) ([]byte, error) {
	var sb strings.Builder
	length := 0
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if sb.Len() == 0 && strings.TrimSpace(line) == "" {
			continue
		}
		sb.WriteString(line)
		if k, v, ok := strings.Cut(line, ":"); ok {
			if k = strings.ToLower(strings.TrimSpace(k)); k == "content-length" || k == "l" {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if line == "\r\n" {
			break
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(rd, body); err != nil {
		return nil, err
	}
	return append([]byte(sb.String()), body...), nil
}

// answer answers a request from simpled: NOTIFY 200 (queued unless a retransmission), anything
// else 405.
func (c *pfxClient) answer(req *sip.Request) {
	status, reason := 200, "OK"
	if req.Method != sip.NOTIFY {
		status, reason = 405, "Method Not Allowed"
		c.fail("unexpected %s from simpled", req.Method)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", status, reason)
	for _, h := range req.GetHeaders("Via") {
		b.WriteString("Via: " + h.Value() + "\r\n")
	}
	b.WriteString("From: " + req.From().Value() + "\r\n")
	to := req.To().Value()
	if !req.To().Params.Has("tag") {
		to += ";tag=pfx"
	}
	b.WriteString("To: " + to + "\r\n")
	b.WriteString("Call-ID: " + req.CallID().Value() + "\r\n")
	b.WriteString("CSeq: " + req.CSeq().Value() + "\r\n")
	b.WriteString("Content-Length: 0\r\n\r\n")
	if _, err := c.Conn.Write([]byte(b.String())); err != nil {
		return
	}
	if status != 200 || req.Via() == nil {
		return
	}
	branch, _ := req.Via().Params.Get("branch")
	c.mu.Lock()
	if !c.seen[branch] {
		c.seen[branch] = true
		c.notifies = append(c.notifies, req)
	}
	c.mu.Unlock()
	select {
	case c.arrived <- struct{}{}:
	default:
	}
}

// do sends a request (header section with {local} and a new branch, then body) and returns
// its final response. hint goes into the branch.
//
// Like the clients, it answers a 407 with stale=true to credentials it sent: an answer without
// qop is accepted once per nonce (issue 14), and both clients re-send their last credentials
// on later requests, so simpled asks again with a fresh nonce.
func (c *pfxClient) do(t *testing.T, text string, body []byte, hint string) *sip.Response {
	t.Helper()
	res := c.Send(t, text, body, hint)
	pa := pfxHeaderValue(text, "Proxy-Authorization")
	if res.StatusCode != 407 || pa == "" {
		return res
	}
	var challenges []string
	for _, h := range res.GetHeaders("Proxy-Authenticate") {
		challenges = append(challenges, h.Value())
	}
	ch := servertest.ChallengeParams(challenges)
	if ch == nil || ch["stale"] != "true" {
		return res
	}
	method, _, _ := strings.Cut(text, " ")
	user, realm, uri := servertest.QuotedParam(pa, "username"), servertest.QuotedParam(pa, "realm"), servertest.QuotedParam(pa, "uri")
	resp := servertest.DigestMD5(user, realm, "secret-"+user, method, uri, ch["nonce"], "", "")
	text = servertest.SetHeader(text, "Proxy-Authorization", fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s"`, user, realm, ch["nonce"], uri, resp))
	return c.Send(t, text, body, hint)
}

// pfxHeaderValue returns the value of the first name header of a message's text, or "".
func pfxHeaderValue(text, name string) string {
	head, _, _ := strings.Cut(text, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n")[1:] {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// send writes one request and returns its final response (see do).
func (c *pfxClient) Send(t *testing.T, text string, body []byte, hint string) *sip.Response {
	t.Helper()
	branch := "z9hG4bK" + pfxBranch(hint)
	head, _, _ := strings.Cut(text, "\r\n\r\n")
	head = pfxBranchRe.ReplaceAllLiteralString(head, "branch="+branch)
	head = strings.ReplaceAll(head, "{local}", c.Conn.LocalAddr().String())
	if _, err := c.Conn.Write(append([]byte(head+"\r\n\r\n"), body...)); err != nil {
		t.Fatalf("send: %v", err)
	}
	deadline := time.After(3 * time.Second)
	for {
		select {
		case res := <-c.resps:
			if res.Via() == nil || res.StatusCode < 200 {
				continue
			}
			if b, _ := res.Via().Params.Get("branch"); b != branch {
				continue
			}
			return res
		case <-deadline:
			t.Fatalf("no answer within 3 s to\n%s", head)
			return nil
		}
	}
}

// pending returns the NOTIFYs received and not taken.
func (c *pfxClient) pending() []*sip.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*sip.Request(nil), c.notifies...)
}

// find waits up to 3 s for a NOTIFY of dialog callID matching ok, and removes it if take.
func (c *pfxClient) find(t *testing.T, callID string, take bool, ok func(*sip.Request) bool) *sip.Request {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		c.mu.Lock()
		for i, n := range c.notifies {
			if n.CallID().Value() != callID {
				continue
			}
			if take {
				c.notifies = append(c.notifies[:i:i], c.notifies[i+1:]...)
				c.mu.Unlock()
				return n
			}
			if ok(n) {
				c.mu.Unlock()
				return n
			}
		}
		c.mu.Unlock()
		select {
		case <-c.arrived:
		case <-deadline:
			t.Fatalf("no NOTIFY in dialog %s within 3 s", callID)
			return nil
		}
	}
}

// take removes and returns the oldest NOTIFY of dialog callID, waiting for one.
func (c *pfxClient) take(t *testing.T, callID string) *sip.Request {
	t.Helper()
	return c.find(t, callID, true, nil)
}

// peek returns a NOTIFY of dialog callID matching ok, leaving it for take.
func (c *pfxClient) peek(t *testing.T, callID string, ok func(*sip.Request) bool) *sip.Request {
	t.Helper()
	return c.find(t, callID, false, ok)
}
