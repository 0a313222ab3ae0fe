package servertest

import (
	"context"
	"iter"
	"slices"
	"sync"

	"github.com/flaredb/flaredb/core/engine"
)

// Call names a kind of engine call that Faults can fail.
type Call int

const (
	// CallRead is engine.Engine.Read: the server's Get and BatchGet.
	CallRead Call = iota + 1
	// CallApply is engine.Engine.Apply: every write. The server merges
	// concurrent writes into one Apply call, so a fault on it affects all
	// the writes merged with the one the test aims at.
	CallApply
)

// Faults is the engine a Server runs on: the memory reference engine, with
// faults injected into the Read and Apply calls the test chooses. Scan,
// Describe and Close are the reference engine's. It is safe for concurrent
// use.
//
// A call touches a key when the key is one of the keys it reads or writes.
// A call first waits for a Hold on any key it touches; then it fails with
// the FailNext error for its kind while that rule has calls left, else with
// the FailKey error of a key it touches; otherwise the reference engine
// answers it.
type Faults struct {
	eng engine.Engine

	mu       sync.Mutex
	failKey  map[string]error
	failNext map[Call]*countdown
	holds    map[string]*Hold
	touched  map[string]int
	released bool // releaseAll was called: holds no longer hold
}

type countdown struct {
	n   int
	err error
}

var _ engine.Engine = (*Faults)(nil)

func newFaults(eng engine.Engine) *Faults {
	return &Faults{
		eng:      eng,
		failKey:  map[string]error{},
		failNext: map[Call]*countdown{},
		holds:    map[string]*Hold{},
		touched:  map[string]int{},
	}
}

// FailKey makes every Read and Apply call that touches key return err,
// which should wrap one of the contract's sentinel errors
// (engine.ErrUnavailable, ...): the server translates it as it would an
// engine's. A nil err removes the rule.
func (f *Faults) FailKey(key []byte, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.failKey, string(key))
		return
	}
	f.failKey[string(key)] = err
}

// FailNext makes the next n calls of kind c return err, whatever keys they
// touch. It replaces an earlier rule for c.
func (f *Faults) FailNext(c Call, n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext[c] = &countdown{n: n, err: err}
}

// Touched returns how many Read and Apply calls have touched key so far,
// including those that failed or were held.
func (f *Faults) Touched(key []byte) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.touched[string(key)]
}

// Hold makes the next Read or Apply call that touches key wait until the
// test calls Release (or the call's context ends: then the call returns
// the context's error). Later calls are not held. It replaces an earlier
// Hold on key that no call has reached yet.
//
// The server applies writes in order through one pipeline, so a held
// Apply call delays every later write until it is released; reads are
// held alone. When the test ends, Start's cleanup releases every hold
// before it stops the server.
func (f *Faults) Hold(key []byte) *Hold {
	h := &Hold{arrived: make(chan struct{}), release: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.released {
		h.Release()
	}
	f.holds[string(key)] = h
	return h
}

// Hold is one held call: see Faults.Hold.
type Hold struct {
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

// Arrived returns a channel closed when the held call has reached the
// engine.
func (h *Hold) Arrived() <-chan struct{} { return h.arrived }

// Wait waits until the held call has reached the engine, and returns nil,
// or until ctx ends, and returns ctx.Err().
func (h *Hold) Wait(ctx context.Context) error {
	select {
	case <-h.arrived:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release lets the held call go on, now or when it arrives. It is safe to
// call more than once.
func (h *Hold) Release() { h.once.Do(func() { close(h.release) }) }

// releaseAll releases every hold, present and future.
func (f *Faults) releaseAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = true
	for _, h := range f.holds {
		h.Release()
	}
}

// enter applies the faults to one call touching keys: it waits for a hold,
// then returns the injected error, if any.
func (f *Faults) enter(ctx context.Context, c Call, keys iter.Seq[[]byte]) error {
	f.mu.Lock()
	var hold *Hold
	for k := range keys {
		f.touched[string(k)]++
		if h, ok := f.holds[string(k)]; ok && hold == nil {
			delete(f.holds, string(k))
			hold = h
		}
	}
	f.mu.Unlock()

	if hold != nil {
		close(hold.arrived)
		select {
		case <-hold.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if cd := f.failNext[c]; cd != nil && cd.n > 0 {
		cd.n--
		return cd.err
	}
	for k := range keys {
		if err, ok := f.failKey[string(k)]; ok {
			return err
		}
	}
	return nil
}

// Read implements engine.Engine.
func (f *Faults) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	if err := f.enter(ctx, CallRead, slices.Values(keys)); err != nil {
		return nil, err
	}
	return f.eng.Read(ctx, keys)
}

// Apply implements engine.Engine.
func (f *Faults) Apply(ctx context.Context, writes []engine.Write, opts engine.ApplyOptions) ([]engine.Result, error) {
	keys := func(yield func([]byte) bool) {
		for _, w := range writes {
			if !yield(w.Key) {
				return
			}
		}
	}
	if err := f.enter(ctx, CallApply, keys); err != nil {
		return nil, err
	}
	return f.eng.Apply(ctx, writes, opts)
}

// Scan implements engine.Engine; it injects no faults.
func (f *Faults) Scan(ctx context.Context, opts engine.ScanOptions, fn func(engine.Entry) error) error {
	return f.eng.Scan(ctx, opts, fn)
}

// Describe implements engine.Engine.
func (f *Faults) Describe() engine.Description { return f.eng.Describe() }

// Close implements engine.Engine.
func (f *Faults) Close() error { return f.eng.Close() }
