// Package kv is the core service between the public API and the storage
// engine: it validates requests against the configured limits, gives every
// write its version from the timestamp oracle, and funnels concurrent writes
// through one pipeline that merges them into as few engine calls as
// possible (group commit: one engine call, one fsync and — for a plugin
// engine — one round trip serve many clients).
//
// It speaks the engine contract's types and errors (package engine); the
// translation to gRPC happens once, in the server package. It must not
// import the server, the plugin host, any engine, or generated API code.
package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/metrics"
	"github.com/flaredb/flaredb/core/tso"
	"github.com/flaredb/flaredb/internal/keyset"
)

// ErrShuttingDown is returned for writes submitted after Close began.
var ErrShuttingDown = errors.New("kv: server shutting down")

// Limits bound requests. Zero fields are unlimited.
type Limits struct {
	MaxKeySize   int
	MaxValueSize int
	MaxBatchOps  int
	MaxScanLimit int
}

// Options configure a Service.
type Options struct {
	Limits Limits
	// Sync is the default durability: writes that do not ask otherwise are
	// synced before they are acknowledged.
	Sync bool
	// MaxGroupWrites caps the writes merged into one engine call
	// (default 1024).
	MaxGroupWrites int
	// PipelineDepth is the number of write groups that may be in the
	// engine at once (default 1); groups that share a key never are. On a
	// 2-core machine with a fast disk, 1 gives the largest groups and the
	// best throughput; more may help where a sync takes long.
	PipelineDepth int
	// BatchReads merges concurrent reads into one engine Read (at most
	// ReadDepth in the engine at once, default 4). It is meant for engines
	// whose every call is costly, like a plugin engine (one round trip
	// each); the server turns it on for plugins only.
	BatchReads bool
	// ReadDepth bounds the merged reads in the engine at once (default 4).
	ReadDepth int
	// CallTimeout bounds each engine call the service makes for many
	// callers at once: a merged read, a group of writes (default 30s). A
	// call that runs longer fails its callers with engine.ErrUnavailable
	// (for writes: outcome unknown), so that an engine that stops
	// answering — a hung plugin — holds neither callers nor Close for
	// longer than this. It takes effect through the call's context: an
	// in-process engine stuck in its storage, ignoring the context, holds
	// the call (and Close) until it returns; callers with a deadline of
	// their own still get their answer at that deadline.
	CallTimeout time.Duration
	// Logger receives the pipeline's errors (default: discarded).
	Logger *slog.Logger
	// Metrics, when not nil, observes engine calls and group sizes.
	Metrics *metrics.Metrics
}

// DefaultCallTimeout is Options.CallTimeout's default.
const DefaultCallTimeout = 30 * time.Second

// Service is safe for concurrent use. Byte slices passed to its methods are
// not retained after they return; slices it returns belong to the caller.
type Service struct {
	eng    engine.Engine
	oracle *tso.Oracle
	opts   Options
	limits engine.Limits // effective: the tighter of ours and the engine's
	engLim engine.Limits // the engine's own, which bound a merged call
	log    *slog.Logger
	m      *metrics.Metrics

	reads *readBatcher // nil unless Options.BatchReads
	queue chan *item
	// enter is held shared by submit while it checks closing and queues
	// an item, and exclusively by Close to set closing: so no item reaches
	// the queue after Close began, where nothing would answer it.
	enter   sync.RWMutex
	closing bool // guarded by enter
	stop    chan struct{}
	stopped chan struct{}
	closeMu sync.Once
	// taken counts the items the pipeline has taken from queue, so that
	// tests can tell when a request has left its caller for the pipeline.
	taken atomic.Int64
}

// item is one request waiting in the write pipeline.
type item struct {
	writes []engine.Write
	atomic bool
	sync   bool
	// state: 0 waiting, 1 taken by the pipeline, 2 abandoned by its caller.
	state   atomic.Int32
	results []engine.Result
	version uint64 // first version given to this item's puts
	err     error
	done    chan struct{}
}

