package streammux_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flaredb/flaredb/internal/streammux"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// These tests run a Mux over the engine wire's Stream protocol against a
// real gRPC server on a loopback port, whose Stream is scripted per test.

// waitTime bounds every wait, so that a bug fails a test instead of
// hanging it. It is a bound on a hang, not a measure of speed: TestStress
// takes a few seconds on two loaded cores under -race.
const waitTime = time.Minute

// The errors of the test Options, wrapping the cause where there is one.
var (
	errOpenFailed    = errors.New("test: open failed")
	errBroken        = errors.New("test: stream broken")
	errNoStream      = errors.New("test: no Stream method")
	errClosed        = errors.New("test: closed")
	errKeepsBreaking = errors.New("test: keeps breaking")
)

type (
	answer  = *enginepb.StreamAnswer
	mux     = streammux.Mux[answer]
	options = streammux.Options[answer]
)

// message is what the server received in one message.
type message struct {
	stream  int32    // the stream's number, from 1
	ids     []uint64 // of the Read calls, in order
	cancels []uint64 // of the Cancel calls
	size    int      // encoded size
}

// handler returns the answer messages to send for each message received
// on stream number n, then ends the stream if it returns an error (errEnd
// to end it normally). It runs in the stream's goroutine.
type handler func(n int32, req *enginepb.StreamRequest) ([][]answer, error)

// errEnd makes the server end a stream without error.
var errEnd = errors.New("test: end of stream")

// server is an Engine server whose Stream records every message received
// and replies as its handler says.
type server struct {
	enginepb.UnimplementedEngineServer
	handle  handler
	streams atomic.Int32

	mu   sync.Mutex
	msgs []message
}

func (s *server) Stream(st enginepb.Engine_StreamServer) error {
	n := s.streams.Add(1)
	for {
		req, err := st.Recv()
		if err != nil {
			return err
		}
		m := message{stream: n, size: proto.Size(req)}
		for _, c := range req.GetCalls() {
			if c.GetCancel() != nil {
				m.cancels = append(m.cancels, c.GetId())
				continue
			}
			m.ids = append(m.ids, c.GetId())
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
		send, end := s.handle(n, req)
		for _, as := range send {
			if err := st.Send(&enginepb.StreamResponse{Answers: as}); err != nil {
				return err
			}
		}
		if errors.Is(end, errEnd) {
			return nil
		} else if end != nil {
			return end
		}
	}
}

// messages returns the messages received so far, on every stream.
func (s *server) messages() []message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// idsPerMessage returns the ids of the Read calls of each message received.
func (s *server) idsPerMessage() (ids [][]uint64) {
	for _, m := range s.messages() {
		ids = append(ids, m.ids)
	}
	return ids
}

// echo answers the Read calls of each message at once, in one message.
func echo(_ int32, req *enginepb.StreamRequest) ([][]answer, error) {
	var as []answer
	for _, c := range req.GetCalls() {
		if c.GetCancel() == nil {
			as = append(as, readAnswer(c.GetId()))
		}
	}
	return [][]answer{as}, nil
}

// holdUntil returns a handler that answers nothing until n calls have
// arrived, then answers all of them in the order arrange (if set) leaves
// them, in one message or, if split, one message each.
func holdUntil(n int, arrange func([]answer), split bool) handler {
	var held []answer
	return func(_ int32, req *enginepb.StreamRequest) (send [][]answer, _ error) {
		for _, c := range req.GetCalls() {
			held = append(held, readAnswer(c.GetId()))
		}
		if len(held) < n {
			return nil, nil
		}
		as := held
		held = nil
		if arrange != nil {
			arrange(as)
		}
		if !split {
			return [][]answer{as}, nil
		}
		for _, a := range as {
			send = append(send, []answer{a})
		}
		return send, nil
	}
}

// holding returns a handler that holds the calls of key "hold", reporting
// their ids on arrived, reports the ids of Cancel calls on cancels, and
// answers each other call at once, just after the calls it holds (whether
// or not their callers still wait).
func holding(arrived, cancels chan<- uint64) handler {
	var held []uint64
	return func(_ int32, req *enginepb.StreamRequest) ([][]answer, error) {
		var as []answer
		for _, c := range req.GetCalls() {
			switch id := c.GetId(); {
			case c.GetCancel() != nil:
				cancels <- id
			case string(c.GetRead().GetKeys()[0]) == "hold":
				held = append(held, id)
				arrived <- id
			default:
				for _, h := range held {
					as = append(as, readAnswer(h))
				}
				held = nil
				as = append(as, readAnswer(id))
			}
		}
		return [][]answer{as}, nil
	}
}

// readAnswer is the answer to call id: a Read whose entry's key is id as
// text.
func readAnswer(id uint64) answer {
	return &enginepb.StreamAnswer{Id: id, Answer: &enginepb.StreamAnswer_Read{Read: &enginepb.ReadResponse{
		Entries: []*enginepb.Entry{{Key: []byte(strconv.FormatUint(id, 10)), Version: 1}}}}}
}

// encode returns the encoded request holding call id alone: a Read of key.
func encode(id uint64, key string) []byte {
	data, err := proto.Marshal(&enginepb.StreamRequest{Calls: []*enginepb.StreamCall{{
		Id: id, Call: &enginepb.StreamCall_Read{Read: &enginepb.ReadRequest{Keys: [][]byte{[]byte(key)}}}}}})
	if err != nil {
		panic(err) // cannot happen for this message
	}
	return data
}

// serve serves srv with a real gRPC server on a loopback port and returns
// a client of it; both stop when the test ends.
func serve(t *testing.T, srv enginepb.EngineServer, opts ...grpc.ServerOption) enginepb.EngineClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	enginepb.RegisterEngineServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return enginepb.NewEngineClient(conn)
}

