//go:build !linux

package main

import "syscall"

// childAttr leaves children as they are: the tool reads /proc and targets Linux; elsewhere it
// still builds, and its children get the terminal's signals along with it.
func childAttr() *syscall.SysProcAttr { return nil }
