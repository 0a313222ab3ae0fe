//go:build unix

package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/flaredb/flaredb/core/kvengine"
)

// LockFileName is the lock file the host keeps in a plugin's data
// directory while it runs a plugin there.
const LockFileName = kvengine.PluginLockFileName

// lockDataDir creates dir if needed and takes an exclusive, non-blocking
// flock on its lock file (Launch records the holder in it). The lock is
// released when the returned file is closed, or when the host process
// dies. The file is opened close-on-exec, so the plugin does not inherit
// it.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("host: create data directory: %w", err)
	}
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("host: open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, _ := lockHolder(b); pid > 0 {
				holder = fmt.Sprintf(" (held by process %d)", pid)
			}
		}
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by another FlareDB plugin host%s: "+
				"two plugin processes must never share a data directory", ErrDataDirLocked, dir, holder)
		}
		return nil, fmt.Errorf("host: lock %s: %w", path, err)
	}
	return f, nil
}

// unlockDataDir releases a lock taken by lockDataDir. The file stays: the
// flock, not the file, is the lock.
func unlockDataDir(f *os.File) error { return f.Close() }
