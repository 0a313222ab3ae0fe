package host

import (
	"errors"

	"github.com/flaredb/flaredb/plugins/wire"
)

// Errors of Open (and of the launches that restart a plugin), matched with
// errors.Is. Each is wrapped with a message naming the binary and what to
// do about it; a missing binary also matches fs.ErrNotExist.
var (
	// ErrNotExecutable reports a plugin path that is not an executable
	// regular file.
	ErrNotExecutable = errors.New("host: plugin binary is not executable")
	// ErrChecksumMismatch reports a binary whose SHA-256 is not
	// Config.SHA256.
	ErrChecksumMismatch = errors.New("host: plugin binary checksum mismatch")
	// ErrNotPlugin reports a binary that does not speak the plugin
	// handshake: it printed something else on standard output, or exited
	// successfully without printing anything.
	ErrNotPlugin = errors.New("host: not a FlareDB engine plugin")
	// ErrProtocolMismatch reports a plugin built for another version of
	// the engine contract. It is wire.ErrProtocolMismatch, which also
	// matches engine.ErrUnsupported.
	ErrProtocolMismatch = wire.ErrProtocolMismatch
	// ErrStartTimeout reports a plugin that did not complete the handshake
	// within Config.StartTimeout; it was killed.
	ErrStartTimeout = errors.New("host: plugin start timed out")
	// ErrPluginExited reports a plugin that exited with a failure before
	// completing the handshake (its standard error usually says why, and
	// is quoted in the message).
	ErrPluginExited = errors.New("host: plugin exited before the handshake")
	// ErrDataDirLocked reports a data directory already in use by another
	// plugin host.
	ErrDataDirLocked = errors.New("host: data directory in use")
)