// New returns a service over eng, taking versions from oracle. The service
// does not own eng or oracle: the caller closes them after Close.
func New(eng engine.Engine, oracle *tso.Oracle, opts Options) *Service {
	if opts.MaxGroupWrites <= 0 {
		opts.MaxGroupWrites = 1024
	}
	if opts.PipelineDepth <= 0 {
		opts.PipelineDepth = 1
	}
	if opts.ReadDepth <= 0 {
		opts.ReadDepth = 4
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	el := eng.Describe().Limits
	s := &Service{
		eng:    eng,
		oracle: oracle,
		opts:   opts,
		log:    opts.Logger,
		m:      opts.Metrics,
		engLim: el,
		limits: engine.Limits{
			MaxKeySize:   tighter(opts.Limits.MaxKeySize, el.MaxKeySize),
			MaxValueSize: tighter(opts.Limits.MaxValueSize, el.MaxValueSize),
			MaxWrites:    tighter(opts.Limits.MaxBatchOps, el.MaxWrites),
		},
		queue:   make(chan *item, 4096),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	for _, l := range []struct {
		name             string
		configured, took int
	}{
		{"limits.max_key_size", opts.Limits.MaxKeySize, s.limits.MaxKeySize},
		{"limits.max_value_size", opts.Limits.MaxValueSize, s.limits.MaxValueSize},
		{"limits.max_batch_ops", opts.Limits.MaxBatchOps, s.limits.MaxWrites},
	} {
		if l.took != l.configured && l.configured > 0 {
			s.log.Info("the engine's limit is tighter than the configured one, and applies", "setting", l.name, "configured", l.configured, "effective", l.took)
		}
	}
	if opts.BatchReads {
		s.reads = &readBatcher{eng: eng, depth: opts.ReadDepth, maxKeys: 4096, timeout: opts.CallTimeout, log: opts.Logger, m: opts.Metrics}
	}
	go s.pipeline()
	return s
}

// tighter returns the smaller positive limit (0 means none).
func tighter(a, b int) int {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}

// Limits returns the effective limits: the configured ones, tightened by
// the engine's.
func (s *Service) Limits() Limits {
	return Limits{
		MaxKeySize:   s.limits.MaxKeySize,
		MaxValueSize: s.limits.MaxValueSize,
		MaxBatchOps:  s.limits.MaxWrites,
		MaxScanLimit: s.opts.Limits.MaxScanLimit,
	}
}

// Engine returns the engine's self-description.
func (s *Service) Engine() engine.Description { return s.eng.Describe() }

// SyncDefault reports the default durability.
func (s *Service) SyncDefault() bool { return s.opts.Sync }

// LastVersion returns the newest version the oracle issued since the
// service started, or 0 when it issued none.
func (s *Service) LastVersion() uint64 { return s.oracle.LastIssued() }

// Get returns the key's entry (Version 0 when absent).
func (s *Service) Get(ctx context.Context, key []byte) (engine.Entry, error) {
	es, err := s.BatchGet(ctx, [][]byte{key})
	if err != nil {
		return engine.Entry{}, err
	}
	return es[0], nil
}

// Probe reads key as Get does, through the same path to the engine, but
// records nothing in the metrics: for health checks, which would otherwise
// skew the engine's read latencies.
func (s *Service) Probe(ctx context.Context, key []byte) error {
	_, err := s.batchGet(ctx, [][]byte{key}, false)
	return err
}

// BatchGet returns one entry per key, from one point in time.
func (s *Service) BatchGet(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	return s.batchGet(ctx, keys, true)
}

func (s *Service) batchGet(ctx context.Context, keys [][]byte, observe bool) ([]engine.Entry, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", engine.ErrInvalidArgument)
	}
	if s.limits.MaxWrites > 0 && len(keys) > s.limits.MaxWrites {
		return nil, fmt.Errorf("%w: %d keys in one request, limit max_batch_ops = %d", engine.ErrTooLarge, len(keys), s.limits.MaxWrites)
	}
	for i, k := range keys {
		if err := s.checkKey(k); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
	}
	if observe {
		defer s.m.ObserveEngine("read", time.Now())
	}
	if s.reads != nil {
		return s.reads.read(ctx, keys)
	}
	return s.eng.Read(ctx, keys)
}

func (s *Service) checkKey(k []byte) error {
	if len(k) == 0 {
		return fmt.Errorf("%w: empty key", engine.ErrInvalidArgument)
	}
	if s.limits.MaxKeySize > 0 && len(k) > s.limits.MaxKeySize {
		return fmt.Errorf("%w: key of %d bytes exceeds max_key_size = %d", engine.ErrTooLarge, len(k), s.limits.MaxKeySize)
	}
	return nil
}

func (s *Service) checkValue(v []byte) error {
	if s.limits.MaxValueSize > 0 && len(v) > s.limits.MaxValueSize {
		return fmt.Errorf("%w: value of %d bytes exceeds max_value_size = %d", engine.ErrTooLarge, len(v), s.limits.MaxValueSize)
	}
	return nil
}

func (s *Service) checkWrite(w engine.Write) error {
	if err := s.checkKey(w.Key); err != nil {
		return err
	}
	if w.Kind == engine.OpPut {
		if err := s.checkValue(w.Value); err != nil {
			return err
		}
	}
	if w.Cond.Kind == engine.CondValue {
		if err := s.checkValue(w.Cond.Value); err != nil {
			return fmt.Errorf("condition: %w", err)
		}
	}
	return nil
}

// Durability selects how a write is synced.
type Durability int

const (
	// DurabilityDefault follows the server's configuration.
	DurabilityDefault Durability = iota
	// DurabilitySync syncs before acknowledging.
	DurabilitySync
	// DurabilityAsync acknowledges before syncing.
	DurabilityAsync
)

func (s *Service) sync(d Durability) bool {
	switch d {
	case DurabilitySync:
		return true
	case DurabilityAsync:
		return false
	}
	return s.opts.Sync
}

// WriteResult is the outcome of Put, Delete and CompareAndSwap.
type WriteResult struct {
	// Applied is false only when a condition failed.
	Applied bool
	// Version is the key's version after the write (0 after a delete, or
	// when not applied).
	Version uint64
	// Prev is the key's value and version before the write (when applied)
	// or now (when not); Prev.Version 0 means absent.
	Prev engine.Entry
}

// Put sets key to value.
func (s *Service) Put(ctx context.Context, key, value []byte, d Durability) (WriteResult, error) {
	return s.Write(ctx, engine.Write{Kind: engine.OpPut, Key: key, Value: value}, d)
}

// Delete removes key; deleting an absent key applies and changes nothing.
func (s *Service) Delete(ctx context.Context, key []byte, d Durability) (WriteResult, error) {
	return s.Write(ctx, engine.Write{Kind: engine.OpDelete, Key: key}, d)
}

// Write applies one conditional write (w.Version is assigned by the
// service). A failed condition is a result with Applied false, not an
// error.
func (s *Service) Write(ctx context.Context, w engine.Write, d Durability) (WriteResult, error) {
	if w.Kind != engine.OpPut && w.Kind != engine.OpDelete {
		return WriteResult{}, fmt.Errorf("%w: operation %v cannot be written alone", engine.ErrInvalidArgument, w.Kind)
	}
	if err := s.checkWrite(w); err != nil {
		return WriteResult{}, err
	}
	it, err := s.submit(ctx, []engine.Write{w}, false, s.sync(d))
	if err != nil {
		return WriteResult{}, err
	}
	r := it.results[0]
	out := WriteResult{Applied: r.Applied, Prev: engine.Entry{Key: w.Key, Value: r.Value, Version: r.Version}}
	if r.Applied && w.Kind == engine.OpPut {
		out.Version = it.version
	}
	if !r.Applied {
		s.m.ConditionFailed()
	}
	return out, nil
}

// BatchResult is the outcome of an atomic batch.
type BatchResult struct {
	Applied bool
	// Version is given to every key the batch wrote, when Applied.
	Version uint64
	// Results has one entry per write: whether its own condition held
	// (Applied) and the key's state before the batch.
	Results []engine.Result
}

// Batch applies writes atomically. Each key may appear once; OpCheck
// writes only test their condition.
func (s *Service) Batch(ctx context.Context, writes []engine.Write, d Durability) (BatchResult, error) {
	if len(writes) == 0 {
		return BatchResult{}, fmt.Errorf("%w: empty batch", engine.ErrInvalidArgument)
	}
	if s.limits.MaxWrites > 0 && len(writes) > s.limits.MaxWrites {
		return BatchResult{}, fmt.Errorf("%w: %d operations in one batch, limit max_batch_ops = %d", engine.ErrTooLarge, len(writes), s.limits.MaxWrites)
	}
	seen := make(map[string]int, len(writes))
	for i, w := range writes {
		switch w.Kind {
		case engine.OpPut, engine.OpDelete, engine.OpCheck:
		default:
			return BatchResult{}, fmt.Errorf("%w: op %d: unknown kind %d", engine.ErrInvalidArgument, i, w.Kind)
		}
		if err := s.checkWrite(w); err != nil {
			return BatchResult{}, fmt.Errorf("op %d: %w", i, err)
		}
		if j, ok := seen[string(w.Key)]; ok {
			return BatchResult{}, fmt.Errorf("%w: ops %d and %d name the same key %q", engine.ErrInvalidArgument, j, i, w.Key)
		}
		seen[string(w.Key)] = i
	}
	it, err := s.submit(ctx, writes, true, s.sync(d))
	if err != nil {
		return BatchResult{}, err
	}
	res := BatchResult{Applied: true, Results: it.results}
	for i, r := range it.results {
		if !r.Applied {
			res.Applied = false
			// In a failed group every Applied is false; recompute whether
			// this op's own condition held against the reported state.
			res.Results[i].Applied = writes[i].Cond.Holds(r.Value, r.Version)
		}
	}
	if res.Applied {
		res.Version = it.version
	} else {
		s.m.ConditionFailed()
	}
	return res, nil
}

// Scan calls fn for each entry in range, from one snapshot. A limit above
// MaxScanLimit (or none, when MaxScanLimit is set) is capped to it.
func (s *Service) Scan(ctx context.Context, o engine.ScanOptions, fn func(engine.Entry) error) error {
	if len(o.Start) > 0 {
		if err := s.checkKey(o.Start); err != nil {
			return fmt.Errorf("scan start: %w", err)
		}
	}
	if len(o.End) > 0 {
		if err := s.checkKey(o.End); err != nil {
			return fmt.Errorf("scan end: %w", err)
		}
	}
	if m := s.opts.Limits.MaxScanLimit; m > 0 && (o.Limit == 0 || o.Limit > m) {
		o.Limit = m
	}
	if err := engine.ValidateScan(o); err != nil {
		return err
	}
	return s.eng.Scan(ctx, o, fn)
}

// submit queues writes for the pipeline and waits for their outcome or
// ctx. When ctx ends first, the error wraps ctx.Err(): if the pipeline had
// not yet taken the item it never runs; if it had, the outcome is unknown
// (the write may still apply) and the error says so.
func (s *Service) submit(ctx context.Context, writes []engine.Write, atomic, sync bool) (*item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The pipeline may still run the writes after the caller has returned
	// (its ctx ended once they were taken): they must not read the
	// caller's memory then.
	it := &item{writes: ownWrites(writes), atomic: atomic, sync: sync, done: make(chan struct{})}
	s.enter.RLock()
	if s.closing {
		s.enter.RUnlock()
		return nil, ErrShuttingDown
	}
	select {
	case s.queue <- it:
		s.enter.RUnlock()
	case <-ctx.Done():
		s.enter.RUnlock()
		return nil, ctx.Err()
	}
	select {
	case <-it.done:
		return it, it.err
	case <-ctx.Done():
		if it.state.CompareAndSwap(0, 2) {
			return nil, ctx.Err()
		}
		// Taken: the engine may apply it still. The caller's deadline
		// wins over waiting for an engine that may not answer soon.
		return nil, fmt.Errorf("%w (the write had reached the engine: its outcome is unknown)", ctx.Err())
	}
}

// ownWrites returns a copy of writes whose byte slices (keys, values,
// condition values) are copies in one new buffer; nil slices stay nil.
func ownWrites(writes []engine.Write) []engine.Write {
	n := 0
	for _, w := range writes {
		n += len(w.Key) + len(w.Value) + len(w.Cond.Value)
	}
	buf := make([]byte, 0, n)
	own := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	out := make([]engine.Write, len(writes))
	for i, w := range writes {
		out[i] = w
		out[i].Key = own(w.Key)
		out[i].Value = own(w.Value)
		out[i].Cond.Value = own(w.Cond.Value)
	}
	return out
}

// ownKeys returns a copy of keys in one new buffer.
func ownKeys(keys [][]byte) [][]byte {
	n := 0
	for _, k := range keys {
		n += len(k)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(keys))
	for i, k := range keys {
		start := len(buf)
		buf = append(buf, k...)
		out[i] = buf[start:len(buf):len(buf)]
	}
	return out
}

// flight is a group the pipeline has started and not yet finished.
type flight struct {
	keys map[string]struct{}
	done chan struct{}
}

// pipeline runs until Close: it takes every waiting item (up to
// MaxGroupWrites writes) as one group, merges the group's independent
// writes into one engine call and runs each atomic item as its own call.
//
// Up to PipelineDepth groups run at once, so that one group's evaluation
// overlaps another's sync. A group that shares a key with a running group
// waits for it first: versions are handed out when a group runs, so for
// any one key they reach the engine in increasing order. (A plugin's call
// may outlive its CallTimeout inside the plugin; the engine wire's server
// keeps the same order for it, see package wire.)
func (s *Service) pipeline() {
	defer close(s.stopped)
	var inflight []*flight
	for {
		var group []*item
		select {
		case it := <-s.queue:
			group = append(group, it)
		case <-s.stop:
			for _, f := range inflight {
				<-f.done
			}
			s.drain()
			return
		}
		n := len(group[0].writes)
	fill:
		for n < s.opts.MaxGroupWrites {
			select {
			case it := <-s.queue:
				group = append(group, it)
				n += len(it.writes)
			default:
				break fill
			}
		}
		s.taken.Add(int64(len(group)))
		keys := make(map[string]struct{}, n)
		for _, it := range group {
			for _, w := range it.writes {
				keys[string(w.Key)] = struct{}{}
			}
		}
		running := inflight[:0]
		for _, f := range inflight {
			select {
			case <-f.done:
				continue
			default:
			}
			if keyset.Overlap(f.keys, keys) {
				<-f.done
				continue
			}
			running = append(running, f)
		}
		clear(inflight[len(running):])
		inflight = running
		for len(inflight) >= s.opts.PipelineDepth {
			<-inflight[0].done
			inflight = append(inflight[:0], inflight[1:]...)
		}
		f := &flight{keys: keys, done: make(chan struct{})}
		inflight = append(inflight, f)
		go func() {
			defer close(f.done)
			s.run(group)
		}()
	}
}

// drain answers the items left in the queue after Close.
func (s *Service) drain() {
	for {
		select {
		case it := <-s.queue:
			it.err = ErrShuttingDown
			close(it.done)
		default:
			return
		}
	}
}

func (s *Service) run(group []*item) {
	var indep []*item
	var atomics []*item
	for _, it := range group {
		if !it.state.CompareAndSwap(0, 1) {
			continue // abandoned by its caller before it ran
		}
		if it.atomic {
			atomics = append(atomics, it)
		} else {
			indep = append(indep, it)
		}
	}
	for _, c := range s.calls(indep) {
		s.apply(c, false)
	}
	for _, it := range atomics {
		s.apply([]*item{it}, true)
	}
}

// calls splits independent items, in order, into runs that each fit the
// engine's limits on one call (writes, key and value bytes), so that a
// merged call is not refused as too large, and its items retried one by
// one, merely because many writes came at once. An item beyond the limits
// on its own is a run of its own (the engine refuses it). Runs are applied
// one after the other, so a key's versions still reach the engine in
// increasing order.
func (s *Service) calls(items []*item) [][]*item {
	maxWrites, maxBytes := s.engLim.MaxWrites, s.engLim.MaxBatchSize
	if maxWrites <= 0 && maxBytes <= 0 {
		if len(items) == 0 {
			return nil
		}
		return [][]*item{items}
	}
	var runs [][]*item
	start, writes, size := 0, 0, 0
	for i, it := range items {
		n, b := len(it.writes), 0
		for _, w := range it.writes {
			b += engine.WriteSize(w) // as the engine counts MaxBatchSize
		}
		if i > start && ((maxWrites > 0 && writes+n > maxWrites) || (maxBytes > 0 && size+b > maxBytes)) {
			runs = append(runs, items[start:i:i])
			start, writes, size = i, 0, 0
		}
		writes += n
		size += b
	}
	if start < len(items) {
		runs = append(runs, items[start:])
	}
	return runs
}

// apply runs items as one engine call and answers them. If a merged call is
// refused as a whole for a reason that belongs to one request (an invalid
// or too large write), each item is retried alone so that the others
// succeed. Never when the error also says the outcome is unknown
// (engine.ErrUnavailable): some of the writes may have been applied, and
// writing them again would apply them twice.
func (s *Service) apply(items []*item, atomic bool) {
	err := s.applyOnce(items, atomic)
	if err != nil && len(items) > 1 && (errors.Is(err, engine.ErrInvalidArgument) || errors.Is(err, engine.ErrTooLarge)) &&
		!errors.Is(err, engine.ErrUnavailable) {
		for _, it := range items {
			if err := s.applyOnce([]*item{it}, atomic); err != nil {
				it.err = err
			}
			close(it.done)
		}
		return
	}
	for _, it := range items {
		if err != nil {
			it.err = err
		}
		close(it.done)
	}
}

func (s *Service) applyOnce(items []*item, atomic bool) error {
	n, puts := 0, 0
	sync := false
	for _, it := range items {
		n += len(it.writes)
		sync = sync || it.sync
		for _, w := range it.writes {
			if w.Kind == engine.OpPut {
				puts++
			}
		}
	}
	// An atomic group takes one version for all its puts; independent
	// writes take one each, in order.
	need := puts
	if atomic {
		need = min(puts, 1)
	}
	var first uint64
	if need > 0 {
		var err error
		if first, err = s.oracle.Next(need); err != nil {
			s.log.Error("timestamp oracle failed", "err", err)
			if errors.Is(err, tso.ErrExhausted) {
				// For good: no retry will help.
				return fmt.Errorf("%w: %w", engine.ErrInternal, err)
			}
			// Nothing reached the engine: the writes may be retried, once
			// the oracle can persist its mark again (a full disk, say).
			return fmt.Errorf("%w: the timestamp oracle cannot issue versions, so nothing was written: %w", engine.ErrUnavailable, err)
		}
	}
	writes := make([]engine.Write, 0, n)
	next := first
	for _, it := range items {
		it.version = next
		for _, w := range it.writes {
			if w.Kind == engine.OpPut {
				w.Version = next
				if !atomic {
					next++
				}
			}
			writes = append(writes, w)
		}
	}
	start := time.Now()
	// The pipeline's call is not any one caller's: it runs to completion
	// (bounded by CallTimeout) so that every caller in the group gets a
	// definite answer.
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CallTimeout)
	results, err := s.eng.Apply(ctx, writes, engine.ApplyOptions{Atomic: atomic, NoSync: !sync})
	timedOut := ctx.Err() != nil
	cancel()
	s.m.ObserveEngine("apply", start)
	s.m.ObserveGroup(n)
	if err != nil {
		if timedOut {
			s.log.Error("engine apply did not answer in time", "writes", n, "call_timeout", s.opts.CallTimeout, "err", err)
			return fmt.Errorf("%w: the engine did not answer within the call timeout (%v); the outcome of these writes is unknown", engine.ErrUnavailable, s.opts.CallTimeout)
		}
		return err
	}
	if len(results) != len(writes) {
		return fmt.Errorf("%w: engine returned %d results for %d writes", engine.ErrInternal, len(results), len(writes))
	}
	off := 0
	for _, it := range items {
		it.results = results[off : off+len(it.writes)]
		off += len(it.writes)
	}
	return nil
}

// Close stops accepting writes, waits for the pipeline to finish the groups
// it is running, and answers anything still queued with ErrShuttingDown.
// It does not close the engine.
func (s *Service) Close() {
	s.closeMu.Do(func() {
		s.enter.Lock()
		s.closing = true
		s.enter.Unlock()
		close(s.stop)
		<-s.stopped
	})
}
