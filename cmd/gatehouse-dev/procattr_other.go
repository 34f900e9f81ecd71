//go:build !linux

package main

import "syscall"

// childProcAttr puts a service in its own process group (no parent-death
// signal outside Linux: a killed gatehouse-dev leaves its services).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
