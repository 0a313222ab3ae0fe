package host

import (
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// go-plugin makes a socket directory in Config.SocketDir for each launch,
// and removes it when the plugin stops. The host records the current one
// in the data directory's lock file, under its pid:
//
//	12345
//	/tmp/plugin-dir123456789
//
// A host killed without Close leaves the directory behind; the next host
// to take the lock removes it, with care, because a lock file's content
// can lie: a copy of a live data directory (cp -a) carries the live host's
// record without its lock, and a pid can be reused (a server that is PID 1
// in a container has the same pid after every restart). So whether the
// recorded host is gone is judged by its sockets: the directory is removed
// only if nothing listens on any of them (each connect is refused), or, if
// it holds none, the recorded pid is not a running process. It must also
// be in this host's SocketDir, belong to this user and hold only
// go-plugin's sockets; each socket and then the directory are removed one
// by one (never a recursive removal). This needs Unix; elsewhere nothing
// is removed.

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

// lockRecord is what a lock file says about the host that held it.
type lockRecord struct {
	pid       int
	socketDir string
}

// recordLock replaces the lock file's content with this process's pid and
// socketDir, and returns what was recorded before (zero if nothing could
// be read). The caller holds the lock. An error leaves the previous
// record's value valid.
func recordLock(f *os.File, socketDir string) (previous lockRecord, err error) {
	fi, err := f.Stat()
	if err != nil {
		return previous, err
	}
	if n := fi.Size(); n > 0 && n < 64<<10 {
		b := make([]byte, n)
		if _, err := f.ReadAt(b, 0); err == nil {
			previous.pid, previous.socketDir = lockHolder(b)
		}
	}
	if err := f.Truncate(0); err != nil {
		return previous, err
	}
	_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"+socketDir+"\n"), 0)
	return previous, err
}

// removeStaleSocketDir removes the socket directory in prev, recorded by
// the host that held the lock before, if it is certainly that host's and
// that host is gone (see the comment at the top of this file). What is not
// removed is left with a warning, or silently when it is not a socket
// directory of this host's at all.
func removeStaleSocketDir(prev lockRecord, socketDir string, log *slog.Logger) {
	dir := prev.socketDir
	if !socketCleanup || dir == "" || !filepath.IsAbs(dir) || !socketDirName.MatchString(filepath.Base(dir)) ||
		filepath.Clean(filepath.Dir(dir)) != filepath.Clean(socketDir) {
		return
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return // removed already
	}
	leave := func(why string, args ...any) {
		log.Warn("leaving the socket directory recorded by the data directory's previous plugin host: "+why,
			append([]any{"path", dir, "recorded_pid", prev.pid}, args...)...)
	}
	if !fi.IsDir() {
		leave("not a directory")
		return
	}
	if !ownedByUs(fi) {
		leave("it belongs to another user")
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		leave("cannot read it", "err", err)
		return
	}
	for _, e := range entries {
		if !socketFileName.MatchString(e.Name()) || e.Type() != fs.ModeSocket {
			leave("it holds something other than a plugin socket", "file", e.Name())
			return
		}
	}
	for _, e := range entries {
		if !refused(filepath.Join(dir, e.Name())) {
			leave("a plugin may be listening on its socket (is this data directory a copy of a live one?)", "socket", e.Name())
			return
		}
	}
	if len(entries) == 0 && (prev.pid <= 0 || prev.pid == os.Getpid() || processAlive(prev.pid)) {
		leave("it holds no socket, and the recorded pid is not that of a process known to be gone")
		return
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			leave("cannot remove a socket in it", "err", err)
			return
		}
	}
	if err := os.Remove(dir); err != nil {
		leave("cannot remove it", "err", err)
		return
	}
	log.Info("removed the socket directory of a plugin host that did not stop cleanly", "path", dir, "recorded_pid", prev.pid)
}

// refused reports whether connecting to the Unix socket at path is refused:
// nothing listens there. Any other outcome (a connection, a timeout, no
// permission) means a live plugin may own it.
func refused(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
