package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/badgerengine"
	"github.com/flaredb/flaredb/engines/memengine"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// serveOn registers srvImpl on a new grpc.Server listening on a free port
// of 127.0.0.1 and returns the server and its address.
func serveOn(t *testing.T, srvImpl enginepb.EngineServer) (*grpc.Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	enginepb.RegisterEngineServer(srv, srvImpl)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return srv, lis.Addr().String()
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestStreamCoalescesAndDispatches runs many concurrent Reads and Applies
// against a badger engine: every caller gets its own answer, and the
// sender packs several calls into one message.
func TestStreamCoalescesAndDispatches(t *testing.T) {
	ctx := ctxT(t)
	be, err := badgerengine.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := serveOn(t, NewServer(be))
	c := NewClient(dial(t, addr))
	defer c.Close()
	var maxCalls, msgs, calls atomic.Int64
	c.testHookSend = func(n int) {
		msgs.Add(1)
		calls.Add(int64(n))
		for {
			m := maxCalls.Load()
			if int64(n) <= m || maxCalls.CompareAndSwap(m, int64(n)) {
				return
			}
		}
	}
	const workers, rounds = 64, 30
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			key := []byte(fmt.Sprintf("key-%02d", w))
			for r := 1; r <= rounds; r++ {
				val := fmt.Sprintf("v-%d-%d", w, r)
				res, err := c.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: key, Value: []byte(val), Version: uint64(r),
					Cond: engine.Condition{Kind: engine.CondVersion, Version: uint64(r - 1)}}}, engine.ApplyOptions{NoSync: true})
				if err != nil || len(res) != 1 || !res[0].Applied {
					errs <- fmt.Errorf("worker %d apply %d: %v %+v", w, r, err, res)
					return
				}
				got, err := c.Read(ctx, [][]byte{key, []byte("absent")})
				if err != nil || string(got[0].Value) != val || got[0].Version != uint64(r) || got[1].Version != 0 {
					errs <- fmt.Errorf("worker %d read %d: %v %+v", w, r, err, got)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if calls.Load() != 2*workers*rounds {
		t.Errorf("%d calls sent on the stream, want %d", calls.Load(), 2*workers*rounds)
	}
	if maxCalls.Load() < 2 {
		t.Errorf("no message carried more than one call (%d messages)", msgs.Load())
	}
	t.Logf("%d calls in %d messages, at most %d in one", calls.Load(), msgs.Load(), maxCalls.Load())
}

// gated blocks Reads of key "slow" until release is closed, ignoring
// their context; it signals entered as each starts and finished as each
// ends.
type gated struct {
	engine.Engine
	entered  chan struct{}
	release  chan struct{}
	finished chan struct{}
}

func (g gated) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	if len(keys) == 1 && string(keys[0]) == "slow" {
		g.entered <- struct{}{}
		<-g.release
		defer func() { g.finished <- struct{}{} }()
	}
	return g.Engine.Read(ctx, keys)
}

// TestStreamAnswersOutOfOrder: a fast call is answered while a slow one
// waits, on the same stream; a caller who gives up on a call the engine
// is running returns at once, and the late answer is dropped without
// disturbing the stream.
func TestStreamAnswersOutOfOrder(t *testing.T) {
	ctx := ctxT(t)
	g := gated{Engine: memengine.New(), entered: make(chan struct{}, 2), release: make(chan struct{}), finished: make(chan struct{}, 2)}
	e := loop(t, g)
	if _, err := e.Apply(ctx, []engine.Write{put("fast", "f", 1), put("slow", "s", 1)}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		got, err := e.Read(ctx, [][]byte{[]byte("slow")})
		if err == nil && string(got[0].Value) != "s" {
			err = fmt.Errorf("slow read got %+v", got)
		}
		slow <- err
	}()
	await(t, "the slow read in the engine", g.entered)
	got, err := e.Read(ctx, [][]byte{[]byte("fast")})
	if err != nil || string(got[0].Value) != "f" {
		t.Fatalf("fast read: %+v %v", got, err)
	}
	// A caller that gives up returns promptly, while its call still runs.
	abandon, cancel := context.WithCancel(ctx)
	defer cancel()
	abandoned := make(chan error, 1)
	go func() {
		_, err := e.Read(abandon, [][]byte{[]byte("slow")})
		abandoned <- err
	}()
	await(t, "the abandoned read in the engine", g.entered)
	cancel()
	if err := await(t, "the abandoned read", abandoned); !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned read: %v", err)
	}
	close(g.release)
	if err := await(t, "the slow read", slow); err != nil {
		t.Fatal(err)
	}
	await(t, "the slow read's end", g.finished)
	await(t, "the abandoned read's end", g.finished) // its late answer, which nobody awaits
	got, err = e.Read(ctx, [][]byte{[]byte("fast"), []byte("slow")})
	if err != nil || string(got[0].Value) != "f" || string(got[1].Value) != "s" {
		t.Fatalf("read after a dropped answer: %+v %v", got, err)
	}
}

