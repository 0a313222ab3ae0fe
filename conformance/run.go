package conformance

import (
	"context"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
)

var _ T = (*testing.T)(nil)

// Run runs every case of the suite against the engine f opens, each as a
// subtest named after the case (t.Run(c.Name, ...)), each on a fresh engine
// in its own temporary directory. It first opens one engine to read its
// Description (which decides the capability skips) and fails the test at
// once if that fails.
func Run(t *testing.T, f Factory) {
	t.Helper()
	desc := describe(t, f)
	t.Logf("engine %q version %q, protocol %d, limits %+v, capabilities %+v; conformance suite %s",
		desc.Name, desc.Version, desc.Protocol, desc.Limits, desc.Capabilities, SuiteVersion)
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			c.Run(t, NewHarness(t.Context(), t, f, desc))
		})
	}
}

// describe opens an engine on a temporary directory, returns its
// Description and closes it, stopping t if that fails.
func describe(t T, f Factory) engine.Description {
	t.Helper()
	h := NewHarness(context.Background(), t, f, engine.Description{})
	e := h.Open()
	d := e.Describe()
	h.Close(e)
	return d
}
