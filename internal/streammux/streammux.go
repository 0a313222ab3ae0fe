// Package streammux carries many concurrent calls over one long-lived gRPC
// bidirectional stream, coalescing the calls that wait into shared messages
// and matching answers to callers by id. The client SDK uses it for the
// public KV Stream and the engine wire for the plugin Engine Stream: the
// same session logic behind two protocols.
//
// The protocol is the caller's: each call arrives already encoded as a
// complete request message holding that one call, under a field that is
// repeated in the request. Protobuf merges concatenated messages by
// appending repeated fields, so the concatenation of several such encodings
// is the encoding of one request carrying all their calls: the sender
// packs waiting calls into one message by handing gRPC the list of
// encodings (through Codec) without re-marshaling. The encoding belongs to
// the Mux once queued; the values the caller encoded it from are not
// touched again.
//
// It imports gRPC and nothing of FlareDB's, so that both the client (which
// must not import the plugins) and the wire (which must not import the
// client) can use it. Its own tests run it against a real gRPC server with
// the engine wire's Stream (coalescing within the bounds, answers out of
// order, abandoned calls, broken streams, failed opens, Close); the client
// and wire tests cover it again behind those two protocols.
package streammux

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// encoded is a request message already encoded, in parts.
type encoded struct{ parts [][]byte }

// codec sends *encoded as its concatenated parts and uses the standard
// proto codec for everything else. Its name is "proto", so the content
// type is the standard one.
type codec struct{ proto encoding.CodecV2 }

// Codec returns the codec a stream opened by Options.Open must use, with
// grpc.ForceCodecV2.
func Codec() encoding.CodecV2 { return codec{proto: encoding.GetCodecV2(protoenc.Name)} }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	w, ok := v.(*encoded)
	if !ok {
		return c.proto.Marshal(v)
	}
	bs := make(mem.BufferSlice, len(w.parts))
	for i, p := range w.parts {
		bs[i] = mem.SliceBuffer(p)
	}
	return bs, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c codec) Name() string { return c.proto.Name() }

// Options describe one protocol. Every function but the test hooks (OnSend,
// OnQueued) is required, and all must be safe for concurrent use.
type Options[A any] struct {
	// Open starts one stream call under ctx (canceled when the session
	// ends), sending with Codec.
	Open func(ctx context.Context) (grpc.ClientStream, error)
	// Receive receives one response message and returns its answers, and
	// whether the server said it is draining the stream (shutting down):
	// then new calls go to a new session, and this one is half-closed once
	// its calls are answered, so that the server can end it.
	Receive func(st grpc.ClientStream) (answers []A, draining bool, err error)
	// ID returns the id of the call an answer belongs to.
	ID func(A) uint64
	// CancelRequest returns the encoded request that asks the server to
	// stop call id, whose caller has gone.
	CancelRequest func(id uint64) ([]byte, error)
	// MaxCalls and MaxBytes bound the calls and bytes coalesced into one
	// message (a single larger call is sent alone). Zero or less means no
	// bound. Mux.SetMaxBytes changes the byte bound later.
	MaxCalls, MaxBytes int

	// OpenFailed returns the error for the callers waiting on a session
	// whose Open failed with err.
	OpenFailed func(err error) error
	// Broken returns the error for the calls still waiting on a session
	// that ended because of cause (io.EOF when the server ended the stream),
	// and whether the server certainly processed none of them (as when it
	// has no such stream method).
	Broken func(cause error) (err error, noneProcessed bool)
	// Closed is the error of calls made after Close.
	Closed error
	// KeepsBreaking returns the error of a call that found its session
	// broken several times in a row before it could queue.
	KeepsBreaking func() error

	// OnSend, if set, is called before each message is sent with its
	// number of calls, and OnQueued after each call is queued (for tests).
	OnSend   func(calls int)
	OnQueued func()
}

// Mux holds the current session of one stream and the attempt to open the
// next one. It is safe for concurrent use.
type Mux[A any] struct {
	o        Options[A]
	base     context.Context
	wg       sync.WaitGroup // the sessions' sender and receiver goroutines
	maxBytes atomic.Int64   // Options.MaxBytes, or as last set by SetMaxBytes

	mu      sync.Mutex
	closed  bool
	sess    *session[A]
	opening *openAttempt[A]
}

// New returns a Mux whose sessions live under base: canceling base ends
// them (their waiting calls fail, with Broken's error).
func New[A any](base context.Context, o Options[A]) *Mux[A] {
	m := &Mux[A]{o: o, base: base}
	m.maxBytes.Store(int64(o.MaxBytes))
	return m
}

