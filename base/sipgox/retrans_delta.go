package sipgox

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
)

// An answer kept for retransmissions is mostly lines of its request: Via, From, Call-ID and
// CSeq are copied into every response (RFC 3261 §8.2.6.2), about half of a 200 to a
// REGISTER or SUBSCRIBE. A retransmission carries the same request again, so the cache keeps
// only what the request does not hold, and where the lines it does hold go: the answer is
// rebuilt from the retransmission when one comes, and sent only if it hashes as the answer
// did (a request that differs from the one answered is not a retransmission of it).
//
// An encoded answer is one byte counting its references, then, when there are any, the
// answer's hash (uint64) and the references (at, off, n: uint16 each: the request's bytes
// [off, off+n) go at offset at of the literal), then the literal: the answer without the
// lines referenced. With no references the literal is the whole answer.

// maxAnswerRefs bounds the references of one answer.
const maxAnswerRefs = 32

// minAnswerRef is the shortest line worth a reference (6 bytes).
const minAnswerRef = 12

const answerRef = 6

type answerRefPos struct{ at, off, n int }

var crlf = []byte("\r\n")

// encodeAnswer appends resp, encoded against req (the request's bytes as sipgo writes it),
// to dst.
func encodeAnswer(dst, resp, req []byte, seed maphash.Seed) []byte {
	var refs [maxAnswerRefs]answerRefPos
	nrefs := findRefs(&refs, resp, req)
	if nrefs == 0 {
		return append(append(dst, 0), resp...)
	}
	dst = append(dst, byte(nrefs))
	dst = binary.LittleEndian.AppendUint64(dst, maphash.Bytes(seed, resp))
	for _, r := range refs[:nrefs] {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(r.at))
		dst = binary.LittleEndian.AppendUint16(dst, uint16(r.off))
		dst = binary.LittleEndian.AppendUint16(dst, uint16(r.n))
	}
	cur, skipped := 0, 0
	for _, r := range refs[:nrefs] {
		pos := r.at + skipped // where the line is in resp
		dst = append(dst, resp[cur:pos]...)
		cur = pos + r.n
		skipped += r.n
	}
	return append(dst, resp[cur:]...)
}

// findRefs fills refs with the header lines of resp (after its status line) found whole in
// req, and returns how many.
func findRefs(refs *[maxAnswerRefs]answerRefPos, resp, req []byte) int {
	if len(req) > 0xffff || len(resp) > 0xffff {
		return 0
	}
	end := bytes.Index(resp, []byte("\r\n\r\n"))
	i := bytes.Index(resp, crlf) + 2
	if end < 0 || i < 2 || i > end {
		return 0
	}
	n, skipped := 0, 0
	for i <= end && n < maxAnswerRefs {
		j := i + bytes.Index(resp[i:], crlf) + 2
		// The line with the '\n' before it, so that only a whole line of req matches.
		if j-i >= minAnswerRef {
			if k := bytes.Index(req, resp[i-1:j]); k >= 0 {
				refs[n] = answerRefPos{at: i - skipped, off: k + 1, n: j - i}
				n++
				skipped += j - i
			}
		}
		i = j
	}
	return n
}

// decodeAnswer appends the answer enc encodes, rebuilt from req, to dst. It reports false
// when enc is malformed or req does not rebuild the answer that was encoded.
func decodeAnswer(dst, enc, req []byte, seed maphash.Seed) ([]byte, bool) {
	if len(enc) == 0 {
		return dst, false
	}
	nrefs := int(enc[0])
	if nrefs == 0 {
		return append(dst, enc[1:]...), true
	}
	head := 1 + 8 + nrefs*answerRef
	if nrefs > maxAnswerRefs || len(enc) < head {
		return dst, false
	}
	sum := binary.LittleEndian.Uint64(enc[1:])
	lit := enc[head:]
	start, cur := len(dst), 0
	for k := range nrefs {
		p := enc[9+k*answerRef:]
		at, off := int(binary.LittleEndian.Uint16(p)), int(binary.LittleEndian.Uint16(p[2:]))
		n := int(binary.LittleEndian.Uint16(p[4:]))
		if at < cur || at > len(lit) || off+n > len(req) {
			return dst[:start], false
		}
		dst = append(dst, lit[cur:at]...)
		dst = append(dst, req[off:off+n]...)
		cur = at
	}
	dst = append(dst, lit[cur:]...)
	if maphash.Bytes(seed, dst[start:]) != sum {
		return dst[:start], false
	}
	return dst, true
}
