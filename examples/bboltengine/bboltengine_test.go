package bboltengine_test

import (
	"errors"
	"testing"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
	"github.com/flaredb/flaredb/core/kvengine/storetest"
	"github.com/flaredb/flaredb/examples/bboltengine"
	"github.com/flaredb/flaredb/plugins/wire"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, func(dir string) (engine.Engine, error) { return bboltengine.OpenEngine(dir) })
}

func TestConformanceOverGRPC(t *testing.T) {
	conformance.Run(t, func(dir string) (engine.Engine, error) {
		e, err := bboltengine.OpenEngine(dir)
		if err != nil {
			return nil, err
		}
		return wire.Loopback(e)
	})
}

func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	e, err := bboltengine.OpenEngine(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := bboltengine.Open(dir); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("second open: %v", err)
	}
}

// TestCrashRecovery kills a child process writing synced batches with
// SIGKILL and checks the store after reopening it; storetest.Crash runs
// this test again in the child. (storetest.Run does not fit this example:
// bbolt's Close waits for open snapshots instead of releasing them.)
func TestCrashRecovery(t *testing.T) {
	storetest.Crash(t, func(_ *testing.T, dir string, _ bool) (kvengine.Store, error) {
		return bboltengine.Open(dir) // bbolt has no option to refuse a missing database
	})
}

// TestCrashDuringCreate kills child processes while they create the store
// in fresh directories; every directory must open afterwards.
func TestCrashDuringCreate(t *testing.T) {
	storetest.CrashDuringCreate(t, func(_ *testing.T, dir string, _ bool) (kvengine.Store, error) {
		return bboltengine.Open(dir)
	})
}
