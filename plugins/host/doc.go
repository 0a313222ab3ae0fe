// Package host runs a FlareDB storage engine in a plugin process and adapts
// it to the engine contract (package core/engine): Open launches the
// plugin binary with hashicorp/go-plugin over gRPC and returns an
// engine.Engine whose calls cross the engine wire protocol (package
// plugins/wire) to the engine the plugin serves (package plugins/sdk).
//
// # Launch
//
// Before exec, the binary must exist, be an executable regular file and,
// when Config.SHA256 is set, have that SHA-256 checksum (verified before
// every launch, restarts included). The data directory is created if needed
// and locked with a lock file (flock) that the host holds for as long as it
// runs a plugin there, so two hosts never run plugins on one directory; the
// engine inside the plugin (RocksDB's LOCK, Badger's) refuses as well. The
// lock file (LockFileName) records the host's pid and the socket directory
// go-plugin made for the current launch; a host that takes the lock after
// one killed without Close removes that directory if it is in its own
// SocketDir, belongs to this user, holds only go-plugin's sockets and
// nothing listens on them (Unix only; see socketdir.go). Failing
// to write the record is a warning, not a failed launch. The plugin learns its data directory and options from its environment (see
// plugins/sdk), and starts in a process group of its own.
//
// The handshake is go-plugin's: a magic cookie, the engine protocol version
// (engine.ProtocolVersion, offered through VersionedPlugins), gRPC only,
// automatic mutual TLS with one-time certificates, and message limits
// raised to wire.MaxMessageSize on both sides. Then a Describe call checks
// the protocol version once more and caches the engine's description.
// Failures are errors that say what is wrong (see the Err variables): a
// missing binary (fs.ErrNotExist), one that is not executable, a wrong
// checksum, a binary that is not a plugin (it prints something else, or
// nothing), a protocol mismatch, a plugin that exits (its standard error is
// quoted) or hangs (Config.StartTimeout).
//
// # Logs
//
// Standard output belongs to the handshake. The plugin's standard error is
// read line by line and forwarded into the host's *slog.Logger: hclog JSON
// lines (what the SDK writes) keep their level and attributes; other lines
// are logged at info, or error from a Go panic on. What the plugin writes to
// os.Stdout and os.Stderr after the handshake (go-plugin redirects them) is
// logged too.
//
// # Supervision
//
// The host notices at once when the plugin process exits. It then answers
// every call with engine.ErrUnavailable, immediately (calls in progress on
// the dead process return it too, and never hang), and restarts the plugin
// after an exponential back-off (Config.Restart), checking the binary
// again. Calls never outlive the caller's context. Writes acknowledged
// with sync durability before the crash are the engine's to keep; the host
// adds no buffering of its own.
//
// # Close
//
// Close refuses new calls (engine.ErrClosed), waits for the calls in
// progress (at most Config.StopTimeout), closes the engine inside the
// plugin and asks the process to exit (SIGTERM; the two together within
// another StopTimeout), then kills its whole process group and removes its
// socket directory, so no process or socket is left behind; then it
// releases the data directory lock.
//
// Imports: host depends on the contract, package wire and go-plugin. It
// must not import the server (core/server), the SDK or any engine.
package host
