package host

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/plugins/internal/pluginproto"
	"github.com/flaredb/flaredb/plugins/wire"
)

// reapTimeout bounds the wait for a SIGKILLed process group to be reaped
// and its output drained; it is only reached when something outside the
// group holds the plugin's pipes.
const reapTimeout = 10 * time.Second

// pipeGrace is how long the host keeps reading a dead plugin's standard
// error for its last lines when something else still holds it open.
const pipeGrace = 2 * time.Second

// State is where a plugin is in its life.
type State int

const (
	// StateRunning means the plugin process is up and serving.
	StateRunning State = iota + 1
	// StateRestarting means the process died and the host is restarting
	// it; calls return engine.ErrUnavailable meanwhile.
	StateRestarting
	// StateFailed means the host gave up restarting it
	// (RestartPolicy.MaxRestarts); calls return engine.ErrUnavailable.
	StateFailed
	// StateClosed means Close was called.
	StateClosed
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StateRunning:
		return "running"
	case StateRestarting:
		return "restarting"
	case StateFailed:
		return "failed"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// Status is a snapshot of a plugin's supervision, for health checks.
type Status struct {
	State State
	// PID is the plugin process's id while it runs, else 0.
	PID int
	// Restarts counts successful restarts since Open.
	Restarts int
	// LastError is the last crash or failed launch, or nil.
	LastError error
}

// Plugin is an engine served by a supervised plugin process. It implements
// engine.Engine and is safe for concurrent use. Create it with Open or
// Launch.
//
// Byte slices passed to its methods are only read during the call
// (marshaled into the request); slices it returns are owned by the caller.
// Errors are the contract's: the engine's own errors cross the wire intact,
// and a plugin that is down, restarting or dies during a call gives
// engine.ErrUnavailable (for Apply: outcome unknown).
type Plugin struct {
	cfg  Config
	log  *slog.Logger
	lock *os.File

	stopCtx  context.Context // cancelled by Close: stops supervision
	stop     context.CancelFunc
	supDone  chan struct{}
	hostName string

	mu       sync.Mutex
	cur      *generation // nil while the plugin is down
	closed   bool
	failed   bool
	gaveUp   chan struct{} // closed when failed is set
	inflight int
	idle     chan struct{} // made by Close; closed when inflight drops to 0
	desc     engine.Description
	restarts int
	lastErr  error
	// unreaped is closed when the last process killed without being reaped
	// (stuck in the kernel, as in I/O on a dead disk) has exited; nil when
	// there is none. No new process starts on the directory, and the lock
	// is not released, before then.
	unreaped <-chan struct{}
}

var _ engine.Engine = (*Plugin)(nil)

// generation is one launch of the plugin process.
type generation struct {
	client  *plugin.Client
	runner  *procRunner
	eng     *wire.Client
	desc    engine.Description
	started time.Time
	probing atomic.Bool // a liveness probe is running
	// The plugin's standard output and error after the handshake, as
	// go-plugin copies them (flushed at teardown: a last line without a
	// newline is logged too).
	stdout, stderr *lineLogger
}

// Open launches the plugin cfg describes and returns it as an
// engine.Engine (a *Plugin): see Launch.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (engine.Engine, error) {
	p, err := Launch(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Launch validates cfg, checks the binary, locks the data directory,
// launches the plugin, completes the handshake and starts supervising the
// process. ctx bounds the launch only (Config.StartTimeout bounds it too);
// the plugin runs until Close. logger receives the host's and the plugin's
// logs (nil discards them). The errors are described in the package
// documentation; on error nothing is left running or locked.
func Launch(ctx context.Context, cfg Config, logger *slog.Logger) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("plugin", filepath.Base(cfg.Path))
	// Refuse a bad binary before taking the lock. The first launch runs
	// the bytes checked here; each restart checks the binary again.
	bin, err := checkBinary(cfg)
	if err != nil {
		return nil, err
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		if bin != nil {
			bin.Close()
		}
		return nil, err
	}
	// The record is for people and for the next host's clean-up; the lock
	// itself is the flock, so a failure to write it is only a warning.
	stale, err := recordLock(lock, "")
	if err != nil {
		log.Warn("cannot record this host's pid in the data directory's lock file", "path", lock.Name(), "err", err)
	}
	removeStaleSocketDir(stale, cfg.SocketDir, log)
	stopCtx, stop := context.WithCancel(context.Background())
	p := &Plugin{
		cfg:      cfg,
		log:      log,
		lock:     lock,
		stopCtx:  stopCtx,
		stop:     stop,
		supDone:  make(chan struct{}),
		gaveUp:   make(chan struct{}),
		hostName: filepath.Base(cfg.Path),
	}
	g, err := p.launch(ctx, bin)
	if err != nil {
		stop()
		if ch := p.unreapedProcess(); ch != nil {
			go func() {
				<-ch
				_ = unlockDataDir(lock)
			}()
			return nil, errors.Join(err, errors.New("host: the plugin process was killed but has not exited; its data directory stays locked until it does"))
		}
		_ = unlockDataDir(lock)
		return nil, err
	}
	p.cur, p.desc = g, g.desc
	log.Info("plugin started", "pid", g.runner.PID(), "engine", g.desc.Name, "engine_version", g.desc.Version, "dir", cfg.DataDir)
	go p.supervise(g)
	return p, nil
}

// checkBinary verifies that the binary exists, is executable and has the
// configured checksum. With a checksum, it returns the bytes it hashed, in
// a file no one can change (see snapshotBinary), for the launch to execute
// (see execPath); the caller closes it once the process has started.
// Without one, the file is nil.
func checkBinary(cfg Config) (*os.File, error) {
	f, err := checkBinaryFile(cfg)
	if err == nil && f != nil && testHookVerified != nil {
		testHookVerified(cfg.Path)
	}
	return f, err
}

// testHookVerified, when set (by tests), runs after a binary passed its
// checksum and before it is started.
var testHookVerified func(path string)

func checkBinaryFile(cfg Config) (*os.File, error) {
	fi, err := os.Stat(cfg.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("host: plugin binary %s does not exist: %w", cfg.Path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("host: plugin binary %s: %w", cfg.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file (mode %v)", ErrNotExecutable, cfg.Path, fi.Mode())
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("%w: %s has no execute permission (mode %v): chmod +x it", ErrNotExecutable, cfg.Path, fi.Mode().Perm())
	}
	if cfg.SHA256 == "" {
		return nil, nil
	}
	want, _ := hex.DecodeString(cfg.SHA256) // validated by Config.Validate
	f, err := os.Open(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("host: plugin binary %s: %w", cfg.Path, err)
	}
	h := sha256.New()
	if f, err = snapshotBinary(f, h); err != nil {
		return nil, fmt.Errorf("host: hash plugin binary %s: %w", cfg.Path, err)
	}
	got := h.Sum(nil)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		f.Close()
		return nil, fmt.Errorf("%w: %s has SHA-256 %x, the configuration expects %s: "+
			"the binary was replaced, or the configured checksum is out of date", ErrChecksumMismatch, cfg.Path, got, cfg.SHA256)
	}
	return f, nil
}

// CheckBinary checks, without running it, that the file at path could be
// launched as a plugin: it exists, is a regular file with execute
// permission and, when sum is set (hex SHA-256), has that checksum. The
// errors are Launch's own (ErrNotExecutable, ErrChecksumMismatch wrapped).
// It only reads.
func CheckBinary(path, sum string) error {
	if sum != "" {
		if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("%w: host: SHA256 %q is not 64 hex digits", engine.ErrInvalidArgument, sum)
		}
	}
	f, err := checkBinaryFile(Config{Path: path, SHA256: strings.ToLower(sum)})
	if f != nil {
		f.Close()
	}
	return err
}

// SHA256File returns the hex SHA-256 checksum of the file at path, the
// form Config.SHA256 takes.
func SHA256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// logLevelName returns the least level log is enabled for, as the plugin's
// log level variable spells it.
func logLevelName(log *slog.Logger) string {
	ctx := context.Background()
	switch {
	case log.Enabled(ctx, slog.LevelDebug):
		return "debug"
	case log.Enabled(ctx, slog.LevelInfo):
		return "info"
	case log.Enabled(ctx, slog.LevelWarn):
		return "warn"
	}
	return "error"
}

// handshakeEnv reports whether an environment entry is one go-plugin sets
// for the handshake (these must win over Config.Env).
func handshakeEnv(kv string) bool {
	k, _, _ := strings.Cut(kv, "=")
	return strings.HasPrefix(k, "PLUGIN_") || k == pluginproto.MagicCookieKey
}

// launch starts one generation of the plugin, bounded by ctx and
// Config.StartTimeout. bin is what checkBinary returned for this launch
// (launch closes it), or nil for launch to check the binary itself.
func (p *Plugin) launch(ctx context.Context, bin *os.File) (*generation, error) {
	if bin == nil {
		var err error
		if bin, err = checkBinary(p.cfg); err != nil {
			return nil, err
		}
	}
	if bin != nil {
		defer bin.Close() // the process has started, or failed to, by then
	}
	opts, err := json.Marshal(p.cfg.Options)
	if err != nil {
		return nil, fmt.Errorf("%w: host: options: %w", engine.ErrInvalidArgument, err)
	}
	ours := []string{
		pluginproto.EnvDataDir + "=" + p.cfg.DataDir,
		pluginproto.EnvOptions + "=" + string(opts),
		pluginproto.EnvLogLevel + "=" + logLevelName(p.log),
	}
	r := newProcRunner(p.cfg.Path, bin, p.cfg.Args, p.log)
	stdout, stderr := &lineLogger{log: p.log, stream: "stdout"}, &lineLogger{log: p.log, stream: "stderr"}
	var socketDir string
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginproto.Handshake(),
		VersionedPlugins: pluginproto.Versioned(p.cfg.ProtocolVersion, &pluginproto.EnginePlugin{}),
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, tmpDir string) (runner.Runner, error) {
			socketDir = tmpDir
			if _, err := recordLock(p.lock, tmpDir); err != nil {
				p.log.Warn("cannot record the plugin's socket directory in the lock file", "err", err)
			}
			// The host's environment, without FLAREDB_PLUGIN_* variables
			// the host process may itself have inherited (only this host
			// sets those), then Config.Env, then the host's variables and
			// go-plugin's handshake variables, which win.
			env := make([]string, 0, len(cmd.Env)+len(p.cfg.Env)+len(ours))
			for _, kv := range cmd.Env {
				if !strings.HasPrefix(kv, "FLAREDB_PLUGIN_") {
					env = append(env, kv)
				}
			}
			env = append(env, p.cfg.Env...)
			env = append(env, ours...)
			for _, kv := range cmd.Env {
				if handshakeEnv(kv) {
					env = append(env, kv)
				}
			}
			r.prepare(env)
			return r, nil
		},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Managed:          false,
		// The host enforces StartTimeout itself (and kills the plugin);
		// go-plugin's own timeout is only a backstop.
		StartTimeout:     p.cfg.StartTimeout + time.Minute,
		Logger:           newHCLogger(p.log),
		SyncStdout:       stdout,
		SyncStderr:       stderr,
		GRPCDialOptions:  wire.DialOptions(),
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: p.cfg.SocketDir},
	})
	g := &generation{client: client, runner: r, started: time.Now(), stdout: stdout, stderr: stderr}
	cleanup := func() {
		p.teardown(g)
		if socketDir != "" {
			_ = os.RemoveAll(socketDir)
		}
	}

	startCtx, cancel := context.WithTimeout(ctx, p.cfg.StartTimeout)
	defer cancel()
	// bounded runs one step of go-plugin's start, which watches no context
	// of ours, within startCtx: when startCtx ends first, the plugin is
	// killed and its pipes closed, which ends go-plugin's wait for it
	// (Start waits for the handshake line on standard output; Client for
	// the connection, which the plugin's exit cancels).
	bounded := func(step func() error) (aborted bool, err error) {
		done := make(chan error, 1)
		go func() { done <- step() }()
		select {
		case err = <-done:
			return false, err
		case <-startCtx.Done():
		}
		_ = r.Kill(context.Background())
		// A process that left the plugin's group may hold its standard
		// output open.
		if r.PID() != 0 {
			select {
			case <-r.exited:
			case <-time.After(reapTimeout):
			}
		}
		r.closePipes()
		select {
		case <-done:
		case <-time.After(reapTimeout):
			p.log.Error("plugin launch did not stop after the plugin was killed", "pid", r.PID())
		}
		return true, nil
	}
	aborted, startErr := bounded(func() error {
		_, err := client.Start()
		return err
	})
	if aborted || startErr != nil {
		cleanup()
		return nil, p.startError(ctx, r, aborted, startErr)
	}

	// A plugin that printed its handshake and then stopped answering
	// (frozen, or wedged before serving) holds Client until gRPC's own
	// connect timeout, about 20s: bound it as the handshake is.
	aborted, err = bounded(func() error {
		rpc, err := client.Client()
		if err != nil {
			return err
		}
		raw, err := rpc.Dispense(pluginproto.PluginName)
		if err != nil {
			return err
		}
		var ok bool
		if g.eng, ok = raw.(*wire.Client); !ok {
			return fmt.Errorf("host: dispensed %T, not an engine client", raw)
		}
		return nil
	})
	if aborted {
		cleanup()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("host: start plugin %s: %w", p.cfg.Path, ctx.Err())
		}
		return nil, fmt.Errorf("%w: plugin %s printed its handshake but did not accept the connection within %v, and was killed%s",
			ErrStartTimeout, p.cfg.Path, p.cfg.StartTimeout, stderrNote(r))
	}
	if err == nil {
		g.desc, err = g.eng.Handshake(startCtx)
		if err == nil && p.cfg.ProtocolVersion != engine.ProtocolVersion {
			// go-plugin let a plugin through that agreed to a version this
			// host cannot speak: refuse it.
			err = fmt.Errorf("%w: the plugin accepted protocol %d, which this host offered but does not speak (%d)",
				ErrProtocolMismatch, p.cfg.ProtocolVersion, engine.ProtocolVersion)
		} else if err == nil && g.desc.Protocol != engine.ProtocolVersion {
			err = fmt.Errorf("%w: the engine describes itself as protocol %d, this host speaks %d",
				ErrProtocolMismatch, g.desc.Protocol, engine.ProtocolVersion)
		}
	}
	if err != nil {
		cleanup()
		if errors.Is(err, ErrProtocolMismatch) {
			return nil, fmt.Errorf("host: plugin %s: %w", p.cfg.Path, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("host: start plugin %s: %w", p.cfg.Path, ctx.Err())
		}
		if startCtx.Err() != nil {
			return nil, fmt.Errorf("%w: plugin %s did not answer the handshake within %v", ErrStartTimeout, p.cfg.Path, p.cfg.StartTimeout)
		}
		return nil, fmt.Errorf("host: plugin %s: handshake: %w%s", p.cfg.Path, err, stderrNote(r))
	}
	return g, nil
}

