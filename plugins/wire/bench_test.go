package wire

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
)

// BenchmarkWire measures the engine protocol's own cost: Read and Apply
// calls from 64 goroutines over a loopback gRPC connection (both ends in
// this process) to the reference engine, so that nearly all the time is
// the wire's: marshaling, the stream's coalescing and dispatch, gRPC. keys
// is the number of keys per call: the server's read batcher and write
// pipeline send calls of about 10 to 20 keys at 64 clients, and 64 shows
// what each key costs beyond its call.
//
//	go test -run '^$' -bench Wire -cpuprofile cpu.out ./plugins/wire
func BenchmarkWire(b *testing.B) {
	for _, keys := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("read/keys=%d", keys), func(b *testing.B) { benchWire(b, keys, false) })
		b.Run(fmt.Sprintf("apply/keys=%d", keys), func(b *testing.B) { benchWire(b, keys, true) })
	}
}

func benchWire(b *testing.B, keys int, apply bool) {
	const space = 10000
	e, err := Loopback(memengine.New())
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	names := make([][]byte, space)
	val := make([]byte, 128)
	var version atomic.Uint64
	seed := make([]engine.Write, 0, 1000)
	for i := range names {
		names[i] = []byte(fmt.Sprintf("key-%011d", i))
		seed = append(seed, engine.Write{Kind: engine.OpPut, Key: names[i], Value: val, Version: version.Add(1)})
		if len(seed) == cap(seed) {
			if _, err := e.Apply(ctx, seed, engine.ApplyOptions{NoSync: true}); err != nil {
				b.Fatal(err)
			}
			seed = seed[:0]
		}
	}
	var workers atomic.Uint64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine has its own keys (so that versions reach each key
		// in increasing order), distinct within a call.
		own := names[(workers.Add(1)-1)*128%space:][:128]
		ks := make([][]byte, keys)
		ws := make([]engine.Write, keys)
		for n := 0; pb.Next(); n++ {
			for i := range ks {
				ks[i] = own[(n*keys+i)%len(own)]
			}
			if !apply {
				es, err := e.Read(ctx, ks)
				if err != nil || len(es) != keys || es[0].Version == 0 {
					b.Errorf("read: %d entries, err %v", len(es), err)
					return
				}
				continue
			}
			for i := range ws {
				ws[i] = engine.Write{Kind: engine.OpPut, Key: ks[i], Value: val, Version: version.Add(1)}
			}
			rs, err := e.Apply(ctx, ws, engine.ApplyOptions{NoSync: true})
			if err != nil || len(rs) != keys {
				b.Errorf("apply: %d results, err %v", len(rs), err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*keys)/b.Elapsed().Seconds(), "keys/s")
}
