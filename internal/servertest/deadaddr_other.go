//go:build !unix

package servertest

import (
	"net"
	"testing"
)

// DeadAddr returns a 127.0.0.1 address where nothing listens: a port
// bound and closed again (another process could take it meanwhile).
func DeadAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("dead address: %v", err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}
