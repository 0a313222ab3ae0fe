package conformance_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
)

// The self-test: engines broken on purpose, each wrapping the reference
// engine with one bug, must fail the cases that exist to catch that bug.
// This proves the suite can fail, and that each of those cases checks what
// it claims to.

// wrapped delegates to the reference engine; each broken engine overrides
// one method.
type wrapped struct {
	engine.Engine
}

// ignoresCondition applies every write as if it had no condition.
type ignoresCondition struct{ wrapped }

func (e ignoresCondition) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	in := make([]engine.Write, len(ws))
	for i, w := range ws {
		in[i] = w
		if w.Cond.Kind <= engine.CondValue { // keep unknown kinds invalid
			in[i].Cond = engine.Condition{}
		}
	}
	return e.Engine.Apply(ctx, in, o)
}

// dropsLastScanEntry never hands the last entry of a scan to the callback.
type dropsLastScanEntry struct{ wrapped }

func (e dropsLastScanEntry) Scan(ctx context.Context, o engine.ScanOptions, fn func(engine.Entry) error) error {
	var held *engine.Entry
	err := e.Engine.Scan(ctx, o, func(en engine.Entry) error {
		if held != nil {
			if err := fn(*held); err != nil {
				return err
			}
		}
		held = &en
		return nil
	})
	return err
}

// partialAtomic applies atomic groups as independent writes.
type partialAtomic struct{ wrapped }

func (e partialAtomic) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	o.Atomic = false
	return e.Engine.Apply(ctx, ws, o)
}

// aliasingRead caches the values it returns and hands the same slices out
// again while the version is unchanged, as an engine returning pointers
// into its block cache would.
type aliasingRead struct {
	wrapped
	mu    *sync.Mutex
	cache map[string]engine.Entry
}

func (e aliasingRead) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	got, err := e.Engine.Read(ctx, keys)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, en := range got {
		if c, ok := e.cache[string(en.Key)]; ok && c.Version == en.Version {
			got[i].Value = c.Value
		} else {
			e.cache[string(en.Key)] = en
		}
	}
	return got, nil
}

// ignoresVersions stores its own versions instead of the caller's.
type ignoresVersions struct {
	wrapped
	next *atomic.Uint64
}

func (e ignoresVersions) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	in := make([]engine.Write, len(ws))
	for i, w := range ws {
		in[i] = w
		if w.Kind == engine.OpPut && w.Version != 0 {
			in[i].Version = 1<<62 + e.next.Add(1)
		}
	}
	return e.Engine.Apply(ctx, in, o)
}

// closeTwiceFails returns an error from every Close after the first.
type closeTwiceFails struct {
	wrapped
	closed *atomic.Bool
}

func (e closeTwiceFails) Close() error {
	if e.closed.Swap(true) {
		return errors.New("already closed")
	}
	return e.Engine.Close()
}

// neverCloses ignores Close: calls after it still succeed.
type neverCloses struct{ wrapped }

func (neverCloses) Close() error { return nil }

// ignoresContext serves calls whatever their context.
type ignoresContext struct{ wrapped }

func (e ignoresContext) Read(_ context.Context, k [][]byte) ([]engine.Entry, error) {
	return e.Engine.Read(context.Background(), k)
}

func (e ignoresContext) Apply(_ context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	return e.Engine.Apply(context.Background(), ws, o)
}

func (e ignoresContext) Scan(_ context.Context, o engine.ScanOptions, fn func(engine.Entry) error) error {
	return e.Engine.Scan(context.Background(), o, fn)
}

// wrapsScanError wraps the callback's error instead of returning it as is.
type wrapsScanError struct{ wrapped }

func (e wrapsScanError) Scan(ctx context.Context, o engine.ScanOptions, fn func(engine.Entry) error) error {
	if err := e.Engine.Scan(ctx, o, fn); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	return nil
}

// valuesInKeysOnly returns values in keys-only scans.
type valuesInKeysOnly struct{ wrapped }

