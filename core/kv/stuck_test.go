package kv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/tso"
	"github.com/flaredb/flaredb/engines/memengine"
)

// stuckEngine is the reference engine with Read and Apply that never
// answer while stuck is open: they return only when their context ends,
// as a call to a hung plugin does.
type stuckEngine struct {
	engine.Engine
	stuck chan struct{} // closed: answer normally again
}

func (e *stuckEngine) wait(ctx context.Context) error {
	select {
	case <-e.stuck:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *stuckEngine) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	if err := e.wait(ctx); err != nil {
		return nil, err
	}
	return e.Engine.Read(ctx, keys)
}

func (e *stuckEngine) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	if err := e.wait(ctx); err != nil {
		return nil, err
	}
	return e.Engine.Apply(ctx, ws, o)
}

func openOracle(t *testing.T) *tso.Oracle {
	t.Helper()
	o, err := tso.Open(filepath.Join(t.TempDir(), "tso"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// within runs f and fails the test if it has not returned after a minute
// (a hang, not a measure of speed).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s: still blocked after a minute", what)
	}
}

// TestStuckEngineHoldsNoOne: with an engine that stops answering, a
// caller's deadline ends its wait (a write that reached the engine says
// its outcome is unknown), the engine call itself gives up after
// CallTimeout with ErrUnavailable, and Close returns.
func TestStuckEngineHoldsNoOne(t *testing.T) {
	for _, batchReads := range []bool{false, true} {
		t.Run(fmt.Sprintf("batchReads=%v", batchReads), func(t *testing.T) {
			e := &stuckEngine{Engine: memengine.New(), stuck: make(chan struct{})}
			s := New(e, openOracle(t), Options{Sync: true, BatchReads: batchReads, CallTimeout: 2 * time.Second})

			short := func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			}
			within(t, "put with a deadline", func() {
				ctx, cancel := short()
				defer cancel()
				_, err := s.Put(ctx, []byte("k"), []byte("v"), 0)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("put: %v, want a deadline error", err)
				} else if !strings.Contains(err.Error(), "outcome is unknown") {
					t.Logf("put ended before the pipeline took it: %v", err)
				}
			})
			within(t, "get with a deadline", func() {
				ctx, cancel := short()
				defer cancel()
				if _, err := s.Get(ctx, []byte("k")); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("get: %v, want a deadline error", err)
				}
			})
			// Callers without a deadline of their own get the call
			// timeout's answer.
			within(t, "put without a deadline", func() {
				if _, err := s.Put(context.Background(), []byte("k2"), []byte("v"), 0); !errors.Is(err, engine.ErrUnavailable) {
					t.Errorf("put: %v, want ErrUnavailable", err)
				}
			})
			if batchReads {
				within(t, "get without a deadline", func() {
					if _, err := s.Get(context.Background(), []byte("k2")); !errors.Is(err, engine.ErrUnavailable) {
						t.Errorf("get: %v, want ErrUnavailable", err)
					}
				})
			}
			// The engine answers again: so does the service.
			close(e.stuck)
			within(t, "put after recovery", func() {
				if _, err := s.Put(context.Background(), []byte("k3"), []byte("v"), 0); err != nil {
					t.Errorf("put: %v", err)
				}
				if en, err := s.Get(context.Background(), []byte("k3")); err != nil || string(en.Value) != "v" {
					t.Errorf("get: %+v %v", en, err)
				}
			})
			within(t, "close", s.Close)
		})
	}
}