// SetMaxBytes replaces the bound on the bytes coalesced into one message
// (zero or less: no bound), from the next message on, in every session.
// It is safe to call at any time.
func (m *Mux[A]) SetMaxBytes(n int) { m.maxBytes.Store(int64(n)) }

type openAttempt[A any] struct {
	done chan struct{}
	sess *session[A]
	err  error
}

// call is one request waiting on a session.
type call[A any] struct {
	id   uint64
	data []byte // an encoded request holding this call only
	sent bool   // taken by the sender (guarded by session.mu)
	gone bool   // abandoned by its caller (guarded by session.mu)
	res  chan result[A]
}

type result[A any] struct {
	a       A
	err     error
	notSent bool
}

// session is one open stream call with its sender and receiver goroutines.
type session[A any] struct {
	m      *Mux[A]
	stream grpc.ClientStream
	cancel context.CancelFunc
	wake   chan struct{} // capacity 1: "the queue may be non-empty"
	done   chan struct{} // closed when the session breaks

	mu       sync.Mutex
	broken   bool
	draining bool // the server is draining: take no new calls
	queue    []*call[A]
	pending  map[uint64]*call[A] // queued or sent, not yet answered
}

// Do sends call id, encoded in data, and waits for its answer, the
// session's end or ctx's end. ids must be unique among the calls in
// progress. On error, notSent reports that the call certainly never reached
// the server. When ctx ends after the call was sent, the server is asked to
// cancel it, and ctx's error is returned. data must not be modified
// afterwards.
func (m *Mux[A]) Do(ctx context.Context, id uint64, data []byte) (a A, notSent bool, err error) {
	cl := &call[A]{id: id, data: data, res: make(chan result[A], 1)}
	var s *session[A]
	for tries := 0; ; tries++ {
		s, err = m.session(ctx)
		if err != nil {
			return a, true, err
		}
		if s.enqueue(cl) {
			break
		}
		// The session broke (or began draining) between lookup and
		// enqueue; open another.
		if tries >= 3 {
			return a, true, m.o.KeepsBreaking()
		}
	}
	if h := m.o.OnQueued; h != nil {
		h()
	}
	select {
	case r := <-cl.res:
		return r.a, r.notSent, r.err
	case <-ctx.Done():
		// An answer that came in meanwhile wins: the call is done, and
		// asking the server to cancel it would be wasted.
		select {
		case r := <-cl.res:
			return r.a, r.notSent, r.err
		default:
		}
		sent := s.abandon(cl)
		return a, !sent, ctx.Err()
	}
}

// Close makes later calls fail with Options.Closed. Sessions already open
// end when base is canceled.
func (m *Mux[A]) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
}

// Wait waits for the goroutines of the sessions, which end once base is
// canceled.
func (m *Mux[A]) Wait() { m.wg.Wait() }