func (e valuesInKeysOnly) Scan(ctx context.Context, o engine.ScanOptions, fn func(engine.Entry) error) error {
	o.KeysOnly = false
	return e.Engine.Scan(ctx, o, fn)
}

// unenforcedLimits declares limits it does not enforce.
type unenforcedLimits struct{ wrapped }

func (e unenforcedLimits) Describe() engine.Description {
	d := e.Engine.Describe()
	d.Limits = engine.Limits{MaxKeySize: 100, MaxValueSize: 1000, MaxWrites: 10, MaxBatchSize: 5000}
	return d
}

// wrongErrors reports ErrInternal instead of ErrInvalidArgument.
type wrongErrors struct{ wrapped }

func (e wrongErrors) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	res, err := e.Engine.Apply(ctx, ws, o)
	if errors.Is(err, engine.ErrInvalidArgument) {
		return nil, fmt.Errorf("%w: %s", engine.ErrInternal, err) // breaks the chain
	}
	return res, err
}

// staleScan reads each key afresh while scanning instead of from one
// snapshot: it sees writes made during the scan.
type staleScan struct{ wrapped }

func (e staleScan) Scan(ctx context.Context, o engine.ScanOptions, fn func(engine.Entry) error) error {
	var ks [][]byte
	ko := o
	ko.KeysOnly = true
	if err := e.Engine.Scan(ctx, ko, func(en engine.Entry) error { ks = append(ks, en.Key); return nil }); err != nil {
		return err
	}
	for _, k := range ks {
		got, err := e.Engine.Read(ctx, [][]byte{k})
		if err != nil {
			return err
		}
		if got[0].Version == 0 {
			continue
		}
		if o.KeysOnly {
			got[0].Value = nil
		}
		if err := fn(got[0]); err != nil {
			return err
		}
	}
	return nil
}

// hangs blocks every Read until release is closed.
type hangs struct {
	wrapped
	release chan struct{}
}

func (e hangs) Read(ctx context.Context, k [][]byte) ([]engine.Entry, error) {
	<-e.release
	return e.Engine.Read(ctx, k)
}

// panics panics in Scan.
type panics struct{ wrapped }

func (panics) Scan(context.Context, engine.ScanOptions, func(engine.Entry) error) error {
	panic("broken engine: scan exploded")
}

// versionBeforeCondition checks a put's version against the key before
// its condition, so a failed CAS carrying a version the key has passed is
// rejected with ErrInvalidArgument instead of answered.
type versionBeforeCondition struct{ wrapped }

func (e versionBeforeCondition) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	for i, w := range ws {
		if w.Kind != engine.OpPut || w.Cond.Kind == engine.CondNone {
			continue
		}
		cur, err := e.Engine.Read(ctx, [][]byte{w.Key})
		if err != nil {
			return nil, err
		}
		if w.Version <= cur[0].Version {
			return nil, fmt.Errorf("%w: write %d: version %d does not exceed %d", engine.ErrInvalidArgument, i, w.Version, cur[0].Version)
		}
	}
	return e.Engine.Apply(ctx, ws, o)
}

// validatesFirst checks the context and the arguments before asking the
// engine, so a closed engine answers a bad call with ErrInvalidArgument
// or the context's error instead of ErrClosed (as the reference engine
// once did).
type validatesFirst struct{ wrapped }

func (e validatesFirst) Read(ctx context.Context, k [][]byte) ([]engine.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := engine.ValidateKeys(k, e.Describe().Limits); err != nil {
		return nil, err
	}
	return e.Engine.Read(ctx, k)
}

func (e validatesFirst) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, nil
	}
	if err := engine.ValidateWrites(ws, e.Describe().Limits); err != nil {
		return nil, err
	}
	return e.Engine.Apply(ctx, ws, o)
}

