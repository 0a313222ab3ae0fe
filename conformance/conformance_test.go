package conformance_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
)

// memFactory opens the reference engine; it is not persistent, so a reopen
// starts empty.
func memFactory(string) (engine.Engine, error) { return memengine.New(), nil }

// TestMemEngine runs the suite against the reference engine: it must pass
// every case that applies to it.
func TestMemEngine(t *testing.T) {
	conformance.Run(t, memFactory)
}

// TestPersistentModel runs the suite against the test's own model engine
// over a simulated disk, so the durability cases run here too.
func TestPersistentModel(t *testing.T) {
	conformance.Run(t, modelFactory(newDiskSim(), false))
}

func TestCaseNames(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z]+/[a-z0-9-]+$`)
	seen := map[string]bool{}
	for _, c := range conformance.Cases() {
		if !valid.MatchString(c.Name) {
			t.Errorf("case name %q is not area/name in lower case", c.Name)
		}
		if seen[c.Name] {
			t.Errorf("duplicate case name %q", c.Name)
		}
		seen[c.Name] = true
		if c.Run == nil {
			t.Errorf("case %q has no Run", c.Name)
		}
	}
	// Every area the architecture's Conformance section lists.
	for _, area := range []string{"describe", "basic", "binary", "versions", "cond", "batch", "atomic", "errors",
		"scan", "limits", "concurrency", "durability", "closed", "context", "ownership"} {
		found := false
		for name := range seen {
			if strings.HasPrefix(name, area+"/") {
				found = true
			}
		}
		if !found {
			t.Errorf("no case in area %q", area)
		}
	}
}

// TestCheckMemEngine runs the suite through Check, as the certify command
// does: the reference engine passes, and skips only what its Description
// rules out.
func TestCheckMemEngine(t *testing.T) {
	var progress int
	rep := conformance.Check(context.Background(), memFactory, conformance.CheckOptions{
		TempDir:  t.TempDir(),
		Progress: func(conformance.CaseResult) { progress++ },
	})
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", table.String())
	if !rep.OK() {
		t.Fatalf("the reference engine fails the suite")
	}
	if rep.Suite != conformance.SuiteVersion || rep.Protocol != engine.ProtocolVersion || rep.Engine.Name != memengine.Name {
		t.Errorf("report header: suite %q protocol %d engine %q", rep.Suite, rep.Protocol, rep.Engine.Name)
	}
	if n := len(conformance.Cases()); len(rep.Cases) != n || progress != n || rep.Passed+rep.Failed+rep.Skipped != n {
		t.Errorf("report has %d cases (%d+%d+%d), progress saw %d, the suite has %d", len(rep.Cases), rep.Passed, rep.Failed, rep.Skipped, progress, n)
	}
	for _, c := range rep.Cases {
		if c.Status != conformance.StatusSkip {
			continue
		}
		if !strings.HasPrefix(c.Name, "durability/") && !strings.HasPrefix(c.Name, "limits/") {
			t.Errorf("case %s skipped: %v", c.Name, c.Messages)
		}
		if len(c.Messages) == 0 || !strings.Contains(c.Messages[len(c.Messages)-1], "declares") {
			t.Errorf("case %s skipped without naming what the engine declares: %v", c.Name, c.Messages)
		}
	}
	for _, want := range []string{"durability/reopen", "durability/nosync-clean-close", "limits/writes", "limits/batch-size"} {
		if st := status(rep, want); st != conformance.StatusSkip {
			t.Errorf("case %s: status %q, want skip for the memory engine", want, st)
		}
	}
	if !strings.Contains(table.String(), "passed, 0 failed") {
		t.Errorf("table has no summary line:\n%s", table.String())
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back conformance.Report
	if err := json.Unmarshal(b, &back); err != nil || back.Passed != rep.Passed || len(back.Cases) != len(rep.Cases) || back.Suite != rep.Suite {
		t.Errorf("report does not round-trip through JSON: %v\n%s", err, b)
	}
}

func TestCheckFilter(t *testing.T) {
	rep := conformance.Check(context.Background(), memFactory, conformance.CheckOptions{
		Filter:  regexp.MustCompile(`^scan/`),
		TempDir: t.TempDir(),
	})
	if !rep.OK() || len(rep.Cases) == 0 {
		t.Fatalf("filtered check: ok=%v, %d cases", rep.OK(), len(rep.Cases))
	}
	for _, c := range rep.Cases {
		if !strings.HasPrefix(c.Name, "scan/") {
			t.Errorf("filter let %s through", c.Name)
		}
	}
	none := conformance.Check(context.Background(), memFactory, conformance.CheckOptions{Filter: regexp.MustCompile(`^nothing$`)})
	if none.OK() || len(none.Cases) != 0 {
		t.Errorf("a check that ran no case: OK=%v with %d cases; want not OK", none.OK(), len(none.Cases))
	}
}

func TestCheckCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := conformance.Check(ctx, memFactory, conformance.CheckOptions{TempDir: t.TempDir()})
	if rep.OK() {
		t.Fatalf("a cancelled check reports OK")
	}
}

func status(rep conformance.Report, name string) string {
	for _, c := range rep.Cases {
		if c.Name == name {
			return c.Status
		}
	}
	return "missing"
}

func BenchmarkMemEngine(b *testing.B) {
	conformance.Bench(b, memFactory)
}