// causes returns a channel to receive the errors given to
// Options.OpenFailed and Broken, with room for all of a test's.
func causes() chan error { return make(chan error, 16) }

// received returns the errors sent on c so far.
func received(c chan error) (errs []error) {
	for {
		select {
		case err := <-c:
			errs = append(errs, err)
		default:
			return errs
		}
	}
}

// newOptions returns Options for the Engine Stream of cl, patterned on the
// engine wire's, sending causes on c: errors wrap the sentinels above and
// their cause, and a server without a Stream method processed nothing.
func newOptions(cl enginepb.EngineClient, c chan<- error) options {
	return options{
		Open: func(ctx context.Context) (grpc.ClientStream, error) {
			return cl.Stream(ctx, grpc.ForceCodecV2(streammux.Codec()))
		},
		Receive: func(st grpc.ClientStream) ([]answer, bool, error) {
			resp := new(enginepb.StreamResponse)
			if err := st.RecvMsg(resp); err != nil {
				return nil, false, err
			}
			// An answer with id 0 stands for the server's "draining"
			// (the engine protocol has no such signal of its own).
			var as []answer
			draining := false
			for _, a := range resp.GetAnswers() {
				if a.GetId() == 0 {
					draining = true
					continue
				}
				as = append(as, a)
			}
			return as, draining, nil
		},
		ID: (*enginepb.StreamAnswer).GetId,
		CancelRequest: func(id uint64) ([]byte, error) {
			return proto.Marshal(&enginepb.StreamRequest{Calls: []*enginepb.StreamCall{{
				Id: id, Call: &enginepb.StreamCall_Cancel{Cancel: &enginepb.StreamCancel{}}}}})
		},
		MaxCalls: 64,
		MaxBytes: 1 << 20,
		OpenFailed: func(err error) error {
			c <- err
			if status.Code(err) == codes.Unimplemented {
				return errNoStream
			}
			return fmt.Errorf("%w: %w", errOpenFailed, err)
		},
		Broken: func(cause error) (error, bool) {
			c <- cause
			if status.Code(cause) == codes.Unimplemented {
				return errNoStream, true
			}
			return fmt.Errorf("%w: %w", errBroken, cause), false
		},
		Closed:        errClosed,
		KeepsBreaking: func() error { return errKeepsBreaking },
	}
}

