// Command load is a SIP load generator for bench/load.sh (DRIVER=go, the default of make
// bench): the sipp scenarios of bench/sipp, driven from Go with many UDP sockets and batched
// system calls, so that the generator is not what limits the measured rate.
//
// Usage:
//
//	go run ./bench/load -target 127.0.0.1:5060 -domain example.test -scenario register \
//	    -rate 20000 -duration 10s [-sockets 4] [-local 127.0.0.1:15061] [-users 20000]
//	go run ./bench/load -responder 127.0.0.1:5060 [-responder-auth] [-responder-for 10m]
//
// Scenarios (one call each; the same as bench/sipp/*.xml and the top of bench/load.sh):
//
//	register       REGISTER -> 200 (users u000001.. of -users, Contact at the sending socket)
//	register_auth  REGISTER -> 401 -> REGISTER with an MD5 digest (qop=auth, password
//	               pw000001 for u000001, as bench/sipp/gen-users.sh writes) -> 200
//	message        MESSAGE from sender to c00001.. via the server -> 200; first the -callees
//	               are registered with a Contact at the generator's callee sockets, which
//	               answer every request 200
//	publish        PUBLISH (PIDF) -> 200 + SIP-ETag; PUBLISH with SIP-If-Match -> 200;
//	               PUBLISH Expires: 0 -> 200
//	subscribe      SUBSCRIBE -> 200, NOTIFY (active) <- 200, un-SUBSCRIBE -> 200, NOTIFY
//	               (terminated) <- 200; first each of the -presentities is published once
//
// Calls are started open loop: call i at i / rate seconds, whether or not earlier calls were
// answered; the calls are spread over -sockets sockets, each driven by one goroutine that
// reads with recvmmsg and writes with sendmmsg (golang.org/x/net/ipv4 ReadBatch/WriteBatch).
// Each socket cycles through its own share of the user pool, so an AOR is always sent from
// the same address. Every request is a non-INVITE client transaction of RFC 3261 §17.1.2:
// resent after T1 (500 ms), then doubling up to T2 (4 s), and failed when Timer F (32 s)
// runs out; a provisional answer does not slow the resending down. A call fails on a timeout,
// on an unexpected answer (a final status other than 2xx, or 401/407 for register_auth's
// first REGISTER; a 200 without SIP-ETag for publish; a first NOTIFY that is not active for
// subscribe) or when it is still open -drain after the last call started.
//
// The run is bounded: at most -calls calls (rate × duration unless set, at most 20 million),
// started within -duration, and the run ends -drain (Timer F + 8 s) after the last start.
// Memory is one small record per call plus the bytes of each open transaction.
//
// The last line on stdout is machine-readable (bench/load.sh reads it):
//
//	LOAD-SUMMARY scenario=register rate=20000 calls=200000 created=200000 ok=200000 failed=0
//	  timeouts=0 unexpected=0 unfinished=0 retrans=0 strays=0 elapsed_s=10.001 achieved=19998
//	  lag_max_ms=1.2 p50_ms=0.120 p90_ms=0.250 p99_ms=0.900 p999_ms=2.100 max_ms=5.000
//	  tx_p50_ms=0.120 tx_p99_ms=0.900 cpu_s=3.1 cpu_pct=31.0 sockets=4 send_errors=0
//	  read_errors=0 [setup=register_callees setup_ok=1000 setup_calls=1000] codes=-
//
// created, ok and failed count calls (failed = timeouts + unexpected + unfinished); retrans
// counts retransmitted requests; strays counts answers that matched no open transaction (a
// retransmitted 200, say); elapsed_s runs from the first start to the last call's end and
// achieved = ok / elapsed_s; lag_max_ms is how late the generator started a call at worst
// (a large value means the generator, not the server, was the limit); p50..max are the
// latencies of whole calls (first request sent to last answer or NOTIFY received), tx_ those
// of single transactions (request to final answer), from a histogram with 3 % buckets;
// cpu_s is the generator's own user + system CPU during the load (getrusage), cpu_pct that
// over elapsed_s in % of one core; codes lists the unexpected statuses (0: a NOTIFY that
// was not active). The setup's counts are apart.
//
// -responder ADDR runs a stateless responder instead, to measure the generator alone: it
// answers every request 200 with a To tag (none for ACK), a PUBLISH with a SIP-ETag, a
// SUBSCRIBE with Contact and Expires, followed by a NOTIFY to its sender (Subscription-State
// active, or terminated when the SUBSCRIBE had Expires: 0), sent once and never resent;
// with -responder-auth a REGISTER without Authorization gets a 401 with an MD5 qop=auth
// challenge and one with it a 200 (the digest is not checked). Against the responder the
// message scenario measures the caller's side only (the responder answers the MESSAGE
// itself). It listens on -responder-sockets sockets sharing ADDR (SO_REUSEPORT) and stops
// after -responder-for or on SIGINT/SIGTERM.
package main
