package transport

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// SetSocketBuffers asks for size-byte receive and send buffers on a UDP socket. As root it
// uses SO_RCVBUFFORCE/SO_SNDBUFFORCE, which pass net.core.rmem_max; otherwise the kernel caps
// the request at that limit (the error then says so; the socket still works).
func SetSocketBuffers(pc net.PacketConn, size int) error {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return errors.New("transport: socket buffers: not a syscall.Conn")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("transport: socket buffers: %w", err)
	}
	var serr error
	cerr := raw.Control(func(fd uintptr) {
		serr = setBuffers(int(fd), size)
	})
	if cerr != nil {
		return fmt.Errorf("transport: socket buffers: %w", cerr)
	}
	return serr
}
