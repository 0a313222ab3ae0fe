package conformance

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/flaredb/flaredb/core/engine"
)

// SuiteVersion is the version of this suite, reported by Check. It changes
// whenever a case is added, removed or made stricter, so a certification
// names the exact set of requirements it was made against; the engine
// protocol it tests is engine.ProtocolVersion.
const SuiteVersion = "1.1.0"

// Factory opens an engine whose data lives in dir, an existing directory that
// belongs to the engine alone. Calling it again with the same dir, after the
// engine opened there was closed, reopens it: a persistent engine must then
// see the data it held when it was closed.
type Factory func(dir string) (engine.Engine, error)

// T is the part of *testing.T a case uses. Check implements it with a
// recorder, so cases run outside go test too (the CLI's certify command).
//
// Fatalf and Skipf stop the case: they must be called from the goroutine
// running the case, never from one it started. The other methods are safe
// for concurrent use.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
	Name() string
}

// Case is one conformance case.
type Case struct {
	// Name is hierarchical, with slashes: "area/what", e.g.
	// "cond/version". It is the subtest name under Run and the row name in
	// a Report.
	Name string
	// Run performs the case. It reports through t and opens engines through
	// h; it must not keep either after it returns.
	Run func(t T, h *Harness)
}

// Harness is what a case works with: it opens engines (each on a fresh
// temporary directory, closed when the case ends), reopens them, skips the
// case when the engine declares that it does not apply, and offers helpers
// that stop the case (Fatalf) on an unexpected error.
//
// A Harness belongs to one case. Its helpers may be called from the
// goroutines a case starts, except those that stop the case on failure
// (Open, Reopen, Put, PutVersion, Delete, MustApply, MustRead, MustGet,
// MustScan and the Skip helpers), which call Fatalf or Skipf and so belong on
// the case's own goroutine.
type Harness struct {
	// Factory opens the engine under test.
	Factory Factory
	// Description is the engine's self-description, taken from an engine
	// the suite opened before running the cases.
	Description engine.Description

	t       T
	ctx     context.Context
	version atomic.Uint64

	mu      sync.Mutex
	opened  []*openEngine
	lastDir string
}

type openEngine struct {
	e      engine.Engine
	dir    string
	closed bool
}

// firstVersion is where NextVersion starts: above the small explicit
// versions some cases use.
const firstVersion = 1 << 20

// NewHarness returns a harness for one case run through t, opening engines
// with f. d is the engine's Description (Run and Check take it from an
// engine opened for the purpose); ctx is the context the case's engine
// calls use (Context).
func NewHarness(ctx context.Context, t T, f Factory, d engine.Description) *Harness {
	h := &Harness{Factory: f, Description: d, t: t, ctx: ctx}
	h.version.Store(firstVersion)
	return h
}

// Context returns the context for the case's engine calls. Under Check it
// is cancelled when the case times out.
func (h *Harness) Context() context.Context { return h.ctx }

// NextVersion returns a version greater than every version it returned
// before, for the case's puts. It is safe for concurrent use, so versions
// taken from it strictly increase per key as long as each key's writes are
// issued one after another.
func (h *Harness) NextVersion() uint64 { return h.version.Add(1) }

// Dir returns the directory of the engine the case opened or reopened
// last, or "" before the first Open.
func (h *Harness) Dir() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastDir
}

// Open opens a fresh engine on a new temporary directory. It is closed when
// the case ends unless the case closed it through Close or Reopen first.
// Open stops the case if the factory fails.
func (h *Harness) Open() engine.Engine {
	h.t.Helper()
	return h.openOn(h.t.TempDir())
}

func (h *Harness) openOn(dir string) engine.Engine {
	h.t.Helper()
	e, err := h.Factory(dir)
	if err != nil {
		h.t.Fatalf("open engine on %s: %v", dir, err)
	}
	if e == nil {
		h.t.Fatalf("open engine on %s: factory returned a nil engine and no error", dir)
	}
	oe := &openEngine{e: e, dir: dir}
	h.mu.Lock()
	h.opened = append(h.opened, oe)
	h.lastDir = dir
	h.mu.Unlock()
	h.t.Cleanup(func() {
		h.mu.Lock()
		closed := oe.closed
		oe.closed = true
		h.mu.Unlock()
		if !closed {
			if err := e.Close(); err != nil {
				h.t.Errorf("Close at the end of the case: %v", err)
			}
		}
	})
	return e
}

