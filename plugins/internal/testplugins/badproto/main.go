// Command badproto is a plugin that speaks another version of the engine
// protocol than this repository's (engine.ProtocolVersion + 98).
package main

import (
	"github.com/hashicorp/go-plugin"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	"github.com/flaredb/flaredb/plugins/internal/pluginproto"
)

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  pluginproto.Handshake(),
		VersionedPlugins: pluginproto.Versioned(engine.ProtocolVersion+98, &pluginproto.EnginePlugin{Engine: memengine.New()}),
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