// newMux returns a Mux over o and the cancel func of its base. When the
// test ends, base is canceled and the Mux's goroutines must end.
func newMux(t *testing.T, o options) (*mux, context.CancelFunc) {
	base, cancel := context.WithCancel(context.Background())
	m := streammux.New(base, o)
	t.Cleanup(func() {
		cancel()
		waitEnd(t, m)
	})
	return m, cancel
}

// waitEnd fails t unless m.Wait returns within waitTime.
func waitEnd(t *testing.T, m *mux) {
	t.Helper()
	done := make(chan struct{})
	go func() { m.Wait(); close(done) }()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	await(t, ctx, done)
}

// testCtx returns a context that ends after waitTime or with the test.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	t.Cleanup(cancel)
	return ctx
}

// await returns the next value of ch, failing t if ctx ends first.
func await[T any](t *testing.T, ctx context.Context, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("waiting: %v", ctx.Err())
		panic("unreachable")
	}
}

// outcome is what Do returned for call id.
type outcome struct {
	id      uint64
	a       answer
	notSent bool
	err     error
}

// do makes call id, a Read of key, on m.
func do(ctx context.Context, m *mux, id uint64, key string) outcome {
	a, notSent, err := m.Do(ctx, id, encode(id, key))
	return outcome{id, a, notSent, err}
}

// goDo makes call id in a goroutine of its own and delivers its outcome.
func goDo(ctx context.Context, m *mux, id uint64, key string) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() { ch <- do(ctx, m, id, key) }()
	return ch
}

// check reports how o differs from call o.id's success with its own answer.
func (o outcome) check() error {
	if want := readAnswer(o.id); o.err != nil || o.notSent || !proto.Equal(o.a, want) {
		return fmt.Errorf("call %d: got %v, %v (notSent %v), want %v", o.id, o.a, o.err, o.notSent, want)
	}
	return nil
}

// checkErr reports how o differs from a failure with want and notSent.
func (o outcome) checkErr(want error, notSent bool) error {
	if !errors.Is(o.err, want) || o.notSent != notSent || o.a != nil {
		return fmt.Errorf("call %d: got %v, %v (notSent %v), want %v (notSent %v)", o.id, o.a, o.err, o.notSent, want, notSent)
	}
	return nil
}

// gate holds the Mux's sender in OnSend before its first message until
// opened, so that the calls made meanwhile queue as behind a slow send.
// OnQueued reports each call queued on queued.
type gate struct {
	first, once     sync.Once
	entered, opened chan struct{} // entered is closed once the sender waits
	queued          chan struct{}
}

// gated installs a new gate in o. The caller must defer its open.
func gated(o *options) *gate {
	g := &gate{entered: make(chan struct{}), opened: make(chan struct{}), queued: make(chan struct{}, 64)}
	o.OnSend = func(int) { g.first.Do(func() { close(g.entered); <-g.opened }) }
	o.OnQueued = func() { g.queued <- struct{}{} }
	return g
}

// open lets the sender go; it may be called more than once.
func (g *gate) open() { g.once.Do(func() { close(g.opened) }) }

