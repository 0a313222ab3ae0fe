//go:build cgo

package host_test

import (
	"testing"

	"github.com/flaredb/flaredb/conformance"
)

// RocksDB is compiled in only with cgo; without it there is nothing to test.
func TestConformanceRocksDBPlugin(t *testing.T) {
	conformance.Run(t, asPlugin("rocksdb"))
}
