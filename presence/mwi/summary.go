package mwi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Type is the media type of a message summary (RFC 3842 §4).
const Type = "application/simple-message-summary"

// Classes are the message context classes of RFC 3842 §5 (RFC 3458), in the order Format
// writes them: the admin API's keys, and the line names without "-message" ("none" has no
// such suffix).
var Classes = []string{"voice", "fax", "pager", "multimedia", "text", "none"}

// Counts are one message class's counts: new and old messages, and how many of each are
// urgent.
type Counts struct {
	New       int `json:"new"`
	Old       int `json:"old"`
	NewUrgent int `json:"new_urgent,omitempty"`
	OldUrgent int `json:"old_urgent,omitempty"`
}

// maxCount bounds a count: RFC 3842 gives none, a mailbox of a million messages is already
// absurd, and a bound keeps Format's output short.
const maxCount = 999999

// Summary is a message summary document (RFC 3842 §5): whether messages are waiting, the
// account they wait in, and the counts per message class (absent: the class was not told).
type Summary struct {
	Waiting bool
	Account string
	Counts  map[string]Counts
}

// ParseError is a fault of a message summary: the line (from 1) and what is wrong with it.
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Parse reads a message summary. It is strict about what it keeps and tolerant of what PBXs
// send: header names in any case, CRLF or LF line ends, whitespace around values, the lines
// of the first block in any order, header lines it does not know (Asterisk's old
// "Voicemail:") and the message headers after the blank line (RFC 3842 §5.2) left out. A
// line that is not "name: value", a second Messages-Waiting, Message-Account or class line,
// a Messages-Waiting other than yes or no, counts that are not new/old with an optional
// (urgent-new/urgent-old), and a missing Messages-Waiting are refused with a *ParseError.
func Parse(body []byte) (Summary, error) {
	s := Summary{Counts: map[string]Counts{}}
	seenWaiting, seenAccount, started := false, false, false
	lines := bytes.Split(body, []byte("\n"))
	for i, raw := range lines {
		n := i + 1
		line := strings.TrimRight(string(raw), "\r")
		if strings.TrimSpace(line) == "" {
			if started {
				break // the message headers (RFC 3842 §5.2) follow: not kept
			}
			continue
		}
		started = true
		if strings.IndexFunc(line, isControl) >= 0 {
			return Summary{}, &ParseError{n, "control character"}
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return Summary{}, &ParseError{n, "not a header line (want name: value)"}
		}
		value = strings.TrimSpace(value)
		switch {
		case name == "messages-waiting":
			if seenWaiting {
				return Summary{}, &ParseError{n, "Messages-Waiting twice"}
			}
			seenWaiting = true
			switch strings.ToLower(value) {
			case "yes":
				s.Waiting = true
			case "no":
			default:
				return Summary{}, &ParseError{n, "Messages-Waiting must be yes or no"}
			}
		case name == "message-account":
			if seenAccount {
				return Summary{}, &ParseError{n, "Message-Account twice"}
			}
			seenAccount = true
			if !plausibleURI(value) {
				return Summary{}, &ParseError{n, "Message-Account is not a URI"}
			}
			s.Account = value
		default:
			class := classOf(name)
			if class == "" {
				continue // a header we do not know: left out
			}
			if _, dup := s.Counts[class]; dup {
				return Summary{}, &ParseError{n, "message class " + class + " twice"}
			}
			c, err := parseCounts(value)
			if err != "" {
				return Summary{}, &ParseError{n, err}
			}
			s.Counts[class] = c
		}
	}
	if !seenWaiting {
		return Summary{}, &ParseError{1, "no Messages-Waiting line"}
	}
	return s, nil
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// classOf maps a summary line's name (lower case) to its class, "" for none.
func classOf(name string) string {
	if name == "none" {
		return "none"
	}
	c, ok := strings.CutSuffix(name, "-message")
	if !ok || c == "none" {
		return ""
	}
	for _, k := range Classes {
		if k == c {
			return c
		}
	}
	return ""
}

// parseCounts reads "new/old" with an optional " (urgent-new/urgent-old)".
func parseCounts(v string) (Counts, string) {
	main, urgent, hasUrgent := strings.Cut(v, "(")
	var c Counts
	var ok bool
	if c.New, c.Old, ok = pair(main); !ok {
		return Counts{}, "counts must be new/old (urgent-new/urgent-old)"
	}
	if hasUrgent {
		u, rest, closed := strings.Cut(urgent, ")")
		if !closed || strings.TrimSpace(rest) != "" {
			return Counts{}, "unclosed or trailing urgent counts"
		}
		if c.NewUrgent, c.OldUrgent, ok = pair(u); !ok {
			return Counts{}, "urgent counts must be new/old"
		}
	}
	return c, ""
}

// pair reads "a/b" of decimal counts up to maxCount, with whitespace around each.
func pair(v string) (a, b int, ok bool) {
	x, y, ok := strings.Cut(v, "/")
	if !ok {
		return 0, 0, false
	}
	a, okA := count(x)
	b, okB := count(y)
	return a, b, okA && okB
}

func count(v string) (int, bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 6 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil && n <= maxCount
}

// plausibleURI reports whether v may be a Message-Account: scheme:rest, no spaces or
// angle brackets, bounded.
func plausibleURI(v string) bool {
	scheme, rest, ok := strings.Cut(v, ":")
	if !ok || scheme == "" || rest == "" || len(v) > 256 || strings.ContainsAny(v, " \t<>\"") {
		return false
	}
	for i, r := range scheme {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return false
		}
	}
	return true
}

