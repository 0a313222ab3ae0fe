package wire_test

import (
	"testing"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/badgerengine"
	"github.com/flaredb/flaredb/engines/memengine"
	"github.com/flaredb/flaredb/plugins/wire"
)

// overGRPC wraps a factory so that every engine it opens is reached
// through the gRPC adapter: a real gRPC server on 127.0.0.1 and a Client.
func overGRPC(open conformance.Factory) conformance.Factory {
	return func(dir string) (engine.Engine, error) {
		e, err := open(dir)
		if err != nil {
			return nil, err
		}
		return wire.Loopback(e)
	}
}

func TestConformanceMemoryOverGRPC(t *testing.T) {
	conformance.Run(t, overGRPC(func(string) (engine.Engine, error) { return memengine.New(), nil }))
}

func TestConformanceBadgerOverGRPC(t *testing.T) {
	conformance.Run(t, overGRPC(func(dir string) (engine.Engine, error) { return badgerengine.Open(dir, nil) }))
}
