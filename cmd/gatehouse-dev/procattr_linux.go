package main

import "syscall"

// childProcAttr puts a service in its own process group and has the
// kernel send it SIGTERM when gatehouse-dev dies, however it dies.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
