package conformance_test

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
)

var (
	metaSeed  = flag.Int64("metamorphic.seed", 0, "run the metamorphic test with this seed only (0: fixed seeds plus one from the clock)")
	metaSteps = flag.Int("metamorphic.steps", 3000, "steps per metamorphic run")
)

// TestMetamorphic runs random operation sequences on the reference engine
// and compares every outcome with another reference engine, the test's
// model engine, and the model over a simulated disk (which is reopened
// along the way). The seed of every run is logged; replay a failure with
// -metamorphic.seed.
func TestMetamorphic(t *testing.T) {
	seeds := []int64{1, 2, 3, 42, time.Now().UnixNano()}
	if *metaSeed != 0 {
		seeds = []int64{*metaSeed}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			conformance.Metamorphic(t, seed, *metaSteps, memFactory, map[string]conformance.Factory{
				"memengine":        memFactory,
				"model":            modelFactory(nil, false),
				"model-persistent": modelFactory(newDiskSim(), false),
			})
		})
	}
}

// TestMetamorphicDeterministic: one seed yields one sequence, so a logged
// seed replays a failure.
func TestMetamorphicDeterministic(t *testing.T) {
	var logs [2]string
	for i := range logs {
		ft := runFake(t, func(ft *fakeT) {
			conformance.Metamorphic(ft, 7, 300, memFactory, map[string]conformance.Factory{
				"broken": func(string) (engine.Engine, error) { return dropsLastScanEntry{mem()}, nil },
			})
		})
		logs[i] = strings.Join(ft.errors, "\n")
		if logs[i] == "" {
			t.Fatalf("run %d: the broken engine was not caught", i)
		}
	}
	if logs[0] != logs[1] {
		t.Errorf("two runs of one seed differ:\n%s\n---\n%s", logs[0], logs[1])
	}
}

// TestMetamorphicCatchesBrokenEngines: each broken engine differs from the
// reference within a few hundred steps, and the report names the seed.
func TestMetamorphicCatchesBrokenEngines(t *testing.T) {
	disk := newDiskSim()
	for name, f := range map[string]conformance.Factory{
		"ignores-condition":  func(string) (engine.Engine, error) { return ignoresCondition{mem()}, nil },
		"drops-last-scan":    func(string) (engine.Engine, error) { return dropsLastScanEntry{mem()}, nil },
		"partial-atomic":     func(string) (engine.Engine, error) { return partialAtomic{mem()}, nil },
		"values-in-keysonly": func(string) (engine.Engine, error) { return valuesInKeysOnly{mem()}, nil },
		"wrong-errors":       func(string) (engine.Engine, error) { return wrongErrors{mem()}, nil },
		"loses-nosync":       modelFactory(disk, true),
	} {
		t.Run(name, func(t *testing.T) {
			ft := runFake(t, func(ft *fakeT) {
				conformance.Metamorphic(ft, 11, 2000, memFactory, map[string]conformance.Factory{name: f, "model": modelFactory(nil, false)})
			})
			if len(ft.errors) == 0 {
				t.Fatalf("the %s engine was not caught", name)
			}
			all := strings.Join(ft.errors, "\n")
			if !strings.Contains(all, "seed 11") || !strings.Contains(all, name) || strings.Contains(all, "model differs") {
				t.Errorf("report does not name the seed and only the broken engine:\n%s", all)
			}
			t.Logf("caught: %s", firstLine(ft.errors))
		})
	}
}

// FuzzMetamorphic cross-checks the reference engine against the model
// engine on sequences from fuzzed seeds.
func FuzzMetamorphic(f *testing.F) {
	for _, s := range []int64{0, 1, -1, 1 << 40} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed int64) {
		conformance.Metamorphic(t, seed, 300, memFactory, map[string]conformance.Factory{
			"model":            modelFactory(nil, false),
			"model-persistent": modelFactory(newDiskSim(), false),
		})
	})
}

// fakeT implements conformance.T, collecting errors instead of failing the
// test, so tests can assert that something fails.
type fakeT struct {
	tb       testing.TB
	mu       sync.Mutex
	errors   []string
	cleanups []func()
}

func (f *fakeT) Helper()                       {}
func (f *fakeT) Logf(string, ...any)           {}
func (f *fakeT) Name() string                  { return f.tb.Name() }
func (f *fakeT) TempDir() string               { return f.tb.TempDir() }
func (f *fakeT) Skipf(format string, a ...any) { f.Fatalf("skip: "+format, a...) }
func (f *fakeT) Errorf(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, a...))
}
func (f *fakeT) Fatalf(format string, a ...any) {
	f.Errorf(format, a...)
	runtime.Goexit()
}
func (f *fakeT) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.errors) > 0
}
func (f *fakeT) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// runFake runs fn with a fakeT on its own goroutine (so Fatalf can end it)
// and runs the cleanups.
func runFake(tb testing.TB, fn func(*fakeT)) *fakeT {
	ft := &fakeT{tb: tb}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			for i := len(ft.cleanups) - 1; i >= 0; i-- {
				ft.cleanups[i]()
			}
		}()
		fn(ft)
	}()
	<-done
	return ft
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(m.Run())
}
