// Package rawsip reads and writes the few pieces of SIP text the benchmark tools (bench/scale,
// bench/flood) handle on their hot loops — a header's value, a 200 to a request — on byte
// slices, without a parser: the tools send and answer tens of thousands of messages a second,
// and what they read is what simpled or Kamailio wrote.
package rawsip

import "bytes"

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// Head returns the header section of msg: up to the blank line, all of it when there is none.
func Head(msg []byte) []byte {
	if i := bytes.Index(msg, crlfcrlf); i >= 0 {
		return msg[:i]
	}
	return msg
}

// HeaderValue returns the value of the first header named name (or its compact form) in
// head, nil when there is none.
func HeaderValue(head []byte, name, compact string) []byte {
	for len(head) > 0 {
		line := head
		if i := bytes.Index(head, crlf); i >= 0 {
			line, head = head[:i], head[i+2:]
		} else {
			head = nil
		}
		n, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		n = bytes.TrimSpace(n)
		if bytes.EqualFold(n, []byte(name)) || (compact != "" && bytes.EqualFold(n, []byte(compact))) {
			return bytes.TrimSpace(v)
		}
	}
	return nil
}

// Answer200 appends to out a 200 to the request whose header section is head: Via, From, To,
// Call-ID and CSeq copied (RFC 3261 §8.2.6.2), To tag tag added when the request had none.
func Answer200(head, out []byte, tag string) []byte {
	out = append(out, "SIP/2.0 200 OK\r\n"...)
	lines := bytes.Split(head, crlf)
	for _, line := range lines[1:] {
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch Canonical(bytes.TrimSpace(name)) {
		case "via", "from", "call-id", "cseq":
			out = append(out, line...)
			out = append(out, crlf...)
		case "to":
			out = append(out, line...)
			if !bytes.Contains(line, []byte("tag=")) {
				out = append(out, ";tag="...)
				out = append(out, tag...)
			}
			out = append(out, crlf...)
		}
	}
	return append(out, "Content-Length: 0\r\n\r\n"...)
}

// Canonical returns a header name in lower case, compact forms expanded.
func Canonical(name []byte) string {
	if len(name) == 1 {
		switch name[0] | 0x20 {
		case 'v':
			return "via"
		case 'f':
			return "from"
		case 't':
			return "to"
		case 'i':
			return "call-id"
		case 'l':
			return "content-length"
		case 'c':
			return "content-type"
		case 'm':
			return "contact"
		case 'o':
			return "event"
		}
	}
	return string(bytes.ToLower(name))
}
