package sipx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// LeanParser parses a SIP message into sipgo's types (*sip.Request / *sip.Response with the
// same headers, typed where sipgo types them, through the same header parsers as NewParser),
// with fewer allocations than sipgo's parser: sipgo converts every header line to strings of
// its own (the value, and the name and value again for a header it does not type) and the
// start line once more, where LeanParser converts the header section once and hands
// sub-strings of it to the header parsers and to sip.NewHeader. A header without a typed
// parser then costs one allocation instead of three, a typed one what its parser allocates.
//
// It gives the same result as NewParser's (*sip.Parser).ParseSIP for every input: the same
// accept or reject with the same error, the same start line, the same headers in the same
// order (typed or plain), the same body, the same partial message with an error where sipgo
// returns one. Its differential test and fuzz target hold it to that.
//
// The strings of a parsed message share memory: a value kept after the message is gone (a
// Call-ID in a store) keeps its part of the header section alive, at most shareMax bytes
// (or its own line when longer), where sipgo's keeps the value alone. Whoever stores header
// text for long should strings.Clone it.
//
// A LeanParser holds no state between calls; one may serve any number of goroutines.
type LeanParser struct {
	headers    map[string]leanHeader
	maxMessage int
	share      int // shareMax; smaller in tests
}

// leanHeader is a typed-header parser with the lower-case name sipgo hands it.
type leanHeader struct {
	name  []byte
	parse sip.HeaderParser
}

// maxHeaderKey is the longest name in the typed-header table; longer names are never in it.
const maxHeaderKey = 32

// shareMax bounds the text one conversion covers: the header section when it is this short
// (the common case: a REGISTER's is about 500 bytes), consecutive whole lines of it
// otherwise. It bounds what one value kept past its message can hold alive.
const shareMax = 1024

// NewLeanParser returns a parser with NewParser's header rules for messages of at most
// maxMessage bytes (sipgo's default, 65535, when maxMessage is not positive).
func NewLeanParser(maxMessage int) *LeanParser {
	parsers := headerParsers()
	headers := make(map[string]leanHeader, len(parsers))
	for key, parse := range parsers {
		// sipgo hands a parser the full lower-case name, also for a compact form.
		name := strings.ToLower(canonicalNames[key])
		if len(key) > 1 || name == "" {
			name = key
		}
		if len(key) > maxHeaderKey {
			panic("sipx: header name " + key + " longer than maxHeaderKey")
		}
		headers[key] = leanHeader{name: []byte(name), parse: parse}
	}
	if maxMessage <= 0 {
		maxMessage = sip.ParseMaxMessageLength
	}
	return &LeanParser{headers: headers, maxMessage: maxMessage, share: shareMax}
}

// ParseSIP parses data, one whole message (a datagram: the body is what follows the header
// section when there is no Content-Length), with the contract of (*sip.Parser).ParseSIP. The
// message does not refer to data afterwards: data may be reused at once.
func (p *LeanParser) ParseSIP(data []byte) (sip.Message, error) {
	if len(data) > p.maxMessage {
		return nil, sip.ErrMessageTooLarge
	}
	r := leanReader{data: data, end: headerEnd(data), share: p.share}
	msg, err := r.startLine()
	if err != nil {
		return nil, eofError(err)
	}
	contentLength, err := p.readHeaders(&r, msg)
	if err != nil {
		return msg, eofError(err)
	}
	return msg, p.readBody(msg, data[r.off:], r.off, contentLength)
}

// eofError is ParseSIP's rename of a message cut short.
func eofError(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return sip.ErrParseEOF
	}
	return err
}

// headerEnd is where the header section of data ends (after its empty line), or len(data).
func headerEnd(data []byte) int {
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return len(data)
}

// leanReader walks the lines of a message and gives their text as sub-strings of one
// conversion (win, the bytes from winOff).
type leanReader struct {
	data   []byte
	off    int // start of the next line
	end    int // end of the header section (headerEnd)
	share  int // the most one conversion covers, unless a line is longer
	win    string
	winOff int
}

// text returns data[from:to] as a string, a sub-string of the current conversion when it
// covers them, else of a new one from from up to r.share bytes (at least to, at most to the
// end of the header section).
func (r *leanReader) text(from, to int) string {
	if from >= r.winOff && to <= r.winOff+len(r.win) {
		return r.win[from-r.winOff : to-r.winOff]
	}
	end := min(from+r.share, r.end)
	end = max(end, to)
	r.win, r.winOff = string(r.data[from:end]), from
	return r.win[:to-from]
}

// nextLine returns where the line at r.off ends and where the next one starts, with the errors
// of sipgo's nextLine: io.EOF for no data, io.ErrUnexpectedEOF without CR LF,
// sip.ErrParseLineNoCRLF for a CR not followed by LF.
func (r *leanReader) nextLine(off int) (lineEnd, next int, err error) {
	rest := r.data[off:]
	if len(rest) == 0 {
		return off, off, io.EOF
	}
	i := bytes.IndexByte(rest, '\r')
	switch {
	case i < 0:
		return off + len(rest), off + len(rest), io.ErrUnexpectedEOF
	case i+1 >= len(rest):
		return off + i, off + i + 1, io.ErrUnexpectedEOF
	case rest[i+1] != '\n':
		return off + i, off + i + 1, sip.ErrParseLineNoCRLF
	}
	return off + i, off + i + 2, nil
}

// startLine parses the request or status line as sipgo's parseLine does.
func (r *leanReader) startLine() (sip.Message, error) {
	lineEnd, next, err := r.nextLine(0)
	if err != nil {
		return nil, err
	}
	r.off = next
	return parseStartLine(r.text(0, lineEnd))
}

