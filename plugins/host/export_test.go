package host

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"strings"
)

// SetTestHookVerified sets a function that runs after a binary passed its
// checksum and before it is started (nil: none).
func SetTestHookVerified(f func(path string)) { testHookVerified = f }

// RunToExit starts path with args as the host starts a plugin, reads the
// first line it writes to standard output, and waits until it has exited
// and been reaped. It returns the process's id and that line.
func RunToExit(path string, args ...string) (pid int, line string, err error) {
	r := newProcRunner(path, nil, args, slog.New(slog.DiscardHandler))
	r.prepare(os.Environ())
	if err := r.Start(context.Background()); err != nil {
		return 0, "", err
	}
	defer r.closePipes()
	line, err = bufio.NewReader(r.Stdout()).ReadString('\n')
	if werr := r.Wait(context.Background()); err == nil {
		err = werr
	}
	return r.PID(), strings.TrimSpace(line), err
}
