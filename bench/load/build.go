package main

import (
	"strconv"
)

// The generator finds its calls again from what the server sends back, without a map: the
// Via branch of every request and the Call-ID of every call carry the phase's run number,
// the socket's index and the call's index in that socket's table (hex), and the branch also
// the call's transaction number:
//
//	branch=z9hG4bKL<run>.<socket>.<call>.<txn>    Call-ID: <run>.<socket>.<call>@load

const (
	branchPrefix = "z9hG4bKL"
	callIDSuffix = "@load"
	userAgent    = "simpled-bench-load"
)

// ref names one transaction of one call.
type ref struct {
	run  uint32
	sock int
	call int
	txn  uint16
}

func appendRef(b []byte, r ref) []byte {
	b = strconv.AppendUint(b, uint64(r.run), 16)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(r.sock), 16)
	b = append(b, '.')
	return strconv.AppendUint(b, uint64(r.call), 16)
}

func appendBranch(b []byte, r ref) []byte {
	b = append(b, branchPrefix...)
	b = appendRef(b, r)
	b = append(b, '.')
	return strconv.AppendUint(b, uint64(r.txn), 16)
}

func appendCallID(b []byte, r ref) []byte {
	b = appendRef(b, r)
	return append(b, callIDSuffix...)
}

// hexFields reads up to len(out) '.'-separated hex numbers of at most 8 digits each and
// reports how many it read; it stops at the end of b.
func hexFields(b []byte, out []uint64) (int, bool) {
	n := 0
	for n < len(out) {
		var v uint64
		d := 0
		for len(b) > 0 && b[0] != '.' {
			x, ok := unhex(b[0])
			if !ok || d == 8 {
				return n, false
			}
			v = v<<4 | uint64(x)
			d++
			b = b[1:]
		}
		if d == 0 {
			return n, false
		}
		out[n] = v
		n++
		if len(b) == 0 {
			return n, true
		}
		b = b[1:] // the '.'
	}
	return n, len(b) == 0
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parseBranch reads a branch made by appendBranch.
func parseBranch(v []byte) (ref, bool) {
	if !hasPrefix(v, branchPrefix) {
		return ref{}, false
	}
	var f [4]uint64
	if n, ok := hexFields(v[len(branchPrefix):], f[:]); !ok || n != 4 || f[3] > 0xffff {
		return ref{}, false
	}
	return ref{run: uint32(f[0]), sock: int(f[1]), call: int(f[2]), txn: uint16(f[3])}, true
}

// parseCallID reads a Call-ID made by appendCallID.
func parseCallID(v []byte) (ref, bool) {
	if !hasSuffix(v, callIDSuffix) {
		return ref{}, false
	}
	var f [3]uint64
	if n, ok := hexFields(v[:len(v)-len(callIDSuffix)], f[:]); !ok || n != 3 {
		return ref{}, false
	}
	return ref{run: uint32(f[0]), sock: int(f[1]), call: int(f[2])}, true
}

// user names of the pools, as bench/sipp/gen-users.sh writes them: users u000001 (password
// pw000001), callees c00001 (pwc00001); watchers w<call number> have no password.
type pool byte

const (
	poolUsers   pool = 'u'
	poolCallees pool = 'c'
	poolWatch   pool = 'w'
	poolSender  pool = 's' // the one sender of the message scenario
)

// appendUser appends the name of member i (from 0) of p.
func appendUser(b []byte, p pool, i int) []byte {
	if p == poolSender {
		return append(b, "sender"...)
	}
	b = append(b, byte(p))
	switch p {
	case poolUsers:
		return appendPadded(b, i+1, 6)
	case poolCallees:
		return appendPadded(b, i+1, 5)
	}
	return strconv.AppendInt(b, int64(i), 10)
}

// password returns member i's password (users and callees).
func password(p pool, i int) string {
	b := append([]byte("pw"), appendUser(nil, p, i)...)
	if p == poolUsers {
		b = append(b[:2], b[3:]...) // pw000001: the 'u' is not in it
	}
	return string(b)
}

func appendPadded(b []byte, v, width int) []byte {
	var d [20]byte
	s := strconv.AppendInt(d[:0], int64(v), 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// head is what one request's first lines need.
type head struct {
	method  string
	ruri    []byte // nil: sip:<to>@<domain>
	from    pool
	fromIdx int
	to      pool
	toIdx   int
	toTag   []byte
	cseq    int
	r       ref
	laddr   string
	domain  string
}

// appendHead appends request line, Via, Max-Forwards, From, To, Call-ID and CSeq.
func appendHead(b []byte, h *head) []byte {
	b = append(b, h.method...)
	b = append(b, ' ')
	if h.ruri != nil {
		b = append(b, h.ruri...)
	} else {
		b = appendAOR(b, h.to, h.toIdx, h.domain)
	}
	b = append(b, " SIP/2.0\r\nVia: SIP/2.0/UDP "...)
	b = append(b, h.laddr...)
	b = append(b, ";branch="...)
	b = appendBranch(b, h.r)
	b = append(b, "\r\nMax-Forwards: 70\r\nFrom: <"...)
	b = appendAOR(b, h.from, h.fromIdx, h.domain)
	b = append(b, ">;tag=L"...)
	b = appendRef(b, h.r)
	b = append(b, "\r\nTo: <"...)
	b = appendAOR(b, h.to, h.toIdx, h.domain)
	b = append(b, '>')
	if len(h.toTag) > 0 {
		b = append(b, ";tag="...)
		b = append(b, h.toTag...)
	}
	b = append(b, "\r\nCall-ID: "...)
	b = appendCallID(b, h.r)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendInt(b, int64(h.cseq), 10)
	b = append(b, ' ')
	b = append(b, h.method...)
	b = append(b, "\r\nUser-Agent: "+userAgent+"\r\n"...)
	return b
}

// appendAOR appends sip:<user>@<domain>; a REGISTER's request URI (sip:<domain>) is passed
// as head.ruri.
func appendAOR(b []byte, p pool, i int, domain string) []byte {
	b = append(b, "sip:"...)
	b = appendUser(b, p, i)
	b = append(b, '@')
	return append(b, domain...)
}

// appendContact appends Contact: <sip:user@laddr>.
func appendContact(b []byte, p pool, i int, laddr string) []byte {
	b = append(b, "Contact: <sip:"...)
	b = appendUser(b, p, i)
	b = append(b, '@')
	b = append(b, laddr...)
	return append(b, ">\r\n"...)
}

func appendHeader(b []byte, name string, v []byte) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, v...)
	return append(b, "\r\n"...)
}

// appendPIDF appends a presence document for user i of p, with tuple id and note, as
// bench/sipp/publish.xml sends.
func appendPIDF(b []byte, p pool, i int, domain, tuple, note string) []byte {
	b = append(b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="`...)
	b = appendAOR(b, p, i, domain)
	b = append(b, "\">\n  <tuple id=\""...)
	b = append(b, tuple...)
	b = append(b, "\">\n    <status><basic>open</basic></status>\n    <contact priority=\"0.8\">"...)
	b = appendAOR(b, p, i, domain)
	b = append(b, "</contact>\n    <note>"...)
	b = append(b, note...)
	return append(b, "</note>\n  </tuple>\n</presence>\n"...)
}
