package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flaredb/flaredb/core/engine"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// The client side of the Stream.
//
// Each call marshals its request, in its own goroutine, as a complete
// StreamRequest holding that one call. Protobuf merges concatenated
// messages by appending repeated fields, so the concatenation of several
// such encodings is the encoding of one StreamRequest carrying all their
// calls: the sender goroutine packs waiting calls into one message by
// handing gRPC the list of encodings (wireRequest, through wireCodec)
// without re-marshaling, and the caller's slices are never read after the
// call has been queued.

// wireRequest is a StreamRequest already encoded, in parts.
type wireRequest struct{ parts [][]byte }

// wireCodec sends *wireRequest as its concatenated parts and uses the
// standard proto codec for everything else. Its name is "proto", so the
// content type is the standard one.
type wireCodec struct{ proto encoding.CodecV2 }

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

// errNoStream tells a caller that the server has no Stream method and that
// its call was not processed: it is to be made with a unary call.
var errNoStream = errors.New("wire: server has no Stream method")

// call is one request waiting on a session.
type call struct {
	id   uint64
	data []byte // an encoded StreamRequest holding this call only
	sent bool   // taken by the sender (guarded by session.mu)
	gone bool   // abandoned by its caller (guarded by session.mu)
	res  chan *enginepb.StreamAnswer
	err  error // set before res is closed, when there is no answer
}

// streamMux holds a Client's current session and the attempt to open the
// next one.
type streamMux struct {
	c *Client

	mu      sync.Mutex
	nextID  uint64
	sess    *session
	opening *openAttempt
}

type openAttempt struct {
	done chan struct{}
	sess *session
	err  error
}

// session is one open Stream call with its sender and receiver goroutines.
type session struct {
	m      *streamMux
	stream grpc.BidiStreamingClient[enginepb.StreamRequest, enginepb.StreamResponse]
	cancel context.CancelFunc
	wake   chan struct{} // capacity 1: "the queue may be non-empty"
	done   chan struct{} // closed when the session breaks

	mu      sync.Mutex
	broken  bool
	queue   []*call
	pending map[uint64]*call // queued or sent, not yet answered
}

// do sends one call on the stream and waits for its answer, the session's
// end or ctx's end. build fills in the call's request.
func (m *streamMux) do(ctx context.Context, build func(*enginepb.StreamCall)) (*enginepb.StreamAnswer, error) {
	m.mu.Lock()
	m.nextID++
	id := m.nextID
	m.mu.Unlock()
	sc := &enginepb.StreamCall{Id: id}
	if d, ok := ctx.Deadline(); ok {
		t := time.Until(d)
		if t <= 0 {
			return nil, context.DeadlineExceeded
		}
		sc.TimeoutNanos = int64(t)
	}
	build(sc)
	data, err := proto.Marshal(&enginepb.StreamRequest{Calls: []*enginepb.StreamCall{sc}})
	if err != nil {
		return nil, fmt.Errorf("%w: marshal: %w", engine.ErrInternal, err)
	}
	if len(data) > MaxMessageSize {
		return nil, fmt.Errorf("%w: request of %d bytes exceeds the %d-byte message limit", engine.ErrTooLarge, len(data), MaxMessageSize)
	}
	cl := &call{id: id, data: data, res: make(chan *enginepb.StreamAnswer, 1)}
	var s *session
	for tries := 0; ; tries++ {
		s, err = m.session(ctx)
		if err != nil {
			return nil, err
		}
		if s.enqueue(cl) {
			break
		}
		// The session broke between lookup and enqueue; open another.
		if tries >= 3 {
			return nil, fmt.Errorf("%w: engine stream keeps breaking", engine.ErrUnavailable)
		}
	}
	select {
	case a, ok := <-cl.res:
		if !ok {
			return nil, cl.err
		}
		return a, nil
	case <-ctx.Done():
		s.abandon(cl)
		return nil, ctx.Err()
	}
}

