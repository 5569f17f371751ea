package main

import "syscall"

// childAttr puts a child in its own process group, so a Ctrl-C at the terminal reaches the
// tool only (it then stops simpled and redis-server in order, by PID), and has the kernel
// send it SIGTERM should the tool die without doing so.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
