package servertest

import (
	"os/exec"
	"syscall"
)

// setParentDeath makes the kernel kill a client if the test binary dies without running its
// cleanups (go test -timeout panics and exits), so no client outlives its test.
func setParentDeath(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
