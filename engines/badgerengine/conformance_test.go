package badgerengine

import (
	"testing"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, func(dir string) (engine.Engine, error) { return Open(dir, nil) })
}

func BenchmarkConformance(b *testing.B) {
	conformance.Bench(b, func(dir string) (engine.Engine, error) { return Open(dir, nil) })
}
