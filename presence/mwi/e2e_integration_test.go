//go:build linux

package mwi_test

// End-to-end test with a real client: baresip 1.0.0's mwi module (modules/mwi) SUBSCRIBEs to
// message-summary for its own AOR, through the outbound proxy, once its REGISTER is answered
// 200 ("mwi: subscribing to messages for sip:alice@example.test"), and prints the body of every
// NOTIFY that has one:
//
//	----- MWI for sip:alice@example.test -----
//	Messages-Waiting: yes
//	Voice-Message: 2/1 (0/0)
//
// It answers every NOTIFY 200. The account needs no parameter: the module subscribes unless
// the account says ;mwi=no. As everywhere in internal/servertest the process talks only to
// 127.0.0.1, is bounded in time and is killed by its PID in t.Cleanup; a missing baresip or
// mwi.so skips the test unless SIMPLED_REQUIRE_TOOLS=1.

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
)

// mwiPrinted is what baresip's mwi module prints for a NOTIFY whose body starts with lines,
// printed as received, CRLF and all (the SIP trace shows the body too, but not after this
// header line).
func mwiPrinted(lines ...string) string {
	quoted := make([]string, len(lines))
	for i, l := range lines {
		quoted[i] = regexp.QuoteMeta(l)
	}
	return regexp.QuoteMeta("----- MWI for sip:alice@example.test -----") + `\r?\n` + strings.Join(quoted, `\r?\n`)
}

// TestBaresipMessageSummary: a real baresip, authenticated (auth.mode required), subscribes to
// its own mailbox through simpled and shows "Messages-Waiting: no"; the PBX (a trusted peer)
// PUBLISHes two new and one old voice message and baresip shows them; the PBX's modified
// publication (the messages listened to) turns the lamp off again.
func TestBaresipMessageSummary(t *testing.T) {
	bin := servertest.BaresipBin(t, "mwi.so")
	srv := servertest.Start(t, func(o *config.Options) {
		servertest.RequireAuth(t, "alice")(o)
		trustPBX(o)
	})
	alice := servertest.StartBaresip(t, bin, servertest.BaresipSetup{Name: "alice", Modules: []string{"mwi.so"},
		Account: servertest.BaresipAccount(srv, "alice", "udp", "")})
	alice.Registered(t, "udp")
	alice.WaitSince(t, 0, 10*time.Second, mwiPrinted("Messages-Waiting: no"))

	pbx := servertest.DialFrom(t, "udp", pbxAddr, srv.Listener("udp"))
	mark := alice.Mark()
	pbx.Send(summaryRequest("PUBLISH", "alice", "mwb-p1", "Messages-Waiting: yes\r\nVoice-Message: 2/1 (0/0)\r\n"))
	etag := pbx.Expect(`^SIP/2.0 200 `).GetHeader("SIP-ETag").Value()
	alice.WaitSince(t, mark, 5*time.Second, mwiPrinted("Messages-Waiting: yes", "Voice-Message: 2/1 (0/0)"))

	mark = alice.Mark()
	pbx.Send(strings.Replace(summaryRequest("PUBLISH", "alice", "mwb-p1", "Messages-Waiting: no\r\nVoice-Message: 0/3 (0/0)\r\n",
		"SIP-If-Match: "+etag), "CSeq: 1 ", "CSeq: 2 ", 1))
	pbx.Expect(`^SIP/2.0 200 `)
	alice.WaitSince(t, mark, 5*time.Second, mwiPrinted("Messages-Waiting: no", "Voice-Message: 0/3 (0/0)"))
}
