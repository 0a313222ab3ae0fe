//go:build unix

package badgerengine

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// withDirLock runs f while holding the lock Badger takes on an open
// database's directory (an exclusive flock on the directory itself), so
// that f never touches the files of a Badger instance that has dir open,
// in this process or another. It fails, as badger.Open would, when the lock
// is held; the lock is released before it returns, and badger.Open takes it
// again.
func withDirLock(dir string, f func() error) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close() // releases the lock
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("cannot acquire directory lock on %q: another process (or this one) is using this Badger database: %w", dir, err)
	}
	return f()
}
