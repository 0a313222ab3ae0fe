package kv

import (
	"context"
	"sync"
	"time"

	"github.com/flaredb/flaredb/core/engine"
)

// readBatcher merges concurrent reads into one engine Read, so that one
// round trip to a plugin engine serves many callers. At most depth merged
// reads are in the engine at once; callers arriving meanwhile queue and go
// together in the next one. Reads of one merged call come from one point in
// time, so each caller's keys still do.
type readBatcher struct {
	eng     engine.Engine
	depth   int
	maxKeys int
	timeout time.Duration

	mu     sync.Mutex
	queue  []*readReq
	active int
}

type readReq struct {
	keys [][]byte
	res  []engine.Entry
	err  error
	done chan struct{}
}

// read returns one entry per key, or ctx's error if ctx ends first (the
// merged read it joined still runs, for the others).
func (b *readBatcher) read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	r := &readReq{keys: keys, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, r)
	lead := b.active < b.depth
	if lead {
		b.active++
	}
	b.mu.Unlock()
	if lead {
		b.lead()
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// lead runs one merged read of the queued requests. If more are queued by
// then, a new goroutine leads the next merged read, so that no caller
// waits for reads other than the one it joined.
func (b *readBatcher) lead() {
	b.mu.Lock()
	n, keys := 0, 0
	for n < len(b.queue) && (n == 0 || keys+len(b.queue[n].keys) <= b.maxKeys) {
		keys += len(b.queue[n].keys)
		n++
	}
	batch := b.queue[:n:n]
	b.queue = append([]*readReq(nil), b.queue[n:]...)
	b.mu.Unlock()

	all := make([][]byte, 0, keys)
	for _, r := range batch {
		all = append(all, r.keys...)
	}
	// The merged read is no one caller's: it runs to completion (bounded
	// by timeout) so that every caller in it gets an answer.
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	es, err := b.eng.Read(ctx, all)
	cancel()
	if err == nil && len(es) != len(all) {
		err = engine.ErrInternal
	}
	off := 0
	for _, r := range batch {
		if err != nil {
			r.err = err
		} else {
			r.res = es[off : off+len(r.keys) : off+len(r.keys)]
			off += len(r.keys)
		}
		close(r.done)
	}

	b.mu.Lock()
	if len(b.queue) == 0 {
		b.active--
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	go b.lead()
}