// find returns the record of an engine this harness opened. Engines are
// compared with == only when their dynamic type is comparable.
func (h *Harness) find(e engine.Engine) *openEngine {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.opened) - 1; i >= 0; i-- {
		o := h.opened[i]
		if sameEngine(o.e, e) {
			return o
		}
	}
	return nil
}

func sameEngine(a, b engine.Engine) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	if ta != tb || ta == nil || !ta.Comparable() {
		return false
	}
	return a == b
}

// Close closes e, which the harness opened, reporting (without stopping the
// case) an error from Close. The harness will not close it again.
func (h *Harness) Close(e engine.Engine) {
	h.t.Helper()
	if o := h.find(e); o != nil {
		h.mu.Lock()
		o.closed = true
		h.mu.Unlock()
	}
	if err := e.Close(); err != nil {
		h.t.Errorf("Close: %v", err)
	}
}

// Reopen closes e, which the harness opened, and opens the engine again on
// the same directory, returning the new engine. It stops the case if Close
// or the factory fails.
func (h *Harness) Reopen(e engine.Engine) engine.Engine {
	h.t.Helper()
	o := h.find(e)
	if o == nil {
		h.t.Fatalf("Reopen: engine was not opened by this harness")
		return nil
	}
	h.mu.Lock()
	o.closed = true
	h.mu.Unlock()
	if err := e.Close(); err != nil {
		h.t.Fatalf("Close before reopening: %v", err)
	}
	return h.openOn(o.dir)
}

// SkipUnlessPersistent skips the case, saying why, unless the engine
// declares Capabilities.Persistent.
func (h *Harness) SkipUnlessPersistent() {
	h.t.Helper()
	if !h.Description.Capabilities.Persistent {
		h.t.Skipf("engine declares Persistent=false: durability cases do not apply")
	}
}

// SkipUnlessFits skips the case, saying why, when a limit the engine
// declares is below what the case needs: need holds the largest key, value,
// writes per call and bytes per call the case uses (zero fields need
// nothing).
func (h *Harness) SkipUnlessFits(need engine.Limits) {
	h.t.Helper()
	l := h.Description.Limits
	for _, c := range []struct {
		name       string
		have, need int
	}{
		{"MaxKeySize", l.MaxKeySize, need.MaxKeySize},
		{"MaxValueSize", l.MaxValueSize, need.MaxValueSize},
		{"MaxWrites", l.MaxWrites, need.MaxWrites},
		{"MaxBatchSize", l.MaxBatchSize, need.MaxBatchSize},
	} {
		if c.have > 0 && c.need > c.have {
			h.t.Skipf("engine declares %s=%d; this case needs %d", c.name, c.have, c.need)
		}
	}
}

// PutVersion writes value under key with the given version, unconditionally,
// and stops the case unless the write applies.
func (h *Harness) PutVersion(e engine.Engine, key, value []byte, version uint64) {
	h.t.Helper()
	r := h.MustApply(e, engine.ApplyOptions{}, engine.Write{Kind: engine.OpPut, Key: key, Value: value, Version: version})
	if !r[0].Applied {
		h.t.Fatalf("unconditional put of %s at version %d: Applied=false", fmtKey(key), version)
	}
}

// Put writes value under key with a fresh version (NextVersion),
// unconditionally, stops the case unless it applies, and returns the
// version.
func (h *Harness) Put(e engine.Engine, key, value []byte) uint64 {
	h.t.Helper()
	v := h.NextVersion()
	h.PutVersion(e, key, value, v)
	return v
}

// Delete deletes key unconditionally and stops the case unless the write
// applies.
func (h *Harness) Delete(e engine.Engine, key []byte) {
	h.t.Helper()
	r := h.MustApply(e, engine.ApplyOptions{}, engine.Write{Kind: engine.OpDelete, Key: key})
	if !r[0].Applied {
		h.t.Fatalf("unconditional delete of %s: Applied=false", fmtKey(key))
	}
}

// MustApply calls e.Apply with the case's context and stops the case if it
// returns an error or a number of results other than len(writes).
func (h *Harness) MustApply(e engine.Engine, opts engine.ApplyOptions, writes ...engine.Write) []engine.Result {
	h.t.Helper()
	res, err := e.Apply(h.ctx, writes, opts)
	if err != nil {
		h.t.Fatalf("Apply(%s, %+v): %v", fmtWrites(writes), opts, err)
	}
	if len(res) != len(writes) {
		h.t.Fatalf("Apply(%s, %+v): %d results for %d writes", fmtWrites(writes), opts, len(res), len(writes))
	}
	return res
}

