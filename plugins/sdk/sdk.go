package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
	"github.com/flaredb/flaredb/plugins/internal/pluginproto"
)

// Params is what the host tells a plugin about the engine to open.
type Params struct {
	// DataDir is the absolute path of the directory the engine must keep
	// its data in. The host created it and holds a lock file in it, so no
	// other plugin process uses it meanwhile. It is "" only when the host
	// configured none.
	DataDir string
	// Options are the engine options from the host's configuration, by
	// name; never nil. OptionParser reads them with types and reports
	// unknown names.
	Options map[string]string
	// Args are the plugin's command-line arguments, as configured on the
	// host (os.Args[1:]).
	Args []string
	// Logger writes to the plugin's standard error in the format the host
	// forwards into its log. It is safe for concurrent use.
	Logger *slog.Logger
}

// Factory opens the engine a plugin serves. It is called once, before the
// handshake; an error is reported on standard error (where the host shows
// it as the reason the plugin failed to start) and ends the process.
type Factory func(p Params) (engine.Engine, error)

// Serve serves e until the host shuts the plugin down, then closes e. See
// the package documentation for what it does with standard output, signals
// and errors (which end the process with status 1). e must not write to
// standard output before Serve is called.
func Serve(e engine.Engine) {
	exitOn(run(serveConfig{ready: e, version: engine.ProtocolVersion}))
}

// ServeStore serves the full engine contract built over s by kvengine.New
// (versions, conditions, atomic groups and group commit), described by d,
// until the host shuts the plugin down; then it closes the engine, and so s.
// See Serve.
func ServeStore(s kvengine.Store, d engine.Description) {
	exitOn(run(serveConfig{ready: kvengine.New(s, d), version: engine.ProtocolVersion}))
}

// ServeFactory opens the engine with open, given the Params the host passed,
// and serves it until the host shuts the plugin down; then it closes the
// engine. Standard output is guarded before open is called, so what the
// engine writes there while opening cannot break the handshake. See the
// package documentation.
func ServeFactory(open Factory) {
	exitOn(run(serveConfig{open: open, version: engine.ProtocolVersion}))
}

// realStderr is the process's standard error, captured before go-plugin
// replaces os.Stderr with a pipe of its own.
var realStderr = os.Stderr

// exitOn ends the process with status 1 after printing err on standard
// error, if err is not nil.
func exitOn(err error) {
	if err != nil {
		fmt.Fprintf(realStderr, "flaredb plugin: %v\n", err)
		os.Exit(1)
	}
}

// serveConfig says what run serves: an engine opened before (ready) or one
// to open (open), offered at protocol version version.
type serveConfig struct {
	ready   engine.Engine
	open    Factory
	version int
}

// errNotLaunched is returned when the binary was run by hand.
var errNotLaunched = errors.New("this binary is a FlareDB storage-engine plugin: " +
	"flaredb-server starts it (engine = \"plugin\" in its configuration) and talks to it; " +
	"it is not meant to be run by hand. To check it, run: flaredb conformance --plugin " + os.Args[0])

