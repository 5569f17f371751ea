package cpim

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// crlf turns the LF line ends of a readable test literal into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// equal reports whether two messages have the same headers, in order, and the same content.
func equal(a, b *Message) bool {
	return slices.Equal(a.headers, b.headers) && slices.Equal(a.mime, b.mime) &&
		bytes.Equal(a.content, b.content)
}

// corpus returns the linphone bodies of testdata, copied from testdata/fixtures
// (message-{udp,tcp}.txt, message-udp-auth-msilo.txt) with the CRLF line ends they had on the
// wire; testdata/README.md lists where each comes from.
func corpus(tb testing.TB) map[string][]byte {
	tb.Helper()
	paths, err := filepath.Glob("testdata/*.cpim")
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no testdata/*.cpim: %v", err)
	}
	out := make(map[string][]byte, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// TestCorpus parses every body linphone sent in the captures and checks what the proxy reads
// from it; each must also serialize back to exactly the bytes linphone sent.
func TestCorpus(t *testing.T) {
	files := corpus(t)
	tests := []struct {
		file      string
		to        string
		dateTime  string
		messageID string
		content   string
	}{
		{file: "linphone-message-udp-29.cpim", to: "<sip:bob@example.test>", dateTime: "2026-11-22T12:40:32Z", messageID: "nxqlmMtFPfOy", content: "cpim hello bob d2b-2c25372a"},
		{file: "linphone-message-udp-37.cpim", to: "<sip:alice@example.test>", dateTime: "2026-11-22T12:40:32Z", messageID: "~5q~D1HMWUv-", content: "cpim hello alice d2a-089940cd"},
		{file: "linphone-message-tcp-71.cpim", to: "<sip:bob@example.test>", dateTime: "2026-11-22T12:41:19Z", messageID: "JcQnYb3tEBQv", content: "cpim hello bob d2b-1998422f"},
		{file: "linphone-message-tcp-86.cpim", to: "<sip:alice@example.test>", dateTime: "2026-11-22T12:41:20Z", messageID: "8L2mShsgoj0X", content: "cpim hello alice d2a-65c20503"},
		{file: "linphone-message-udp-auth-msilo-47.cpim", to: "<sip:bob@example.test>", dateTime: "2026-11-22T12:42:05Z", messageID: "oXlKXxZJFjvJ", content: "cpim hello bob d2b-66cd4682"},
		{file: "linphone-message-udp-auth-msilo-59.cpim", to: "<sip:alice@example.test>", dateTime: "2026-11-22T12:42:06Z", messageID: "sY8vKrh-ZTI7", content: "cpim hello alice d2a-791c0fe9"},
	}
	if len(tests) != len(files) {
		t.Fatalf("%d cases for %d files in testdata: add a case for each file", len(tests), len(files))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body, ok := files[tt.file]
			if !ok {
				t.Fatalf("testdata/%s missing", tt.file)
			}
			for _, variant := range []struct {
				name string
				body []byte
			}{
				{name: "crlf", body: body},
				{name: "lf", body: bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))},
			} {
				m, err := Parse(variant.body)
				if err != nil {
					t.Fatalf("%s: Parse: %v", variant.name, err)
				}
				if got := m.From(); got != "<sip:dave@example.test>" {
					t.Errorf("%s: From = %q", variant.name, got)
				}
				if got := m.To(); got != tt.to {
					t.Errorf("%s: To = %q, want %q", variant.name, got, tt.to)
				}
				if dt, ok := m.DateTime(); !ok || dt.Format(time.RFC3339) != tt.dateTime {
					t.Errorf("%s: DateTime = %v, %v; want %s", variant.name, dt, ok, tt.dateTime)
				}
				if got := m.MessageID(); got != tt.messageID {
					t.Errorf("%s: MessageID = %q, want %q", variant.name, got, tt.messageID)
				}
				want := []string{"positive-delivery", "negative-delivery", "display"}
				if got := m.DispositionNotification(); !slices.Equal(got, want) {
					t.Errorf("%s: DispositionNotification = %q, want %q", variant.name, got, want)
				}
				if got := m.ContentType(); got != "text/plain" {
					t.Errorf("%s: ContentType = %q", variant.name, got)
				}
				if got := string(m.Content()); got != tt.content {
					t.Errorf("%s: Content = %q, want %q", variant.name, got, tt.content)
				}
				if got := m.Bytes(); !bytes.Equal(got, body) {
					t.Errorf("%s: Bytes differs from what linphone sent:\n got %q\nwant %q", variant.name, got, body)
				}
			}
		})
	}
}

// TestParse maps valid inputs to their canonical serialization and checks what they resolve to.
func TestParse(t *testing.T) {
	const mimeText = "\nContent-Type: text/plain\n\nhi"
	tests := []struct {
		name      string
		in        string
		want      string // canonical Bytes; "" means in, already canonical
		messageID string
		from      string
		content   string // "" means "hi"
	}{
		{name: "CRLF", in: crlf("From: <sip:a@example.test>\n" + mimeText), from: "<sip:a@example.test>"},
		{name: "bare LF", in: "From: <sip:a@example.test>\n" + mimeText, want: crlf("From: <sip:a@example.test>\n" + mimeText), from: "<sip:a@example.test>"},
		{name: "mixed line ends", in: "From: <sip:a@example.test>\r\nTo: <sip:b@example.test>\n\r\nContent-Type: text/plain\n\r\nhi",
			want: crlf("From: <sip:a@example.test>\nTo: <sip:b@example.test>\n" + mimeText), from: "<sip:a@example.test>"},
		{name: "no space after colon and white space around value", in: "From:<sip:a@example.test>\nTo: \t<sip:b@example.test> \t\n" + mimeText,
			want: crlf("From: <sip:a@example.test>\nTo: <sip:b@example.test>\n" + mimeText), from: "<sip:a@example.test>"},
		{name: "parameter right after the colon", in: crlf("Subject:;lang=fr Bonjour\n" + mimeText)},
		{name: "empty value", in: crlf("Subject:\n" + mimeText)},
		{name: "UTF-8 value", in: crlf("Subject: héllo ☃\n" + mimeText)},
		{name: "no message headers", in: crlf(mimeText)},
		{name: "linphone's prefix", in: crlf("NS: imdn <urn:ietf:params:imdn>\nimdn.Message-ID: 1a\n" + mimeText), messageID: "1a"},
		{name: "other prefix for imdn", in: crlf("NS: x <urn:ietf:params:imdn>\nx.Message-ID: 2b\n" + mimeText), messageID: "2b"},
		{name: "declaration after use", in: crlf("y.Message-ID: 3c\nNS: y <urn:ietf:params:imdn>\n" + mimeText), messageID: "3c"},
		{name: "imdn undeclared", in: crlf("imdn.Message-ID: 4d\n" + mimeText), messageID: "4d"},
		{name: "imdn bound to another namespace", in: crlf("NS: imdn <urn:example:other>\nimdn.Message-ID: 5e\n" + mimeText)},
		{name: "closest declaration wins", in: crlf("NS: a <urn:ietf:params:imdn>\na.Message-ID: 6f\nNS: a <urn:example:other>\na.Message-ID: 7g\n" + mimeText), messageID: "6f"},
		{name: "case ignored in look-ups", in: crlf("from: x\nns: IMDN <URN:IETF:PARAMS:IMDN>\nImdn.message-id: 8h\n" + mimeText), messageID: "8h", from: "x"},
		{name: "NS without prefix", in: crlf("NS: <urn:example:default>\nFrom: x\n" + mimeText), from: "x"},
		{name: "NS with white space", in: "NS:  z\t<urn:ietf:params:imdn> \nz.Message-ID: 9i\n" + mimeText,
			want: crlf("NS: z\t<urn:ietf:params:imdn>\nz.Message-ID: 9i\n" + mimeText), messageID: "9i"},
		{name: "MIME header names in any case", in: crlf("\ncontent-type: text/plain\ncontent-length: 2\n\nhi")},
		{name: "folded MIME header", in: "\nContent-Type: text/plain;\n\tcharset=utf-8\n \n\nhi",
			want: crlf("\nContent-Type: text/plain; charset=utf-8\n\nhi")},
		{name: "Content-Length matches", in: crlf("\nContent-Type: text/plain\nContent-Length: 2\n\nhi")},
		{name: "Content-Length with leading zeros", in: crlf("\nContent-Type: text/plain\nContent-Length: 002\n\nhi")},
		{name: "Content-Length twice, equal", in: crlf("\nContent-Type: text/plain\nContent-Length: 2\ncontent-length: 02\n\nhi")},
		{name: "one CRLF beyond Content-Length dropped", in: crlf("\nContent-Type: text/plain\nContent-Length: 2\n\nhi\n"),
			want: crlf("\nContent-Type: text/plain\nContent-Length: 2\n\nhi")},
		{name: "one LF beyond Content-Length dropped", in: "\nContent-Type: text/plain\nContent-Length: 2\n\nhi\n",
			want: crlf("\nContent-Type: text/plain\nContent-Length: 2\n\nhi")},
		{name: "trailing line end kept without Content-Length", in: crlf("\nContent-Type: text/plain\n\nhi\n"), content: "hi\r\n"},
		{name: "binary content", in: "\r\nContent-Type: application/octet-stream\r\nContent-Length: 7\r\n\r\n\x00\xff\r\n\n\r\x80",
			content: "\x00\xff\r\n\n\r\x80"},
		{name: "content with blank lines and header-like text", in: crlf("\nContent-Type: text/plain\n\nFrom: x\n\nNS: bad\n"), content: "From: x\r\n\r\nNS: bad\r\n"},
		{name: "MIME part ends without blank line", in: "From: x\n\nContent-Type: text/plain",
			want: crlf("From: x\n\nContent-Type: text/plain\n\n"), from: "x", content: "-"},
		{name: "MIME part ends after its headers", in: "From: x\n\nContent-Type: text/plain\n",
			want: crlf("From: x\n\nContent-Type: text/plain\n\n"), from: "x", content: "-"},
		{name: "media type with parameters", in: crlf("\nContent-Type: text/plain ; charset=\"UTF-8\"\n\nhi")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := tt.want
			if want == "" {
				want = tt.in
			}
			if got := string(m.Bytes()); got != want {
				t.Errorf("Bytes:\n got %q\nwant %q", got, want)
			}
			if got := m.MessageID(); got != tt.messageID {
				t.Errorf("MessageID = %q, want %q", got, tt.messageID)
			}
			if got := m.From(); got != tt.from {
				t.Errorf("From = %q, want %q", got, tt.from)
			}
			wantContent := tt.content
			switch wantContent {
			case "":
				wantContent = "hi"
			case "-":
				wantContent = ""
			}
			if got := string(m.Content()); got != wantContent {
				t.Errorf("Content = %q, want %q", got, wantContent)
			}
			again, err := Parse(m.Bytes())
			if err != nil {
				t.Fatalf("Parse(Bytes): %v", err)
			}
			if !equal(again, m) {
				t.Errorf("Parse(Bytes) differs:\n got %+v\nwant %+v", again, m)
			}
		})
	}
}

// TestParseErrors feeds one malformed body per fault and checks the sentinel and the line.
func TestParseErrors(t *testing.T) {
	const mimeText = "\nContent-Type: text/plain\n\nhi"
	many := func(n int, line string) string { return strings.Repeat(line+"\n", n) }
	tests := []struct {
		name string
		in   string
		err  error
		line int
	}{
		{name: "empty", in: "", err: ErrEmpty},
		{name: "headers only", in: "From: a\nTo: b", err: ErrNoBlankLine},
		{name: "headers only, line end", in: crlf("From: a\nTo: b\n"), err: ErrNoBlankLine},
		{name: "nothing after the blank line", in: crlf("From: a\n\n"), err: ErrNoMIMEPart},
		{name: "content without MIME headers", in: crlf("From: a\n\nhello"), err: ErrMalformedHeader, line: 3},
		{name: "no colon", in: crlf("From <sip:a@example.test>\n" + mimeText), err: ErrMalformedHeader, line: 1},
		{name: "empty name", in: crlf("From: a\n: b\n" + mimeText), err: ErrMalformedHeader, line: 2},
		{name: "space in name", in: crlf("From : a\n" + mimeText), err: ErrMalformedHeader, line: 1},
		{name: "invalid character in name", in: crlf("Fr@m: a\n" + mimeText), err: ErrMalformedHeader, line: 1},
		{name: "two dots in name", in: crlf("NS: a <urn:x>\na.b.c: d\n" + mimeText), err: ErrMalformedHeader, line: 2},
		{name: "empty prefix", in: crlf(".Message-ID: d\n" + mimeText), err: ErrMalformedHeader, line: 1},
		{name: "empty name after prefix", in: crlf("imdn.: d\n" + mimeText), err: ErrMalformedHeader, line: 1},
		{name: "NUL in value", in: "Subject: a\x00b\n" + mimeText, err: ErrMalformedHeader, line: 1},
		{name: "bare CR in value", in: "Subject: a\rb\n" + mimeText, err: ErrMalformedHeader, line: 1},
		{name: "two CRs before LF", in: "Subject: a\r\r\n" + mimeText, err: ErrMalformedHeader, line: 1},
		{name: "DEL in value", in: "Subject: a\x7f\n" + mimeText, err: ErrMalformedHeader, line: 1},
		{name: "invalid UTF-8", in: "Subject: \xff\xfe\n" + mimeText, err: ErrMalformedHeader, line: 1},
		{name: "folded message header", in: crlf("Subject: a\n b\n" + mimeText), err: ErrMalformedHeader, line: 2},
		{name: "MIME continuation without header", in: crlf("From: a\n\n continued\nContent-Type: text/plain\n\nhi"), err: ErrMalformedHeader, line: 3},
		{name: "invalid character in MIME name", in: crlf("\nContent Type: text/plain\n\nhi"), err: ErrMalformedHeader, line: 2},
		{name: "control character in MIME value", in: "\nContent-Type: text/plain\x01\n\nhi", err: ErrMalformedHeader, line: 2},
		{name: "too many headers", in: many(MaxHeaders+1, "Subject: x") + mimeText, err: ErrTooManyHeaders, line: MaxHeaders + 1},
		{name: "too many MIME headers", in: "\n" + many(MaxHeaders, "Content-Type: text/plain") + "X: y\n\nhi", err: ErrTooManyHeaders, line: MaxHeaders + 2},
		{name: "line too long", in: "Subject: " + strings.Repeat("x", MaxLineLength) + "\n" + mimeText, err: ErrLineTooLong, line: 1},
		{name: "line too long once written", in: "Subject:" + strings.Repeat("x", MaxLineLength-len("Subject:")) + "\n" + mimeText, err: ErrLineTooLong, line: 1},
		{name: "unfolded too long", in: "\nContent-Type: text/plain\nX: " + strings.Repeat("y", 5000) + "\n " + strings.Repeat("z", 5000) + "\n\nhi", err: ErrLineTooLong, line: 4},
		{name: "NS without angle brackets", in: crlf("NS: imdn urn:ietf:params:imdn\n" + mimeText), err: ErrBadNS, line: 1},
		{name: "NS unclosed", in: crlf("NS: imdn <urn:ietf:params:imdn\n" + mimeText), err: ErrBadNS, line: 1},
		{name: "NS empty URI", in: crlf("NS: imdn <>\n" + mimeText), err: ErrBadNS, line: 1},
		{name: "NS empty", in: crlf("From: a\nNS:\n" + mimeText), err: ErrBadNS, line: 2},
		{name: "NS prefix with space", in: crlf("NS: im dn <urn:x>\n" + mimeText), err: ErrBadNS, line: 1},
		{name: "NS prefix with dot", in: crlf("NS: a.b <urn:x>\n" + mimeText), err: ErrBadNS, line: 1},
		{name: "NS URI with space", in: crlf("NS: a <urn:x y>\n" + mimeText), err: ErrBadNS, line: 1},
		{name: "undeclared prefix", in: crlf("From: a\nfoo.Bar: x\n" + mimeText), err: ErrUndeclaredPrefix, line: 2},
		{name: "undeclared prefix beside imdn", in: crlf("NS: imdn <urn:ietf:params:imdn>\nfoo.Bar: x\n" + mimeText), err: ErrUndeclaredPrefix, line: 2},
		{name: "prefix declared by a bad NS", in: crlf("NS: foo urn:x\nfoo.Bar: x\n" + mimeText), err: ErrBadNS, line: 1},
		{name: "no Content-Type", in: crlf("From: a\n\nContent-ID: <x@example.test>\n\nhi"), err: ErrContentType, line: 3},
		{name: "Content-Type without subtype", in: crlf("\nContent-Type: text\n\nhi"), err: ErrContentType, line: 2},
		{name: "Content-Type empty", in: crlf("\nContent-ID: <x>\nContent-Type:\n\nhi"), err: ErrContentType, line: 3},
		{name: "Content-Type with space in type", in: crlf("\nContent-Type: te xt/plain\n\nhi"), err: ErrContentType, line: 2},
		{name: "Content-Length too large", in: crlf("\nContent-Type: text/plain\nContent-Length: 10\n\nhi"), err: ErrContentLength, line: 3},
		{name: "Content-Length too small", in: crlf("\nContent-Type: text/plain\nContent-Length: 1\n\nhi"), err: ErrContentLength, line: 3},
		{name: "Content-Length two line ends short", in: crlf("\nContent-Type: text/plain\nContent-Length: 2\n\nhi\n\n"), err: ErrContentLength, line: 3},
		{name: "Content-Length not a number", in: crlf("\nContent-Type: text/plain\nContent-Length: two\n\nhi"), err: ErrContentLength, line: 3},
		{name: "Content-Length negative", in: crlf("\nContent-Type: text/plain\nContent-Length: -2\n\nhi"), err: ErrContentLength, line: 3},
		{name: "Content-Length empty", in: crlf("\nContent-Type: text/plain\nContent-Length:\n\nhi"), err: ErrContentLength, line: 3},
		{name: "Content-Lengths disagree", in: crlf("\nContent-Type: text/plain\nContent-Length: 2\nContent-Length: 3\n\nhi"), err: ErrContentLength, line: 4},
		// Each value alone would pass, the first by dropping one LF, the second by dropping another;
		// Bytes would then write a body that no longer parses.
		{name: "Content-Lengths disagree, each within a line end", in: "\nContent-Type: text/plain\nContent-Length: 3\nContent-Length: 2\n\nhi\n\n", err: ErrContentLength, line: 4},
		{name: "Content-Length out of range", in: crlf("\nContent-Type: text/plain\nContent-Length: 99999999999\n\nhi"), err: ErrContentLength, line: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded: %q", m.Bytes())
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T, want *ParseError", err)
			}
			if pe.Line != tt.line {
				t.Errorf("line %d, want %d (%v)", pe.Line, tt.line, err)
			}
			checkErrorText(t, err)
		})
	}
}

// checkErrorText checks that an error text can be a SIP reason phrase: "cpim: " first, short,
// printable ASCII.
func checkErrorText(t *testing.T, err error) {
	t.Helper()
	s := err.Error()
	if !strings.HasPrefix(s, "cpim: ") {
		t.Errorf("error %q lacks the cpim: prefix", s)
	}
	if len(s) > 200 {
		t.Errorf("error text is %d bytes: %q", len(s), s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			t.Errorf("error text has byte %#x at %d: %q", s[i], i, s)
			break
		}
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "undeclared", in: crlf("From: a\nfoo.Bar: x\n\nContent-Type: text/plain\n\nhi"),
			want: `cpim: line 2: undeclared namespace prefix: "foo" in "foo.Bar"`},
		{name: "no blank line", in: "From: a", want: "cpim: no blank line after the message headers"},
		{name: "content length", in: crlf("\nContent-Type: text/plain\nContent-Length: 10\n\nhi"),
			want: "cpim: line 3: MIME part Content-Length disagrees with the content: Content-Length 10, content 2 bytes"},
		{name: "long and binary input quoted short", in: "\xff" + strings.Repeat("\x01", 100) + "\n\nContent-Type: a/b\n\n",
			want: `cpim: line 1: malformed header: no colon in "\xff\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01"...`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestLimitsAccepted(t *testing.T) {
	const mimeText = "\nContent-Type: text/plain\n\nhi"
	tests := []struct {
		name string
		in   string
	}{
		{name: "MaxHeaders headers", in: strings.Repeat("Subject: x\n", MaxHeaders) + mimeText},
		{name: "MaxLineLength line", in: "Subject: " + strings.Repeat("x", MaxLineLength-len("Subject: ")) + "\n" + mimeText},
		{name: "MIME value folded to MaxLineLength", in: "\nContent-Type: text/plain\nX: " + strings.Repeat("y", 4000) + "\n " +
			strings.Repeat("z", MaxLineLength-len("X: ")-4000-1) + "\n\nhi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if _, err := Parse(m.Bytes()); err != nil {
				t.Fatalf("Parse(Bytes): %v", err)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	in := crlf(`From: "Dave" <sip:dave@example.test>
To: <sip:bob@example.test>
To: <sip:carol@example.test>
cc: <sip:erin@example.test>
DateTime: 2026-11-22T12:40:32.250+01:00
NS: x <urn:ietf:params:imdn>
x.Message-ID: abc
x.Disposition-Notification: positive-delivery,display
x.Disposition-Notification: , processing ,
NS: MyFeatures <mid:MessageFeatures@id.foo.com>
Require: MyFeatures.VitalMessageOption
MyFeatures.VitalMessageOption: Confirmation-requested

Content-Type: text/plain; charset=utf-8
Content-ID: <1234567890@foo.com>

hello`)
	body := []byte(in)
	m, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	clear(body) // Parse copied what it keeps
	if got := m.From(); got != `"Dave" <sip:dave@example.test>` {
		t.Errorf("From = %q", got)
	}
	if got := m.To(); got != "<sip:bob@example.test>" {
		t.Errorf("To = %q", got)
	}
	if got := m.Values("to"); !slices.Equal(got, []string{"<sip:bob@example.test>", "<sip:carol@example.test>"}) {
		t.Errorf("Values(to) = %q", got)
	}
	if got := m.Values("Subject"); got != nil {
		t.Errorf("Values(Subject) = %q", got)
	}
	wantTime := time.Date(2026, 11, 22, 11, 40, 32, 250e6, time.UTC)
	if dt, ok := m.DateTime(); !ok || !dt.Equal(wantTime) {
		t.Errorf("DateTime = %v, %v; want %v", dt, ok, wantTime)
	}
	if got := m.MessageID(); got != "abc" {
		t.Errorf("MessageID = %q", got)
	}
	if got := m.DispositionNotification(); !slices.Equal(got, []string{"positive-delivery", "display", "processing"}) {
		t.Errorf("DispositionNotification = %q", got)
	}
	if v, ok := m.HeaderNS("mid:MessageFeatures@id.foo.com", "vitalmessageoption"); !ok || v != "Confirmation-requested" {
		t.Errorf("HeaderNS(MyFeatures) = %q, %v", v, ok)
	}
	if v, ok := m.HeaderNS(NamespaceCPIM, "cc"); !ok || v != "<sip:erin@example.test>" {
		t.Errorf("HeaderNS(cpim, cc) = %q, %v", v, ok)
	}
	if _, ok := m.HeaderNS(NamespaceIMDN, "cc"); ok {
		t.Error("HeaderNS(imdn, cc) found a CPIM header")
	}
	if v, ok := m.Header("X.MESSAGE-ID"); !ok || v != "abc" {
		t.Errorf("Header(X.MESSAGE-ID) = %q, %v", v, ok)
	}
	if _, ok := m.Header("Subject"); ok {
		t.Error("Header(Subject) found")
	}
	if got := m.ContentType(); got != "text/plain; charset=utf-8" {
		t.Errorf("ContentType = %q", got)
	}
	if v, ok := m.MIMEHeader("content-id"); !ok || v != "<1234567890@foo.com>" {
		t.Errorf("MIMEHeader(content-id) = %q, %v", v, ok)
	}
	if got := string(m.Content()); got != "hello" {
		t.Errorf("Content = %q", got)
	}
	hs := m.Headers()
	if len(hs) != 12 || hs[0] != (Header{Name: "From", Value: `"Dave" <sip:dave@example.test>`}) {
		t.Errorf("Headers = %q", hs)
	}
	hs[0].Value = "changed"
	if m.From() == "changed" {
		t.Error("Headers returned m's own slice")
	}
	if got := m.MIMEHeaders(); len(got) != 2 || got[1].Name != "Content-ID" {
		t.Errorf("MIMEHeaders = %q", got)
	}
}

func TestMissingValues(t *testing.T) {
	m, err := Parse([]byte(crlf("DateTime: yesterday\n\nContent-Type: text/plain\n\n")))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.DateTime(); ok {
		t.Error("DateTime ok for \"yesterday\"")
	}
	if m.From() != "" || m.To() != "" || m.MessageID() != "" || m.DispositionNotification() != nil || len(m.Content()) != 0 {
		t.Errorf("want empty accessors, got From %q To %q MessageID %q DN %q Content %q",
			m.From(), m.To(), m.MessageID(), m.DispositionNotification(), m.Content())
	}
	m, err = Parse([]byte(crlf("\nContent-Type: text/plain\n\n")))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.DateTime(); ok {
		t.Error("DateTime ok without the header")
	}
}

func TestNew(t *testing.T) {
	m, err := New("<sip:simpled@example.test>", "<sip:bob@example.test>", "text/plain;charset=UTF-8", []byte("stored message"))
	if err != nil {
		t.Fatal(err)
	}
	m.SetDateTime(time.Date(2026, 11, 22, 13, 40, 32, 999, time.FixedZone("CET", 3600)))
	if err := m.SetIMDN("q7sdf88", "positive-delivery", "display"); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("Subject", "hello"); err != nil {
		t.Fatal(err)
	}
	want := crlf(`From: <sip:simpled@example.test>
To: <sip:bob@example.test>
DateTime: 2026-11-22T12:40:32Z
NS: imdn <urn:ietf:params:imdn>
imdn.Message-ID: q7sdf88
imdn.Disposition-Notification: positive-delivery, display
Subject: hello

Content-Type: text/plain;charset=UTF-8
Content-Length: 14

stored message`)
	if got := string(m.Bytes()); got != want {
		t.Fatalf("Bytes:\n got %q\nwant %q", got, want)
	}
	var buf bytes.Buffer
	if n, err := m.WriteTo(&buf); err != nil || n != int64(len(want)) || buf.String() != want {
		t.Fatalf("WriteTo = %d, %v, %q", n, err, buf.String())
	}
	again, err := Parse(m.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !equal(again, m) {
		t.Fatalf("Parse(Bytes) differs:\n got %+v\nwant %+v", again, m)
	}

	// Setting again replaces in place, reusing the declared prefix.
	m.SetDateTime(time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC))
	if err := m.SetIMDN("second"); err != nil {
		t.Fatal(err)
	}
	if err := m.Add("To", "<sip:carol@example.test>"); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("to", "<sip:dave@example.test>"); err != nil {
		t.Fatal(err)
	}
	want = crlf(`From: <sip:simpled@example.test>
to: <sip:dave@example.test>
DateTime: 2027-01-02T03:04:05Z
NS: imdn <urn:ietf:params:imdn>
imdn.Message-ID: second
imdn.Disposition-Notification: positive-delivery, display
Subject: hello

Content-Type: text/plain;charset=UTF-8
Content-Length: 14

stored message`)
	if got := string(m.Bytes()); got != want {
		t.Fatalf("Bytes after updates:\n got %q\nwant %q", got, want)
	}
}

func TestNewNoAddresses(t *testing.T) {
	m, err := New("", "", "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Add("NS", "r <urn:example:rcs>"); err != nil {
		t.Fatal(err)
	}
	if err := m.SetIMDN("id1"); err != nil {
		t.Fatal(err)
	}
	if err := m.Add("r.Feature", "on"); err != nil {
		t.Fatal(err)
	}
	want := crlf("NS: r <urn:example:rcs>\nNS: imdn <urn:ietf:params:imdn>\nimdn.Message-ID: id1\nr.Feature: on\n\nContent-Type: application/octet-stream\nContent-Length: 0\n\n")
	if got := string(m.Bytes()); got != want {
		t.Fatalf("Bytes:\n got %q\nwant %q", got, want)
	}
	if _, err := Parse(m.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func TestSetIMDNCustomPrefix(t *testing.T) {
	m, err := Parse([]byte(crlf("NS: n <urn:ietf:params:imdn>\nn.Message-ID: old\n\nContent-Type: text/plain\n\nhi")))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetIMDN("new", "display"); err != nil {
		t.Fatal(err)
	}
	want := crlf("NS: n <urn:ietf:params:imdn>\nn.Message-ID: new\nn.Disposition-Notification: display\n\nContent-Type: text/plain\n\nhi")
	if got := string(m.Bytes()); got != want {
		t.Fatalf("Bytes:\n got %q\nwant %q", got, want)
	}
}

func TestBuildErrors(t *testing.T) {
	newMsg := func(t *testing.T) *Message {
		t.Helper()
		m, err := New("<sip:a@example.test>", "", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name string
		do   func(*Message) error
		err  error
	}{
		{name: "New: header injection in From", err: ErrMalformedHeader, do: func(*Message) error {
			_, err := New("<sip:a@example.test>\r\nX-Evil: 1", "", "text/plain", nil)
			return err
		}},
		{name: "New: bad To", err: ErrMalformedHeader, do: func(*Message) error {
			_, err := New("", "\x00", "text/plain", nil)
			return err
		}},
		{name: "New: no content type", err: ErrContentType, do: func(*Message) error {
			_, err := New("", "", "", nil)
			return err
		}},
		{name: "New: content type with line end", err: ErrContentType, do: func(*Message) error {
			_, err := New("", "", "text/plain\r\nX: y", nil)
			return err
		}},
		{name: "New: content type without subtype", err: ErrContentType, do: func(*Message) error {
			_, err := New("", "", "text", nil)
			return err
		}},
		{name: "Add: empty name", err: ErrMalformedHeader, do: func(m *Message) error { return m.Add("", "x") }},
		{name: "Add: colon in name", err: ErrMalformedHeader, do: func(m *Message) error { return m.Add("a:b", "x") }},
		{name: "Add: space in name", err: ErrMalformedHeader, do: func(m *Message) error { return m.Add("a b", "x") }},
		{name: "Add: line end in value", err: ErrMalformedHeader, do: func(m *Message) error { return m.Add("Subject", "a\nb") }},
		{name: "Add: undeclared prefix", err: ErrUndeclaredPrefix, do: func(m *Message) error { return m.Add("foo.Bar", "x") }},
		{name: "Add: bad NS", err: ErrBadNS, do: func(m *Message) error { return m.Add("NS", "foo") }},
		{name: "Add: too long", err: ErrLineTooLong, do: func(m *Message) error { return m.Add("Subject", strings.Repeat("x", MaxLineLength)) }},
		{name: "Add: too many", err: ErrTooManyHeaders, do: func(m *Message) error {
			for {
				if err := m.Add("Subject", "x"); err != nil {
					return err
				}
			}
		}},
		{name: "Set: bad value", err: ErrMalformedHeader, do: func(m *Message) error { return m.Set("Subject", "\x7f") }},
		{name: "SetIMDN: empty id", err: ErrMalformedHeader, do: func(m *Message) error { return m.SetIMDN("") }},
		{name: "SetIMDN: id with space", err: ErrMalformedHeader, do: func(m *Message) error { return m.SetIMDN("a b") }},
		{name: "SetIMDN: bad disposition", err: ErrMalformedHeader, do: func(m *Message) error { return m.SetIMDN("id", "dis\nplay") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMsg(t)
			err := tt.do(m)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			checkErrorText(t, err)
			if _, err := Parse(m.Bytes()); err != nil {
				t.Fatalf("message no longer parses after a refused change: %v", err)
			}
		})
	}
}