// stderrNote quotes the plugin's last lines of standard error, if any.
func stderrNote(r *procRunner) string {
	if t := r.tail.String(); t != "" {
		return "\nplugin standard error (last lines):\n" + t
	}
	return ""
}

// startError explains why a launch failed.
func (p *Plugin) startError(ctx context.Context, r *procRunner, aborted bool, startErr error) error {
	path := p.cfg.Path
	if aborted {
		if ctx.Err() != nil {
			return fmt.Errorf("host: start plugin %s: %w", path, ctx.Err())
		}
		return fmt.Errorf("%w: plugin %s did not complete the handshake within %v and was killed%s",
			ErrStartTimeout, path, p.cfg.StartTimeout, stderrNote(r))
	}
	if line, ok := r.head.firstLine(); ok {
		if err := describeHandshake(path, line, p.cfg.ProtocolVersion); err != nil {
			if errors.Is(err, ErrProtocolMismatch) {
				return err
			}
			return fmt.Errorf("%w%s", err, stderrNote(r))
		}
	}
	if r.PID() == 0 {
		if execErr := r.startFailure(); execErr != nil {
			return fmt.Errorf("%w: cannot execute %s: %w", ErrNotExecutable, path, execErr)
		}
		// Something before the exec failed (the socket directory, a pipe):
		// not the binary's fault, so neither ErrNotExecutable nor the
		// cause's own sentinels (a missing socket directory is no missing
		// binary).
		return fmt.Errorf("host: start plugin %s: %v", path, startErr)
	}
	if r.hasExited() {
		if r.exitedOK() {
			return fmt.Errorf("%w: %s exited (%s) without printing the go-plugin handshake%s",
				ErrNotPlugin, path, r.exitStatus(), stderrNote(r))
		}
		if r.tail.String() == "" {
			return fmt.Errorf("%w: %s (%s), printing nothing on standard error", ErrPluginExited, path, r.exitStatus())
		}
		return fmt.Errorf("%w: %s (%s)%s", ErrPluginExited, path, r.exitStatus(), stderrNote(r))
	}
	return fmt.Errorf("host: start plugin %s: %w%s", path, startErr, stderrNote(r))
}

