package client

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// The multiplexed stream.
//
// Each call marshals its request, in its own goroutine, as a complete
// StreamRequest holding that one op (field 1, length-delimited). Protobuf
// merges concatenated messages by appending repeated fields, so the
// concatenation of several such encodings is the encoding of one
// StreamRequest carrying all their ops. The sender goroutine therefore packs
// waiting calls by handing gRPC the list of encodings (wireRequest) through
// wireCodec, without re-marshaling, and the client never touches the
// caller's slices after the call has been queued.

// wireRequest is a StreamRequest already encoded, in parts.
type wireRequest struct {
	parts [][]byte
}

// wireCodec sends *wireRequest as its concatenated parts and uses the
// standard proto codec for everything else (the StreamResponse answers). Its
// name is "proto", so the wire content type is the standard one.
type wireCodec struct {
	proto encoding.CodecV2
}

func newWireCodec() wireCodec {
	return wireCodec{proto: encoding.GetCodecV2(protoenc.Name)}
}

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	w, ok := v.(*wireRequest)
	if !ok {
		return c.proto.Marshal(v)
	}
	bs := make(mem.BufferSlice, len(w.parts))
	for i, p := range w.parts {
		bs[i] = mem.SliceBuffer(p)
	}
	return bs, nil
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c wireCodec) Name() string { return c.proto.Name() }

// call is one request waiting on a session.
type call struct {
	id   uint64
	data []byte // an encoded StreamRequest holding this op only
	sent bool   // taken by the sender (guarded by session.mu)
	gone bool   // abandoned by its caller (guarded by session.mu)
	res  chan callResult
}

type callResult struct {
	r       *kvpb.StreamResult
	err     error
	notSent bool // err is certain the request never left the client
}

// mux is one slot of the stream pool: the current session, if any, and the
// attempt to open the next one.
type mux struct {
	c *Client

	mu      sync.Mutex
	closed  bool
	sess    *session
	opening *openAttempt
}

type openAttempt struct {
	done chan struct{}
	sess *session
	err  error
}

// session is one open Stream RPC with its sender and receiver goroutines.
type session struct {
	m      *mux
	stream kvpb.KV_StreamClient
	cancel context.CancelFunc
	wake   chan struct{} // capacity 1: "the queue may be non-empty"
	done   chan struct{} // closed when the session breaks

	mu      sync.Mutex
	broken  bool
	queue   []*call
	pending map[uint64]*call // queued or sent, not yet answered
}

// do sends one encoded request on the stream and waits for its answer, the
// session's end or ctx's end.
func (m *mux) do(ctx context.Context, id uint64, data []byte) (*kvpb.StreamResult, bool, error) {
	cl := &call{id: id, data: data, res: make(chan callResult, 1)}
	var s *session
	for tries := 0; ; tries++ {
		var err error
		s, err = m.session(ctx)
		if err != nil {
			return nil, true, err
		}
		if s.enqueue(cl) {
			break
		}
		// The session broke between lookup and enqueue; open another.
		if tries >= 3 {
			return nil, true, unavailable(nil, "stream keeps breaking")
		}
	}
	if h := m.c.opts.testHookEnqueue; h != nil {
		h()
	}
	select {
	case r := <-cl.res:
		return r.r, r.notSent, r.err
	case <-ctx.Done():
		s.abandon(cl)
		return nil, false, ctx.Err()
	}
}

