//go:build !linux

package servertest

import "os/exec"

// setParentDeath does nothing where the kernel offers no parent-death signal.
func setParentDeath(*exec.Cmd) {}