// teardown kills a generation's process group, waits (bounded) for it to
// be reaped, and releases go-plugin's resources (its goroutines, the
// connection and the socket directory). A process still not reaped after
// reapTimeout is recorded in p.unreaped.
//
// A process that left the plugin's group (setsid) and kept its standard
// output or error must not hold the host: once the plugin is reaped, the
// host waits a moment for the plugin's last lines of standard error, then
// closes its ends of both pipes, which stops go-plugin's reader too.
func (p *Plugin) teardown(g *generation) {
	_ = g.runner.Kill(context.Background())
	if g.runner.PID() != 0 {
		select {
		case <-g.runner.exited:
		case <-time.After(reapTimeout):
			p.log.Error("plugin process not reaped after SIGKILL; no plugin starts on its directory until it has exited", "pid", g.runner.PID())
			p.mu.Lock()
			p.unreaped = g.runner.exited
			p.mu.Unlock()
		}
		done := make(chan struct{})
		go func() { g.runner.waitStderr(); close(done) }()
		select {
		case <-done:
		case <-time.After(pipeGrace):
			p.log.Warn("plugin standard error still open after the process exited (a process outside its group holds it); no longer reading it")
		}
	}
	g.runner.closePipes()
	killed := make(chan struct{})
	go func() { g.client.Kill(); close(killed) }()
	select {
	case <-killed:
		g.stdout.flush()
		g.stderr.flush()
	case <-time.After(reapTimeout):
		p.log.Error("plugin client resources not released", "pid", g.runner.PID())
	}
}

