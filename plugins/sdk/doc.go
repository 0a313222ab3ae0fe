// Package sdk serves a FlareDB storage engine as a plugin process: the
// process the plugin host (plugins/host) launches, hands a data directory,
// and talks to over gRPC with the engine wire protocol (package
// plugins/wire). An engine author's main is a few lines:
//
//	func main() { sdk.ServeStore(myStore, engine.Description{Name: "mine"}) }
//
// or, to open the engine on the directory the host chose:
//
//	func main() {
//		sdk.ServeFactory(func(p sdk.Params) (engine.Engine, error) {
//			return myengine.Open(p.DataDir)
//		})
//	}
//
// ServeStore builds the full contract with kvengine.New, so an author who
// implements only the minimal ordered interface (kvengine.Store) gets
// correct compare-and-swap, atomic groups and group commit for free, inside
// the plugin's own process. Serve takes a ready engine.Engine for authors
// who implement the contract directly. Whatever the route, the conformance
// suite (the CLI's "flaredb conformance --plugin") is the judge.
//
// # What the host passes
//
// The host starts the plugin with go-plugin's handshake environment (magic
// cookie, protocol versions, mTLS certificate) and three variables of its
// own, read by ServeFactory into Params: FLAREDB_PLUGIN_DATA_DIR (the data
// directory, created and locked by the host), FLAREDB_PLUGIN_OPTIONS (the
// engine options of the host's configuration, a JSON object of strings) and
// FLAREDB_PLUGIN_LOG_LEVEL. Arguments configured on the host are passed as
// the process's arguments (os.Args). A binary run by hand, without the
// cookie, prints what it is and exits with status 1, before opening
// anything.
//
// # Protocol version
//
// The plugin offers exactly engine.ProtocolVersion (through go-plugin's
// VersionedPlugins); a host speaking another version refuses it during the
// handshake with a message naming both versions.
//
// # Standard output and logging
//
// Standard output belongs to the handshake: the first line a plugin writes
// there is its address, and anything else first breaks the handshake. The
// Serve functions therefore point file descriptor 1 at standard error for
// the whole life of the process (on Unix), and hand go-plugin a private
// duplicate of the original standard output for the handshake line only.
// What the engine, its libraries (C code included) or stray fmt.Println
// calls write to standard output ends up in standard error, which the host
// forwards into its log. Output written before a Serve function is called
// cannot be caught: an engine passed to Serve or ServeStore must not write
// to standard output while it is being opened (ServeFactory opens the engine
// after the guard is in place, which is one reason to prefer it).
//
// Logs go to standard error as hclog JSON lines, which the host parses and
// forwards into its structured log with their levels; Params.Logger is an
// slog.Logger writing in that format.
//
// # Self-tests
//
// When the host sets FLAREDB_PLUGIN_SELFTEST (only the certification
// command does), the plugin misbehaves on purpose so that the SDK's
// defences can be checked on the real binary: "stray-stdout" writes to
// standard output while opening and just before the handshake (which must
// still succeed), "hang" never completes the handshake (the host must time
// out and kill it). No engine is opened in the "hang" case.
//
// # Lifetime
//
// The Serve functions return when the host shuts the plugin down, after
// closing the engine; main should then return. On SIGTERM, or when the host
// process is gone, they close the engine and exit. A failure to start (no
// cookie, bad options, an engine that does not open) is printed to standard
// error and ends the process with status 1.
//
// Imports: the SDK depends on the contract, kvengine, package wire and
// go-plugin. It must never import the server (core/server or anything that
// imports it) or the plugin host, so plugin binaries stay small.
package sdk
