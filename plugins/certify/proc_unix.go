//go:build unix

package certify

import (
	"errors"
	"syscall"
)

// alive reports whether a process pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// groupAlive reports whether any process of process group pgid exists.
func groupAlive(pgid int) bool {
	if pgid <= 0 {
		return false
	}
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// sigkill sends SIGKILL to process pid.
func sigkill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