func run(c serveConfig) (err error) {
	version := c.version
	// e is the engine being served; if run fails before serving it, it is
	// closed here (an engine passed to Serve included).
	e := c.ready
	serving := false
	defer func() {
		if err != nil && !serving && e != nil {
			_ = e.Close()
		}
	}()
	if os.Getenv(pluginproto.MagicCookieKey) != pluginproto.MagicCookieValue {
		return errNotLaunched
	}
	stderr := realStderr
	level := parseLevel(os.Getenv(pluginproto.EnvLogLevel))
	hl := hclog.New(&hclog.LoggerOptions{
		Name:       "plugin",
		Level:      hclogLevel(level),
		Output:     stderr,
		JSONFormat: true,
	})
	logger := slog.New(newHandler(stderr, level))

	// From here on, file descriptor 1 (and so os.Stdout) leads to standard
	// error; realOut is the only way to the host's handshake pipe.
	realOut, err := guardStdout()
	if err != nil {
		logger.Warn("cannot redirect standard output to standard error; stray output may break the handshake", "error", err)
	}

	selfTest := os.Getenv(pluginproto.EnvSelfTest)
	switch selfTest {
	case pluginproto.SelfTestHang:
		// Logged whatever the level, so that the host can quote it.
		slog.New(newHandler(stderr, slog.LevelDebug)).Warn(pluginproto.HangMessage, "pid", os.Getpid())
		time.Sleep(24 * time.Hour)
		return errors.New("self-test: hang ended")
	case pluginproto.SelfTestStrayStdout:
		writeStray("while opening")
	}

	// The host, recorded before the engine opens (which may take long):
	// if it dies meanwhile, the plugin is re-parented and must notice.
	parent := os.Getppid()

	opts := map[string]string{}
	if raw := os.Getenv(pluginproto.EnvOptions); raw != "" {
		if err := json.Unmarshal([]byte(raw), &opts); err != nil {
			return fmt.Errorf("%w: %s is not a JSON object of strings: %w", engine.ErrInvalidArgument, pluginproto.EnvOptions, err)
		}
		if opts == nil { // the JSON null
			opts = map[string]string{}
		}
	}
	params := Params{
		DataDir: os.Getenv(pluginproto.EnvDataDir),
		Options: opts,
		Args:    os.Args[1:],
		Logger:  logger,
	}
	if e == nil {
		if c.open == nil {
			return errors.New("no engine to serve")
		}
		opened, err := c.open(params)
		if err != nil {
			return fmt.Errorf("open engine (data directory %q): %w", params.DataDir, err)
		}
		if opened == nil {
			return fmt.Errorf("open engine (data directory %q): the factory returned no engine and no error", params.DataDir)
		}
		e = opened
	}
	d := e.Describe()
	logger.Info("engine opened", "engine", d.Name, "version", d.Version, "dir", params.DataDir, "protocol", version)

	var closeOnce sync.Once
	closeEngine := func(why string) {
		closeOnce.Do(func() {
			if err := e.Close(); err != nil {
				logger.Error("closing the engine failed", "why", why, "error", err)
				return
			}
			logger.Info("engine closed", "why", why)
		})
	}
	go watchSignals(closeEngine)
	go watchHost(parent, closeEngine)

	var filter *filterState
	if realOut != nil {
		// go-plugin prints its handshake line on os.Stdout, then replaces
		// os.Stdout with a pipe of its own. Meanwhile engine goroutines may
		// print too: the filter passes the handshake line alone to the host
		// and everything else to standard error.
		out, f, err := handshakeFilter(realOut, stderr)
		if err != nil {
			return fmt.Errorf("prepare the handshake: %w", err)
		}
		os.Stdout, filter = out, f
	}
	if selfTest == pluginproto.SelfTestStrayStdout {
		writeStray("just before the handshake")
	}
	serving = true
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  pluginproto.Handshake(),
		VersionedPlugins: pluginproto.Versioned(version, &pluginproto.EnginePlugin{Engine: e, Logger: logger}),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, pluginproto.ServerOptions()...)...)
		},
		Logger: hl,
	})
	if filter != nil && !filter.handshakeSent() {
		// go-plugin gave up before the handshake (it logged why, on
		// standard error): fail, rather than exit as if shut down.
		serving = false
		return errors.New("go-plugin could not start serving (see its error above)")
	}
	closeEngine("the host shut the plugin down")
	return nil
}

// writeStray writes the stray-stdout self-test's lines, through os.Stdout
// and straight to file descriptor 1.
func writeStray(when string) {
	fmt.Fprintf(os.Stdout, "%s on os.Stdout %s\n", pluginproto.StrayStdoutMarker, when)
	fd1 := os.NewFile(1, "fd1")
	_, _ = fmt.Fprintf(fd1, "%s on fd 1 %s\n", pluginproto.StrayStdoutMarker, when)
}

// watchSignals closes the engine and exits on SIGTERM.
func watchSignals(closeEngine func(string)) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	<-ch
	closeEngine("SIGTERM")
	os.Exit(0)
}

// hostCheckInterval is how often a plugin checks that its host is alive.
const hostCheckInterval = time.Second

// watchHost closes the engine and exits when parent, the process that
// started the plugin, is gone (the plugin has been re-parented). On Linux
// the host also asks the kernel to kill the plugin when the host dies; this
// covers the other systems and a host that was not the direct parent.
func watchHost(parent int, closeEngine func(string)) {
	if os.Getppid() != parent {
		closeEngine("the host process is gone")
		os.Exit(0)
	}
	t := time.NewTicker(hostCheckInterval)
	defer t.Stop()
	for range t.C {
		if os.Getppid() != parent {
			closeEngine("the host process is gone")
			os.Exit(0)
		}
	}
}

func parseLevel(s string) slog.Level {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l <= slog.LevelDebug:
		return hclog.Debug
	case l <= slog.LevelInfo:
		return hclog.Info
	case l <= slog.LevelWarn:
		return hclog.Warn
	}
	return hclog.Error
}