// TestCloseWithWritersInFlight: writers racing Close each get an answer
// (applied, or ErrShuttingDown); none is left waiting.
func TestCloseWithWritersInFlight(t *testing.T) {
	for round := 0; round < 20; round++ {
		s := New(memengine.New(), openOracle(t), Options{Sync: true})
		var wg sync.WaitGroup
		started := make(chan struct{})
		var once sync.Once
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer once.Do(func() { close(started) }) // a writer that fails
				for i := 0; ; i++ {
					if i == 1 && g == 0 {
						once.Do(func() { close(started) })
					}
					_, err := s.Put(context.Background(), []byte(fmt.Sprintf("g%d-%d", g, i)), []byte("v"), 0)
					if errors.Is(err, ErrShuttingDown) {
						return
					}
					if err != nil {
						t.Errorf("put: %v", err)
						return
					}
				}
			}()
		}
		within(t, "the first writes", func() { <-started })
		within(t, "close", s.Close)
		within(t, "writers", wg.Wait)
	}
}

// tooLargeTogether is the reference engine refusing, as a plugin does for
// an answer beyond its message limit, any Read whose values total more
// than limit bytes.
type tooLargeTogether struct {
	*gatedReads
	limit int
}

func (e *tooLargeTogether) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	es, err := e.gatedReads.Read(ctx, keys)
	if err != nil {
		return nil, err
	}
	size := 0
	for _, en := range es {
		size += len(en.Value)
	}
	if size > e.limit {
		return nil, fmt.Errorf("%w: answer of %d bytes", engine.ErrTooLarge, size)
	}
	return es, nil
}

// TestMergedReadTooLargeIsRetriedAlone: a merged read refused as too large
// as a whole is read again request by request, so that only the request
// that is too large alone fails.
func TestMergedReadTooLargeIsRetriedAlone(t *testing.T) {
	mem := memengine.New()
	g := &gatedReads{Engine: mem, entered: make(chan struct{}), release: make(chan struct{})}
	e := &tooLargeTogether{gatedReads: g, limit: 1500}
	s := New(e, openOracle(t), Options{Sync: true, BatchReads: true, ReadDepth: 1})
	defer s.Close()
	ctx := context.Background()
	for _, kv := range []struct {
		k string
		n int
	}{{"small1", 100}, {"small2", 100}, {"big", 1000}, {"huge", 2000}} {
		if _, err := s.Put(ctx, []byte(kv.k), make([]byte, kv.n), 0); err != nil {
			t.Fatal(err)
		}
	}
	first := make(chan error, 1)
	go func() { _, err := s.Get(ctx, []byte("small1")); first <- err }()
	<-g.entered
	type result struct {
		key string
		err error
	}
	results := make(chan result, 4)
	for _, k := range []string{"small1", "small2", "big", "huge"} {
		go func() { _, err := s.Get(ctx, []byte(k)); results <- result{k, err} }()
	}
	queued := func() int { s.reads.mu.Lock(); defer s.reads.mu.Unlock(); return len(s.reads.queue) }
	within(t, "queueing", func() {
		for queued() < 4 {
			time.Sleep(time.Millisecond)
		}
	})
	close(g.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range 4 {
		r := <-results
		if r.key == "huge" {
			if !errors.Is(r.err, engine.ErrTooLarge) {
				t.Errorf("huge: %v, want ErrTooLarge", r.err)
			}
		} else if r.err != nil {
			t.Errorf("%s: %v", r.key, r.err)
		}
	}
	// The first read, the merged one that was refused, then one per request.
	if c := g.calls.Load(); c != 1+1+4 {
		t.Fatalf("%d engine reads, want 6", c)
	}
}

// ambiguousFailure is the reference engine that, for a call of several
// writes, applies them and then fails with an error matching both
// engine.ErrUnavailable (outcome unknown) and engine.ErrTooLarge. Its
// first call waits for gate.
type ambiguousFailure struct {
	engine.Engine
	entered, gate chan struct{}
	once          sync.Once
	mu            sync.Mutex
	applied       map[string]int
}

func (e *ambiguousFailure) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	e.once.Do(func() {
		close(e.entered)
		<-e.gate
	})
	rs, err := e.Engine.Apply(ctx, ws, o)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	for i, w := range ws {
		if rs[i].Applied {
			e.applied[string(w.Key)]++
		}
	}
	e.mu.Unlock()
	if len(ws) > 1 {
		return nil, fmt.Errorf("%w: the answer was lost (%w)", engine.ErrUnavailable, engine.ErrTooLarge)
	}
	return rs, nil
}

