//go:build linux

package host

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// snapshotBinary copies the binary src into a sealed memory file while
// writing its bytes to h, and returns that file (src is closed). The seals
// forbid every later write, so executing it runs exactly the bytes that
// were hashed, whatever happens to the file at its path afterwards:
// replaced by a rename, or rewritten in place (as by cp). It costs a copy
// of the binary in memory for as long as the plugin runs. src is closed
// on error too. Where memory
// files are not available (a kernel without memfd_create, a sandbox that
// forbids it) it hashes src itself and returns it, still open: executing
// that descriptor defeats a replacement by rename, not a rewrite in place.
func snapshotBinary(src *os.File, h io.Writer) (*os.File, error) {
	const flags = unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate("flaredb-plugin", flags|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		// Kernels before 6.3 know no MFD_EXEC; their memory files are
		// executable anyway.
		fd, err = unix.MemfdCreate("flaredb-plugin", flags)
	}
	if err != nil {
		if _, err := io.Copy(h, src); err != nil {
			src.Close()
			return nil, err
		}
		return src, nil
	}
	mem := os.NewFile(uintptr(fd), "memfd:flaredb-plugin")
	_, err = io.Copy(io.MultiWriter(h, mem), src)
	src.Close()
	if err != nil {
		mem.Close()
		return nil, err
	}
	if err := sealAgainstWrites(mem.Fd()); err != nil {
		mem.Close()
		return nil, fmt.Errorf("seal the copy of the binary: %w", err)
	}
	return mem, nil
}

// addSeals adds seals to the memory file fd; a variable for the tests.
var addSeals = func(fd uintptr, seals int) error {
	_, err := unix.FcntlInt(fd, unix.F_ADD_SEALS, seals)
	return err
}

// sealAgainstWrites seals the memory file fd against every change. The
// kernel refuses F_SEAL_WRITE with EBUSY while any page of the file has
// an extra reference, which a page just written can keep for a while (it
// may wait in another CPU's page batch): the file has no mapping, so
// F_SEAL_FUTURE_WRITE, which refuses every later write and writable
// mapping without that check (Linux 5.1 and later), protects it as well
// and is added instead.
func sealAgainstWrites(fd uintptr) error {
	const rest = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW
	err := addSeals(fd, rest|unix.F_SEAL_WRITE)
	if !errors.Is(err, unix.EBUSY) {
		return err
	}
	if err2 := addSeals(fd, rest|unix.F_SEAL_FUTURE_WRITE); err2 != nil {
		return fmt.Errorf("%w (and F_SEAL_FUTURE_WRITE: %w)", err, err2)
	}
	return nil
}

// execPath returns the path to execute the plugin binary by. When the
// binary was verified against its checksum, bin holds the bytes that were
// hashed (see snapshotBinary), open: executing /proc/self/fd/N runs exactly
// those (the kernel resolves the path in the child, where the descriptor is
// still open, before it closes descriptors on exec). Without /proc, without
// a checksum, or for a script (its interpreter reopens the file by the path
// it is given, after the descriptor was closed on exec), it is path.
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
