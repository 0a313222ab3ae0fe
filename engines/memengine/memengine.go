// Package memengine is FlareDB's reference engine: the simplest correct
// implementation of the engine contract (package engine), kept in memory.
//
// It exists so that tests, the conformance suite's metamorphic test and
// engine authors have a model to compare against: every operation takes one
// lock and works on a plain map, with no cleverness to get wrong, and counts
// itself in flight so that Close waits for it. It is not
// persistent (Capabilities.Persistent is false): its data is gone when it is
// closed. It imports only the contract package and the standard library.
package memengine

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/flaredb/flaredb/core/engine"
)

// Name is the engine's name in its Description.
const Name = "memory"

// DefaultLimits are the reference engine's limits. They match the stock
// engines' key limit so the same requests are valid everywhere.
var DefaultLimits = engine.Limits{
	MaxKeySize:   64 << 10,
	MaxValueSize: 64 << 20,
}

type item struct {
	value   []byte
	version uint64
}

// Engine is the in-memory reference engine. It is safe for concurrent use.
type Engine struct {
	limits engine.Limits

	// life guards closed and inflight; idle is signalled when inflight
	// drops to zero after Close began. Every Read, Apply and Scan is
	// counted in flight from its first step to its return (a Scan
	// through its last callback), so Close can wait for them.
	life     sync.Mutex
	idle     *sync.Cond
	closed   bool
	inflight int

	mu   sync.RWMutex // guards data
	data map[string]item
}

var _ engine.Engine = (*Engine)(nil)

// New returns an empty engine with DefaultLimits.
func New() *Engine { return NewWithLimits(DefaultLimits) }

// NewWithLimits returns an empty engine with the given limits.
func NewWithLimits(l engine.Limits) *Engine {
	e := &Engine{data: make(map[string]item), limits: l}
	e.idle = sync.NewCond(&e.life)
	return e
}

// enter counts a call in flight, or returns ErrClosed once Close has
// begun: a closed engine answers ErrClosed before looking at the context
// or the arguments.
func (e *Engine) enter() error {
	e.life.Lock()
	defer e.life.Unlock()
	if e.closed {
		return engine.ErrClosed
	}
	e.inflight++
	return nil
}

// exit ends a call counted by enter.
func (e *Engine) exit() {
	e.life.Lock()
	e.inflight--
	if e.inflight == 0 && e.closed {
		e.idle.Broadcast()
	}
	e.life.Unlock()
}

// Describe implements engine.Engine.
func (e *Engine) Describe() engine.Description {
	return engine.Description{
		Name:     Name,
		Version:  "1",
		Protocol: engine.ProtocolVersion,
		Limits:   e.limits,
	}
}

// Read implements engine.Engine.
func (e *Engine) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := engine.ValidateKeys(keys, e.limits); err != nil {
		return nil, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]engine.Entry, len(keys))
	for i, k := range keys {
		it, ok := e.data[string(k)]
		out[i] = engine.Entry{Key: engine.Clone(k)}
		if ok {
			out[i].Value = engine.Clone(it.value)
			out[i].Version = it.version
		}
	}
	return out, nil
}

// Apply implements engine.Engine.
func (e *Engine) Apply(ctx context.Context, writes []engine.Write, opts engine.ApplyOptions) ([]engine.Result, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := engine.ValidateWrites(writes, e.limits); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// Evaluate against an overlay so that nothing is applied until every
	// write has been checked.
	overlay := make(map[string]item)
	state := func(k []byte) (item, bool) {
		if it, ok := overlay[string(k)]; ok {
			return it, it.version != 0
		}
		it, ok := e.data[string(k)]
		return it, ok
	}
	results := make([]engine.Result, len(writes))
	allHold := true
	for i, w := range writes {
		cur, _ := state(w.Key)
		results[i] = engine.Result{Value: engine.Clone(cur.value), Version: cur.version}
		if !w.Cond.Holds(cur.value, cur.version) {
			allHold = false
			continue
		}
		switch w.Kind {
		case engine.OpPut:
			if w.Version <= cur.version {
				return nil, fmt.Errorf("%w: write %d: version %d does not exceed the key's version %d",
					engine.ErrInvalidArgument, i, w.Version, cur.version)
			}
			overlay[string(w.Key)] = item{value: engine.Clone(w.Value), version: w.Version}
		case engine.OpDelete:
			overlay[string(w.Key)] = item{}
		}
		results[i].Applied = true
	}
	if opts.Atomic && !allHold {
		// Report the state before the call, and apply nothing.
		for i, w := range writes {
			cur := e.data[string(w.Key)]
			results[i] = engine.Result{Value: engine.Clone(cur.value), Version: cur.version}
		}
		return results, nil
	}
	for k, it := range overlay {
		if it.version == 0 {
			delete(e.data, k)
		} else {
			if it.value == nil {
				it.value = []byte{}
			}
			e.data[k] = it
		}
	}
	return results, nil
}

// Scan implements engine.Engine. It copies the selected entries under the
// lock (the snapshot), then calls fn without holding it, so fn may call the
// engine; the call stays in flight until Scan returns, so Close waits for
// the callbacks.
func (e *Engine) Scan(ctx context.Context, opts engine.ScanOptions, fn func(engine.Entry) error) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := engine.ValidateScan(opts); err != nil {
		return err
	}
	e.mu.RLock()
	keys := make([]string, 0, len(e.data))
	for k := range e.data {
		if len(opts.Start) > 0 && k < string(opts.Start) {
			continue
		}
		if len(opts.End) > 0 && k >= string(opts.End) {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if opts.Reverse {
		for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
			keys[i], keys[j] = keys[j], keys[i]
		}
	}
	if opts.Limit > 0 && len(keys) > opts.Limit {
		keys = keys[:opts.Limit]
	}
	entries := make([]engine.Entry, len(keys))
	for i, k := range keys {
		it := e.data[k]
		entries[i] = engine.Entry{Key: []byte(k), Version: it.version}
		if !opts.KeysOnly {
			entries[i].Value = bytes.Clone(it.value)
		}
	}
	e.mu.RUnlock()
	for _, en := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(en); err != nil {
			return err
		}
	}
	return nil
}

// Close implements engine.Engine: it refuses new calls (they return
// engine.ErrClosed), waits for the calls in progress, scans included, then
// discards the data. Closing again returns nil. Close must not be called
// from a scan callback: it would wait for that scan.
func (e *Engine) Close() error {
	e.life.Lock()
	if e.closed {
		e.life.Unlock()
		return nil
	}
	e.closed = true
	for e.inflight > 0 {
		e.idle.Wait()
	}
	e.life.Unlock()
	e.mu.Lock()
	e.data = nil
	e.mu.Unlock()
	return nil
}
