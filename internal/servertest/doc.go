// Package servertest is the test harness of simpled's integration tests: it starts a whole
// server on loopback port 0 (embedded store, or a throw-away Redis through base/redistest),
// speaks SIP to it at the wire level (raw UDP and TCP sockets with send/expect, templates for
// REGISTER, MESSAGE, INVITE, PUBLISH and SUBSCRIBE, digest answers), reads the admin API, loads
// the client traces captured from real phones (testdata/fixtures at the repository root), and
// launches the real clients the interop tests drive: baresip, linphonec and sipp, one launcher
// each.
//
// It lives in internal/ because it imports internal/server. A stage's integration tests import
// it from an external test package (package proxy_test in proxy/): Go allows the cycle
// proxy_test → servertest → server → proxy, since proxy_test is not proxy. Tests inside
// package server itself cannot import it; they are written as package server_test.
//
// Everything listens on 127.0.0.1 and sends to 127.0.0.1 only. Child processes are bounded in
// time by their own flags and a context, and are killed by their PID in t.Cleanup. A missing
// client binary skips the test with a reason, unless SIMPLED_REQUIRE_TOOLS=1 (CI), which turns
// the skip into a failure.
//
// Main is the TestMain of every package with integration tests: it shortens sipgo's timers
// and checks that the tests left no goroutine running.
package servertest