// deadlineSeen is an engine whose Read reports whether its context had a
// deadline, and waits for that context's end.
type deadlineSeen struct {
	engine.Engine
	saw chan bool
}

func (d deadlineSeen) Read(ctx context.Context, _ [][]byte) ([]engine.Entry, error) {
	_, ok := ctx.Deadline()
	d.saw <- ok
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestStreamDeadlineReachesTheEngine: the caller's deadline travels with
// the call: the engine's context has a deadline of its own (not only the
// cancellation the client sends when the caller gives up, which may not
// get through while the server's read loop is full).
func TestStreamDeadlineReachesTheEngine(t *testing.T) {
	d := deadlineSeen{Engine: memengine.New(), saw: make(chan bool, 1)}
	e := loop(t, d)
	ctx, cancel := context.WithTimeout(ctxT(t), callTimeout/2)
	defer cancel()
	read := make(chan error, 1)
	go func() {
		_, err := e.Read(ctx, [][]byte{[]byte("k")})
		read <- err
	}()
	if !await(t, "the call in the engine", d.saw) {
		t.Error("the engine's context has no deadline")
	}
	cancel()
	if err := await(t, "the caller", read); !errors.Is(err, context.Canceled) {
		t.Errorf("caller got %v", err)
	}
}

// TestStreamBreakageThenRecovery: when the server goes away, the calls
// waiting on the stream get ErrUnavailable; once it is back, the next
// calls open a new stream.
func TestStreamBreakageThenRecovery(t *testing.T) {
	ctx := ctxT(t)
	b := blocking{Engine: memengine.New(), started: make(chan struct{}), saw: make(chan error, 1)}
	srv, addr := serveOn(t, NewServer(b))
	// The connection dials wherever target says: the second server gets a
	// port of its own rather than the first one's back, which another
	// process could take meanwhile.
	var target atomic.Value
	target.Store(addr)
	conn, err := grpc.NewClient("passthrough:///engine", append(DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", target.Load().(string))
		}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := NewClient(conn)
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(ctx, [][]byte{[]byte("k")})
		done <- err
	}()
	await(t, "the call in the engine", b.started)
	srv.Stop()
	if err := await(t, "the waiting call", done); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("waiting call got %v", err)
	}
	mem := memengine.New()
	if _, err := mem.Apply(ctx, []engine.Write{put("k", "back", 1)}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	_, addr = serveOn(t, NewServer(mem))
	target.Store(addr)
	for {
		got, err := c.Read(ctx, [][]byte{[]byte("k")})
		if err == nil {
			if string(got[0].Value) != "back" {
				t.Fatalf("after recovery: %+v", got)
			}
			break
		}
		if !errors.Is(err, engine.ErrUnavailable) {
			t.Fatalf("while the server comes back: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatal("never recovered")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c.noStream.Load() {
		t.Error("fell back to unary calls after a breakage")
	}
}

// unaryOnly is a server from before the Stream method: it forwards the
// other calls to a Server and counts the unary Reads and Applies.
type unaryOnly struct {
	enginepb.UnimplementedEngineServer
	s     *Server
	unary atomic.Int64
}

func (u *unaryOnly) Describe(ctx context.Context, r *enginepb.DescribeRequest) (*enginepb.DescribeResponse, error) {
	return u.s.Describe(ctx, r)
}

func (u *unaryOnly) Read(ctx context.Context, r *enginepb.ReadRequest) (*enginepb.ReadResponse, error) {
	u.unary.Add(1)
	return u.s.Read(ctx, r)
}

func (u *unaryOnly) Apply(ctx context.Context, r *enginepb.ApplyRequest) (*enginepb.ApplyResponse, error) {
	u.unary.Add(1)
	return u.s.Apply(ctx, r)
}

func (u *unaryOnly) Close(ctx context.Context, r *enginepb.CloseRequest) (*enginepb.CloseResponse, error) {
	return u.s.Close(ctx, r)
}

func TestStreamFallsBackToUnary(t *testing.T) {
	ctx := ctxT(t)
	u := &unaryOnly{s: NewServer(memengine.NewWithLimits(engine.Limits{MaxKeySize: 8}))}
	_, addr := serveOn(t, u)
	c := NewClient(dial(t, addr))
	defer c.Close()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			key := fmt.Sprintf("k%d", w)
			if _, err := c.Apply(ctx, []engine.Write{put(key, "v", 1)}, engine.ApplyOptions{}); err != nil {
				t.Errorf("apply: %v", err)
			}
			got, err := c.Read(ctx, [][]byte{[]byte(key)})
			if err != nil || string(got[0].Value) != "v" {
				t.Errorf("read: %+v %v", got, err)
			}
		}(w)
	}
	wg.Wait()
	if !c.noStream.Load() {
		t.Error("the client did not notice the missing Stream method")
	}
	if n := u.unary.Load(); n != 16 {
		t.Errorf("%d unary calls, want 16", n)
	}
	// Errors still come back through the one mapping.
	if _, err := c.Read(ctx, [][]byte{[]byte("much too long")}); !errors.Is(err, engine.ErrTooLarge) {
		t.Errorf("long key: %v", err)
	}
}

// TestStreamErrorsUseTheMapping checks every contract error through a
// Stream answer.
func TestStreamErrorsUseTheMapping(t *testing.T) {
	for _, want := range []error{engine.ErrNotFound, engine.ErrClosed, engine.ErrTooLarge, engine.ErrInvalidArgument,
		engine.ErrUnavailable, engine.ErrUnsupported, engine.ErrCorrupt, engine.ErrInternal, context.Canceled,
		context.DeadlineExceeded, ErrProtocolMismatch} {
		got := fromStreamError(toStreamError(fmt.Errorf("wrapped: %w", want)))
		if !errors.Is(got, want) {
			t.Errorf("%v came back as %v", want, got)
		}
		if st := FromStatus(ToStatus(want)).(*Error); st.Reason != got.(*Error).Reason || st.Code != got.(*Error).Code {
			t.Errorf("%v: stream gives %v/%s, status %v/%s", want, got.(*Error).Code, got.(*Error).Reason, st.Code, st.Reason)
		}
	}
}

// applyThenFail applies each Apply, then fails it with a status of code
// (with no reason of this package's, as gRPC itself makes them): on the
// Stream by ending the stream, on unary calls as the call's status.
type applyThenFail struct {
	*unaryOnly
	code   codes.Code
	stream bool
}

func (a *applyThenFail) Stream(st grpc.BidiStreamingServer[enginepb.StreamRequest, enginepb.StreamResponse]) error {
	if !a.stream {
		return status.Error(codes.Unimplemented, "no Stream")
	}
	req, err := st.Recv()
	if err != nil {
		return err
	}
	for _, c := range req.GetCalls() {
		if ap := c.GetApply(); ap != nil {
			if _, err := a.s.Apply(st.Context(), ap); err != nil {
				return err
			}
		}
	}
	return status.Error(a.code, "stream reset")
}

func (a *applyThenFail) Apply(ctx context.Context, r *enginepb.ApplyRequest) (*enginepb.ApplyResponse, error) {
	if _, err := a.unaryOnly.Apply(ctx, r); err != nil {
		return nil, err
	}
	return nil, status.Error(a.code, "grpc: received message larger than max")
}

// TestTransportFailureAfterApplyIsUnavailable: when a call fails in
// transport after the server applied it, the error is engine.ErrUnavailable
// (outcome unknown) and nothing else, whatever gRPC code the failure had: a
// RESOURCE_EXHAUSTED read as ErrTooLarge would tell the caller that nothing
// was applied, and invite it to write again.
func TestTransportFailureAfterApplyIsUnavailable(t *testing.T) {
	for _, stream := range []bool{true, false} {
		for _, code := range []codes.Code{codes.ResourceExhausted, codes.InvalidArgument, codes.FailedPrecondition, codes.Internal, codes.NotFound} {
			t.Run(fmt.Sprintf("stream=%v/%v", stream, code), func(t *testing.T) {
				eng := memengine.New()
				srv := &applyThenFail{unaryOnly: &unaryOnly{s: NewServer(eng)}, code: code, stream: stream}
				_, addr := serveOn(t, srv)
				c := NewClient(dial(t, addr))
				defer c.Close()
				_, err := c.Apply(ctxT(t), []engine.Write{put("k", "v", 1)}, engine.ApplyOptions{})
				if !errors.Is(err, engine.ErrUnavailable) {
					t.Fatalf("apply: %v, want ErrUnavailable", err)
				}
				for _, other := range []error{engine.ErrTooLarge, engine.ErrInvalidArgument, engine.ErrClosed, engine.ErrNotFound, engine.ErrInternal} {
					if errors.Is(err, other) {
						t.Errorf("apply: %v also matches %v", err, other)
					}
				}
				// It was applied indeed.
				if es, err := eng.Read(ctxT(t), [][]byte{[]byte("k")}); err != nil || es[0].Version != 1 {
					t.Fatalf("read: %+v, %v", es, err)
				}
			})
		}
	}
}
