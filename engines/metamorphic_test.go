//go:build cgo

// Package engines_test runs the metamorphic test across every stock engine:
// random operation sequences applied to RocksDB, Badger and the memory
// reference engine must give identical results.
package engines_test

import (
	"flag"
	"testing"
	"time"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/badgerengine"
	"github.com/flaredb/flaredb/engines/memengine"
	"github.com/flaredb/flaredb/engines/rocksdbengine"
)

var (
	seed  = flag.Int64("metamorphic.seed", 0, "replay one seed (0: fixed seeds plus one from the clock)")
	steps = flag.Int("metamorphic.steps", 800, "operations per seed")
)

func TestMetamorphicStockEngines(t *testing.T) {
	seeds := []int64{1, 42, time.Now().UnixNano()}
	if *seed != 0 {
		seeds = []int64{*seed}
	}
	ref := func(string) (engine.Engine, error) { return memengine.New(), nil }
	engines := map[string]conformance.Factory{
		"rocksdb": func(dir string) (engine.Engine, error) { return rocksdbengine.Open(dir, nil) },
		"badger":  func(dir string) (engine.Engine, error) { return badgerengine.Open(dir, nil) },
	}
	for _, s := range seeds {
		conformance.Metamorphic(t, s, *steps, ref, engines)
	}
}
