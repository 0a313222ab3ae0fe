package host

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flaredb/flaredb/core/engine"
)

// Defaults for zero fields of Config and RestartPolicy.
const (
	DefaultStartTimeout   = 30 * time.Second
	DefaultStopTimeout    = 10 * time.Second
	DefaultInitialBackoff = 100 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultStableAfter    = time.Minute
	DefaultHangTimeout    = 30 * time.Second
)

// maxSocketDirLen is the longest SocketDir whose socket paths fit.
const maxSocketDirLen = 103 - len("/plugin-dir0123456789/plugin0123456789")

// Config says which plugin binary to run and how to supervise it. The zero
// value of every field but Path and DataDir means its default. Open copies
// the Config; later changes to it (or to its slices and map) have no effect.
type Config struct {
	// Path is the plugin binary. Required. A relative path is resolved
	// against the working directory when Open is called.
	Path string
	// Args are the plugin's command-line arguments (after its name).
	Args []string
	// Env are extra "KEY=VALUE" entries for the plugin's environment, added
	// to the host's own environment (which the plugin inherits) and before
	// the variables the host sets for the handshake.
	Env []string
	// DataDir is the directory the plugin's engine keeps its data in.
	// Required. It is created (mode 0700) if missing, and locked (a lock
	// file in it, held by the host for the plugin's lifetime, restarts
	// included), so that two hosts never run a plugin on one directory.
	DataDir string
	// Options are engine options passed to the plugin by name (see
	// sdk.Params.Options and sdk.OptionParser).
	Options map[string]string
	// SHA256 is the expected SHA-256 checksum of the binary, in hex. When
	// set, the binary is hashed before each launch (restarts included) and
	// a mismatch refuses to start it with an error matching
	// ErrChecksumMismatch. Empty means no check. On Linux the bytes that
	// were hashed are copied, as they are hashed, into a sealed memory file,
	// and that copy is executed: a binary replaced or rewritten in place
	// after the check does not run (the copy stays in memory while the
	// plugin runs). Elsewhere, and for scripts (their interpreter reopens
	// them by path), the file is executed by its path after the check.
	SHA256 string
	// StartTimeout bounds a launch, from exec to a completed handshake:
	// the go-plugin line, the connection and the engine's description
	// (default 30s). A plugin that takes longer is killed and the launch
	// fails with an error matching ErrStartTimeout.
	StartTimeout time.Duration
	// StopTimeout bounds the two waits of Close (default 10s): first for
	// the calls in progress, then for the plugin's clean stop (its engine
	// close, then its exit after SIGTERM, which gets at least a second
	// however long the close took). After it, the plugin's process group
	// is killed. So Close takes at most about twice StopTimeout, plus, only
	// when something outside the plugin's group holds its pipes, up to
	// about 20s more.
	StopTimeout time.Duration
	// SocketDir is where the per-launch directories holding the plugin's
	// Unix socket are created (and removed when the plugin stops, or,
	// after a host was killed, by the next host to lock the data
	// directory); default os.TempDir(). Its path must be short (at most
	// 65 bytes), as Unix socket paths are limited to about 100 bytes.
	SocketDir string
	// Restart is the restart policy after the plugin process dies.
	Restart RestartPolicy
	// HangTimeout is how long a plugin may leave a liveness probe
	// unanswered (default 30s; negative: never probe). The host probes
	// (a one-key Read) when a call ends with its caller's deadline passed
	// and no answer; a plugin that does not answer the probe in time is
	// taken for hung: it is killed and restarted as after a crash.
	HangTimeout time.Duration
	// ProtocolVersion is the engine protocol version the host offers in
	// the handshake; 0 means engine.ProtocolVersion, the only one this
	// host can speak. Certification sets another to check that a plugin
	// refuses it (the launch then fails with ErrProtocolMismatch).
	ProtocolVersion int
}

// RestartPolicy says how a plugin that died is restarted: after a delay
// that starts at InitialBackoff and doubles with each consecutive failed
// or short-lived launch up to MaxBackoff; a plugin that ran at least
// StableAfter resets the delay. Zero fields take the defaults.
type RestartPolicy struct {
	// InitialBackoff is the first delay (default 100ms).
	InitialBackoff time.Duration
	// MaxBackoff caps the delay (default 30s).
	MaxBackoff time.Duration
	// StableAfter is how long a plugin must run for its next crash to be
	// treated as the first (default 1m).
	StableAfter time.Duration
	// MaxRestarts caps consecutive restarts without a stable run; after
	// that the host gives up and every call returns engine.ErrUnavailable
	// until Close. 0 means no cap; negative means never restart.
	MaxRestarts int
}

