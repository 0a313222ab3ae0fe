//go:build unix

package host

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr puts the plugin in a process group of its own (so that
// killGroup reaches everything it started) and, where the system has it,
// asks the kernel to kill it if the host dies (setDeathSignal).
func setProcAttr(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setDeathSignal(cmd.SysProcAttr)
}

// killGroup sends SIGKILL to the process group whose leader is pid. A group
// that no longer exists is not an error.
func killGroup(pid int) error {
	if pid <= 0 {
		return nil
	}
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// killRemains kills what is left of the group of pid, a leader just
// reaped: processes it started and left in its group.
func killRemains(pid int) { _ = killGroup(pid) }

// processAlive reports whether pid is a running process (or one this
// process may not signal, which is running too).
func processAlive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// ownedByUs reports whether fi belongs to this process's user.
func ownedByUs(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}

// socketCleanup: stale socket directories are removed (see socketdir.go).
const socketCleanup = true
