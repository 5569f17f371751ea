package sipx

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
)

func TestNewResponse(t *testing.T) {
	req := parse(t, head+"From: <sip:a@example.test>;tag=f1\nTo: <sip:b@example.test>\nRecord-Route: <sip:p.example.test;lr>\nTimestamp: 54\n\n")
	req.Via().Params.Add("rport", "")
	req.SetSource("192.0.2.7:40000")
	tests := []struct {
		name   string
		method sip.RequestMethod
		code   int
		want   []string // substrings of the serialized response
		absent []string
	}{
		{name: "register 200", method: sip.REGISTER, code: 200,
			want:   []string{"SIP/2.0 200 OK\r\n", "rport=40000", "received=192.0.2.7", "To: <sip:b@example.test>;tag=", "From: <sip:a@example.test>;tag=f1", "Call-ID: c1", "CSeq: 1 REGISTER", "Content-Length: 0"},
			absent: []string{"Record-Route"}},
		{name: "subscribe 200 keeps record-route", method: sip.SUBSCRIBE, code: 200, want: []string{"Record-Route: <sip:p.example.test;lr>"}},
		{name: "error has no record-route", method: sip.SUBSCRIBE, code: 404, want: []string{"404 Not Found"}, absent: []string{"Record-Route"}},
		{name: "100 has no to tag and echoes timestamp", method: sip.INVITE, code: 100, want: []string{"Timestamp: 54"}, absent: []string{"tag=\r"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req.Method = tt.method
			got := NewResponse(req, tt.code, "").String()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("lacks %q:\n%s", w, got)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(got, a) {
					t.Errorf("has %q:\n%s", a, got)
				}
			}
		})
	}
	// Without rport, received is still added when sent-by is not the source (RFC 3261 §18.2.1).
	noRport := parse(t, head+"From: <sip:a@example.test>;tag=f1\nTo: <sip:b@example.test>\n\n")
	noRport.SetSource("192.0.2.7:5060")
	if got := NewResponse(noRport, 200, "").Via().Params.GetOr("received", ""); got != "192.0.2.7" {
		t.Errorf("received = %q without rport, want 192.0.2.7", got)
	}
	noRport.SetSource(noRport.Via().Host + ":5060")
	if NewResponse(noRport, 200, "").Via().Params.Has("received") {
		t.Error("received added though sent-by is the source")
	}
	// The request's own headers are not aliased by the response.
	res := NewResponse(req, 200, "")
	if req.To().Params.Has("tag") {
		t.Fatal("To tag added to the request")
	}
	a, b := res.To().Params.GetOr("tag", ""), NewResponse(req, 200, "").To().Params.GetOr("tag", "")
	if a == b || len(a) < 6 {
		t.Errorf("to tags %q %q: want distinct random tags", a, b)
	}
}

func TestErrorStatus(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{err: fmt.Errorf("x: %w", storage.ErrUnavailable), code: 503},
		{err: storage.ErrStale, code: 500},
		{err: storage.ErrTooManyBindings, code: 403},
		{err: storage.ErrETagMismatch, code: 412},
		{err: storage.ErrNotFound, code: 404},
		{err: errors.New("boom"), code: 500},
	}
	for _, tt := range tests {
		if code, _ := ErrorStatus(tt.err); code != tt.code {
			t.Errorf("ErrorStatus(%v) = %d, want %d", tt.err, code, tt.code)
		}
	}
}

// TestReasonText: a reason phrase from an error is one line, at most 100 bytes, valid UTF-8.
func TestReasonText(t *testing.T) {
	if got := ReasonText("line 3:\r\nbad\x7f"); got != "line 3:  bad " {
		t.Errorf("control characters: %q", got)
	}
	long := strings.Repeat("é", 60) // 120 bytes: the cut falls inside a character
	if got := ReasonText(long); len(got) > 100 || !utf8.ValidString(got) || got != strings.Repeat("é", 50) {
		t.Errorf("cut: %d bytes %q", len(got), got)
	}
}

// TestNewResponseCopiesAsSipgo: the headers NewResponse copies print as sipgo's own copies do,
// however many parameters they carry, and changing them leaves the request alone.
func TestNewResponseCopiesAsSipgo(t *testing.T) {
	for _, extra := range []string{
		"From: <sip:a@example.test>;tag=f1\nTo: <sip:b@example.test>\n",
		"From: \"A\" <sip:a@example.test;user=phone>;tag=f1;x=1;y\nTo: <sip:b@example.test;p=q>;tag=t9;z=2\n",
	} {
		req := parse(t, strings.Replace(head, "branch=z9hG4bK1", "branch=z9hG4bK1;rport;a=1;b", 1)+extra+"\n")
		req.SetSource("192.0.2.7:40000")
		res := NewResponse(req, 200, "")
		ref := sip.NewResponseFromRequest(req, 200, "OK", nil)
		for _, name := range []string{"From", "CSeq", "Call-ID"} {
			if got, want := Header(res, name).Value(), Header(ref, name).Value(); got != want {
				t.Errorf("%s: %q, sipgo copies %q", name, got, want)
			}
		}
		if got, want := res.To().Address.String(), req.To().Address.String(); got != want {
			t.Errorf("To URI %q, want %q", got, want)
		}
		if got, want := res.Via().Value(), req.Via().Value()+";received=192.0.2.7"; got != strings.Replace(want, "rport", "rport=40000", 1) {
			t.Errorf("Via %q, want the request's with rport and received", got)
		}
		before := req.String()
		res.From().Params.Add("tag", "changed")
		res.Via().Params.Add("branch", "changed")
		res.CSeq().SeqNo++
		res.To().Params.Add("tag", "changed")
		res.To().Address.User = "changed"
		if after := req.String(); after != before {
			t.Errorf("the request changed with its response:\n%s\n%s", before, after)
		}
	}
}