// maxStartTimeout bounds Config.StartTimeout: a plugin that needs longer
// than a day to start is broken, and the host adds to this duration.
const maxStartTimeout = 24 * time.Hour

// Validate reports every invalid field of c, joined into one error wrapping
// engine.ErrInvalidArgument; nil means c is usable. It does not touch the
// file system.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: host: "+format, append([]any{engine.ErrInvalidArgument}, args...)...))
	}
	if c.Path == "" {
		bad("Path is empty: set the plugin binary")
	}
	if c.DataDir == "" {
		bad("DataDir is empty: set the plugin's data directory")
	}
	for i, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			bad("Env[%d] %q is not KEY=VALUE", i, kv)
		}
	}
	if c.SHA256 != "" {
		if b, err := hex.DecodeString(c.SHA256); err != nil || len(b) != 32 {
			bad("SHA256 %q is not 64 hex digits", c.SHA256)
		}
	}
	if c.ProtocolVersion < 0 {
		bad("ProtocolVersion %d is negative", c.ProtocolVersion)
	}
	if c.StartTimeout < 0 || c.StartTimeout > maxStartTimeout {
		bad("StartTimeout %v is out of range (0 for the default, at most %v)", c.StartTimeout, maxStartTimeout)
	}
	if c.StopTimeout < 0 {
		bad("StopTimeout %v is negative", c.StopTimeout)
	}
	r := c.Restart
	if r.InitialBackoff < 0 || r.MaxBackoff < 0 || r.StableAfter < 0 {
		bad("Restart durations must not be negative")
	}
	if r.InitialBackoff > 0 && r.MaxBackoff > 0 && r.InitialBackoff > r.MaxBackoff {
		bad("Restart.InitialBackoff %v exceeds MaxBackoff %v", r.InitialBackoff, r.MaxBackoff)
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with defaults filled in, absolute
// paths, and copied slices and map.
func (c Config) withDefaults() (Config, error) {
	r := c
	var err error
	if r.Path, err = filepath.Abs(c.Path); err != nil {
		return r, fmt.Errorf("%w: host: plugin path %q: %w", engine.ErrInvalidArgument, c.Path, err)
	}
	if r.DataDir, err = filepath.Abs(c.DataDir); err != nil {
		return r, fmt.Errorf("%w: host: data directory %q: %w", engine.ErrInvalidArgument, c.DataDir, err)
	}
	r.Args = append([]string(nil), c.Args...)
	r.Env = append([]string(nil), c.Env...)
	r.Options = make(map[string]string, len(c.Options))
	for k, v := range c.Options {
		r.Options[k] = v
	}
	r.SHA256 = strings.ToLower(c.SHA256)
	if r.ProtocolVersion == 0 {
		r.ProtocolVersion = engine.ProtocolVersion
	}
	if r.StartTimeout == 0 {
		r.StartTimeout = DefaultStartTimeout
	}
	if r.HangTimeout == 0 {
		r.HangTimeout = DefaultHangTimeout
	}
	if r.StopTimeout == 0 {
		r.StopTimeout = DefaultStopTimeout
	}
	if r.SocketDir == "" {
		r.SocketDir = os.TempDir()
	}
	if r.SocketDir, err = filepath.Abs(r.SocketDir); err != nil {
		return r, fmt.Errorf("%w: host: socket directory %q: %w", engine.ErrInvalidArgument, c.SocketDir, err)
	}
	// go-plugin puts the socket at SocketDir/plugin-dirNNNNNNNNNN/pluginNNNNNNNNNN,
	// and a Unix socket path must fit in sun_path (108 bytes on Linux,
	// 104 on BSDs, including the final NUL).
	if len(r.SocketDir) > maxSocketDirLen {
		return r, fmt.Errorf("%w: host: socket directory %q is %d bytes long; Unix socket paths are limited to about 100 bytes, "+
			"so it must be at most %d: set SocketDir (or TMPDIR) to a shorter directory", engine.ErrInvalidArgument, r.SocketDir, len(r.SocketDir), maxSocketDirLen)
	}
	if r.Restart.InitialBackoff == 0 {
		r.Restart.InitialBackoff = DefaultInitialBackoff
	}
	if r.Restart.MaxBackoff == 0 {
		r.Restart.MaxBackoff = max(DefaultMaxBackoff, r.Restart.InitialBackoff)
	}
	if r.Restart.StableAfter == 0 {
		r.Restart.StableAfter = DefaultStableAfter
	}
	return r, nil
}

// backoff returns the delay before restart attempt n (0 for the first).
func (r RestartPolicy) backoff(n int) time.Duration {
	d := r.InitialBackoff
	for i := 0; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.MaxBackoff)
}