// session returns the open session, opening one if needed. Only one open
// attempt runs at a time; callers wait for it within their ctx.
func (m *streamMux) session(ctx context.Context) (*session, error) {
	m.mu.Lock()
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

// open opens a stream for attempt a, in its own goroutine so that waiting
// callers can give up when their ctx ends.
func (m *streamMux) open(a *openAttempt) {
	defer close(a.done)
	c := m.c
	sctx, cancel := context.WithCancel(c.base)
	st, err := c.rpc.Stream(sctx, grpc.ForceCodecV2(wireCodec{proto: encoding.GetCodecV2(protoenc.Name)}))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opening = nil
	if err != nil {
		cancel()
		if status.Code(err) == codes.Unimplemented {
			c.noStream.Store(true)
			a.err = errNoStream
			return
		}
		if c.base.Err() != nil {
			a.err = engine.ErrClosed
			return
		}
		a.err = fmt.Errorf("%w: opening the engine stream: %w", engine.ErrUnavailable, FromStatus(err))
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

// drop forgets s if it is the current session, so that the next call
// opens a new one.
func (m *streamMux) drop(s *session) {
	m.mu.Lock()
	if m.sess == s {
		m.sess = nil
	}
	m.mu.Unlock()
}

func (s *session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
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
	s.signal()
	return true
}

// abandon forgets cl, whose caller has gone: it is not sent if it is still
// queued, its answer is dropped, and if it was sent the server is asked to
// cancel it.
func (s *session) abandon(cl *call) {
	s.mu.Lock()
	cl.gone = true
	if s.broken {
		s.mu.Unlock()
		return
	}
	delete(s.pending, cl.id)
	if cl.sent {
		data, err := proto.Marshal(&enginepb.StreamRequest{Calls: []*enginepb.StreamCall{{
			Id: cl.id, Call: &enginepb.StreamCall_Cancel{Cancel: &enginepb.StreamCancel{}}}}})
		if err == nil {
			s.queue = append(s.queue, &call{id: cl.id, data: data})
		}
	}
	s.mu.Unlock()
	s.signal()
}

// take removes the next message's worth of calls from the queue and marks
// them sent: at most maxCallsPerMsg calls and maxBytesPerMsg bytes, but at
// least one.
func (s *session) take() [][]byte {
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
		if len(parts) >= maxCallsPerMsg || (len(parts) > 0 && size+len(cl.data) > maxBytesPerMsg) {
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
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		// Callers woken by one answer message come back in a burst: yield
		// once so that they join this message instead of each paying for
		// a message of its own.
		runtime.Gosched()
		for {
			parts := s.take()
			if len(parts) == 0 {
				break
			}
			if h := s.m.c.testHookSend; h != nil {
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
	for {
		resp := new(enginepb.StreamResponse)
		if err := s.stream.RecvMsg(resp); err != nil {
			s.fail(err)
			return
		}
		s.mu.Lock()
		for _, a := range resp.GetAnswers() {
			if cl, ok := s.pending[a.GetId()]; ok {
				delete(s.pending, a.GetId())
				cl.res <- a // buffered, and only this one answer is sent
			}
		}
		s.mu.Unlock()
	}
}

// fail ends the session: every waiting call gets engine.ErrUnavailable (or
// engine.ErrClosed after Close, or errNoStream when the server has no
// Stream method), and the next call opens a new session.
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
	s.mu.Unlock()

	s.cancel()
	s.m.drop(s)

	c := s.m.c
	var err error
	switch {
	case c.base.Err() != nil:
		err = engine.ErrClosed
	case errors.Is(cause, io.EOF):
		err = fmt.Errorf("%w: engine stream closed by the server", engine.ErrUnavailable)
	case status.Code(cause) == codes.Unimplemented:
		// The server has no Stream method: nothing was processed; the
		// callers fall back to unary calls, from now on.
		c.noStream.Store(true)
		err = errNoStream
	default:
		err = fmt.Errorf("%w: engine stream broken: %w", engine.ErrUnavailable, FromStatus(cause))
	}
	for _, cl := range pending {
		cl.err = err
		close(cl.res)
	}
}