func (e validatesFirst) Scan(ctx context.Context, o engine.ScanOptions, fn func(engine.Entry) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := engine.ValidateScan(o); err != nil {
		return err
	}
	return e.Engine.Scan(ctx, o, fn)
}

// scanOutsideCall takes the scan's entries from the engine, then calls fn
// after the engine's Scan returned, so Close does not wait for the
// callbacks (as the reference engine once did).
type scanOutsideCall struct{ wrapped }

func (e scanOutsideCall) Scan(ctx context.Context, o engine.ScanOptions, fn func(engine.Entry) error) error {
	var got []engine.Entry
	if err := e.Engine.Scan(ctx, o, func(en engine.Entry) error { got = append(got, en); return nil }); err != nil {
		return err
	}
	for _, en := range got {
		if err := fn(en); err != nil {
			return err
		}
	}
	return nil
}

// modifiesInputs is correct in every answer but modifies what it is
// passed: it sorts the writes (stably, so each key's writes keep their
// order) or the keys in place, or appends to the scan bounds.
type modifiesInputs struct {
	wrapped
	what string // "writes", "keys" or "bounds"
}

func (e modifiesInputs) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	if e.what != "writes" {
		return e.Engine.Apply(ctx, ws, o)
	}
	type tagged struct {
		w engine.Write
		i int
	}
	tg := make([]tagged, len(ws))
	for i, w := range ws {
		tg[i] = tagged{w, i}
	}
	slices.SortStableFunc(tg, func(a, b tagged) int { return bytes.Compare(a.w.Key, b.w.Key) })
	for i := range tg {
		ws[i] = tg[i].w // in place: the caller's slice
	}
	res, err := e.Engine.Apply(ctx, ws, o)
	if err != nil {
		return nil, err
	}
	out := make([]engine.Result, len(res))
	for i, r := range res {
		out[tg[i].i] = r
	}
	return out, nil
}

func (e modifiesInputs) Read(ctx context.Context, k [][]byte) ([]engine.Entry, error) {
	if e.what != "keys" {
		return e.Engine.Read(ctx, k)
	}
	order := make([]int, len(k))
	for i := range order {
		order[i] = i
	}
	orig := slices.Clone(k)
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(orig[a], orig[b]) })
	for i, j := range order {
		k[i] = orig[j] // in place: the caller's slice
	}
	got, err := e.Engine.Read(ctx, k)
	if err != nil {
		return nil, err
	}
	out := make([]engine.Entry, len(got))
	for i, j := range order {
		out[j] = got[i]
	}
	return out, nil
}

func (e modifiesInputs) Scan(ctx context.Context, o engine.ScanOptions, fn func(engine.Entry) error) error {
	if e.what == "bounds" && len(o.End) > 0 {
		_ = append(o.End, 0x00) // a scratch bound, built in the caller's spare capacity
	}
	return e.Engine.Scan(ctx, o, fn)
}

func mem() wrapped { return wrapped{memengine.New()} }

