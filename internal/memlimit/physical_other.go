//go:build !linux

package memlimit

// physicalMemory is unknown off Linux: no default limit is set there.
func physicalMemory() int64 { return 0 }
