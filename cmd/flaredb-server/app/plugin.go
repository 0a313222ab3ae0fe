package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/server"
)

// pluginOpener opens an engine served by a plugin binary.
func pluginOpener() server.Opener {
	return server.Opener{Mode: "plugin", Open: func(ctx context.Context, c config.Config, dir string, log *slog.Logger) (engine.Engine, error) {
		return nil, fmt.Errorf("%w: plugin engines are not wired in yet", engine.ErrUnsupported)
	}}
}