// TestRoundTrip: each call gets the answer with its id, and reaches the
// server as encoded, alone in its message, on one stream.
func TestRoundTrip(t *testing.T) {
	srv := &server{handle: echo}
	m, _ := newMux(t, newOptions(serve(t, srv), causes()))
	ctx := testCtx(t)
	for i, tc := range []struct {
		id  uint64
		key string
	}{{1, "a"}, {300, "bb"}, {1<<63 + 5, ""}} {
		if err := do(ctx, m, tc.id, tc.key).check(); err != nil {
			t.Fatal(err)
		}
		msgs := srv.messages()
		if len(msgs) != i+1 {
			t.Fatalf("server received %d messages, want %d", len(msgs), i+1)
		}
		if got := msgs[i]; !slices.Equal(got.ids, []uint64{tc.id}) || got.size != len(encode(tc.id, tc.key)) || got.stream != 1 {
			t.Errorf("server received %+v, want call %d of key %q alone on stream 1", got, tc.id, tc.key)
		}
	}
}

// TestCoalescing: calls that queue while the sender is busy share
// messages of at most MaxCalls calls (no bound when 0), and each caller
// gets its own answer, given once the server holds all the calls.
func TestCoalescing(t *testing.T) {
	const n = 10
	for _, maxCalls := range []int{0, 1, 3, 100} {
		t.Run(fmt.Sprintf("MaxCalls=%d", maxCalls), func(t *testing.T) {
			bound := maxCalls
			if bound == 0 {
				bound = n
			}
			srv := &server{handle: holdUntil(n, nil, false)}
			o := newOptions(serve(t, srv), causes())
			o.MaxCalls = maxCalls
			g := gated(&o)
			defer g.open()
			var mu sync.Mutex
			var sent []int
			onSend := o.OnSend
			o.OnSend = func(k int) {
				mu.Lock()
				sent = append(sent, k)
				mu.Unlock()
				onSend(k)
			}
			m, _ := newMux(t, o)
			ctx := testCtx(t)
			outs := make(chan outcome, n)
			for id := uint64(1); id <= n; id++ {
				go func() { outs <- do(ctx, m, id, "k") }()
			}
			for range n {
				await(t, ctx, g.queued)
			}
			await(t, ctx, g.entered)
			g.open()
			for range n {
				if err := await(t, ctx, outs).check(); err != nil {
					t.Error(err)
				}
			}
			var counts []int
			total := 0
			for _, ids := range srv.idsPerMessage() {
				counts = append(counts, len(ids))
				total += len(ids)
			}
			// The first message holds k calls and the n-k others queue
			// behind it, so one message holds at least min(MaxCalls, n/2).
			if total != n || slices.Max(counts) > bound || slices.Max(counts) < min(bound, n/2) {
				t.Errorf("calls per message %v: want %d in all, at most %d and at least %d in one", counts, n, bound, min(bound, n/2))
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(sent, counts) {
				t.Errorf("OnSend saw %v, the server %v", sent, counts)
			}
		})
	}
}

// TestMaxBytes: a message holds as many queued calls as fit in MaxBytes
// (from Options, or set with SetMaxBytes while a session is open), in
// order, and a call
// larger than MaxBytes goes alone; the server receives the calls'
// encodings concatenated.
func TestMaxBytes(t *testing.T) {
	for _, setLater := range []bool{false, true} {
		t.Run(fmt.Sprintf("setLater=%v", setLater), func(t *testing.T) {
			keys := map[uint64]string{}
			for id := uint64(1); id <= 6; id++ {
				keys[id] = "0123456789" // all of one size, as ids 1 to 6 encode alike
			}
			size := len(encode(1, keys[1]))
			keys[9] = strings.Repeat("x", 3*size)
			srv := &server{handle: echo}
			o := newOptions(serve(t, srv), causes())
			maxBytes := 2*size + size/2 // two calls fit, three don't
			if big := len(encode(9, keys[9])); big <= maxBytes || len(encode(6, keys[6])) != size {
				t.Fatalf("bad sizes: big call %d bytes, small %d, MaxBytes %d", big, size, maxBytes)
			}
			if !setLater {
				o.MaxBytes = maxBytes
			}
			g := gated(&o)
			defer g.open()
			m, _ := newMux(t, o)
			ctx := testCtx(t)
			var outs []<-chan outcome
			for i, id := range []uint64{1, 2, 3, 4, 5, 9, 6} { // 1 waits in OnSend while the others queue, in order
				outs = append(outs, goDo(ctx, m, id, keys[id]))
				await(t, ctx, g.queued)
				if i == 0 {
					await(t, ctx, g.entered)
					if setLater {
						// The session is open, its first message on its way.
						m.SetMaxBytes(maxBytes)
					}
				}
			}
			g.open()
			for _, ch := range outs {
				if err := await(t, ctx, ch).check(); err != nil {
					t.Error(err)
				}
			}
			if got, want := srv.idsPerMessage(), [][]uint64{{1}, {2, 3}, {4, 5}, {9}, {6}}; !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("calls per message %v, want %v", got, want)
			}
			for _, msg := range srv.messages() {
				want := 0
				for _, id := range msg.ids {
					want += len(encode(id, keys[id]))
				}
				if msg.size != want {
					t.Errorf("message of calls %v: %d bytes, want %d", msg.ids, msg.size, want)
				}
			}
		})
	}
}