// exitGrace is the least time a plugin is given to exit after SIGTERM,
// even when closing its engine took all of StopTimeout.
const exitGrace = time.Second

// stopGeneration stops a running generation gracefully: it closes the
// engine inside the plugin, asks the process to exit, then tears it down.
// The engine's close and the exit share one StopTimeout (the exit gets at
// least exitGrace).
func (p *Plugin) stopGeneration(g *generation) error {
	deadline := time.Now().Add(p.cfg.StopTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	err := g.eng.CloseContext(ctx)
	if err != nil {
		p.log.Warn("closing the plugin's engine failed", "error", err)
	}
	if pid := g.runner.PID(); pid > 0 && g.runner.signal(syscall.SIGTERM) == nil {
		select {
		case <-g.runner.exited:
		case <-time.After(max(time.Until(deadline), exitGrace)):
			p.log.Warn("plugin did not exit after SIGTERM; killing it", "pid", pid)
		}
	}
	p.teardown(g)
	return err
}

// supervise watches the running generation g and restarts the plugin when
// it dies, until Close.
func (p *Plugin) supervise(g *generation) {
	defer close(p.supDone)
	failures := 0
	for {
		select {
		case <-g.runner.exited:
		case <-p.stopCtx.Done():
			return
		}
		p.mu.Lock()
		if p.cur == g {
			p.cur = nil
		}
		crash := fmt.Errorf("%w: plugin process %d died (%s)", engine.ErrUnavailable, g.runner.PID(), g.runner.exitStatus())
		p.lastErr = crash
		p.mu.Unlock()
		p.log.Error("plugin process died; restarting it", "pid", g.runner.PID(), "status", g.runner.exitStatus())
		p.teardown(g)
		if time.Since(g.started) >= p.cfg.Restart.StableAfter {
			failures = 0
		}
		for {
			if p.stopCtx.Err() != nil {
				return
			}
			if limit := p.cfg.Restart.MaxRestarts; limit < 0 || (limit > 0 && failures >= limit) {
				p.mu.Lock()
				p.failed = true
				p.mu.Unlock()
				p.log.Error("giving up restarting the plugin", "failures", failures, "error", p.lastError())
				close(p.gaveUp)
				return
			}
			delay := p.cfg.Restart.backoff(failures)
			failures++
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-p.stopCtx.Done():
				t.Stop()
				return
			}
			if ch := p.unreapedProcess(); ch != nil {
				// Never two processes on one directory: the killed one
				// may still write.
				select {
				case <-ch:
				case <-p.stopCtx.Done():
					return
				}
			}
			ng, err := p.launch(p.stopCtx, nil)
			if err != nil {
				if p.stopCtx.Err() != nil {
					return
				}
				p.mu.Lock()
				p.lastErr = err
				p.mu.Unlock()
				p.log.Error("restarting the plugin failed", "attempt", failures, "error", err)
				continue
			}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				_ = p.stopGeneration(ng)
				return
			}
			p.cur, p.desc = ng, ng.desc
			p.restarts++
			p.mu.Unlock()
			p.log.Info("plugin restarted", "pid", ng.runner.PID(), "attempt", failures)
			g = ng
			break
		}
	}
}

