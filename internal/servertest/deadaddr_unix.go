//go:build unix

package servertest

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// DeadAddr returns a 127.0.0.1 address where nothing listens, for the
// duration of the test: its port is bound by a socket that never listens,
// so a connection to it is refused and no other process can take the port
// meanwhile (as one could a port merely closed).
func DeadAddr(t testing.TB) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("dead address: socket: %v", err)
	}
	unix.CloseOnExec(fd) // not atomic (SOCK_CLOEXEC is not everywhere), which is enough in a test
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("dead address: bind: %v", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatalf("dead address: getsockname: %v", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
}