// TestAnswersOutOfOrder: answers given in reverse order, in one message or
// in several, each reach their own caller.
func TestAnswersOutOfOrder(t *testing.T) {
	const n = 6
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("split=%v", split), func(t *testing.T) {
			srv := &server{handle: holdUntil(n, slices.Reverse, split)}
			m, _ := newMux(t, newOptions(serve(t, srv), causes()))
			ctx := testCtx(t)
			var outs []<-chan outcome
			for id := uint64(1); id <= n; id++ {
				outs = append(outs, goDo(ctx, m, id, "k"))
			}
			for _, ch := range outs {
				if err := await(t, ctx, ch).check(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestAbandonedCall: a caller whose ctx ends returns ctx's error at once;
// the server is asked to cancel the call if it was sent, and the call is
// not sent if it was still queued; a late answer is dropped and the
// session goes on.
func TestAbandonedCall(t *testing.T) {
	t.Run("sent", func(t *testing.T) {
		arrived, cancels := make(chan uint64, 4), make(chan uint64, 4)
		srv := &server{handle: holding(arrived, cancels)}
		m, _ := newMux(t, newOptions(serve(t, srv), causes()))
		ctx := testCtx(t)
		short, cancel := context.WithCancel(ctx)
		defer cancel()
		held := goDo(short, m, 1, "hold")
		if id := await(t, ctx, arrived); id != 1 {
			t.Fatalf("server holds call %d, want 1", id)
		}
		cancel()
		if err := await(t, ctx, held).checkErr(context.Canceled, false); err != nil {
			t.Error(err)
		}
		if id := await(t, ctx, cancels); id != 1 {
			t.Errorf("server got a Cancel for %d, want 1", id)
		}
		// The server answers call 1 late, with call 2 in one message: call
		// 2 gets its own answer, and so does a new call 1 after it.
		for _, id := range []uint64{2, 1} {
			if err := do(ctx, m, id, "k").check(); err != nil {
				t.Error(err)
			}
		}
		if n := srv.streams.Load(); n != 1 {
			t.Errorf("%d streams opened, want 1", n)
		}
	})
	t.Run("queued", func(t *testing.T) {
		srv := &server{handle: echo}
		o := newOptions(serve(t, srv), causes())
		g := gated(&o)
		defer g.open()
		m, _ := newMux(t, o)
		ctx := testCtx(t)
		first := goDo(ctx, m, 1, "k")
		await(t, ctx, g.queued)
		await(t, ctx, g.entered) // call 1 is being sent; call 2 will queue
		short, cancel := context.WithCancel(ctx)
		defer cancel()
		second := goDo(short, m, 2, "k")
		await(t, ctx, g.queued)
		cancel()
		if err := await(t, ctx, second).checkErr(context.Canceled, true); err != nil {
			t.Errorf("abandoned call: %v", err)
		}
		g.open()
		if err := await(t, ctx, first).check(); err != nil {
			t.Error(err)
		}
		if err := do(ctx, m, 3, "k").check(); err != nil {
			t.Error(err)
		}
		msgs := srv.messages()
		if ids := srv.idsPerMessage(); !slices.EqualFunc(ids, [][]uint64{{1}, {3}}, slices.Equal) {
			t.Errorf("server received calls %v, want [[1] [3]]", ids)
		}
		for _, msg := range msgs {
			if len(msg.cancels) > 0 {
				t.Errorf("server received Cancels %v for a call never sent", msg.cancels)
			}
		}
	})
}

// TestBrokenStream: when the stream ends under waiting calls, each gets
// Broken's error for the cause and was sent; the next call opens a new
// stream.
func TestBrokenStream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		end       error // what the server's Stream returns
		wantCause func(error) bool
	}{
		{"server error", status.Error(codes.Unavailable, "going away"),
			func(err error) bool { return status.Code(err) == codes.Unavailable }},
		{"server ends stream", errEnd, func(err error) bool { return errors.Is(err, io.EOF) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 3
			hold := holdUntil(n, nil, false)
			srv := &server{handle: func(stream int32, req *enginepb.StreamRequest) ([][]answer, error) {
				if stream > 1 {
					return echo(stream, req)
				}
				if send, _ := hold(stream, req); len(send) > 0 {
					return nil, tc.end // all n calls wait
				}
				return nil, nil
			}}
			c := causes()
			m, _ := newMux(t, newOptions(serve(t, srv), c))
			ctx := testCtx(t)
			var outs []<-chan outcome
			for id := uint64(1); id <= n; id++ {
				outs = append(outs, goDo(ctx, m, id, "k"))
			}
			for _, ch := range outs {
				if err := await(t, ctx, ch).checkErr(errBroken, false); err != nil {
					t.Error(err)
				}
			}
			if got := received(c); len(got) != 1 || !tc.wantCause(got[0]) {
				t.Errorf("causes %v, want one, of %s", got, tc.name)
			}
			if err := do(ctx, m, n+1, "k").check(); err != nil {
				t.Error(err)
			}
			if s := srv.streams.Load(); s != 2 {
				t.Errorf("%d streams opened, want 2", s)
			}
		})
	}
}

// TestOpenFailure: calls on a session that cannot start get the error of
// OpenFailed, or of Broken when the failure shows on the first receive
// (gRPC opens a stream without waiting for the server), and certainly
// were not processed; each call tries again.
func TestOpenFailure(t *testing.T) {
	t.Run("no Stream method", func(t *testing.T) {
		// Many calls, one after the other: each opens a session of its
		// own, which the server ends before or after the call queues.
		const n = 1000
		c := make(chan error, 4*n) // room for every cause: Broken must not block
		m, _ := newMux(t, newOptions(serve(t, &enginepb.UnimplementedEngineServer{}), c))
		// A bound for all n calls together (about 2 s under -race here).
		ctx, cancel := context.WithTimeout(context.Background(), 2*waitTime)
		defer cancel()
		for id := uint64(1); id <= n; id++ {
			// The server may end a stream before the call queues on it,
			// so that Do opens another: a broken session is forgotten
			// before callers can find it broken, so they never give up
			// with KeepsBreaking after a single break.
			if err := do(ctx, m, id, "k").checkErr(errNoStream, true); err != nil {
				t.Error(err)
			}
		}
		got := received(c)
		for _, err := range got {
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("cause %v, want code Unimplemented", err)
			}
		}
		if len(got) == 0 {
			t.Error("neither OpenFailed nor Broken was called")
		}
	})
	t.Run("Open fails", func(t *testing.T) {
		errDial := errors.New("test: dial refused")
		srv := &server{handle: echo}
		o := newOptions(serve(t, srv), causes())
		var opens atomic.Int32
		open := o.Open
		o.Open = func(ctx context.Context) (grpc.ClientStream, error) {
			if opens.Add(1) == 1 {
				return nil, errDial
			}
			return open(ctx)
		}
		m, _ := newMux(t, o)
		ctx := testCtx(t)
		first := do(ctx, m, 1, "k")
		if err := first.checkErr(errOpenFailed, true); err != nil || !errors.Is(first.err, errDial) {
			t.Errorf("%v; want %v wrapped", err, errDial)
		}
		if err := do(ctx, m, 2, "k").check(); err != nil {
			t.Error(err)
		}
		if n, s := opens.Load(), srv.streams.Load(); n != 2 || s != 1 {
			t.Errorf("%d opens and %d streams, want 2 and 1", n, s)
		}
	})
}

// TestClose: after Close calls fail with Closed while the calls in
// progress go on; canceling base fails the waiting calls and ends the
// goroutines.
func TestClose(t *testing.T) {
	t.Run("later calls", func(t *testing.T) {
		srv := &server{handle: echo}
		o := newOptions(serve(t, srv), causes())
		g := gated(&o)
		defer g.open()
		m, cancel := newMux(t, o)
		ctx := testCtx(t)
		first := goDo(ctx, m, 1, "k")
		await(t, ctx, g.queued)
		await(t, ctx, g.entered)
		m.Close()
		if err := do(ctx, m, 2, "k").checkErr(errClosed, true); err != nil {
			t.Error(err)
		}
		g.open()
		if err := await(t, ctx, first).check(); err != nil {
			t.Error(err)
		}
		if ids := srv.idsPerMessage(); !slices.EqualFunc(ids, [][]uint64{{1}}, slices.Equal) {
			t.Errorf("server received calls %v, want [[1]]", ids)
		}
		cancel()
		waitEnd(t, m)
	})
	t.Run("while opening", func(t *testing.T) {
		o := newOptions(serve(t, &server{handle: echo}), causes())
		entered, proceed := make(chan struct{}, 1), make(chan struct{})
		open := o.Open
		o.Open = func(ctx context.Context) (grpc.ClientStream, error) {
			entered <- struct{}{}
			select {
			case <-proceed:
				return open(ctx)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		m, cancel := newMux(t, o)
		ctx := testCtx(t)
		out := goDo(ctx, m, 1, "k")
		await(t, ctx, entered)
		m.Close()
		close(proceed)
		if err := await(t, ctx, out).checkErr(errClosed, true); err != nil {
			t.Error(err)
		}
		cancel()
		waitEnd(t, m)
	})
	t.Run("base canceled", func(t *testing.T) {
		c := causes()
		o := newOptions(serve(t, &server{handle: echo}), c)
		g := gated(&o)
		defer g.open()
		m, cancel := newMux(t, o)
		ctx := testCtx(t)
		taken := goDo(ctx, m, 1, "k")
		await(t, ctx, g.queued)
		await(t, ctx, g.entered)
		waiting := goDo(ctx, m, 2, "k")
		await(t, ctx, g.queued)
		cancel()
		// Call 1 was taken for sending, so it may have reached the
		// server; call 2 never left the queue.
		if err := await(t, ctx, taken).checkErr(errBroken, false); err != nil {
			t.Error(err)
		}
		if err := await(t, ctx, waiting).checkErr(errBroken, true); err != nil {
			t.Error(err)
		}
		if got := received(c); len(got) != 1 || status.Code(got[0]) != codes.Canceled {
			t.Errorf("causes %v, want one of code Canceled", got)
		}
		g.open()
		waitEnd(t, m)
	})
}

// TestStress runs many callers at once against a server that answers each
// message's calls shuffled, over several messages: every call is sent
// once and answered to its caller, on one stream.
func TestStress(t *testing.T) {
	const workers, rounds, maxCalls = 32, 200, 8
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	srv := &server{handle: func(n int32, req *enginepb.StreamRequest) (send [][]answer, _ error) {
		as, _ := echo(n, req)
		rng.Shuffle(len(as[0]), func(i, j int) { as[0][i], as[0][j] = as[0][j], as[0][i] })
		for rest := as[0]; len(rest) > 0; {
			k := 1 + rng.IntN(len(rest))
			send, rest = append(send, rest[:k]), rest[k:]
		}
		return send, nil
	}}
	o := newOptions(serve(t, srv), causes())
	o.MaxCalls = maxCalls
	var sent atomic.Int64
	o.OnSend = func(k int) { sent.Add(int64(k)) }
	m, _ := newMux(t, o)
	ctx := testCtx(t)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				if err := do(ctx, m, uint64(w*rounds+r+1), "k").check(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := make(map[uint64]int)
	for _, msg := range srv.messages() {
		if len(msg.ids) > maxCalls || msg.stream != 1 {
			t.Errorf("message of %d calls on stream %d", len(msg.ids), msg.stream)
		}
		for _, id := range msg.ids {
			seen[id]++
		}
	}
	for id := uint64(1); id <= workers*rounds; id++ {
		if seen[id] != 1 {
			t.Errorf("call %d received %d times", id, seen[id])
		}
	}
	if s := sent.Load(); s != workers*rounds {
		t.Errorf("%d calls sent, want %d", s, workers*rounds)
	}
}

// drainServer says "draining" (an answer with id 0) on its first stream:
// with the answer to the first call, or, if hold, before it, answering the
// call only once release is closed. Later streams answer at once. It
// reports each stream the client half-closes on halfClosed.
type drainServer struct {
	enginepb.UnimplementedEngineServer
	hold       bool
	drainSent  chan struct{}
	release    chan struct{}
	halfClosed chan int32
	streams    atomic.Int32
}

func (d *drainServer) Stream(st enginepb.Engine_StreamServer) error {
	n := d.streams.Add(1)
	for {
		req, err := st.Recv()
		if errors.Is(err, io.EOF) {
			d.halfClosed <- n
			return nil
		}
		if err != nil {
			return err
		}
		for _, c := range req.GetCalls() {
			as := []answer{readAnswer(c.GetId())}
			if n == 1 {
				drain := &enginepb.StreamAnswer{Id: 0}
				if d.hold {
					if err := st.Send(&enginepb.StreamResponse{Answers: []answer{drain}}); err != nil {
						return err
					}
					close(d.drainSent)
					<-d.release
				} else {
					as = append([]answer{drain}, as...)
				}
			}
			if err := st.Send(&enginepb.StreamResponse{Answers: as}); err != nil {
				return err
			}
		}
	}
}

// TestDraining: once the server says it is draining a stream, new calls go
// to a new stream, the calls already on it are still answered there, and
// the client half-closes it when they are, so that the server can end it.
func TestDraining(t *testing.T) {
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("hold=%v", hold), func(t *testing.T) {
			d := &drainServer{hold: hold, drainSent: make(chan struct{}), release: make(chan struct{}), halfClosed: make(chan int32, 4)}
			m, _ := newMux(t, newOptions(serve(t, d), causes()))
			ctx := testCtx(t)
			first := goDo(ctx, m, 1, "k")
			if hold {
				await(t, ctx, d.drainSent)
				close(d.release)
			}
			if err := await(t, ctx, first).check(); err != nil {
				t.Fatal(err)
			}
			if n := await(t, ctx, d.halfClosed); n != 1 {
				t.Errorf("stream %d half-closed, want stream 1", n)
			}
			if err := do(ctx, m, 2, "k").check(); err != nil {
				t.Fatal(err)
			}
			if n := d.streams.Load(); n != 2 {
				t.Errorf("%d streams opened, want 2 (the call after the drain on a new one)", n)
			}
		})
	}
}
