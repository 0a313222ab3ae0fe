//go:build !unix

package host

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/flaredb/flaredb/core/kvengine"
)

// LockFileName is the lock file the host keeps in a plugin's data
// directory while it runs a plugin there.
const LockFileName = kvengine.PluginLockFileName

// lockDataDir creates dir and its lock file exclusively; without flock a
// lock file left by a host that crashed must be removed by hand.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("host: create data directory: %w", err)
	}
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDataDirLocked, path, err)
	}
	return f, nil
}

// unlockDataDir releases a lock taken by lockDataDir: it closes and
// removes the lock file, whose existence is the lock here.
func unlockDataDir(f *os.File) error {
	err := f.Close()
	if rerr := os.Remove(f.Name()); rerr != nil && err == nil {
		err = rerr
	}
	return err
}
