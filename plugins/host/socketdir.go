package host

import (
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// go-plugin makes a socket directory in Config.SocketDir for each launch,
// and removes it when the plugin stops. The host records the current one
// in the data directory's lock file, under its pid:
//
//	12345
//	/tmp/plugin-dir123456789
//
// A host killed without Close leaves the directory behind; the next host
// to take the lock, who knows the previous holder is gone, removes it.

var (
	socketDirName  = regexp.MustCompile(`^plugin-dir[0-9]+$`)
	socketFileName = regexp.MustCompile(`^plugin[0-9]+$`)
)

// lockHolder returns the pid and socket directory recorded in a lock file's
// content; zero values for what is not there.
func lockHolder(b []byte) (pid int, socketDir string) {
	lines := strings.Split(string(b), "\n")
	pid, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
	if len(lines) > 1 {
		socketDir = strings.TrimSpace(lines[1])
	}
	return pid, socketDir
}

// recordLock replaces the lock file's content with this process's pid and
// socketDir, and returns the socket directory recorded before ("" if
// none). The caller holds the lock.
func recordLock(f *os.File, socketDir string) (previous string, err error) {
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if n := fi.Size(); n > 0 && n < 64<<10 {
		b := make([]byte, n)
		if _, err := f.ReadAt(b, 0); err == nil {
			_, previous = lockHolder(b)
		}
	}
	if err := f.Truncate(0); err != nil {
		return previous, err
	}
	_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"+socketDir+"\n"), 0)
	return previous, err
}

// removeStaleSocketDir removes dir, a socket directory recorded by a host
// that held the lock before and is gone, if it is one: a directory (not a
// link) named as go-plugin names them, holding nothing but its sockets.
// Anything else is left, with a warning.
func removeStaleSocketDir(dir string, log *slog.Logger) {
	if dir == "" || !filepath.IsAbs(dir) || !socketDirName.MatchString(filepath.Base(dir)) {
		return
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return // removed already
	}
	entries, err := os.ReadDir(dir)
	if !fi.IsDir() || err != nil {
		log.Warn("the previous plugin host's socket directory is not a readable directory; leaving it", "path", dir, "err", err)
		return
	}
	for _, e := range entries {
		if !socketFileName.MatchString(e.Name()) {
			log.Warn("the previous plugin host's socket directory holds a file the host did not make; leaving it", "path", dir, "file", e.Name())
			return
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		log.Warn("cannot remove the previous plugin host's socket directory", "path", dir, "err", err)
		return
	}
	log.Info("removed the socket directory of a plugin host that did not stop cleanly", "path", dir)
}
