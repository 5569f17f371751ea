// Package sipx holds what every chain stage shares about SIP messages and the requests it
// serves, so that no stage parses, answers or judges the same thing twice:
//
//   - the stage contract: Handler, Plugin and Next, shaped like CoreDNS plugins (handler.go);
//   - the per-request State carried in the context: the request, its source and transport,
//     when it arrived, the names a TLS client certificate proved, the authenticated user, the
//     trust rule it was accepted under, what a dialog token proved, how long its connection
//     must stay open, and a request logger built on first use (state.go);
//   - the trust model: Rule, the dialog tokens our Record-Route carries and the node proofs
//     (Seals, RFC 3261 §16.6, §20.30), the trusted peers (Peers, RFC 5922 §7.1), temporary
//     GRUUs (GRUUs, RFC 5627 §3.2), and NAT detection (BehindNAT, RFC 3581);
//   - answering: the status table (Reason), the one mapping from errors, the storage errors
//     among them, to SIP answers (ErrorStatus, RespondError), and responses whose Via copy the
//     request's as received (NewResponse, Respond, RFC 3261 §8.2.6.2);
//   - reading messages: the parser sipgo is given (NewParser), which keeps a malformed header
//     for the sanity stage to refuse (Malformed) and the received text of a Via sipgo would
//     print differently (RawVia, ForwardVias, RFC 3261 §18.2.2), and LeanParser, which gives
//     the same messages with fewer allocations (one string per header section, shared by
//     the headers); header look-ups that find compact forms in any case (Headers, Header,
//     and All and Count, which allocate nothing, RFC 3261 §7.3.3); parsers for the header
//     fields sipgo keeps as plain strings (Expires, Tokens, AddressList for Path, ...);
//     display names (DisplayNameText, QuoteDisplayName) and the check a header value passes
//     before it is copied into another message (Sanitize, RFC 3261 §25.1);
//   - abuse limits' shared parts: the key a source is counted under (SourceKey, one IPv6 /64
//     as one source), the simpled_limited_total counter (Limited) and a gate that logs a
//     limit's refusals once per key and interval (LogGate).
//
// It imports sipgo, storage (for its errors) and logging, and no stage. What the sipgo stack
// itself lacks (the server transaction's context, retransmissions, timers, workers, client
// transactions) is in base/sipgox, whose doc also lists the gaps this package fills.
package sipx
