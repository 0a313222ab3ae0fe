package wire

import (
	"context"
	"sync"

	"github.com/flaredb/flaredb/internal/keyset"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// applyOrder makes the Apply calls a Server receives reach its engine, key
// by key, in the order they arrived: an Apply waits until every earlier one
// still in progress that shares a key with it has returned.
//
// The client of the wire gives up on a call when its caller's context
// ends, and asks the server to cancel it, but the engine may be running it
// still (it may even ignore the cancellation). The caller, told that the
// outcome is unknown, goes on, and the server's pipeline sends the next
// writes of the same keys: without this order they could overtake the
// late call, so that a late put arrives after a later one (and fails on
// its older version), or a late delete removes a put acknowledged after
// it. Calls arrive in order on one Stream (the cancellation too, before
// anything sent after it), and across Streams and unary calls in the
// order the server received them. When the client gives up on a whole
// Stream, the next Stream it opens fences the old one off (see fence.go):
// the old Stream's calls not yet admitted never start.
//
// It is safe for concurrent use.
type applyOrder struct {
	mu      sync.Mutex
	running []*ticket // in arrival order

	// The Streams of named clients (fence.go): clients by name, and the
	// idle ones in the order they became idle (with stale entries), nIdle
	// of them live, numbered by idleSeq.
	clients map[string]*fenceClient
	idle    []idleClient
	nIdle   int
	idleSeq uint64
}

// ticket is one Apply admitted to the order.
type ticket struct {
	keys  map[string]struct{}
	after []*ticket // earlier Applies sharing a key, running at admission
	done  chan struct{}
}

// admit records an Apply of writes arriving now on Stream st (nil for a
// unary call or an unnamed client's Stream) and returns its ticket, which
// must be finished once the call has returned (or will not run). It
// returns false, and no ticket, if st has been fenced off: the call must
// not run.
func (o *applyOrder) admit(st *fencedStream, writes []*enginepb.Write) (*ticket, bool) {
	t := &ticket{keys: make(map[string]struct{}, len(writes)), done: make(chan struct{})}
	for _, w := range writes {
		t.keys[string(w.GetKey())] = struct{}{}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if st.isFenced() {
		return nil, false
	}
	for _, r := range o.running {
		if keyset.Overlap(r.keys, t.keys) {
			t.after = append(t.after, r)
		}
	}
	o.running = append(o.running, t)
	return t, true
}

// wait waits until the earlier Applies t must follow have returned, or
// until ctx ends (then the call must not run: its error is ctx's). A nil
// ticket waits for nothing.
func (t *ticket) wait(ctx context.Context) error {
	if t == nil {
		return nil
	}
	for _, r := range t.after {
		select {
		case <-r.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t.after = nil
	return nil
}

// finish removes t from the order, releasing the Applies that wait for it.
// A nil ticket is ignored.
func (o *applyOrder) finish(t *ticket) {
	if t == nil {
		return
	}
	o.mu.Lock()
	for i, r := range o.running {
		if r == t {
			o.running = append(o.running[:i], o.running[i+1:]...)
			break
		}
	}
	o.mu.Unlock()
	close(t.done)
}
