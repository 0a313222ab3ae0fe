package conformance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
)

// Benchmark shape: 16-byte keys, 128-byte values, and ~64 concurrent
// goroutines for the parallel variants.
const (
	benchKeySize     = 16
	benchValueSize   = 128
	benchConcurrency = 64
	benchPreload     = 10000 // keys written before get, scan and cas-low-contention
	benchHotKeys     = 4     // keys of cas-high-contention
	benchScanLength  = 100
	benchMaxAttempts = 1000000
)

// Bench runs the standard workloads against the engine f opens, each as a
// sub-benchmark with a serial variant (one goroutine) and a parallel one
// (about 64 goroutines through b.RunParallel):
//
//   - put: unconditional, synced puts of fresh keys
//   - get: single-key reads of preloaded keys
//   - cas-low-contention: read, then CAS on the version read, over many keys
//   - cas-high-contention: read-then-CAS loops on 4 keys until the CAS
//     succeeds (one op is one successful increment)
//   - scan: 100-entry scans from random preloaded keys
//
// Each reports ops/s; the CAS workloads also report conflicts or attempts
// per op. Keys are 16 bytes and values 128. Versions come from one atomic
// counter shared by the workload's goroutines, so they strictly increase
// per key. Every sub-benchmark opens a fresh engine on b.TempDir().
func Bench(b *testing.B, f Factory) {
	workloads := []struct {
		name string
		fn   func(b *testing.B, w *benchWorld, parallel bool)
	}{
		{"put", benchPut},
		{"get", benchGet},
		{"cas-low-contention", benchCASLow},
		{"cas-high-contention", benchCASHigh},
		{"scan", benchScan},
	}
	for _, wl := range workloads {
		for _, parallel := range []bool{false, true} {
			name := wl.name + "/serial"
			if parallel {
				name = fmt.Sprintf("%s/parallel-%d", wl.name, benchConcurrency)
			}
			b.Run(name, func(b *testing.B) {
				e, err := f(b.TempDir())
				if err != nil {
					b.Fatalf("open engine: %v", err)
				}
				b.Cleanup(func() {
					if err := e.Close(); err != nil {
						b.Errorf("Close: %v", err)
					}
				})
				wl.fn(b, &benchWorld{e: e, ctx: context.Background()}, parallel)
			})
		}
	}
}

// benchWorld is one sub-benchmark's engine and version source.
type benchWorld struct {
	e       engine.Engine
	ctx     context.Context
	version atomic.Uint64
	workers atomic.Uint64
}

func (w *benchWorld) nextVersion() uint64 { return w.version.Add(1) }

// benchKey returns the 16-byte key of index i under prefix, ordered by i.
func benchKey(prefix string, i uint64) []byte {
	return fmt.Appendf(make([]byte, 0, benchKeySize), "%s%0*d", prefix, benchKeySize-len(prefix), i)
}

// preload writes n keys under prefix "k" with NoSync batches, then one
// synced write.
func (w *benchWorld) preload(b *testing.B, prefix string, n int) {
	b.Helper()
	val := pattern(benchValueSize, 0)
	for i := 0; i < n; i += 500 {
		var ws []engine.Write
		for j := i; j < min(i+500, n); j++ {
			ws = append(ws, engine.Write{Kind: engine.OpPut, Key: benchKey(prefix, uint64(j)), Value: val, Version: w.nextVersion()})
		}
		if _, err := w.e.Apply(w.ctx, ws, engine.ApplyOptions{NoSync: true}); err != nil {
			b.Fatalf("preload: %v", err)
		}
	}
	if _, err := w.e.Apply(w.ctx, []engine.Write{{Kind: engine.OpPut, Key: []byte("preload-done"), Value: val, Version: w.nextVersion()}}, engine.ApplyOptions{}); err != nil {
		b.Fatalf("preload: %v", err)
	}
}

// run runs b.N ops, serially or spread over about benchConcurrency
// goroutines, and reports ops/s. newOp is called once per goroutine with a
// worker id and returns that goroutine's op, which returns false after
// reporting an error (b.Errorf), stopping its goroutine.
func (w *benchWorld) run(b *testing.B, parallel bool, newOp func(worker uint64) func() bool) {
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism(max(1, (benchConcurrency+procs-1)/procs))
		b.RunParallel(func(pb *testing.PB) {
			op := newOp(w.workers.Add(1))
			for pb.Next() {
				if !op() {
					return
				}
			}
		})
	} else {
		op := newOp(w.workers.Add(1))
		for i := 0; i < b.N; i++ {
			if !op() {
				break
			}
		}
	}
	b.StopTimer()
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}