// session returns the open session, opening one if needed. Only one open
// attempt runs at a time; callers wait for it within their ctx.
func (m *Mux[A]) session(ctx context.Context) (*session[A], error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, m.o.Closed
	}
	if s := m.sess; s != nil {
		m.mu.Unlock()
		return s, nil
	}
	a := m.opening
	if a == nil {
		a = &openAttempt[A]{done: make(chan struct{})}
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

// open opens a stream for attempt a, in its own goroutine so that waiting
// callers can give up when their ctx ends.
func (m *Mux[A]) open(a *openAttempt[A]) {
	defer close(a.done)
	sctx, cancel := context.WithCancel(m.base)
	st, err := m.o.Open(sctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opening = nil
	if m.closed {
		cancel()
		a.err = m.o.Closed
		return
	}
	if err != nil {
		cancel()
		a.err = m.o.OpenFailed(err)
		return
	}
	s := &session[A]{
		m:       m,
		stream:  st,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		pending: make(map[uint64]*call[A]),
	}
	m.sess = s
	a.sess = s
	m.wg.Add(2)
	go s.sendLoop()
	go s.recvLoop()
}

// drop forgets s if it is the current session, so that the next call opens
// a new one.
func (m *Mux[A]) drop(s *session[A]) {
	m.mu.Lock()
	if m.sess == s {
		m.sess = nil
	}
	m.mu.Unlock()
}

func (s *session[A]) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// enqueue queues cl; false means the session is broken or draining.
func (s *session[A]) enqueue(cl *call[A]) bool {
	s.mu.Lock()
	if s.broken || s.draining {
		s.mu.Unlock()
		return false
	}
	s.pending[cl.id] = cl
	s.queue = append(s.queue, cl)
	s.mu.Unlock()
	s.signal()
	return true
}

// abandon forgets cl, whose caller has gone: it is not sent if it is still
// queued, its answer is dropped, and if it was sent the server is asked to
// cancel it (so that it stops waiting for it, as for a unary call whose
// caller went away). It reports whether cl had been sent.
func (s *session[A]) abandon(cl *call[A]) (sent bool) {
	s.mu.Lock()
	cl.gone = true
	sent = cl.sent
	if s.broken {
		s.mu.Unlock()
		return sent
	}
	delete(s.pending, cl.id)
	if cl.sent {
		if data, err := s.m.o.CancelRequest(cl.id); err == nil {
			s.queue = append(s.queue, &call[A]{id: cl.id, data: data})
		}
	}
	s.mu.Unlock()
	s.signal()
	return sent
}

// take removes the next message's worth of calls from the queue and marks
// them sent: at most MaxCalls calls and MaxBytes bytes, but at least one.
func (s *session[A]) take() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return nil
	}
	var parts [][]byte
	size, i := 0, 0
	maxBytes := int(s.m.maxBytes.Load())
	for ; i < len(s.queue); i++ {
		cl := s.queue[i]
		if cl.gone {
			continue
		}
		if maxCalls := s.m.o.MaxCalls; maxCalls > 0 && len(parts) >= maxCalls {
			break
		}
		if maxBytes > 0 && len(parts) > 0 && size+len(cl.data) > maxBytes {
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

func (s *session[A]) sendLoop() {
	defer s.m.wg.Done()
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		// Callers woken by one answer message come back in a burst: yield
		// once so that they join this message instead of each paying for
		// a message of its own. At low load this costs one scheduler pass.
		runtime.Gosched()
		for {
			parts := s.take()
			if len(parts) == 0 {
				break
			}
			if h := s.m.o.OnSend; h != nil {
				h(len(parts))
			}
			if err := s.stream.SendMsg(&encoded{parts: parts}); err != nil {
				if errors.Is(err, io.EOF) {
					// The stream has ended; the receiver learns why.
					return
				}
				s.fail(err)
				return
			}
		}
		if s.drained() {
			// Every call is answered and the server is draining: end our
			// side, so that the server can end the stream (the receiver
			// then sees its end).
			_ = s.stream.CloseSend()
			return
		}
	}
}

// drained reports whether the session is draining with nothing left to
// send or to be answered.
func (s *session[A]) drained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining && !s.broken && len(s.pending) == 0 && len(s.queue) == 0
}

// drain stops s from taking new calls: the next call opens a new session.
func (s *session[A]) drain() {
	s.m.drop(s)
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
}

func (s *session[A]) recvLoop() {
	defer s.m.wg.Done()
	var ready []*call[A]
	var answers []A
	drainSeen := false
	for {
		as, draining, err := s.m.o.Receive(s.stream)
		if err != nil {
			s.fail(err)
			return
		}
		if draining && !drainSeen {
			drainSeen = true
			s.drain()
		}
		ready, answers = ready[:0], answers[:0]
		s.mu.Lock()
		for _, a := range as {
			id := s.m.o.ID(a)
			if cl, ok := s.pending[id]; ok {
				delete(s.pending, id)
				ready = append(ready, cl)
				answers = append(answers, a)
			}
		}
		s.mu.Unlock()
		for i, cl := range ready {
			cl.res <- result[A]{a: answers[i]} // buffered; one answer per call
		}
		clear(ready)
		clear(answers)
		if drainSeen {
			s.signal() // the sender half-closes once all is answered
		}
	}
}

// fail ends the session: every waiting call gets Broken's error, and the
// next call opens a new session.
func (s *session[A]) fail(cause error) {
	// Forget s first, so that a caller whose enqueue finds s broken gets a
	// new session on its next try, not s again.
	s.m.drop(s)
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
		cl      *call[A]
		notSent bool
	}
	ds := make([]delivery, 0, len(pending))
	for _, cl := range pending {
		ds = append(ds, delivery{cl, !cl.sent})
	}
	s.mu.Unlock()

	s.cancel()

	err, none := s.m.o.Broken(cause)
	for _, d := range ds {
		d.cl.res <- result[A]{err: err, notSent: d.notSent || none}
	}
}
