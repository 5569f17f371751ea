// Package pidf reads, writes and composes presence documents: PIDF (RFC 3863, media type
// application/pidf+xml) with the rich presence extensions (RPID, RFC 4480) and the
// presence data model (RFC 4479: dm:person, dm:device), watcher information documents
// (RFC 3858, application/watcherinfo+xml) and dialog information documents (RFC 4235,
// application/dialog-info+xml, the busy lamp field's).
//
// It is a codec: it imports nothing but the standard library and an element tree
// (github.com/beevik/etree), and knows nothing of SIP.
//
// # Untrusted input
//
// Parse, ParseWatcherInfo and ParseDialogInfo take bytes straight from the network. Input above MaxSize
// is refused before anything else; then a scan refuses any DOCTYPE, entity or other
// markup declaration (so a billion-laughs document costs one pass over its bytes) and
// more than MaxElements elements, before the XML is parsed; parsing stops at MaxDepth.
// Errors wrap the package's Err values and name the fault in printable ASCII.
//
// # Prefixes are kept as published
//
// A Document keeps the XML tree it was parsed from, and Bytes writes it back with each
// element's and attribute's namespace prefix unchanged, empty elements self-closed, and
// text, attributes and unknown elements (such as linphone's <pidfonline:online/>) kept.
// Compose copies elements the same way. This is not cosmetic: some clients read PIDF
// with regular expressions rather than an XML parser. baresip, for one, recognises only
// the literal text <rpid:away/>, <rpid:busy/> and <rpid:on-the-phone/>; a serialiser that
// renamed the prefix, declared RPID as default namespace or wrote
// <rpid:away></rpid:away> would change what its users see. Comments and processing
// instructions are dropped, and Bytes writes its own XML declaration.
//
// # Composition
//
// Compose turns a presentity's live publications into the one document its watchers get:
// tuples merged by id with the newest publication winning, the newest person element.
// Closed gives the neutral document sent to politely blocked watchers.
package pidf