// session returns the open session, opening one if needed. Only one open
// attempt runs at a time; callers wait for it within their ctx.
func (m *mux) session(ctx context.Context) (*session, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	if s := m.sess; s != nil {
		m.mu.Unlock()
		return s, nil
	}
	a := m.opening
	if a == nil {
		a = &openAttempt{done: make(chan struct{})}
		m.opening = a
		go m.open(a)
	}
	m.mu.Unlock()
	select {
	case <-a.done:
		return a.sess, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// open opens a stream for attempt a. It runs in its own goroutine so that
// waiting callers can give up when their ctx ends.
func (m *mux) open(a *openAttempt) {
	defer close(a.done)
	c := m.c
	sctx, cancel := context.WithCancel(c.base)
	st, err := c.kv.Stream(sctx, grpc.ForceCodecV2(c.codec))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opening = nil
	if m.closed {
		cancel()
		a.err = ErrClosed
		return
	}
	if err != nil {
		cancel()
		if status.Code(err) == codes.Unimplemented {
			c.noStream.Store(true)
		}
		a.err = unavailable(fromStatus(context.Background(), err), "opening stream")
		return
	}
	s := &session{
		m:       m,
		stream:  st,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		pending: make(map[uint64]*call),
	}
	m.sess = s
	a.sess = s
	c.wg.Add(2)
	go s.sendLoop()
	go s.recvLoop()
}

// close marks the mux closed; sessions end when the client's base context
// is canceled.
func (m *mux) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
}

// drop forgets s if it is the current session, so the next call opens a new
// one.
func (m *mux) drop(s *session) {
	m.mu.Lock()
	if m.sess == s {
		m.sess = nil
	}
	m.mu.Unlock()
}

// enqueue queues cl; false means the session is broken.
func (s *session) enqueue(cl *call) bool {
	s.mu.Lock()
	if s.broken {
		s.mu.Unlock()
		return false
	}
	s.pending[cl.id] = cl
	s.queue = append(s.queue, cl)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// abandon forgets cl, whose caller has gone: it is not sent if it is still
// queued, its answer is dropped, and if it was sent the server is asked to
// cancel it (so that it stops waiting for it, as for a unary call whose
// caller went away).
func (s *session) abandon(cl *call) {
	s.mu.Lock()
	cl.gone = true
	if s.broken {
		s.mu.Unlock()
		return
	}
	delete(s.pending, cl.id)
	if cl.sent {
		if data, err := proto.Marshal(&kvpb.StreamRequest{Ops: []*kvpb.StreamOp{{
			Id: cl.id, Request: &kvpb.StreamOp_Cancel{Cancel: &kvpb.StreamCancel{}}}}}); err == nil {
			s.queue = append(s.queue, &call{id: cl.id, data: data})
		}
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take removes the next message's worth of calls from the queue and marks
// them sent: at most maxOps calls and maxBytes bytes, but at least one.
func (s *session) take(maxOps, maxBytes int) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return nil
	}
	var parts [][]byte
	size, i := 0, 0
	for ; i < len(s.queue); i++ {
		cl := s.queue[i]
		if cl.gone {
			continue
		}
		if len(parts) >= maxOps || (len(parts) > 0 && size+len(cl.data) > maxBytes) {
			break
		}
		cl.sent = true
		parts = append(parts, cl.data)
		size += len(cl.data)
	}
	n := copy(s.queue, s.queue[i:])
	clear(s.queue[n:])
	s.queue = s.queue[:n]
	return parts
}

func (s *session) sendLoop() {
	defer s.m.c.wg.Done()
	opts := s.m.c.opts
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		// Callers woken by one answer message re-queue in a burst: yield
		// once so that they join this message instead of each paying for
		// a message of its own. At low load this costs one scheduler pass.
		runtime.Gosched()
		for {
			parts := s.take(opts.maxOpsPerMsg, opts.maxBytesPerMsg)
			if len(parts) == 0 {
				break
			}
			if h := opts.testHookSend; h != nil {
				h(len(parts))
			}
			if err := s.stream.SendMsg(&wireRequest{parts: parts}); err != nil {
				if errors.Is(err, io.EOF) {
					// The stream has ended; the receiver learns why.
					return
				}
				s.fail(err)
				return
			}
		}
	}
}

func (s *session) recvLoop() {
	defer s.m.c.wg.Done()
	var ready []*call
	var results []*kvpb.StreamResult
	for {
		resp := new(kvpb.StreamResponse)
		if err := s.stream.RecvMsg(resp); err != nil {
			s.fail(err)
			return
		}
		ready, results = ready[:0], results[:0]
		s.mu.Lock()
		for _, r := range resp.GetResults() {
			if cl, ok := s.pending[r.GetId()]; ok {
				delete(s.pending, r.GetId())
				ready = append(ready, cl)
				results = append(results, r)
			}
		}
		s.mu.Unlock()
		for i, cl := range ready {
			cl.res <- callResult{r: results[i]}
		}
		clear(ready)
		clear(results)
	}
}

// fail ends the session: every waiting call gets an Unavailable error (or
// ErrClosed after Client.Close) and the next call opens a new session.
func (s *session) fail(cause error) {
	s.mu.Lock()
	if s.broken {
		s.mu.Unlock()
		return
	}
	s.broken = true
	pending := s.pending
	s.pending = nil
	clear(s.queue)
	s.queue = nil
	close(s.done)
	type delivery struct {
		cl      *call
		notSent bool
	}
	ds := make([]delivery, 0, len(pending))
	for _, cl := range pending {
		ds = append(ds, delivery{cl, !cl.sent})
	}
	s.mu.Unlock()

	s.cancel()
	s.m.drop(s)

	c := s.m.c
	var err error
	allNotSent := false
	switch {
	case c.closed.Load():
		err = ErrClosed
	case errors.Is(cause, io.EOF):
		err = unavailable(nil, "stream closed by the server")
	default:
		if status.Code(cause) == codes.Unimplemented {
			// The server has no Stream method: nothing was processed;
			// fall back to unary calls from now on.
			c.noStream.Store(true)
			allNotSent = true
		}
		err = unavailable(fromStatus(context.Background(), cause), "stream broken")
	}
	for _, d := range ds {
		d.cl.res <- callResult{err: err, notSent: d.notSent || allNotSent}
	}
}