// unreapedProcess returns the channel closed when the last process killed
// but not reaped has exited, or nil when there is none (or it has exited).
func (p *Plugin) unreapedProcess() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch := p.unreaped; ch != nil {
		select {
		case <-ch:
			p.unreaped = nil
		default:
			return ch
		}
	}
	return nil
}

func (p *Plugin) lastError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// Status returns a snapshot of the plugin's supervision.
func (p *Plugin) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{Restarts: p.restarts, LastError: p.lastErr}
	switch {
	case p.closed:
		s.State = StateClosed
	case p.cur != nil:
		s.State = StateRunning
		s.PID = p.cur.runner.PID()
	case p.failed:
		s.State = StateFailed
	default:
		s.State = StateRestarting
	}
	return s
}

// Failed returns a channel that is closed when the host gives up
// restarting the plugin (RestartPolicy.MaxRestarts): from then on every
// call returns engine.ErrUnavailable, and Healthy says why. It is never
// closed otherwise, Close included. The server stops on it, so that what
// supervises the server can act.
func (p *Plugin) Failed() <-chan struct{} { return p.gaveUp }

// PID returns the plugin process's id while it runs, else 0.
func (p *Plugin) PID() int { return p.Status().PID }

// Restarts returns how many times the plugin was restarted since Open (the
// server exports it as flaredb_engine_restarts_total).
func (p *Plugin) Restarts() int { return p.Status().Restarts }

