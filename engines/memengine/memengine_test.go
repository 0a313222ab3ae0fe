package memengine_test

import (
	"testing"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
)

func factory(string) (engine.Engine, error) { return memengine.New(), nil }

// TestConformance runs the suite on the reference engine; the durability
// cases are skipped because it declares Persistent=false.
func TestConformance(t *testing.T) { conformance.Run(t, factory) }

func BenchmarkConformance(b *testing.B) { conformance.Bench(b, factory) }
