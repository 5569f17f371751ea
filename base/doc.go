// Package base is a folder, not an API: it holds the foundation every stage of simpled stands
// on, and nothing that decides how a request is answered.
//
//   - sipx: per-request state, header helpers, the one error→status table, the trust seals;
//   - sipgox: what the sipgo stack lacks or gets wrong (server-transaction context, the
//     retransmission cache, client transactions, the stray-response router, timer settings);
//   - transport: listeners, the UDP guard, STUN, stream framing, flow tokens, liveness;
//   - logging, gopool: log keys and loggers, reused goroutines;
//   - redistest: a throw-away redis-server for tests.
//
// The rule that makes it a floor of its own: a package under base imports no stage (auth,
// registrar, proxy, presence, delivery, offline, dns) and nothing under internal/ (the wiring).
// The stages import base; internal/ imports both. docs/architecture.md draws the floors.
package base
