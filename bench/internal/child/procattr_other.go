//go:build !linux

package child

import "syscall"

// procAttr leaves children as they are: the tool reads /proc and targets Linux; elsewhere it
// still builds, and its children get the terminal's signals along with it.
func procAttr() *syscall.SysProcAttr { return nil }
