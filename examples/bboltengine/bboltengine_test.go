package bboltengine_test

import (
	"errors"
	"testing"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
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
