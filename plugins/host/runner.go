package host

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-plugin/runner"
)

// headBytes is how much of the plugin's standard output is kept to explain
// a failed handshake.
const headBytes = 4096

// handshakeLineMax bounds the first line of the plugin's standard output
// passed to go-plugin as its handshake (one is a few hundred bytes, a
// kilobyte or two with its certificate).
const handshakeLineMax = 16 << 10

// procRunner is the go-plugin runner.Runner for one launch of a plugin
// process. The host provides its own (through ClientConfig.RunnerFunc)
// rather than go-plugin's default, to:
//
//   - start the plugin in a process group of its own and kill the whole
//     group (so nothing the plugin started survives it);
//   - read the plugin's standard error itself, robustly, into slog (and keep
//     its last lines for startup errors), instead of go-plugin's parser;
//   - pass go-plugin only the first line of the plugin's standard output
//     (the handshake), keeping its first bytes to tell a garbage handshake
//     or a protocol mismatch apart, and log the rest itself: go-plugin's
//     reader stops at a line over 64 KiB, after which a plugin that writes
//     to file descriptor 1 (one not built with the SDK, which points it at
//     standard error) would block once the pipe is full;
//   - learn that the process exited the moment it does (exited).
//
// Its methods are safe for concurrent use.
type procRunner struct {
	path string
	bin  *os.File // the verified binary, open (nil without a checksum); owned by the launch
	args []string
	log  *slog.Logger

	tail tail
	head headBuffer

	mu      sync.Mutex
	cmd     *exec.Cmd
	pid     int
	aborted bool           // Kill was called: refuse to start
	execErr error          // the error of starting the process itself, if it failed
	stdout  io.ReadCloser  // the handshake line, for go-plugin
	toGP    *io.PipeWriter // the other end of stdout
	pipes   []*os.File     // the host's read ends of stdout and stderr
	closed  sync.Once      // closes pipes

	reaped  bool           // the process has been reaped and its group killed
	exited  chan struct{}  // closed once the process has been reaped
	waitErr error          // set before exited is closed
	readers sync.WaitGroup // the readers of stdout and stderr
}

var _ runner.Runner = (*procRunner)(nil)

// newProcRunner returns a runner of the binary at path; bin, when not nil,
// is that binary open, as its checksum was verified (see execPath).
func newProcRunner(path string, bin *os.File, args []string, log *slog.Logger) *procRunner {
	return &procRunner{path: path, bin: bin, args: args, log: log, exited: make(chan struct{})}
}

// prepare builds the command with the given environment (the host's,
// go-plugin's handshake variables, the mTLS certificate, the socket
// directory and the host's own variables).
func (r *procRunner) prepare(env []string) {
	cmd := exec.Command(execPath(r.path, r.bin), r.args...)
	cmd.Args[0] = r.path // what the plugin sees as its name
	cmd.Env = env
	setProcAttr(cmd)
	r.mu.Lock()
	r.cmd = cmd
	r.mu.Unlock()
}

// Start implements runner.Runner: it starts the process with pipes of its
// own for standard output and error, and starts reading its standard error
// and waiting for it to exit.
func (r *procRunner) Start(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.aborted {
		return errors.New("host: plugin launch aborted")
	}
	if r.cmd == nil {
		return errors.New("host: plugin command not prepared")
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		_ = outR.Close()
		_ = outW.Close()
		return err
	}
	r.cmd.Stdin = nil
	r.cmd.Stdout = outW
	r.cmd.Stderr = errW
	err = r.startLocked()
	_ = outW.Close()
	_ = errW.Close()
	if err != nil {
		_ = outR.Close()
		_ = errR.Close()
		// Name the binary, not the descriptor it was executed by.
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path != r.path {
			pe.Path = r.path
		}
		r.execErr = err
		return err
	}
	r.pid = r.cmd.Process.Pid
	r.pipes = []*os.File{outR, errR}
	pr, pw := io.Pipe()
	r.stdout, r.toGP = pr, pw
	log := r.log.With("pid", r.pid)
	r.readers.Add(2)
	go func() {
		defer r.readers.Done()
		defer errR.Close()
		forwardStderr(errR, log, &r.tail)
	}()
	go func() {
		defer r.readers.Done()
		defer outR.Close()
		splitStdout(outR, pw, &r.head, log)
	}()
	cmd := r.cmd
	pid := r.pid
	go func() {
		err := cmd.Wait()
		r.mu.Lock()
		// The leader is reaped: kill what is left of its group now, while
		// its number cannot have been given to another process yet, and
		// never signal the group again (see Kill).
		killRemains(pid)
		r.reaped = true
		r.waitErr = err
		r.mu.Unlock()
		close(r.exited)
	}()
	return nil
}