// parseStartLine is sipgo's parseLine: three parts split at the first two spaces; a request
// when the third is "SIP..." without a space, else a response when the first is "SIP...".
func parseStartLine(line string) (sip.Message, error) {
	first, rest, ok1 := strings.Cut(line, " ")
	second, third, ok2 := strings.Cut(rest, " ")
	if ok1 && ok2 {
		if len(third) >= 3 && strings.IndexByte(third, ' ') < 0 && sip.UriIsSIP(third[:3]) {
			return requestLine(first, second, third)
		}
		if len(first) >= 3 && sip.UriIsSIP(first[:3]) {
			code, err := strconv.ParseUint(second, 10, 16)
			if err != nil {
				return nil, err
			}
			res := sip.NewResponse(int(code), third)
			res.SipVersion = first
			return res, nil
		}
	}
	return nil, fmt.Errorf("transmission beginning '%s' is not a SIP message", line)
}

// requestLine builds the request of a request line, with sipgo's rules and errors.
func requestLine(method, uri, version string) (sip.Message, error) {
	var recipient sip.Uri
	err := sip.ParseUri(uri, &recipient)
	if recipient.Wildcard {
		err = fmt.Errorf("wildcard URI '*' not permitted in request line")
	}
	if err != nil {
		return nil, err
	}
	// The URI is set after NewRequest, which would copy its parameters: they are ours alone.
	req := sip.NewRequest(sip.RequestMethod(strings.ToUpper(method)), sip.Uri{})
	req.Recipient = recipient
	req.SipVersion = version
	return req, nil
}

// readHeaders appends the header lines up to the empty line to msg, as sipgo's
// parseHeadersOnly does (a line's headers before a failing value included), and returns the
// last typed Content-Length.
func (p *LeanParser) readHeaders(r *leanReader, msg sip.Message) (*sip.ContentLengthHeader, error) {
	var contentLength *sip.ContentLengthHeader
	for {
		lineEnd, next, err := r.nextLine(r.off)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return contentLength, err
		}
		if lineEnd == r.off {
			r.off = next
			return contentLength, nil
		}
		var line string
		if next < len(r.data) && isHeaderContinuation(r.data[next]) {
			line, next, err = r.foldLine(lineEnd, next)
			if err != nil {
				return contentLength, err
			}
		} else {
			line = r.text(r.off, lineEnd)
		}
		r.off = next
		cl, err := p.parseHeader(msg, line)
		if cl != nil {
			contentLength = cl
		}
		if err != nil {
			return contentLength, err
		}
	}
}

func isHeaderContinuation(c byte) bool { return c == ' ' || c == '\t' }

// foldLine joins the line at r.off (ending at lineEnd) with its continuation lines as sipgo's
// foldHeaderLine does: white space at the end of each part and at the start of a continuation
// removed, the parts joined by one space. It returns the joined line and where the next starts.
func (r *leanReader) foldLine(lineEnd, next int) (string, int, error) {
	var b strings.Builder
	b.Write(bytes.TrimRight(r.data[r.off:lineEnd], " \t"))
	for next < len(r.data) && isHeaderContinuation(r.data[next]) {
		contEnd, after, err := r.nextLine(next)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", 0, err
		}
		b.WriteByte(' ')
		b.Write(bytes.Trim(r.data[next:contEnd], " \t"))
		next = after
	}
	return b.String(), next, nil
}

// parseHeader is sipgo's HeadersParser.ParseHeader on a line given as a string: it appends the
// line's headers to msg (several when the parser reports a comma) and returns the last typed
// Content-Length among them.
func (p *LeanParser) parseHeader(msg sip.Message, line string) (*sip.ContentLengthHeader, error) {
	colon := strings.IndexByte(line, ':')
	if colon < 0 {
		return nil, fmt.Errorf("field name with no value in header: %q", line)
	}
	name := strings.TrimSpace(line[:colon])
	value := strings.TrimSpace(line[colon+1:])
	h, ok := p.lookup(name)
	if !ok {
		msg.AppendHeader(sip.NewHeader(name, value))
		return nil, nil
	}
	var contentLength *sip.ContentLengthHeader
	for {
		hdr, err := h.parse(h.name, value)
		comma, more := commaOffset(err)
		if err != nil && !more {
			return contentLength, err
		}
		msg.AppendHeader(hdr)
		if cl, ok := hdr.(*sip.ContentLengthHeader); ok {
			contentLength = cl
		}
		if !more {
			return contentLength, nil
		}
		value = value[comma+1:]
	}
}

// commaOffset returns where sipgo's comma error says the comma is, and whether err is one.
func commaOffset(err error) (int, bool) {
	if err == nil || reflect.TypeOf(err) != commaType {
		return 0, false
	}
	return int(reflect.ValueOf(err).Int()), true
}

// lookup finds the typed parser of a header name, compared in ASCII lower case as sipgo does.
func (p *LeanParser) lookup(name string) (leanHeader, bool) {
	if len(name) > maxHeaderKey {
		return leanHeader{}, false
	}
	var buf [maxHeaderKey]byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	h, ok := p.headers[string(buf[:len(name)])]
	return h, ok
}

// readBody gives msg the body, as sipgo's Parse does for a datagram: Content-Length bytes of
// rest when the message has a typed Content-Length, else all of rest; copied, so that the
// message does not hold the datagram.
func (p *LeanParser) readBody(msg sip.Message, rest []byte, total int, contentLength *sip.ContentLengthHeader) error {
	size := len(rest)
	if contentLength != nil {
		size = int(*contentLength)
	}
	if size == 0 {
		return nil
	}
	if size > p.maxMessage-total {
		return sip.ErrMessageTooLarge
	}
	body := make([]byte, size)
	n := copy(body, rest)
	msg.SetBody(body)
	if n != size {
		return sip.ErrParseReadBodyIncomplete
	}
	return nil
}