// MustRead calls e.Read with the case's context and stops the case if it
// returns an error or a number of entries other than len(keys). It reports
// (without stopping) entries whose Key is not the key asked for.
func (h *Harness) MustRead(e engine.Engine, keys ...[]byte) []engine.Entry {
	h.t.Helper()
	got, err := e.Read(h.ctx, keys)
	if err != nil {
		h.t.Fatalf("Read(%s): %v", fmtKeys(keys), err)
	}
	if len(got) != len(keys) {
		h.t.Fatalf("Read(%s): %d entries for %d keys", fmtKeys(keys), len(got), len(keys))
	}
	for i := range keys {
		if string(got[i].Key) != string(keys[i]) {
			h.t.Errorf("Read(%s): entry %d has key %s, want %s", fmtKeys(keys), i, fmtKey(got[i].Key), fmtKey(keys[i]))
		}
	}
	return got
}

// MustGet reads one key (MustRead) and returns its entry.
func (h *Harness) MustGet(e engine.Engine, key []byte) engine.Entry {
	h.t.Helper()
	return h.MustRead(e, key)[0]
}

// MustScan runs e.Scan with the case's context, collecting every entry, and
// stops the case if it returns an error.
func (h *Harness) MustScan(e engine.Engine, opts engine.ScanOptions) []engine.Entry {
	h.t.Helper()
	var out []engine.Entry
	err := e.Scan(h.ctx, opts, func(en engine.Entry) error {
		out = append(out, en)
		return nil
	})
	if err != nil {
		h.t.Fatalf("Scan(%s): %v", fmtScan(opts), err)
	}
	return out
}

// fmtBytes formats a byte slice for a message: quoted, cut after 40 bytes,
// with nil shown as nil.
func fmtBytes(b []byte) string {
	if b == nil {
		return "nil"
	}
	if len(b) > 40 {
		return fmt.Sprintf("%q...(%d bytes)", b[:40], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func fmtKey(k []byte) string { return fmtBytes(k) }

func fmtKeys(keys [][]byte) string {
	s := "["
	for i, k := range keys {
		if i > 0 {
			s += " "
		}
		if i == 8 {
			return s + fmt.Sprintf("... %d keys]", len(keys))
		}
		s += fmtKey(k)
	}
	return s + "]"
}

func fmtCond(c engine.Condition) string {
	switch c.Kind {
	case engine.CondNone:
		return ""
	case engine.CondVersion:
		return fmt.Sprintf(" if version=%d", c.Version)
	case engine.CondValue:
		return fmt.Sprintf(" if value=%s", fmtBytes(c.Value))
	case engine.CondAbsent, engine.CondExists:
		return " if " + c.Kind.String()
	}
	return fmt.Sprintf(" if cond(%d)", c.Kind)
}

func fmtWrite(w engine.Write) string {
	switch w.Kind {
	case engine.OpPut:
		return fmt.Sprintf("put %s=%s@%d%s", fmtKey(w.Key), fmtBytes(w.Value), w.Version, fmtCond(w.Cond))
	case engine.OpDelete, engine.OpCheck:
		return fmt.Sprintf("%s %s%s", w.Kind, fmtKey(w.Key), fmtCond(w.Cond))
	}
	return fmt.Sprintf("op(%d) %s%s", w.Kind, fmtKey(w.Key), fmtCond(w.Cond))
}

func fmtWrites(ws []engine.Write) string {
	s := "["
	for i, w := range ws {
		if i > 0 {
			s += "; "
		}
		if i == 8 {
			return s + fmt.Sprintf("... %d writes]", len(ws))
		}
		s += fmtWrite(w)
	}
	return s + "]"
}

func fmtScan(o engine.ScanOptions) string {
	return fmt.Sprintf("start=%s end=%s reverse=%v limit=%d keysOnly=%v",
		fmtBytes(o.Start), fmtBytes(o.End), o.Reverse, o.Limit, o.KeysOnly)
}

func fmtEntry(e engine.Entry) string {
	return fmt.Sprintf("%s=%s@%d", fmtKey(e.Key), fmtBytes(e.Value), e.Version)
}

func fmtResult(r engine.Result) string {
	return fmt.Sprintf("{applied=%v %s@%d}", r.Applied, fmtBytes(r.Value), r.Version)
}
