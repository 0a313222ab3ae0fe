//go:build linux

package host

import (
	"fmt"
	"os"
)

// execPath returns the path to execute the plugin binary by. When the
// binary was verified against its checksum, bin is the file that was
// hashed, still open: executing /proc/self/fd/N runs exactly those bytes,
// even if the file at path was replaced since (the kernel resolves the
// path in the child, where the descriptor is still open, before it closes
// descriptors on exec). Without /proc, without a checksum, or for a script
// (its interpreter reopens the file by the path it is given, after the
// descriptor was closed on exec), it is path.
func execPath(path string, bin *os.File) string {
	if bin == nil {
		return path
	}
	magic := make([]byte, 4)
	if _, err := bin.ReadAt(magic, 0); err != nil || string(magic) != "\x7fELF" {
		return path
	}
	p := fmt.Sprintf("/proc/self/fd/%d", bin.Fd())
	if _, err := os.Stat(p); err != nil {
		return path
	}
	return p
}