func TestSuiteCatchesBrokenEngines(t *testing.T) {
	for _, c := range []struct {
		name   string
		open   func(dir string) engine.Engine
		filter string   // the areas to run
		fail   []string // cases that must fail
	}{
		{"ignores-condition",
			func(string) engine.Engine { return ignoresCondition{mem()} },
			`^(cond|versions|batch|atomic|concurrency)/`,
			[]string{"cond/version", "cond/absent", "cond/exists", "cond/value", "versions/recreate", "versions/results",
				"batch/independent-results", "batch/same-key", "atomic/all-or-nothing", "atomic/check-guards", "concurrency/cas-counters"}},
		{"drops-last-scan-entry",
			func(string) engine.Engine { return dropsLastScanEntry{mem()} },
			`^(scan|binary|ownership)/`,
			[]string{"scan/order", "scan/bounds", "scan/binary-bounds", "scan/snapshot-isolation", "binary/keys", "ownership/scan-results"}},
		{"partial-atomic",
			func(string) engine.Engine { return partialAtomic{mem()} },
			`^atomic/`,
			[]string{"atomic/all-or-nothing", "atomic/check-guards"}},
		{"aliasing-read",
			func(string) engine.Engine {
				return aliasingRead{wrapped: mem(), mu: new(sync.Mutex), cache: map[string]engine.Entry{}}
			},
			`^ownership/`,
			[]string{"ownership/read-results"}},
		{"ignores-versions",
			func(string) engine.Engine { return ignoresVersions{wrapped: mem(), next: new(atomic.Uint64)} },
			`^versions/`,
			[]string{"versions/stored-as-given", "versions/must-increase", "versions/must-increase-within-call"}},
		{"close-twice-fails",
			func(string) engine.Engine { return closeTwiceFails{wrapped: mem(), closed: new(atomic.Bool)} },
			`^closed/`,
			[]string{"closed/close-twice"}},
		{"never-closes",
			func(string) engine.Engine { return neverCloses{mem()} },
			`^closed/`,
			[]string{"closed/errors", "closed/during-use"}},
		{"ignores-context",
			func(string) engine.Engine { return ignoresContext{mem()} },
			`^context/`,
			[]string{"context/done-before-call", "context/cancel-during-scan"}},
		{"wraps-scan-error",
			func(string) engine.Engine { return wrapsScanError{mem()} },
			`^scan/callback-error$`,
			[]string{"scan/callback-error"}},
		{"values-in-keys-only",
			func(string) engine.Engine { return valuesInKeysOnly{mem()} },
			`^(scan|binary)/`,
			[]string{"scan/bounds", "scan/binary-bounds", "binary/empty-value"}},
		{"unenforced-limits",
			func(string) engine.Engine { return unenforcedLimits{mem()} },
			`^limits/`,
			[]string{"limits/key-size", "limits/value-size", "limits/writes", "limits/batch-size"}},
		{"wrong-errors",
			func(string) engine.Engine { return wrongErrors{mem()} },
			`^(basic|versions|errors)/`,
			[]string{"basic/empty-key", "basic/unknown-kinds", "versions/must-increase", "errors/all-or-nothing"}},
		{"stale-scan",
			func(string) engine.Engine { return staleScan{mem()} },
			`^scan/snapshot-isolation$`,
			[]string{"scan/snapshot-isolation"}},
		{"version-before-condition",
			func(string) engine.Engine { return versionBeforeCondition{mem()} },
			`^(versions/failed-condition-any-version|concurrency/cas-counters)$`,
			[]string{"versions/failed-condition-any-version", "concurrency/cas-counters"}},
		{"validates-first",
			func(string) engine.Engine { return validatesFirst{mem()} },
			`^closed/`,
			[]string{"closed/errors-first"}},
		{"scan-outside-call",
			func(string) engine.Engine { return scanOutsideCall{mem()} },
			`^closed/waits-for-calls$`,
			[]string{"closed/waits-for-calls"}},
		{"sorts-writes",
			func(string) engine.Engine { return modifiesInputs{mem(), "writes"} },
			`^ownership/`,
			[]string{"ownership/inputs-unmodified"}},
		{"sorts-keys",
			func(string) engine.Engine { return modifiesInputs{mem(), "keys"} },
			`^ownership/`,
			[]string{"ownership/inputs-unmodified"}},
		{"appends-to-bounds",
			func(string) engine.Engine { return modifiesInputs{mem(), "bounds"} },
			`^ownership/`,
			[]string{"ownership/inputs-unmodified"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := func(dir string) (engine.Engine, error) { return c.open(dir), nil }
			rep := conformance.Check(context.Background(), f, conformance.CheckOptions{
				Filter:      regexp.MustCompile(c.filter),
				TempDir:     t.TempDir(),
				CaseTimeout: time.Minute,
			})
			if rep.OK() {
				t.Errorf("the %s engine passes the suite", c.name)
			}
			for _, name := range c.fail {
				r := result(rep, name)
				if r.Status != conformance.StatusFail {
					t.Errorf("case %s: %s, want fail for the %s engine", name, r.Status, c.name)
				} else {
					t.Logf("%s fails as it should: %s", name, firstLine(r.Messages))
				}
			}
		})
	}
}

