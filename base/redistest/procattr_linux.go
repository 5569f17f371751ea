package redistest

import (
	"os/exec"
	"syscall"
)

// setParentDeath makes the kernel kill redis-server if the test binary dies without running
// its cleanups (a test timeout panics and exits), so no server outlives its test.
func setParentDeath(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