// TestUnknownOutcomeIsNotRetriedAlone: a merged write that failed with an
// error saying its outcome is unknown is not written again item by item,
// even when the error also reads as "too large": each write reaches the
// engine once, and its callers learn that the outcome is unknown.
func TestUnknownOutcomeIsNotRetriedAlone(t *testing.T) {
	e := &ambiguousFailure{Engine: memengine.New(), entered: make(chan struct{}), gate: make(chan struct{}), applied: map[string]int{}}
	s := New(e, openOracle(t), Options{Sync: true})
	defer s.Close()
	// On a failure below, the engine must answer before Close waits for it.
	var release sync.Once
	open := func() { release.Do(func() { close(e.gate) }) }
	defer open()
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { _, err := s.Put(ctx, []byte("first"), []byte("x"), 0); first <- err }()
	<-e.entered
	// Three puts queue behind the first. The pipeline (depth 1) takes the
	// next group before it waits for the first: it may hold one or two of
	// them, the rest stay queued. Either way two or more go to the engine
	// as one call.
	errs := make(chan error, 3)
	for _, k := range []string{"a", "b", "c"} {
		go func() { _, err := s.Put(ctx, []byte(k), []byte("v"), 0); errs <- err }()
	}
	within(t, "queueing", func() {
		for len(s.queue)+int(s.taken.Load()) < 1+3 {
			time.Sleep(time.Millisecond)
		}
	})
	open()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// Those merged into one call are told the outcome is unknown; one that
	// went alone succeeds.
	unknown := 0
	for range 3 {
		switch err := <-errs; {
		case errors.Is(err, engine.ErrUnavailable):
			unknown++
		case err != nil:
			t.Errorf("put: %v, want ErrUnavailable or success", err)
		}
	}
	if unknown < 2 {
		t.Errorf("%d puts were told the outcome is unknown, want at least the two merged ones", unknown)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, k := range []string{"a", "b", "c"} {
		if n := e.applied[k]; n != 1 {
			t.Errorf("%s applied %d times, want once", k, n)
		}
	}
}

// arrivalOrder is the reference engine recording the versions of the puts
// of each key in the order their Apply calls arrive, each call after a
// random pause (so that calls running at once arrive in any order).
type arrivalOrder struct {
	engine.Engine
	mu       sync.Mutex
	versions map[string][]uint64
}

func (e *arrivalOrder) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
	e.mu.Lock()
	for _, w := range ws {
		if w.Kind == engine.OpPut {
			e.versions[string(w.Key)] = append(e.versions[string(w.Key)], w.Version)
		}
	}
	e.mu.Unlock()
	return e.Engine.Apply(ctx, ws, o)
}

// TestVersionsReachTheEngineInOrder: with several groups in the engine at
// once (PipelineDepth 4), the puts of any one key still reach the engine
// in increasing version order, as a group waits for a running group that
// shares a key with it.
func TestVersionsReachTheEngineInOrder(t *testing.T) {
	e := &arrivalOrder{Engine: memengine.New(), versions: map[string][]uint64{}}
	s := New(e, openOracle(t), Options{Sync: true, PipelineDepth: 4})
	defer s.Close()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				key := fmt.Sprintf("k%d", (w+i)%3)
				if _, err := s.Put(context.Background(), []byte(key), []byte("v"), 0); err != nil {
					t.Errorf("put %s: %v", key, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	total := 0
	for k, vs := range e.versions {
		total += len(vs)
		for i := 1; i < len(vs); i++ {
			if vs[i] <= vs[i-1] {
				t.Fatalf("%s: version %d reached the engine after %d", k, vs[i], vs[i-1])
			}
		}
	}
	if total != 8*40 {
		t.Fatalf("%d puts reached the engine, want %d", total, 8*40)
	}
}