// TestModestLimits: an engine declaring modest limits runs every case
// that can run within them, and skips only those that need more (each
// saying what it needs): the reference engine with such limits passes
// everything else.
func TestModestLimits(t *testing.T) {
	// Skipped whatever the limits: the memory engine is not persistent.
	durability := []string{"durability/nosync-clean-close", "durability/reopen"}
	for _, c := range []struct {
		name   string
		limits engine.Limits
		skip   []string // besides durability
	}{
		// Needing a 5 MiB value or 64 values of 80 KiB in one call; no
		// MaxBatchSize to exceed.
		{"modest", engine.Limits{MaxWrites: 15, MaxKeySize: 255, MaxValueSize: 2000},
			[]string{"limits/batch-size", "limits/large-batch", "limits/large-value"}},
		{"modest-with-batch", engine.Limits{MaxWrites: 15, MaxKeySize: 255, MaxValueSize: 2000, MaxBatchSize: 4096},
			[]string{"limits/large-batch", "limits/large-value"}},
		// Atomic groups of 5 writes need MaxWrites 5.
		{"small", engine.Limits{MaxWrites: 4, MaxKeySize: 64, MaxValueSize: 100, MaxBatchSize: 300},
			[]string{"atomic/all-applied", "atomic/all-or-nothing", "limits/large-batch", "limits/large-value"}},
		// Groups of 3, 4 and 5 writes; no call within MaxWrites and
		// MaxValueSize can exceed MaxBatchSize.
		{"tiny", engine.Limits{MaxWrites: 2, MaxKeySize: 16, MaxValueSize: 16, MaxBatchSize: 64},
			[]string{"atomic/all-applied", "atomic/all-or-nothing", "atomic/check-guards", "atomic/mixed-writes",
				"concurrency/atomic-groups", "errors/all-or-nothing", "limits/batch-size", "limits/large-batch", "limits/large-value"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := func(string) (engine.Engine, error) { return memengine.NewWithLimits(c.limits), nil }
			rep := conformance.Check(context.Background(), f, conformance.CheckOptions{TempDir: t.TempDir()})
			// The durability cases, on the persistent model engine with
			// the same limits.
			prep := conformance.Check(context.Background(), modelFactoryWithLimits(newDiskSim(), false, c.limits), conformance.CheckOptions{
				Filter:  regexp.MustCompile(`^durability/`),
				TempDir: t.TempDir(),
			})
			for _, r := range prep.Cases {
				if r.Status != conformance.StatusPass {
					t.Errorf("case %s on the persistent model under limits %+v: %s %s", r.Name, c.limits, r.Status, strings.Join(r.Messages, "; "))
				}
			}
			var skipped []string
			for _, r := range rep.Cases {
				switch r.Status {
				case conformance.StatusFail:
					t.Errorf("case %s fails under limits %+v: %s", r.Name, c.limits, strings.Join(r.Messages, "; "))
				case conformance.StatusSkip:
					skipped = append(skipped, r.Name)
					if len(r.Messages) == 0 || !strings.Contains(r.Messages[len(r.Messages)-1], "declares") {
						t.Errorf("case %s skipped without naming what the engine declares: %v", r.Name, r.Messages)
					} else {
						t.Logf("%s skips: %s", r.Name, r.Messages[len(r.Messages)-1])
					}
				}
			}
			want := append(slices.Clone(durability), c.skip...)
			slices.Sort(want)
			slices.Sort(skipped)
			if !slices.Equal(skipped, want) {
				t.Errorf("under limits %+v, %d cases skip: %q; want %d: %q", c.limits, len(skipped), skipped, len(want), want)
			}
			if n := len(conformance.Cases()); rep.Passed != n-len(want) {
				t.Errorf("%d of %d cases pass, want %d", rep.Passed, n, n-len(want))
			}
		})
	}
}

