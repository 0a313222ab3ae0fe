//go:build cgo

package wire_test

import (
	"testing"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/rocksdbengine"
)

// RocksDB is compiled in only with cgo; without it there is nothing to test.
func TestConformanceRocksDBOverGRPC(t *testing.T) {
	conformance.Run(t, overGRPC(func(dir string) (engine.Engine, error) { return rocksdbengine.Open(dir, nil) }))
}