// startLocked starts the command from a goroutine locked to its OS thread,
// which stays locked until the process has exited. On Linux the plugin's
// parent-death signal fires when the *thread* that forked it exits, and
// the Go runtime may end a thread when a goroutine that locked it exits;
// holding the forking thread for the plugin's lifetime rules that out.
func (r *procRunner) startLocked() error {
	started := make(chan error, 1)
	cmd := r.cmd
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			<-r.exited
		}
	}()
	return <-started
}

// Wait implements runner.Runner: it waits until the process has exited.
func (r *procRunner) Wait(context.Context) error {
	r.mu.Lock()
	started := r.pid != 0
	r.mu.Unlock()
	if !started {
		return nil
	}
	<-r.exited
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waitErr
}

// Kill implements runner.Runner: it SIGKILLs the process group, and
// prevents a launch that has not started yet from starting. Once the
// leader has been reaped its group was killed already (as it was reaped),
// and Kill sends nothing: the group's number may since belong to another
// process's group.
func (r *procRunner) Kill(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.aborted = true
	if r.reaped {
		return nil
	}
	return killGroup(r.pid)
}

// signal sends sig to the process (not its group) unless it has been
// reaped: through os.Process, which never signals a reused process id.
func (r *procRunner) signal(sig os.Signal) error {
	r.mu.Lock()
	cmd := r.cmd
	started := r.pid != 0
	r.mu.Unlock()
	if !started || r.hasExited() {
		return os.ErrProcessDone
	}
	return cmd.Process.Signal(sig)
}

// Stdout implements runner.Runner: the first line of the process's
// standard output (see splitStdout), read by go-plugin for the handshake.
func (r *procRunner) Stdout() io.ReadCloser {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stdout == nil {
		return io.NopCloser(strings.NewReader(""))
	}
	return r.stdout
}

// Stderr implements runner.Runner. The host reads the plugin's standard
// error itself (see forwardStderr), so go-plugin gets an empty stream.
func (r *procRunner) Stderr() io.ReadCloser { return io.NopCloser(strings.NewReader("")) }

// Name implements runner.Runner.
func (r *procRunner) Name() string { return r.path }

// ID implements runner.Runner: the process id, or "" before Start.
func (r *procRunner) ID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pid == 0 {
		return ""
	}
	return strconv.Itoa(r.pid)
}

// PID returns the process id, or 0 before Start.
func (r *procRunner) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pid
}

// Diagnose implements runner.Runner.
func (r *procRunner) Diagnose(context.Context) string {
	if t := r.tail.String(); t != "" {
		return "plugin standard error:\n" + t
	}
	return ""
}

// PluginToHost implements runner.AddrTranslator: host and plugin share the
// file system and network.
func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

// HostToPlugin implements runner.AddrTranslator.
func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// startFailure returns the error of starting the process itself (exec), or
// nil if it started or was never tried.
func (r *procRunner) startFailure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.execErr
}

