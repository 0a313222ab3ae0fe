// Package pluginproto holds what the plugin host (plugins/host) and the
// plugin SDK (plugins/sdk) must agree on beyond the engine wire protocol:
// the go-plugin handshake (magic cookie, protocol version), the name the
// engine is dispensed under, the environment variables through which the
// host tells a plugin what to open, and the go-plugin Plugin that connects
// package wire to go-plugin's gRPC transport.
//
// It is internal to plugins/: engine authors use the SDK and never see it.
// It must not import the server, the host, the SDK or any engine.
package pluginproto

import (
	"context"
	"log/slog"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/plugins/wire"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// The magic cookie: a host sets it in the plugin's environment, and a
// plugin refuses to start without it. It is not a security measure, only a
// way to tell someone who runs a plugin binary by hand what it is.
const (
	MagicCookieKey   = "FLAREDB_PLUGIN_MAGIC_COOKIE"
	MagicCookieValue = "6f0e7c1d-flaredb-engine-plugin-9b2a54e8"
)

// PluginName is the name the engine is served and dispensed under.
const PluginName = "engine"

// Environment variables set by the host for the plugin.
const (
	// EnvDataDir is the absolute path of the data directory the plugin's
	// engine must open. The host has created it and holds its lock file.
	EnvDataDir = "FLAREDB_PLUGIN_DATA_DIR"
	// EnvOptions is the engine's options, a JSON object of strings to
	// strings; absent or empty means none.
	EnvOptions = "FLAREDB_PLUGIN_OPTIONS"
	// EnvLogLevel is the least level the plugin should log: "debug",
	// "info" (the default), "warn" or "error".
	EnvLogLevel = "FLAREDB_PLUGIN_LOG_LEVEL"
	// EnvSelfTest asks an SDK plugin to misbehave on purpose, so that
	// certification can check the SDK's defences on the real binary:
	// SelfTestStrayStdout or SelfTestHang. Hosts never set it otherwise.
	EnvSelfTest = "FLAREDB_PLUGIN_SELFTEST"
)

// Values of EnvSelfTest, and the messages an SDK plugin logs when it obeys
// them (certification looks for them in the plugin's log).
const (
	// SelfTestStrayStdout: write to standard output (through os.Stdout and
	// file descriptor 1) while opening and around the handshake, which the
	// SDK must keep out of the handshake.
	SelfTestStrayStdout = "stray-stdout"
	// SelfTestHang: never complete the handshake (the host must time out
	// and kill the plugin).
	SelfTestHang = "hang"

	// StrayStdoutMarker starts every line the stray-stdout self-test
	// writes to standard output.
	StrayStdoutMarker = "flaredb selftest: stray output"
	// HangMessage is logged (with the process id as "pid") by the hang
	// self-test before it blocks.
	HangMessage = "flaredb selftest: hanging before the handshake"
)

// Handshake returns the go-plugin handshake shared by host and plugins. The
// protocol version is negotiated through VersionedPlugins, not through
// HandshakeConfig.ProtocolVersion.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// Versioned returns the VersionedPlugins map that offers p under
// PluginName at the given protocol version (engine.ProtocolVersion, except
// in tests of a mismatch).
func Versioned(version int, p plugin.Plugin) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{version: {PluginName: p}}
}

// EnginePlugin is the go-plugin Plugin for an engine over gRPC. On the
// plugin side, Engine is the engine to serve; on the host side it is nil and
// GRPCClient returns a *wire.Client.
type EnginePlugin struct {
	plugin.NetRPCUnsupportedPlugin

	// Engine is served by GRPCServer (plugin side only).
	Engine engine.Engine
	// Logger receives the server's reports of recovered panics (plugin side
	// only); nil discards them.
	Logger *slog.Logger
}

var _ plugin.GRPCPlugin = (*EnginePlugin)(nil)

// GRPCServer implements plugin.GRPCPlugin: it registers wire.NewServer for
// the engine.
func (p *EnginePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	enginepb.RegisterEngineServer(s, wire.NewServer(p.Engine, wire.WithLogger(p.Logger)))
	return nil
}

// GRPCClient implements plugin.GRPCPlugin: it returns a *wire.Client over
// conn.
func (p *EnginePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return wire.NewClient(conn), nil
}

// ServerOptions returns the gRPC server options a plugin serves with.
func ServerOptions() []grpc.ServerOption { return wire.ServerOptions() }