// acquire returns the running generation and counts a call in progress,
// or the error the call must return.
func (p *Plugin) acquire() (*generation, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, engine.ErrClosed
	}
	if p.cur == nil {
		why := "it is restarting"
		if p.failed {
			why = "the host gave up restarting it"
		}
		if p.lastErr != nil {
			return nil, fmt.Errorf("%w: plugin %s is down (%s): last error: %v", engine.ErrUnavailable, p.hostName, why, p.lastErr)
		}
		return nil, fmt.Errorf("%w: plugin %s is down (%s)", engine.ErrUnavailable, p.hostName, why)
	}
	p.inflight++
	return p.cur, nil
}

// Healthy reports whether the plugin can take calls now: nil while a
// plugin process is running, otherwise an error wrapping
// engine.ErrUnavailable (or engine.ErrClosed after Close) that says why —
// restarting, or given up — with the last error. The server's health
// checks use it. It is safe for concurrent use.
func (p *Plugin) Healthy() error {
	if _, err := p.acquire(); err != nil {
		return err
	}
	p.release()
	return nil
}

func (p *Plugin) release() {
	p.mu.Lock()
	p.inflight--
	if p.inflight == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
	p.mu.Unlock()
}

// translate turns what a call on a dying or dead plugin returns into
// engine.ErrUnavailable: a transport cancellation the caller did not ask
// for (the connection was closed under it) or a closed engine the host did
// not close. Everything else is the engine's answer and passes unchanged.
func (p *Plugin) translate(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, engine.ErrUnavailable) {
		return err
	}
	if (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) && ctx.Err() == nil {
		return fmt.Errorf("%w: plugin %s went away during the call (%v)", engine.ErrUnavailable, p.hostName, err)
	}
	if errors.Is(err, engine.ErrClosed) {
		return fmt.Errorf("%w: plugin %s closed its engine (%v)", engine.ErrUnavailable, p.hostName, err)
	}
	return err
}

// livenessKey is the key a liveness probe reads: any valid key will do.
var livenessKey = []byte("\xffflaredb/host/liveness")

// unanswered reports whether a call's error means its caller's deadline
// passed before the plugin answered; if so, it probes g.
func (p *Plugin) unanswered(ctx context.Context, g *generation, err error) {
	if errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		p.probe(g)
	}
}

