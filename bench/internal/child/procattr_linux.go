package child

import "syscall"

// procAttr puts a child in its own process group, so a Ctrl-C at the terminal reaches the
// tool only (it then stops its children in order, by PID), and has the kernel
// send it SIGTERM should the tool die without doing so.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