// Format writes s as RFC 3842 §5 has it: Messages-Waiting, Message-Account when set, then a
// line per class that has counts, in the order of Classes, urgent counts always given (what
// Asterisk and FreeSWITCH send), every line ending in CRLF.
func (s *Summary) Format() []byte {
	var b bytes.Buffer
	b.WriteString("Messages-Waiting: ")
	if s.Waiting {
		b.WriteString("yes\r\n")
	} else {
		b.WriteString("no\r\n")
	}
	if s.Account != "" {
		b.WriteString("Message-Account: " + s.Account + "\r\n")
	}
	for _, k := range Classes {
		c, ok := s.Counts[k]
		if !ok {
			continue
		}
		name := "None"
		if k != "none" {
			name = strings.ToUpper(k[:1]) + k[1:] + "-Message"
		}
		fmt.Fprintf(&b, "%s: %d/%d (%d/%d)\r\n", name, c.New, c.Old, c.NewUrgent, c.OldUrgent)
	}
	return b.Bytes()
}

// Check reports what is wrong with s, as an admin API client gave it: a count out of range,
// an account that is not a URI.
func (s *Summary) Check() error {
	if s.Account != "" && !plausibleURI(s.Account) {
		return fmt.Errorf("account %q is not a URI", s.Account)
	}
	for k, c := range s.Counts {
		if classOf(k+"-message") == "" && k != "none" {
			return fmt.Errorf("unknown message class %q", k)
		}
		for _, n := range []int{c.New, c.Old, c.NewUrgent, c.OldUrgent} {
			if n < 0 || n > maxCount {
				return fmt.Errorf("%s: counts must be 0 to %d", k, maxCount)
			}
		}
	}
	return nil
}

// MarshalJSON writes s as the admin API shows it: {"waiting": true, "account": "...",
// "voice": {"new": 2, "old": 1}, ...}.
func (s Summary) MarshalJSON() ([]byte, error) {
	m := map[string]any{"waiting": s.Waiting}
	if s.Account != "" {
		m["account"] = s.Account
	}
	for k, c := range s.Counts {
		m[k] = c
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads the admin API's form (MarshalJSON); a key that is neither waiting,
// account nor a class, and a count object with other keys, are refused.
func (s *Summary) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	out := Summary{Counts: map[string]Counts{}}
	for k, v := range m {
		var err error
		switch k {
		case "waiting":
			err = json.Unmarshal(v, &out.Waiting)
		case "account":
			err = json.Unmarshal(v, &out.Account)
		default:
			if classOf(k+"-message") == "" && k != "none" {
				return fmt.Errorf("unknown key %q (want waiting, account or a class: %s)", k, strings.Join(Classes, ", "))
			}
			dec := json.NewDecoder(bytes.NewReader(v))
			dec.DisallowUnknownFields()
			var c Counts
			err = dec.Decode(&c)
			out.Counts[k] = c
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	*s = out
	return nil
}
