// Package memlimit picks simpled's default soft memory limit (the Go runtime's GOMEMLIMIT)
// from the machine: the memory limit of the process's cgroup (v2 memory.max, v1
// memory.limit_in_bytes) when one is set, else the physical memory.
//
// The limit is soft: it makes the collector work harder as the heap nears it instead of
// letting the process grow into the cgroup's OOM killer or the machine's swap. It does not
// make the heap smaller while memory is plentiful; GOGC (100, Go's default) sets that.
package memlimit

import (
	"bufio"
	"bytes"
	"os"
	"path"
	"strconv"
	"strings"
)

// Fractions of the memory found that the limit is set to. Under a cgroup limit the process
// is killed at the limit, and what the Go runtime does not count (thread stacks outside the
// heap, the page cache and socket buffers the kernel charges to the cgroup) still needs room:
// 90 %. Without one the machine is shared (Redis often runs beside simpled): half.
const (
	CgroupPercent   = 90
	PhysicalPercent = 50
)

// Source says where a limit came from.
type Source string

const (
	FromEnv      Source = "GOMEMLIMIT" // the environment set it; the runtime already applied it
	FromCgroup   Source = "cgroup"     // CgroupPercent of the cgroup's memory limit
	FromPhysical Source = "physical"   // PhysicalPercent of the physical memory
	Unknown      Source = "none"       // nothing found: no limit
)

// Choose is the default limit in bytes, from what was found: envSet when GOMEMLIMIT is in the
// environment (it wins: 0 is returned, the runtime has applied it), cgroup the cgroup's memory
// limit (0: none), physical the machine's memory (0: unknown). 0 means: set no limit.
func Choose(envSet bool, cgroup, physical int64) (int64, Source) {
	switch {
	case envSet:
		return 0, FromEnv
	case cgroup > 0 && (physical <= 0 || cgroup < physical):
		return percent(cgroup, CgroupPercent), FromCgroup
	case physical > 0:
		return percent(physical, PhysicalPercent), FromPhysical
	}
	return 0, Unknown
}

// percent is p % of n, without overflow for any n.
func percent(n, p int64) int64 { return n/100*p + n%100*p/100 }

// noLimitV1 is the smallest value cgroup v1 reports for "no limit": it reports the largest
// page-aligned int64 (9223372036854771712), kernels differ in the alignment.
const noLimitV1 = 1 << 62

// parseLimit reads a cgroup memory limit file's content: a number of bytes, or "max" (v2)
// or a value of 2^62 or more (v1) for none (0).
func parseLimit(b []byte) int64 {
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= noLimitV1 {
		return 0
	}
	return n
}

// CgroupLimit is the memory limit of the cgroup the process is in, the lowest one on its
// path up to the hierarchy's root, read under root (normally /sys/fs/cgroup) as
// /proc/self/cgroup (its content in selfCgroup) names it; 0 when none is set or nothing could
// be read. Both hierarchies are tried: v2 (the "0::" line, memory.max) and v1 (the line of
// the memory controller, memory/.../memory.limit_in_bytes).
func CgroupLimit(root string, selfCgroup []byte) int64 {
	var best int64
	sc := bufio.NewScanner(bytes.NewReader(selfCgroup))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir, file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			dir, file = root, "memory.max"
		case hasController(parts[1], "memory"):
			dir, file = path.Join(root, "memory"), "memory.limit_in_bytes"
		default:
			continue
		}
		if n := lowestOnPath(dir, parts[2], file); n > 0 && (best == 0 || n < best) {
			best = n
		}
	}
	return best
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// lowestOnPath is the lowest limit in file of the cgroup p (a path under mount) and its
// ancestors, up to mount itself. In a container the path /proc/self/cgroup names may not exist
// under its mount (a cgroup namespace shows "/"; a private mount shows the cgroup as its root):
// the files that do not exist are skipped.
func lowestOnPath(mount, p, file string) int64 {
	var best int64
	p = path.Clean("/" + p)
	for {
		if b, err := os.ReadFile(path.Join(mount, p, file)); err == nil {
			if n := parseLimit(b); n > 0 && (best == 0 || n < best) {
				best = n
			}
		}
		if p == "/" {
			return best
		}
		p = path.Dir(p)
	}
}

// Detect is what the limit is chosen from on this machine: the cgroup's limit and the
// physical memory (0 when unknown).
func Detect() (cgroup, physical int64) {
	if self, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		cgroup = CgroupLimit("/sys/fs/cgroup", self)
	}
	return cgroup, physicalMemory()
}