func benchPut(b *testing.B, w *benchWorld, parallel bool) {
	w.run(b, parallel, func(worker uint64) func() bool {
		// Each goroutine writes keys of its own, so versions from the
		// shared counter increase per key.
		prefix := fmt.Sprintf("p%03d-", worker%1000)
		val := pattern(benchValueSize, byte(worker))
		var seq uint64
		ws := make([]engine.Write, 1)
		return func() bool {
			seq++
			ws[0] = engine.Write{Kind: engine.OpPut, Key: benchKey(prefix, seq), Value: val, Version: w.nextVersion()}
			if _, err := w.e.Apply(w.ctx, ws, engine.ApplyOptions{}); err != nil {
				b.Errorf("put: %v", err)
				return false
			}
			return true
		}
	})
}

func benchGet(b *testing.B, w *benchWorld, parallel bool) {
	w.preload(b, "k", benchPreload)
	w.run(b, parallel, func(worker uint64) func() bool {
		r := rand.New(rand.NewPCG(worker, 1))
		ks := make([][]byte, 1)
		return func() bool {
			ks[0] = benchKey("k", r.Uint64N(benchPreload))
			got, err := w.e.Read(w.ctx, ks)
			if err != nil || len(got) != 1 || got[0].Version == 0 {
				b.Errorf("get %s: %v %v", ks[0], got, err)
				return false
			}
			return true
		}
	})
}

// cas reads key and tries one CAS on the version read. It reports whether
// the CAS applied; a lost race (a failed condition, or a version that a
// racing writer overtook) is not an error.
func (w *benchWorld) cas(key, val []byte) (bool, error) {
	cur, err := w.e.Read(w.ctx, [][]byte{key})
	if err != nil {
		return false, err
	}
	res, err := w.e.Apply(w.ctx, []engine.Write{{
		Kind: engine.OpPut, Key: key, Value: val, Version: w.nextVersion(),
		Cond: engine.Condition{Kind: engine.CondVersion, Version: cur[0].Version},
	}}, engine.ApplyOptions{})
	if errors.Is(err, engine.ErrInvalidArgument) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return res[0].Applied, nil
}

func benchCASLow(b *testing.B, w *benchWorld, parallel bool) {
	w.preload(b, "k", benchPreload)
	var conflicts atomic.Int64
	w.run(b, parallel, func(worker uint64) func() bool {
		r := rand.New(rand.NewPCG(worker, 2))
		val := pattern(benchValueSize, byte(worker))
		return func() bool {
			ok, err := w.cas(benchKey("k", r.Uint64N(benchPreload)), val)
			if err != nil {
				b.Errorf("cas: %v", err)
				return false
			}
			if !ok {
				conflicts.Add(1)
			}
			return true
		}
	})
	b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/op")
}

func benchCASHigh(b *testing.B, w *benchWorld, parallel bool) {
	w.preload(b, "h", benchHotKeys)
	var attempts atomic.Int64
	w.run(b, parallel, func(worker uint64) func() bool {
		r := rand.New(rand.NewPCG(worker, 3))
		val := pattern(benchValueSize, byte(worker))
		return func() bool {
			key := benchKey("h", r.Uint64N(benchHotKeys))
			for a := 0; a < benchMaxAttempts; a++ {
				attempts.Add(1)
				ok, err := w.cas(key, val)
				if err != nil {
					b.Errorf("cas: %v", err)
					return false
				}
				if ok {
					return true
				}
			}
			b.Errorf("cas on %s: no success in %d attempts", key, benchMaxAttempts)
			return false
		}
	})
	b.ReportMetric(float64(attempts.Load())/float64(b.N), "attempts/op")
}

func benchScan(b *testing.B, w *benchWorld, parallel bool) {
	w.preload(b, "k", benchPreload)
	w.run(b, parallel, func(worker uint64) func() bool {
		r := rand.New(rand.NewPCG(worker, 4))
		return func() bool {
			opts := engine.ScanOptions{Start: benchKey("k", r.Uint64N(benchPreload-benchScanLength)), Limit: benchScanLength}
			n := 0
			err := w.e.Scan(w.ctx, opts, func(engine.Entry) error { n++; return nil })
			if err != nil || n != benchScanLength {
				b.Errorf("scan from %s: %d entries, %v", opts.Start, n, err)
				return false
			}
			return true
		}
	})
}
