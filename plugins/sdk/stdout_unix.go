//go:build unix

package sdk

import (
	"os"

	"golang.org/x/sys/unix"
)

// guardStdout points file descriptor 1 at standard error, for the whole
// process (Go code, C code and child processes alike), and returns a
// private duplicate of the original standard output, on which go-plugin
// writes its handshake line.
func guardStdout() (*os.File, error) {
	fd, err := unix.Dup(1)
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	if err := unix.Dup2(2, 1); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/stdout (handshake)"), nil
}
