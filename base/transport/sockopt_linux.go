package transport

import (
	"fmt"
	"syscall"
)

func setBuffers(fd, size int) error {
	if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size) != nil {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, size); err != nil {
			return fmt.Errorf("transport: SO_RCVBUF: %w", err)
		}
	}
	if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, size) != nil {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, size); err != nil {
			return fmt.Errorf("transport: SO_SNDBUF: %w", err)
		}
	}
	return nil
}
