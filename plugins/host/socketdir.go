package host

import (
	"io/fs"
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
// to take the lock removes it, with care, because a lock file's content
// can lie: a copy of a live data directory (cp -a) carries the live host's
// record without its lock. So the directory is removed only if it is in
// this host's SocketDir, the recorded pid is not a running process, the
// directory belongs to this user, and it holds only go-plugin's sockets;
// each socket and then the directory are removed one by one (never a
// recursive removal). This needs Unix; elsewhere nothing is removed.

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
	if dir == "" || !filepath.IsAbs(dir) || !socketDirName.MatchString(filepath.Base(dir)) ||
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
	switch {
	case prev.pid <= 0 || prev.pid == os.Getpid():
		leave("no pid, or this process's own, is recorded with it")
		return
	case processAlive(prev.pid):
		leave("the recorded pid is a running process (is this data directory a copy of a live one?)")
		return
	case !fi.IsDir():
		leave("not a directory")
		return
	case !ownedByUs(fi):
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
