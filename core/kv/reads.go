package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/metrics"
)

// readBatcher merges concurrent reads into one engine Read, so that one
// round trip to a plugin engine serves many callers. At most depth merged
// reads are in the engine at once; callers arriving meanwhile queue and go
// together in the next one. Reads of one merged call come from one point in
// time, so each caller's keys still do.
//
// A merged read runs in its own goroutine, bounded by timeout, so that
// every caller waits for it or for its own context, whichever ends first.
type readBatcher struct {
	eng     engine.Engine
	depth   int
	maxKeys int
	timeout time.Duration
	log     *slog.Logger
	m       *metrics.Metrics // may be nil

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
	// The merged read may run after the caller has returned (its ctx
	// ended): it must not read the caller's memory then.
	r := &readReq{keys: ownKeys(keys), done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, r)
	lead := b.active < b.depth
	if lead {
		b.active++
	}
	b.mu.Unlock()
	if lead {
		go b.lead()
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// lead runs merged reads of the queued requests until the queue is empty,
// then gives its slot back.
func (b *readBatcher) lead() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.active--
			b.mu.Unlock()
			return
		}
		n, keys := 0, 0
		for n < len(b.queue) && (n == 0 || keys+len(b.queue[n].keys) <= b.maxKeys) {
			keys += len(b.queue[n].keys)
			n++
		}
		batch := b.queue[:n:n]
		b.queue = append([]*readReq(nil), b.queue[n:]...)
		b.mu.Unlock()
		b.run(batch, keys)
	}
}

// run reads batch as one engine call and answers each request. If the
// merged read is refused as a whole for a reason that may belong to one
// request (an answer too large for one message, say), each request is
// read alone so that the others succeed.
func (b *readBatcher) run(batch []*readReq, keys int) {
	all := make([][]byte, 0, keys)
	for _, r := range batch {
		all = append(all, r.keys...)
	}
	es, err := b.call(all)
	if err != nil && len(batch) > 1 && (errors.Is(err, engine.ErrTooLarge) || errors.Is(err, engine.ErrInvalidArgument)) {
		for _, r := range batch {
			r.res, r.err = b.call(r.keys)
			close(r.done)
		}
		return
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
}

// call is one engine Read for no one caller in particular: it runs to
// completion, bounded by timeout, so that every caller in it gets an
// answer.
func (b *readBatcher) call(keys [][]byte) ([]engine.Entry, error) {
	b.m.ObserveReadBatch(len(keys))
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	es, err := b.eng.Read(ctx, keys)
	if err != nil {
		if ctx.Err() != nil {
			b.log.Error("engine read did not answer in time", "keys", len(keys), "call_timeout", b.timeout, "err", err)
			return nil, fmt.Errorf("%w: the engine did not answer a read within the call timeout (%v)", engine.ErrUnavailable, b.timeout)
		}
		return nil, err
	}
	if len(es) != len(keys) {
		return nil, fmt.Errorf("%w: engine returned %d entries for %d keys", engine.ErrInternal, len(es), len(keys))
	}
	return es, nil
}
