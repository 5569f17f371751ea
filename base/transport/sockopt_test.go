package transport

import (
	"net"
	"syscall"
	"testing"
)

func TestSetSocketBuffers(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	before := rcvbuf(t, pc)
	if err := SetSocketBuffers(pc, 4<<20); err != nil {
		t.Fatal(err)
	}
	if after := rcvbuf(t, pc); after <= before {
		t.Errorf("receive buffer %d → %d, want it larger", before, after)
	}
}

func rcvbuf(t *testing.T, pc net.PacketConn) int {
	t.Helper()
	raw, err := pc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	_ = raw.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}
