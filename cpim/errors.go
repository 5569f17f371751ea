package cpim

import (
	"errors"
	"strconv"
)

// Errors of Parse, wrapped in a *ParseError that gives the line and what was found there. Test
// with errors.Is.
var (
	// ErrEmpty: the body is empty.
	ErrEmpty = errors.New("empty body")
	// ErrNoBlankLine: the message headers run to the end of the body, no blank line ends them.
	ErrNoBlankLine = errors.New("no blank line after the message headers")
	// ErrMalformedHeader: a header line has no colon, an empty or invalid name, a control
	// character or invalid UTF-8 in its value, or is a continuation line where none may be.
	ErrMalformedHeader = errors.New("malformed header")
	// ErrTooManyHeaders: more than MaxHeaders headers in the message or in the MIME part.
	ErrTooManyHeaders = errors.New("too many headers")
	// ErrLineTooLong: a header line (or an unfolded MIME header) is over MaxLineLength bytes.
	ErrLineTooLong = errors.New("header line too long")
	// ErrBadNS: an NS header is not "[prefix] <uri>".
	ErrBadNS = errors.New("malformed NS declaration")
	// ErrUndeclaredPrefix: a header name uses a namespace prefix no NS header declares.
	ErrUndeclaredPrefix = errors.New("undeclared namespace prefix")
	// ErrNoMIMEPart: nothing follows the blank line after the message headers.
	ErrNoMIMEPart = errors.New("missing encapsulated MIME part")
	// ErrContentType: the MIME part has no Content-Type, or one that is not type/subtype.
	ErrContentType = errors.New("missing or malformed Content-Type in the MIME part")
	// ErrContentLength: the MIME part's Content-Length is not a number or disagrees with the
	// length of the content.
	ErrContentLength = errors.New("MIME part Content-Length disagrees with the content")
)

// maxDetail bounds the part of the input an error quotes, so that an error text stays short
// enough for a SIP reason phrase.
const maxDetail = 32

// ParseError is an error of Parse (and of the Message setters, with Line 0). Its text is
// printable ASCII, short, and without line ends, fit for a SIP reason phrase:
// `cpim: line 5: undeclared namespace prefix: "foo" in "foo.Bar"`.
type ParseError struct {
	// Line is the 1-based line of the body at fault; 0 when the fault is not on one line.
	Line int
	// Err is one of the sentinel errors above.
	Err error
	// Detail says what was found, with any quoted input shortened; it may be empty.
	Detail string
}

// Error returns "cpim: line <n>: <err>: <detail>", leaving out the parts that are empty.
func (e *ParseError) Error() string {
	s := "cpim: "
	if e.Line > 0 {
		s += "line " + strconv.Itoa(e.Line) + ": "
	}
	s += e.Err.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns the sentinel error.
func (e *ParseError) Unwrap() error { return e.Err }

// quote renders input for an error text: at most maxDetail bytes, ASCII only, quoted.
func quote(s string) string {
	if len(s) > maxDetail {
		return strconv.QuoteToASCII(s[:maxDetail]) + "..."
	}
	return strconv.QuoteToASCII(s)
}
