package kv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
)

// gateEngine is the reference engine whose Read and Apply, once entered,
// say so on entered and wait for release before they look at their
// arguments; they record the keys (and values) they then see, and say on
// returned when they return.
type gateEngine struct {
	engine.Engine
	entered, release, returned chan struct{}

	mu   sync.Mutex
	seen []string
}

func (e *gateEngine) gate() {
	e.entered <- struct{}{}
	<-e.release
}

func (e *gateEngine) record(s ...string) {
	e.mu.Lock()
	e.seen = append(e.seen, s...)
	e.mu.Unlock()
}

func (e *gateEngine) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	e.gate()
	defer func() { e.returned <- struct{}{} }()
	for _, k := range keys {
		e.record("read " + string(k))
	}
	return e.Engine.Read(ctx, keys)
}

func (e *gateEngine) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	e.gate()
	defer func() { e.returned <- struct{}{} }()
	for _, w := range ws {
		e.record("apply " + string(w.Key) + "=" + string(w.Value))
	}
	return e.Engine.Apply(ctx, ws, o)
}

// TestCallerSlicesNotRetained: a caller whose context ends after the
// pipeline took its write, or after its read joined a merged read, gets
// its error at once and may reuse its buffers: the engine call that still
// runs uses what the caller asked for, not what its buffers hold later.
func TestCallerSlicesNotRetained(t *testing.T) {
	mem := memengine.New()
	e := &gateEngine{Engine: mem, entered: make(chan struct{}), release: make(chan struct{}), returned: make(chan struct{})}
	s := New(e, openOracle(t), Options{Sync: true, BatchReads: true})

	// A put taken by the pipeline, its caller gone, its buffers reused.
	key, val := []byte("aaa"), []byte("v1")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, key, val, 0)
		errc <- err
	}()
	<-e.entered // the group is in the engine
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("put: %v, want context.Canceled (outcome unknown)", err)
	}
	copy(key, "zzz")
	copy(val, "XX")
	e.release <- struct{}{}
	<-e.returned

	// A get merged into a read in the engine, its caller gone likewise.
	rkey := []byte("bbb")
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		_, err := s.Get(ctx, rkey)
		errc <- err
	}()
	<-e.entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("get: %v, want context.Canceled", err)
	}
	copy(rkey, "yyy")
	e.release <- struct{}{}
	<-e.returned

	within(t, "close", s.Close)
	es, err := mem.Read(context.Background(), [][]byte{[]byte("aaa"), []byte("zzz")})
	if err != nil {
		t.Fatal(err)
	}
	if string(es[0].Value) != "v1" || es[1].Version != 0 {
		t.Errorf("after the put: aaa=%q (version %d), zzz version %d; want aaa=v1 and no zzz",
			es[0].Value, es[0].Version, es[1].Version)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if want := []string{"apply aaa=v1", "read bbb"}; !slices.Equal(e.seen, want) {
		t.Errorf("the engine was asked %q, want %q", e.seen, want)
	}
}

// countingEngine records the size of each Apply call and its error.
type countingEngine struct {
	engine.Engine
	mu    sync.Mutex
	calls []string
}

func (e *countingEngine) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	b := 0
	for _, w := range ws {
		b += len(w.Key) + len(w.Value)
	}
	rs, err := e.Engine.Apply(ctx, ws, o)
	outcome := "ok"
	switch {
	case errors.Is(err, engine.ErrTooLarge):
		outcome = "too large"
	case err != nil:
		outcome = err.Error()
	}
	e.mu.Lock()
	e.calls = append(e.calls, fmt.Sprintf("%d writes, %d bytes: %s", len(ws), b, outcome))
	e.mu.Unlock()
	return rs, err
}

// TestMergedCallsFitTheEngine: a group of independent writes larger than
// the engine takes in one call is split into calls it accepts, instead of
// one call refused as too large and every write retried alone; a write
// too large on its own still gets the engine's refusal, alone.
func TestMergedCallsFitTheEngine(t *testing.T) {
	lim := memengine.DefaultLimits
	lim.MaxWrites, lim.MaxBatchSize = 3, 1000
	e := &countingEngine{Engine: memengine.NewWithLimits(lim)}
	s := New(e, openOracle(t), Options{Sync: true})
	defer s.Close()
	var group []*item
	add := func(key string, size int) *item {
		it := &item{writes: []engine.Write{{Kind: engine.OpPut, Key: []byte(key), Value: make([]byte, size)}}, done: make(chan struct{})}
		group = append(group, it)
		return it
	}
	for i := range 5 {
		add(fmt.Sprintf("k%d", i), 398) // 400 bytes: two fit in one call
	}
	huge := add("huge", 2000)
	for i := range 4 {
		add(fmt.Sprintf("s%d", i), 8) // 10 bytes: three fit (MaxWrites)
	}
	s.run(group)
	for _, it := range group {
		<-it.done
		if it == huge {
			if !errors.Is(it.err, engine.ErrTooLarge) {
				t.Errorf("the write beyond MaxBatchSize: %v, want ErrTooLarge", it.err)
			}
			continue
		}
		if it.err != nil || !it.results[0].Applied {
			t.Errorf("put %s: %v %+v", it.writes[0].Key, it.err, it.results)
		}
	}
	want := []string{
		"2 writes, 800 bytes: ok",
		"2 writes, 800 bytes: ok",
		"1 writes, 400 bytes: ok",
		"1 writes, 2004 bytes: too large",
		"3 writes, 30 bytes: ok",
		"1 writes, 10 bytes: ok",
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !slices.Equal(e.calls, want) {
		t.Errorf("engine calls:\n%s\nwant:\n%s", strings.Join(e.calls, "\n"), strings.Join(want, "\n"))
	}
}
