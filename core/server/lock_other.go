//go:build !unix

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// dirLock is DATA_DIR/LOCK, created exclusively and held for the server's
// lifetime, so that two servers never open one data directory. Without
// flock the file's existence is the lock: a server that crashed leaves it
// behind, and it must be removed by hand once no server runs there.
type dirLock struct {
	f *os.File
}

func lockDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("data directory %s is in use by another FlareDB server (%s exists): stop it or choose another data_dir; if no server runs there, remove the file", dir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot create lock file in data directory %s: %w", dir, err)
	}
	fmt.Fprintln(f, os.Getpid())
	return &dirLock{f: f}, nil
}

func (l *dirLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	if rerr := os.Remove(l.f.Name()); rerr != nil && err == nil {
		err = rerr
	}
	l.f = nil
	if err != nil {
		return fmt.Errorf("release data directory lock: %w", err)
	}
	return nil
}
