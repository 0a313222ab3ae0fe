//go:build cgo

package server_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/rocksdbengine"
)

// TestEngineSwitchRefusedByEngine switches the plugin engine's directory
// from Badger to RocksDB, which used to delete Badger's tables: RocksDB
// refuses the directory before touching it, the server does not start, and
// Badger's data is still there.
func TestEngineSwitchRefusedByEngine(t *testing.T) {
	data := t.TempDir()
	writeAndStop(t, badgerAsPlugin(data), "k", "badger's value")

	_, err := startTest(t, testServer{dataDir: data, name: "plugin", mode: "plugin", open: func(dir string) (engine.Engine, error) {
		return rocksdbengine.Open(dir, nil)
	}})
	if !errors.Is(err, engine.ErrInvalidArgument) || !strings.Contains(err.Error(), "belongs to the Badger engine") {
		t.Fatalf("RocksDB on Badger's directory = %v, want a refusal wrapping engine.ErrInvalidArgument", err)
	}
	readAndStop(t, badgerAsPlugin(data), "k", "badger's value")
}
