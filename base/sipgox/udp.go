package sipgox

import (
	"net"
	"runtime"

	"github.com/emiago/sipgo"
)

// ServeUDP serves SIP over the UDP socket conn with srv until conn is closed, returning the
// first error of its read loops.
//
// sipgo parses each datagram in its read loop before handing it to a goroutine
// (TransportUDP.readListenerConnection), so one loop caps a UDP listener at one core: ServeUDP
// runs one loop per core (at least two) on the same socket. Non-INVITE requests leave the
// loop before sipgo parses them, through the guard's Take (UDPTransactions). Batched reads
// (recvmmsg) were measured in place of this loop and saved nothing (BENCHMARKS.md).
func ServeUDP(srv *sipgo.Server, conn net.PacketConn) error {
	readers := max(2, runtime.GOMAXPROCS(0))
	errs := make(chan error, readers)
	for range readers {
		go func() { errs <- srv.ServeUDP(conn) }()
	}
	var first error
	for range readers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
