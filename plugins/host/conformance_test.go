package host_test

import (
	"context"
	"testing"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/plugins/host"
)

// asPlugin is a conformance factory that runs the named binary as a real
// plugin subprocess on each directory.
func asPlugin(name string) conformance.Factory {
	return func(dir string) (engine.Engine, error) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		return host.Open(ctx, host.Config{Path: bins[name], DataDir: dir}, nil)
	}
}

func TestConformanceMemoryPlugin(t *testing.T) { conformance.Run(t, asPlugin("memory")) }

func TestConformanceBadgerPlugin(t *testing.T) { conformance.Run(t, asPlugin("badger")) }
