package kv

import (
	"context"
	"errors"
	"slices"
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