// closePipes closes the host's ends of the plugin's standard output and
// error, so that whatever reads them (go-plugin, the stderr forwarder)
// stops even while a process outside the plugin's group keeps their write
// ends open. Only for a process that has been killed.
func (r *procRunner) closePipes() {
	r.closed.Do(func() {
		r.mu.Lock()
		pipes, toGP := r.pipes, r.toGP
		r.mu.Unlock()
		for _, f := range pipes {
			_ = f.Close()
		}
		if toGP != nil {
			_ = toGP.Close() // unblocks a handshake line go-plugin never read
		}
	})
}

// hasExited reports whether the process has been reaped.
func (r *procRunner) hasExited() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// exitStatus describes how the process ended; "" if it has not.
func (r *procRunner) exitStatus() string {
	if !r.hasExited() {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waitErr == nil {
		return "exit status 0"
	}
	return r.waitErr.Error()
}

// exitedOK reports whether the process exited with status 0.
func (r *procRunner) exitedOK() bool {
	if !r.hasExited() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waitErr == nil
}

// waitStderr waits until the plugin's standard error and output have been
// read to the end (every process holding them has exited).
func (r *procRunner) waitStderr() { r.readers.Wait() }

// headBuffer keeps the first headBytes bytes read from a stream.
type headBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (h *headBuffer) add(p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := headBytes - len(h.buf); n > 0 {
		h.buf = append(h.buf, p[:min(n, len(p))]...)
	}
}

// firstLine returns the first line kept (without its newline), and whether
// there is anything at all.
func (h *headBuffer) firstLine() (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.buf) == 0 {
		return "", false
	}
	line, _, _ := bytes.Cut(h.buf, []byte("\n"))
	return strings.TrimRight(string(line), "\r"), true
}

// splitStdout reads the plugin's standard output r until its end (or until
// closePipes closes it): the first line, up to handshakeLineMax bytes, goes
// to w, for go-plugin, and w is closed after it (go-plugin needs nothing
// more); its first bytes are kept in head. Every later line is logged at
// info with stream=stdout: only a plugin not built with the SDK writes
// there after its handshake.
func splitStdout(r io.Reader, w *io.PipeWriter, head *headBuffer, log *slog.Logger) {
	br := bufio.NewReaderSize(r, maxLogLine)
	sent := 0
	for {
		chunk, err := br.ReadSlice('\n')
		head.add(chunk)
		if n := min(len(chunk), handshakeLineMax-sent); n > 0 {
			// An error means go-plugin will read no more (closePipes
			// closed w): the rest is logged all the same.
			_, _ = w.Write(chunk[:n])
			sent += n
		}
		if err == bufio.ErrBufferFull && sent < handshakeLineMax {
			continue
		}
		_ = w.Close()
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
		break
	}
	forwardLines(br, log, nil, "stdout")
}

// describeHandshake explains a first line of output that is not a valid
// handshake for this host, or returns nil if it is one. wantVersion is the
// protocol the host speaks.
func describeHandshake(path, line string, wantVersion int) error {
	parts := strings.Split(strings.TrimSpace(line), "|")
	if len(parts) < 4 || parts[0] != "1" {
		return fmt.Errorf("%w: %s printed %q on standard output instead of the go-plugin handshake "+
			"(a plugin must be built with FlareDB's plugin SDK, and must not write to standard output before serving)",
			ErrNotPlugin, path, clip(line, 200))
	}
	v, err := strconv.Atoi(parts[1])
	if err != nil {
		return fmt.Errorf("%w: %s names protocol version %q in its handshake", ErrNotPlugin, path, clip(parts[1], 40))
	}
	if v != wantVersion {
		return fmt.Errorf("%w: plugin %s speaks engine protocol %d, this host speaks %d: "+
			"rebuild the plugin with a FlareDB SDK of protocol %d", ErrProtocolMismatch, path, v, wantVersion, wantVersion)
	}
	if len(parts) >= 5 && parts[4] != "grpc" {
		return fmt.Errorf("%w: %s offers the %q transport; FlareDB plugins speak grpc", ErrNotPlugin, path, clip(parts[4], 40))
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
