//go:build !unix

package host

import (
	"os"
	"os/exec"
)

// setProcAttr does nothing on systems without process groups.
func setProcAttr(*exec.Cmd) {}

// killGroup kills the process pid alone on systems without process groups.
func killGroup(pid int) error {
	if pid <= 0 {
		return nil
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil
	}
	_ = p.Kill()
	return nil
}

// killRemains does nothing without process groups: nothing outlives the
// reaped process in a group of its own.
func killRemains(int) {}

// processAlive cannot tell here, so it says pid may be running.
func processAlive(int) bool { return true }

// ownedByUs cannot tell here, so it says no.
func ownedByUs(os.FileInfo) bool { return false }

// socketCleanup: stale socket directories are left here (see socketdir.go).
const socketCleanup = false
