package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/server"
	"github.com/flaredb/flaredb/plugins/host"
)

// pluginOpener opens an engine served by a plugin binary, supervised by the
// plugin host: checksum, handshake, start timeout, restart with back-off.
func pluginOpener() server.Opener {
	return server.Opener{Mode: "plugin", Open: func(ctx context.Context, c config.Config, dir string, log *slog.Logger) (engine.Engine, error) {
		p := c.Engine.Plugin
		return host.Open(ctx, host.Config{
			Path:         p.Path,
			Args:         p.Args,
			Env:          p.Env,
			Options:      p.Options,
			DataDir:      dir,
			SHA256:       p.SHA256,
			StartTimeout: p.StartTimeout.D(),
			StopTimeout:  p.StopTimeout.D(),
			// A plugin that leaves an engine call unanswered past the call
			// timeout is probed, and restarted if the probe goes unanswered
			// as long.
			HangTimeout: c.Engine.CallTimeout.D(),
			Restart: host.RestartPolicy{
				MaxBackoff:  p.RestartMaxBackoff.D(),
				MaxRestarts: p.MaxRestarts,
			},
		}, log.With("component", "plugin"))
	}, Check: func(c config.Config) error {
		if err := host.CheckBinary(c.Engine.Plugin.Path, c.Engine.Plugin.SHA256); err != nil {
			return fmt.Errorf("engine.plugin.path: %w", err)
		}
		return nil
	}}
}