// probe checks, in the background, that g still answers: a Read of one key
// within HangTimeout. A generation that does not is killed; its supervisor
// restarts it as after a crash. One probe runs at a time per generation.
func (p *Plugin) probe(g *generation) {
	if p.cfg.HangTimeout < 0 || !g.probing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer g.probing.Store(false)
		ctx, cancel := context.WithTimeout(p.stopCtx, p.cfg.HangTimeout)
		defer cancel()
		_, err := g.eng.Read(ctx, [][]byte{livenessKey})
		if err == nil || ctx.Err() == nil || p.stopCtx.Err() != nil {
			return // answered (an error is an answer), or the host is closing
		}
		p.mu.Lock()
		current := p.cur == g
		if current {
			p.lastErr = fmt.Errorf("%w: plugin %s answered no liveness probe within %v: killed to restart it", engine.ErrUnavailable, p.hostName, p.cfg.HangTimeout)
		}
		p.mu.Unlock()
		if !current {
			return
		}
		p.log.Error("plugin answered no liveness probe: killing it so that it restarts", "pid", g.runner.PID(), "hang_timeout", p.cfg.HangTimeout)
		_ = g.runner.Kill(context.Background())
	}()
}

// Read implements engine.Engine: one call to the plugin.
func (p *Plugin) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	g, err := p.acquire()
	if err != nil {
		return nil, err
	}
	defer p.release()
	out, err := g.eng.Read(ctx, keys)
	if err != nil {
		p.unanswered(ctx, g, err)
		return nil, p.translate(ctx, err)
	}
	return out, nil
}

// Apply implements engine.Engine: one call to the plugin. If the plugin
// dies during the call, Apply returns engine.ErrUnavailable and the writes
// may or may not have been applied.
func (p *Plugin) Apply(ctx context.Context, writes []engine.Write, opts engine.ApplyOptions) ([]engine.Result, error) {
	g, err := p.acquire()
	if err != nil {
		return nil, err
	}
	defer p.release()
	out, err := g.eng.Apply(ctx, writes, opts)
	if err != nil {
		p.unanswered(ctx, g, err)
		return nil, p.translate(ctx, err)
	}
	return out, nil
}

// Scan implements engine.Engine: one streaming call to the plugin. An error
// returned by fn is returned as it is. A scan whose deadline passes before
// the plugin answers starts a liveness probe, as Read and Apply do.
func (p *Plugin) Scan(ctx context.Context, opts engine.ScanOptions, fn func(engine.Entry) error) error {
	g, err := p.acquire()
	if err != nil {
		return err
	}
	defer p.release()
	var fnErr error
	err = g.eng.Scan(ctx, opts, func(e engine.Entry) error {
		if err := fn(e); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	if err != nil && fnErr != nil && err == fnErr {
		return err
	}
	if err != nil {
		p.unanswered(ctx, g, err)
	}
	return p.translate(ctx, err)
}

// Describe implements engine.Engine: the description from the last
// handshake. It never blocks on the plugin and works after Close.
func (p *Plugin) Describe() engine.Description {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.desc
}

// Close implements engine.Engine: see the package documentation. It returns
// the error of closing the engine inside the plugin, if any; the process is
// gone and the lock released either way. Closing twice returns nil.
func (p *Plugin) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.stop()
	var idle chan struct{}
	if p.inflight > 0 {
		idle = make(chan struct{})
		p.idle = idle
	}
	p.mu.Unlock()
	<-p.supDone
	if idle != nil {
		select {
		case <-idle:
		case <-time.After(p.cfg.StopTimeout):
			p.log.Warn("calls still in progress after the stop timeout; stopping the plugin under them")
		}
	}
	p.mu.Lock()
	g := p.cur
	p.cur = nil
	p.mu.Unlock()
	var err error
	if g != nil {
		err = p.stopGeneration(g)
		p.log.Info("plugin stopped", "pid", g.runner.PID())
	}
	// Stopped cleanly: no socket directory for the next host to remove.
	_, _ = recordLock(p.lock, "")
	if ch := p.unreapedProcess(); ch != nil {
		// Killed but not reaped (stuck in the kernel, in I/O on a dead
		// disk): it may still write, so the directory stays locked until
		// it is gone.
		lock := p.lock
		go func() {
			<-ch
			_ = unlockDataDir(lock)
		}()
		return errors.Join(err, errors.New("host: the plugin process was killed but has not exited; its data directory stays locked until it does"))
	}
	if lerr := unlockDataDir(p.lock); lerr != nil && err == nil {
		err = fmt.Errorf("host: release data directory lock: %w", lerr)
	}
	return err
}
