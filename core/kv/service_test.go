package kv_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kv"
	"github.com/flaredb/flaredb/core/metrics"
	"github.com/flaredb/flaredb/core/tso"
	"github.com/flaredb/flaredb/engines/memengine"
)

func newService(t *testing.T, l kv.Limits) (*kv.Service, *metrics.Metrics) {
	t.Helper()
	return newServiceDepth(t, l, 0)
}

func newServiceDepth(t *testing.T, l kv.Limits, depth int) (*kv.Service, *metrics.Metrics) {
	t.Helper()
	o, err := tso.Open(filepath.Join(t.TempDir(), "tso"), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	e := memengine.New()
	s := kv.New(e, o, kv.Options{Limits: l, Sync: true, Metrics: m, PipelineDepth: depth})
	t.Cleanup(func() { s.Close(); e.Close() })
	return s, m
}

func TestConcurrentWritesShareGroupsAndVersionsIncrease(t *testing.T) {
	for _, depth := range []int{1, 4} {
		t.Run(fmt.Sprintf("depth-%d", depth), func(t *testing.T) { testConcurrentWrites(t, depth) })
	}
}

func testConcurrentWrites(t *testing.T, depth int) {
	s, m := newServiceDepth(t, kv.Limits{}, depth)
	ctx := context.Background()
	const workers, per = 32, 100
	versions := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				r, err := s.Put(ctx, []byte(fmt.Sprintf("k%d", w%4)), []byte("v"), kv.DurabilityDefault)
				if err != nil {
					t.Error(err)
					return
				}
				versions[w] = append(versions[w], r.Version)
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, vs := range versions {
		for i, v := range vs {
			if seen[v] {
				t.Fatalf("version %d given twice", v)
			}
			seen[v] = true
			if i > 0 && v <= vs[i-1] {
				t.Fatalf("versions of one caller not increasing: %d then %d", vs[i-1], v)
			}
		}
	}
	// Every write went through the pipeline; with 32 concurrent callers
	// some engine calls must have carried more than one write.
	var total, calls float64
	mf, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range mf {
		if f.GetName() == "flaredb_write_group_size" {
			h := f.GetMetric()[0].GetHistogram()
			total, calls = h.GetSampleSum(), float64(h.GetSampleCount())
		}
	}
	if total != workers*per {
		t.Fatalf("pipeline carried %v writes, want %d", total, workers*per)
	}
	if calls >= total {
		t.Logf("no grouping observed (%v calls for %v writes): the scheduler ran callers one at a time", calls, total)
	}
}

func TestCASAndBatchSemantics(t *testing.T) {
	s, _ := newService(t, kv.Limits{MaxKeySize: 8, MaxValueSize: 8, MaxBatchOps: 3})
	ctx := context.Background()
	p, err := s.Put(ctx, []byte("a"), []byte("1"), kv.DurabilityDefault)
	if err != nil || !p.Applied || p.Version == 0 || p.Prev.Version != 0 {
		t.Fatalf("put: %+v %v", p, err)
	}
	r, err := s.Write(ctx, engine.Write{Kind: engine.OpPut, Key: []byte("a"), Value: []byte("2"),
		Cond: engine.Condition{Kind: engine.CondVersion, Version: p.Version + 1}}, kv.DurabilityDefault)
	if err != nil || r.Applied || r.Prev.Version != p.Version || string(r.Prev.Value) != "1" {
		t.Fatalf("failed cas: %+v %v", r, err)
	}
	b, err := s.Batch(ctx, []engine.Write{
		{Kind: engine.OpPut, Key: []byte("b"), Value: []byte("x")},
		{Kind: engine.OpPut, Key: []byte("c"), Value: []byte("y")},
		{Kind: engine.OpCheck, Key: []byte("a"), Cond: engine.Condition{Kind: engine.CondVersion, Version: p.Version}},
	}, kv.DurabilityDefault)
	if err != nil || !b.Applied || b.Version == 0 {
		t.Fatalf("batch: %+v %v", b, err)
	}
	es, err := s.BatchGet(ctx, [][]byte{[]byte("b"), []byte("c")})
	if err != nil || es[0].Version != b.Version || es[1].Version != b.Version {
		t.Fatalf("batch versions: %+v %v", es, err)
	}
	bad := []struct {
		name string
		err  error
		want error
	}{
		{"long key", func() error { _, err := s.Put(ctx, []byte("123456789"), nil, 0); return err }(), engine.ErrTooLarge},
		{"long value", func() error { _, err := s.Put(ctx, []byte("k"), []byte("123456789"), 0); return err }(), engine.ErrTooLarge},
		{"empty key", func() error { _, err := s.Put(ctx, nil, nil, 0); return err }(), engine.ErrInvalidArgument},
		{"big batch", func() error {
			_, err := s.Batch(ctx, make([]engine.Write, 4), 0)
			return err
		}(), engine.ErrTooLarge},
		{"duplicate keys", func() error {
			_, err := s.Batch(ctx, []engine.Write{{Kind: engine.OpPut, Key: []byte("d")}, {Kind: engine.OpDelete, Key: []byte("d")}}, 0)
			return err
		}(), engine.ErrInvalidArgument},
		{"check alone", func() error {
			_, err := s.Write(ctx, engine.Write{Kind: engine.OpCheck, Key: []byte("a")}, 0)
			return err
		}(), engine.ErrInvalidArgument},
		{"scan reversed", s.Scan(ctx, engine.ScanOptions{Start: []byte("b"), End: []byte("a")}, func(engine.Entry) error { return nil }), engine.ErrInvalidArgument},
	}
	for _, tc := range bad {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

func TestCancelledAndClosed(t *testing.T) {
	s, _ := newService(t, kv.Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, []byte("k"), nil, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled put: %v", err)
	}
	if e, err := s.Get(context.Background(), []byte("k")); err != nil || e.Version != 0 {
		t.Fatalf("cancelled put applied: %+v %v", e, err)
	}
	s.Close()
	s.Close()
	if _, err := s.Put(context.Background(), []byte("k"), nil, 0); !errors.Is(err, kv.ErrShuttingDown) {
		t.Fatalf("put after close: %v", err)
	}
}

// TestOracleFailure: when the timestamp oracle cannot persist its mark, a
// write fails as unavailable (safe to retry: nothing reached the engine),
// and succeeds once the oracle can persist again.
func TestOracleFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	clock := time.UnixMilli(1_700_000_000_000)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func() { mu.Lock(); clock = clock.Add(time.Minute); mu.Unlock() }
	o, err := tso.Open(filepath.Join(dir, "tso"), &tso.Options{Now: now, Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := memengine.New()
	s := kv.New(e, o, kv.Options{Sync: true})
	t.Cleanup(func() { s.Close(); e.Close() })
	ctx := context.Background()

	// The oracle's directory goes away, and its window runs out.
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	advance()
	_, err = s.Put(ctx, []byte("k"), []byte("v"), kv.DurabilityDefault)
	if !errors.Is(err, engine.ErrUnavailable) || errors.Is(err, engine.ErrInternal) || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("put with a failing oracle: %v", err)
	}
	if got, err := s.Get(ctx, []byte("k")); err != nil || got.Version != 0 {
		t.Fatalf("after the failed put: %+v, %v", got, err)
	}

	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, []byte("k"), []byte("v"), kv.DurabilityDefault); err != nil {
		t.Fatalf("put once the oracle can persist again: %v", err)
	}
}

// TestOracleExhausted: an oracle at the end of its range fails writes as
// internal errors (no retry helps), keeping the cause.
func TestOracleExhausted(t *testing.T) {
	var mu sync.Mutex
	const end = 1<<(64-tso.LogicalBits) - 1
	clock := time.UnixMilli(end - 5000)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	o, err := tso.Open(filepath.Join(t.TempDir(), "tso"), &tso.Options{Now: now, Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := memengine.New()
	s := kv.New(e, o, kv.Options{Sync: true})
	t.Cleanup(func() { s.Close(); e.Close() })
	mu.Lock()
	clock = time.UnixMilli(end - 500)
	mu.Unlock()
	_, err = s.Put(context.Background(), []byte("k"), []byte("v"), kv.DurabilityDefault)
	if !errors.Is(err, engine.ErrInternal) || !errors.Is(err, tso.ErrExhausted) || errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("put with an exhausted oracle: %v", err)
	}
}
