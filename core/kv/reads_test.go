package kv

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/metrics"
	"github.com/flaredb/flaredb/core/tso"
	"github.com/flaredb/flaredb/engines/memengine"
)

// gatedReads wraps the reference engine: its first Read waits for release,
// and it counts Read calls and the keys they carried.
type gatedReads struct {
	engine.Engine
	once    sync.Once
	entered chan struct{}
	release chan struct{}
	calls   atomic.Int64
	keys    atomic.Int64
}

func (g *gatedReads) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	g.once.Do(func() { close(g.entered); <-g.release })
	g.calls.Add(1)
	g.keys.Add(int64(len(keys)))
	return g.Engine.Read(ctx, keys)
}

// TestBatchedReads queues reads behind one in progress and checks that
// they reach the engine as one call, each caller getting its own entries.
func TestBatchedReads(t *testing.T) {
	o, err := tso.Open(filepath.Join(t.TempDir(), "tso"), nil)
	if err != nil {
		t.Fatal(err)
	}
	mem := memengine.New()
	g := &gatedReads{Engine: mem, entered: make(chan struct{}), release: make(chan struct{})}
	m := metrics.New()
	s := New(g, o, Options{BatchReads: true, ReadDepth: 1, Metrics: m})
	defer s.Close()
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := s.Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprint(i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	first := make(chan error, 1)
	go func() { _, err := s.Get(ctx, []byte("k0")); first <- err }()
	<-g.entered

	const n = 9
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			es, err := s.BatchGet(ctx, [][]byte{[]byte(fmt.Sprintf("k%d", i)), []byte("absent")})
			if err != nil || len(es) != 2 || string(es[0].Value) != fmt.Sprint(i) || es[1].Version != 0 {
				t.Errorf("caller %d: %+v %v", i, es, err)
			}
		}()
	}
	// A caller whose context ends while it waits gets its context error.
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() { _, err := s.Get(cctx, []byte("k1")); cancelled <- err }()
	queued := func() int { s.reads.mu.Lock(); defer s.reads.mu.Unlock(); return len(s.reads.queue) }
	for deadline := time.Now().Add(time.Minute); queued() < n+1; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d reads queued", queued())
		}
		runtime.Gosched()
	}
	cancel()
	if err := <-cancelled; err != context.Canceled {
		t.Fatalf("cancelled read: %v", err)
	}
	close(g.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// The first read, then everything queued behind it in one call (the
	// cancelled caller's key included: the merged read still serves it).
	if c := g.calls.Load(); c != 2 {
		t.Fatalf("%d engine reads, want 2: the first and one for the %d queued callers", c, n+1)
	}
	if k := g.keys.Load(); k != 1+2*n+1 {
		t.Fatalf("engine read %d keys, want %d", k, 1+2*n+1)
	}
	// The read_batch_keys histogram saw the same two merged reads.
	mf, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var h *dto.Histogram
	for _, f := range mf {
		if f.GetName() == "flaredb_read_batch_keys" {
			h = f.GetMetric()[0].GetHistogram()
		}
	}
	if h == nil || h.GetSampleCount() != 2 || h.GetSampleSum() != 1+2*n+1 {
		t.Fatalf("read_batch_keys histogram %v, want 2 reads of %d keys in all", h, 1+2*n+1)
	}
}
