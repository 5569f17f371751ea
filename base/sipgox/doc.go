// Package sipgox is what the sipgo stack (github.com/emiago/sipgo, v1.7.2) lacks or gets wrong,
// and how simpled fills each gap. Where the fix is a piece of machinery around sipgo's
// transactions and transports it lives here; where it is a rule about reading or writing one
// message it lives in the package that reads and writes messages (sipx), or in the stage that
// needs it, and this doc says where. The facts below were read from sipgo's source at the
// version in go.mod: check them again when upgrading it.
//
// # What sipgo gives, and what it does not
//
// sipgo gives a user agent (sipgo.UserAgent), a Server (a handler per method, OnRequest, and
// one for the rest, OnNoRoute), a Client (TransactionRequest, WriteRequest), server and client
// transactions (RFC 3261 §17), the transports UDP, TCP, TLS, WS and WSS with connections reused
// by remote ip:port, the request helpers ClientRequestAddVia, ClientRequestAddRecordRoute and
// ClientRequestDecreaseMaxForward, DNS SRV lookup (RFC 3263 §4.2; no NAPTR), and for tests the
// siptest recorders and fakes' in-memory connections.
//
// It does not give, so simpled builds it in its stages: forking and the rest of the proxy of
// RFC 3261 §16 (proxy), SUBSCRIBE/NOTIFY dialogs and presence (RFC 6665, RFC 3856: presence), a
// registrar (RFC 3261 §10: registrar), server-side digest authentication (RFC 7616, RFC 3261
// §22: auth), NAPTR (RFC 3263 §4.1: the proxy's resolver), and outbound flows (RFC 5626: the
// registrar, the proxy and transport).
//
// # Gaps filled in this package
//
// Server transaction context (TxContext). sip.ServerTransactionContext inverts the result of
// OnTerminate, which reports true when the callback was registered: the context it returns is
// cancelled at birth, and every store call made under it fails with "context canceled".
// TxContext registers the same callback and cancels only when the transaction has already
// terminated, so a request's work lives as long as its transaction (RFC 3261 §17.2) and no
// longer.
//
// Retransmissions of answered requests (RetransCache, Retransmits). A non-INVITE server
// transaction over UDP stays Completed for Timer J (64*T1, 32 s) after its final response, to
// answer retransmissions of the request with that response (RFC 3261 §17.2.2). sipgo keeps the
// whole transaction that long, about 3 KiB of pointer-rich memory each: at 8,000 REGISTER/s,
// 600 MiB of live heap whose collections took both cores for half a second. Retransmits
// records the bytes of the final answer, ends the transaction at once, and answers a retransmission, which
// sipgo then takes for a new request, from the cache before any stage sees it. Over reliable transports sipgo ends the transaction at once (Timer J is zero), and
// nothing is cached. The cache is bounded in all and per source; when full, the transaction
// stays with sipgo as before.
//
// A goroutine per message (OnWorkers). sipgo's transaction layer starts a new goroutine for
// every request and every response it receives (the requests of UDPTransactions excepted); its small stack is grown by copying as a
// request goes some 40 frames deep through the chain. OnWorkers runs the handler on pooled
// goroutines that keep the stack they grew (gopool). The server transaction ends when the
// handler returns (Server.handleRequest calls TerminateGracefully), so a handler must answer
// before it returns (the contract of sipx.Handler; a forwarding stage stays in its select over
// the client transactions' responses, the ACK and the transaction's end), and the handoff
// waits for the worker.
//
// One read loop per UDP socket (ServeUDP). sipgo parses each datagram in the socket's read
// loop before handing it on, so one loop caps a UDP listener at one core; ServeUDP runs one
// loop per core on the same socket.
//
// Non-INVITE server transactions over UDP (UDPTransactions). With the retransmission cache
// answering for completed transactions, what is left of a non-INVITE server transaction
// (RFC 3261 §17.2.2) is to absorb retransmissions while the request is handled and answer
// them with the last answer, and sipgo's machinery for it (a goroutine per request, the key
// built in a string builder, a connection looked up under a context, the FSM with its timers,
// mutexes and channels, an entry in the UDP connection pool per remote address, never
// removed) was the heaviest part of sipgo in the REGISTER profile. The UDP guard offers each
// datagram to UDPTransactions.Take, which takes every non-INVITE request other than ACK and
// CANCEL that parses and carries an RFC 3261 branch: a sharded table of running transactions
// absorbs retransmissions, the cache answers those of completed ones, and the handler runs on
// a pooled goroutine with a transaction of the table (a sip.ServerTransaction), or, for the
// requests the server knows never wait (UDPTransactions.Inline), on the read loop itself, as
// Kamailio's children answer on the thread that read. Responses,
// INVITE, ACK, CANCEL and what does not parse go on to sipgo as before. A request the guard
// takes never enters sipgo's connection pool.
//
// Process-wide settings (Configure). sipgo's buffer sizes and timers are package variables.
// Configure sets them once per process, before the first transport exists: datagrams are read
// whole up to the UDP maximum (TransportBufferReadSize, 32 KiB by default; the transport's
// guard answers 513 to one that fills the buffer, RFC 3261 §18.1.1); UDPMTUSize is raised so
// that sipgo never refuses a response for size (it refuses any UDP message over UDPMTUSize-200,
// 1,300 bytes by default, with ErrUDPMTUCongestion; a response goes where its request came
// from, RFC 3261 §18.2.2, and a request over the MTU is the proxy's to move to TCP,
// §18.1.1); sipgo's logger writes into simpled's. sipgo's non-INVITE client transactions wait
// Timer D (32 s) in the Completed state, not Timer K (T4, 5 s, RFC 3261 §17.1.2.2), which at
// thousands of relayed MESSAGEs a second holds a hundred thousand transactions: Timer D is set
// to T4 for INVITE and non-INVITE alike, as Kamailio's 5 s wait timer does, at the cost that an
// INVITE's final answer retransmitted more than 5 s after our ACK is no longer matched.
//
// Short timers for tests (ShortTimers). sip.SetTimers derives every timer from T1, T2 and T4
// but also puts Timer D back to 32 s; ShortTimers shortens them (T1 = 10 ms: Timer F, H and J
// under a second) with Timer D kept at T4, and returns the function that restores them. They
// are package variables read without locks, so only a TestMain, or a test that runs alone,
// may change them.
//
// Client transactions (clienttx.go). sipgo keeps all client transactions in one map behind one
// lock, written twice per transaction (add, delete): under a few thousand relayed MESSAGEs a
// second that lock's wake-ups, not the CPU, bounded throughput.
// Its ClientTransaction.Responses channel is unbuffered and must be drained until the
// transaction ends. simpled runs its non-INVITE client transactions (RFC 3261 §17.1.2) itself,
// in a sharded table with no goroutine per transaction, fed with the responses sipgo's
// transaction layer did not match; INVITE (ACK, 2xx handling) and CANCEL stay with sipgo.
//
// Stray responses (stray.go). A response that matches none of sipgo's client transactions goes
// to the transaction layer's UnhandledResponseHandler (by default it is logged and dropped).
// simpled routes it: to one of its own client transactions, or, for a 2xx to an INVITE
// retransmitted after our transaction ended, statelessly on to the next Via (RFC 3261 §16.7
// step 10, as RFC 6026 has the 2xx outlive the transaction). Anything else is dropped.
//
// # Gaps filled elsewhere
//
// Parsing (sipx.NewParser, sipx.Malformed, sipx.RawVia). sipgo drops a whole message when one
// typed header (From, To, Contact, Route, Max-Forwards, ...) does not parse, leaving a UDP client
// retransmitting into silence, and prints Via again from its fields rather than as received.
// sipx's parser keeps a malformed header as a plain one so the sanity stage answers 400 naming
// it (RFC 3261 §16.3), keeps the received text of a Via that sipgo would print differently, as
// a response must copy it (§8.2.6.2, §18.2.2), and bounds a message's size. It is in sipx because the stages read what it kept
// (Malformed, RawVia, ForwardVias) as part of reading a message.
//
// Header fields (sipx.Headers, sipx.Expires, sipx.Tokens, ...). sipgo types only a dozen header
// fields; Expires, Event, SIP-ETag, SIP-If-Match, Path and Subscription-State are plain strings,
// which sipx parses once. It normalises the compact forms of From, To, Contact, Call-ID, Via,
// Content-Type and Content-Length only, keeps the others (k, o, u, s, e, ...) under their
// one-letter names, and RemoveHeader compares names case-sensitively: sipx's look-ups find both
// spellings in any case (RFC 3261 §7.3.3). sipgo does not refuse CR or LF inside a header value
// it is given, so a value copied from one message into another goes through sipx.Sanitize
// first: a bare CR or LF, which the grammar of RFC 3261 §25.1 does not allow there, would
// inject a header.
//
// Allow. sipgo's default answer to an unserved method is a 405 without the Allow header RFC
// 3261 §8.2.1 requires: simpled serves unknown methods itself (OnNoRoute into the chain), and
// every 405 it sends lists Allow.
//
// Sending (proxy). TransactionRequest called without options rewrites the request (Via, From,
// To, ...); the proxy builds each branch's request itself, a copy per fork branch, and passes a
// no-op option so sipgo sends it as built. Record-Route from ClientRequestAddRecordRoute has an
// empty host unless the client was given WithClientHostname: the proxy writes its own Via and
// Record-Route naming the listener it sends from (RFC 3261 §16.6). A UDP request to a new peer
// goes out from an ephemeral socket unless the request names the listening address, and a NATed
// client only accepts packets from the address it registered to (RFC 5626 §3): the proxy sets
// the request's local address to the UDP listener; WithClientConnectionAddr is not used, as over
// TCP it can pick the wrong connection. A request over the UDP MTU moves to TCP (§18.1.1).
//
// Transport (transport). sipgo's WebSocket reader leaves pings unanswered (RFC 6455 §5.5.2);
// simpled's WebSocket connections read their frames themselves and answer pings and closes.
// STUN keepalives (RFC 5626 §4.4.2) share the SIP UDP socket: the transport's guard wraps the
// PacketConn handed to ServeUDP and gives datagrams whose first byte is below 2 and that are
// STUN messages to pion/stun, before sipgo sees them (sipgo's transport read filter could do
// the same inside its read loop). On streams sipgo closes a connection on any parse error
// without answering; the transport's stream framer judges each message first and answers 400,
// 416, 505 or 513 before the close.
//
// # What sipgo still decides
//
// Some behaviour is left to sipgo because working around it would cost more than it gives. A
// request without a Via branch (RFC 2543) or whose every Via fails to parse gets sipgo's own
// stateless 400 with no reason naming the fault: no transaction can be built, and a made-up
// branch could merge two requests into one transaction (simpled gives a branch without the
// magic cookie an internal one instead, see sipx.RawVia). sipgo keys a server transaction by
// the CSeq method, not the request line's (RFC 3261 §17.2.3 matches on the request's method),
// so a request whose CSeq names another method can join a live transaction with the same branch
// and sent-by and be swallowed as its retransmission (RFC 4475 mismatch01). sipgo prints From
// and To in responses from its parse (only Via is copied byte for byte), and a response it
// cannot parse on a stream closes the connection.
package sipgox
