// Package cpim is simpled's codec for message/cpim bodies (RFC 3862, "Common Presence and
// Instant Messaging: Message Format") with the IMDN headers of RFC 5438 (imdn.Message-ID,
// imdn.Disposition-Notification, ...). It is a pure codec: the standard library only, no SIP
// stack, no storage. The proxy validates CPIM MESSAGE bodies with Parse (400 with the error text
// as reason phrase), relays them byte-exact, and suppresses duplicates by MessageID; Bytes and
// New serve messages the server writes itself.
//
// A body is: message headers ("Name: value" lines), a blank line, then the encapsulated MIME
// part: its headers (Content-Type required), a blank line, then the content, kept byte-exact
// (it may be binary). Parse keeps every header, in order, with its value as sent (surrounding
// white space removed), so Bytes reproduces the input's meaning; Parse(m.Bytes()) equals m for
// every m that Parse returned.
//
// What Parse validates:
//   - the structure: a blank line after the message headers, a non-empty MIME part, a
//     Content-Type of the form type/subtype in it;
//   - every header line: a colon, a non-empty name of allowed characters (RFC 3862 NAMECHAR with
//     at most one "." between prefix and name for message headers; printable ASCII for MIME
//     headers), a value without control characters (HTAB allowed) that is valid UTF-8;
//   - NS declarations ("NS: prefix <uri>") and that every prefix used is declared;
//   - a MIME Content-Length, when present, against the content;
//   - limits: at most MaxHeaders headers in each part and MaxLineLength bytes in one header,
//     so hostile input costs little. Parse never panics.
//
// It does not interpret From, To, cc, Subject or Require values, nor check DateTime (DateTime
// reports whether it parses), nor look inside the content.
//
// Leniency, chosen for what real clients send:
//   - lines may end in CRLF or a bare LF (Bytes always writes CRLF); the space after the colon
//     is optional (the RFC 3862 ABNF requires one);
//   - header look-ups (Header, MIMEHeader, HeaderNS, and the NS/Content-Type/Content-Length
//     handling) ignore case, although RFC 3862 makes message header names case-sensitive;
//     namespace prefixes are matched ignoring case too;
//   - a prefix may be declared after the header that uses it (RFC 3862 expects the NS header
//     first); a header resolves through the closest NS before it, else the first one after it;
//   - the prefix "imdn" is taken as urn:ietf:params:imdn when no NS declares it: RFC 5438 always
//     writes that prefix and some stacks leave the NS line out (linphone, the client in our
//     captures, does declare it). Any other undeclared prefix is an error;
//   - an NS declaration without a prefix ("NS: <uri>") is accepted and kept, but does not move
//     unprefixed headers out of the CPIM namespace: From, To and DateTime are always the
//     unprefixed headers;
//   - MIME part headers may be folded (RFC 2045/5322); Parse unfolds them with one space. CPIM
//     message headers cannot be (the RFC 3862 §3.6 grammar has no folding) and a continuation
//     line there is an error;
//   - the MIME part may end after its headers without the blank line: the content is empty;
//   - content that is exactly one CRLF (or LF) longer than the MIME Content-Length is accepted
//     and the trailing line end dropped (padding some stacks add); any other disagreement is
//     ErrContentLength;
//   - From and To are not required (RCS and some clients send anonymous or no values).
package cpim
