package mwi

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Bodies as PBXs send them: Asterisk's res_pjsip_mwi body generator (newer versions add
// Message-Account), FreeSWITCH's mod_voicemail (CRLF, a blank line after), and an RFC 3842
// §5.2 example with message headers after the blank line.
var realBodies = []string{
	"Messages-Waiting: yes\r\nVoice-Message: 2/1 (0/0)\r\n",
	"Messages-Waiting: no\r\nMessage-Account: sip:*97@pbx.example.test\r\nVoice-Message: 0/0 (0/0)\r\n",
	"Messages-Waiting: yes\r\nMessage-Account: sip:1000@example.test\r\nVoice-Message: 1/0 (0/0)\r\n\r\n",
	"Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 4/8 (1/2)\r\n\r\n" +
		"To: <alice@atlanta.example.com>\r\nFrom: <bob@biloxi.example.com>\r\nSubject: carpool tomorrow?\r\n",
	"Messages-Waiting: yes\nVoicemail: 3/0\n", // Asterisk chan_sip of old: an unknown header
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		body string
		want Summary
	}{
		{realBodies[0], Summary{Waiting: true, Counts: map[string]Counts{"voice": {New: 2, Old: 1}}}},
		{realBodies[1], Summary{Account: "sip:*97@pbx.example.test", Counts: map[string]Counts{"voice": {}}}},
		{realBodies[3], Summary{Waiting: true, Account: "sip:alice@vmail.example.com",
			Counts: map[string]Counts{"voice": {New: 4, Old: 8, NewUrgent: 1, OldUrgent: 2}}}},
		{realBodies[4], Summary{Waiting: true, Counts: map[string]Counts{}}},
		{"\r\nmessages-waiting:YES\nFAX-MESSAGE:  1 / 2 \nnone: 0/0\nText-Message: 3/4 ( 1/0 )\n",
			Summary{Waiting: true, Counts: map[string]Counts{"fax": {New: 1, Old: 2}, "none": {}, "text": {New: 3, Old: 4, NewUrgent: 1}}}},
	} {
		got, err := Parse([]byte(tc.body))
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.body, got, err, tc.want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		body string
		line int
		msg  string
	}{
		{"", 1, "no Messages-Waiting"},
		{"Voice-Message: 1/0\r\n", 1, "no Messages-Waiting"},
		{"Messages-Waiting: maybe\r\n", 1, "yes or no"},
		{"Messages-Waiting: yes\r\nVoice-Message 1/0\r\n", 2, "not a header line"},
		{"Messages-Waiting: yes\r\nVoice-Message: 1-0\r\n", 2, "new/old"},
		{"Messages-Waiting: yes\r\nVoice-Message: -1/0\r\n", 2, "new/old"},
		{"Messages-Waiting: yes\r\nVoice-Message: 1/0 (1/0\r\n", 2, "unclosed"},
		{"Messages-Waiting: yes\r\nVoice-Message: 1/0 (x/0)\r\n", 2, "urgent"},
		{"Messages-Waiting: yes\r\nVoice-Message: 10000000/0\r\n", 2, "new/old"},
		{"Messages-Waiting: yes\r\nVoice-Message: 1/0\r\nvoice-message: 1/0\r\n", 3, "twice"},
		{"Messages-Waiting: yes\r\nMessages-Waiting: no\r\n", 2, "twice"},
		{"Messages-Waiting: yes\r\nMessage-Account: not a uri\r\n", 2, "not a URI"},
		{"Messages-Waiting: yes\r\nX: a\x00b\r\n", 2, "control"},
	} {
		_, err := Parse([]byte(tc.body))
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != tc.line || !strings.Contains(pe.Msg, tc.msg) {
			t.Errorf("Parse(%q) = %v; want line %d: ...%s...", tc.body, err, tc.line, tc.msg)
		}
	}
}

func TestFormat(t *testing.T) {
	s := Summary{Waiting: true, Account: "sip:vm@example.test", Counts: map[string]Counts{
		"none": {}, "voice": {New: 2, Old: 1}, "multimedia": {New: 1, NewUrgent: 1}}}
	want := "Messages-Waiting: yes\r\nMessage-Account: sip:vm@example.test\r\nVoice-Message: 2/1 (0/0)\r\n" +
		"Multimedia-Message: 1/0 (1/0)\r\nNone: 0/0 (0/0)\r\n"
	if got := string(s.Format()); got != want {
		t.Fatalf("Format = %q, want %q", got, want)
	}
	if got := string((&Summary{}).Format()); got != "Messages-Waiting: no\r\n" {
		t.Fatalf("Format of nothing = %q", got)
	}
}

func TestJSON(t *testing.T) {
	var s Summary
	if err := s.UnmarshalJSON([]byte(`{"waiting": true, "voice": {"new": 2, "old": 1}, "fax": {"new": 1, "old": 0, "new_urgent": 1}}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	want := "Messages-Waiting: yes\r\nVoice-Message: 2/1 (0/0)\r\nFax-Message: 1/0 (1/0)\r\n"
	if got := string(s.Format()); got != want {
		t.Fatalf("Format = %q, want %q", got, want)
	}
	for _, bad := range []string{`{"waiting": true, "voicemail": {}}`, `{"voice": {"new": 1, "unheard": 2}}`, `{"waiting": "yes"}`, `[]`} {
		if err := new(Summary).UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	for _, bad := range []Summary{{Counts: map[string]Counts{"voice": {New: -1}}}, {Account: "nope"}} {
		if err := bad.Check(); err == nil {
			t.Errorf("%+v passed Check", bad)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts formats to a document it reads back as
// the same summary (the round trip), which formats to the same bytes.
func FuzzParse(f *testing.F) {
	for _, b := range realBodies {
		f.Add([]byte(b))
	}
	f.Add([]byte("Messages-Waiting: no\n\n\nVoice-Message: x"))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := Parse(body)
		if err != nil {
			return
		}
		out := s.Format()
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Format's output refused: %v\n%q", err, out)
		}
		if !reflect.DeepEqual(s, again) {
			t.Fatalf("round trip: %+v became %+v", s, again)
		}
		if string(again.Format()) != string(out) {
			t.Fatalf("Format not stable: %q", out)
		}
	})
}