// TestSuiteCatchesLostWrites: an engine that declares itself persistent
// but loses NoSync writes at Close fails the durability cases, which the
// same model without the bug passes (TestPersistentModel).
func TestSuiteCatchesLostWrites(t *testing.T) {
	rep := conformance.Check(context.Background(), modelFactory(newDiskSim(), true), conformance.CheckOptions{
		Filter:  regexp.MustCompile(`^durability/`),
		TempDir: t.TempDir(),
	})
	for _, name := range []string{"durability/reopen", "durability/nosync-clean-close"} {
		if r := result(rep, name); r.Status != conformance.StatusFail {
			t.Errorf("case %s: %s, want fail for an engine losing NoSync writes", name, r.Status)
		}
	}
}

// TestCheckSurvivesHangs: a case whose engine hangs fails at its timeout,
// and the check goes on to the next case.
func TestCheckSurvivesHangs(t *testing.T) {
	release := make(chan struct{})
	defer close(release) // lets the abandoned goroutine finish
	f := func(string) (engine.Engine, error) { return hangs{wrapped: mem(), release: release}, nil }
	rep := conformance.Check(context.Background(), f, conformance.CheckOptions{
		Filter:  regexp.MustCompile(`^(basic/read-many|describe/self)$`),
		TempDir: t.TempDir(),
		// Every case of the check has this bound, describe/self too: it
		// must not be hit by a merely slow machine.
		CaseTimeout: 2 * time.Second,
	})
	r := result(rep, "basic/read-many")
	if r.Status != conformance.StatusFail || !strings.Contains(strings.Join(r.Messages, "\n"), "did not finish within") {
		t.Errorf("hung case: %s %q, want a failure naming the timeout", r.Status, r.Messages)
	}
	if s := result(rep, "describe/self").Status; s != conformance.StatusPass {
		t.Errorf("the case after the hung one: %s, want pass", s)
	}
}

// TestCheckSurvivesPanics: an engine that panics fails the case, not the
// process.
func TestCheckSurvivesPanics(t *testing.T) {
	f := func(string) (engine.Engine, error) { return panics{mem()}, nil }
	rep := conformance.Check(context.Background(), f, conformance.CheckOptions{
		Filter:  regexp.MustCompile(`^scan/(order|bounds)$`),
		TempDir: t.TempDir(),
	})
	for _, name := range []string{"scan/order", "scan/bounds"} {
		r := result(rep, name)
		if r.Status != conformance.StatusFail || !strings.Contains(strings.Join(r.Messages, "\n"), "scan exploded") {
			t.Errorf("case %s: %s %q, want a failure carrying the panic", name, r.Status, firstLine(r.Messages))
		}
	}
}

// TestCheckOpenFailure: a factory that cannot open reports one failed
// pseudo-case.
func TestCheckOpenFailure(t *testing.T) {
	f := func(string) (engine.Engine, error) { return nil, errors.New("no such plugin") }
	rep := conformance.Check(context.Background(), f, conformance.CheckOptions{TempDir: t.TempDir()})
	if rep.OK() || len(rep.Cases) != 1 || rep.Cases[0].Name != conformance.OpenCaseName || !strings.Contains(rep.Cases[0].Messages[0], "no such plugin") {
		t.Errorf("report of an engine that cannot open: %+v", rep)
	}
}

func result(rep conformance.Report, name string) conformance.CaseResult {
	for _, c := range rep.Cases {
		if c.Name == name {
			return c
		}
	}
	return conformance.CaseResult{Name: name, Status: "missing"}
}

func firstLine(msgs []string) string {
	if len(msgs) == 0 {
		return ""
	}
	m, _, _ := strings.Cut(msgs[0], "\n")
	return m
}
