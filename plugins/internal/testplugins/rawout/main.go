// Command rawout serves the in-memory engine with go-plugin directly, not
// with the SDK, and on every Apply writes 100 KiB without a newline
// straight to file descriptor 1 (as C code in an engine might): the SDK
// would point that descriptor at standard error; here it is the pipe the
// host read the handshake from, which the host must keep draining.
package main

import (
	"bytes"
	"context"
	"os"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	"github.com/flaredb/flaredb/plugins/internal/pluginproto"
)

// fd1 is file descriptor 1 itself, whatever os.Stdout is later.
var fd1 = os.NewFile(1, "fd1")

// Marker starts the output of each Apply.
const Marker = "rawout: apply output"

type noisy struct{ engine.Engine }

func (n noisy) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	out := append([]byte(Marker), bytes.Repeat([]byte("x"), 100<<10)...)
	if _, err := fd1.Write(out); err != nil {
		return nil, err
	}
	return n.Engine.Apply(ctx, ws, o)
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  pluginproto.Handshake(),
		VersionedPlugins: pluginproto.Versioned(engine.ProtocolVersion, &pluginproto.EnginePlugin{Engine: noisy{memengine.New()}}),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, pluginproto.ServerOptions()...)...)
		},
	})
}
