package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// callTimeout bounds every call in these tests, so that a hang fails the
// test instead of blocking it; it is not a timing assertion.
const callTimeout = time.Minute

// await returns the next value of ch, failing t after callTimeout.
func await[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(callTimeout):
		t.Fatalf("%s: nothing after %v", what, callTimeout)
		panic("unreachable")
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

func loop(t *testing.T, e engine.Engine) engine.Engine {
	t.Helper()
	c, err := Loopback(e)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// serve starts a Server for e and returns a raw protocol client plus the
// grpc.Server, for tests that speak the protocol directly.
func serve(t *testing.T, e engine.Engine) (enginepb.EngineClient, *grpc.ClientConn, *grpc.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	enginepb.RegisterEngineServer(srv, NewServer(e))
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); srv.Stop() })
	return enginepb.NewEngineClient(conn), conn, srv
}

func put(k, v string, ver uint64) engine.Write {
	return engine.Write{Kind: engine.OpPut, Key: []byte(k), Value: []byte(v), Version: ver}
}

func TestAbsentVersusEmpty(t *testing.T) {
	ctx := ctxT(t)
	e := loop(t, memengine.New())
	if _, err := e.Apply(ctx, []engine.Write{put("empty", "", 1)}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := e.Read(ctx, [][]byte{[]byte("empty"), []byte("absent")})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Version != 1 || got[0].Value == nil || len(got[0].Value) != 0 {
		t.Errorf("empty value: got %+v", got[0])
	}
	if got[1].Version != 0 || got[1].Value != nil {
		t.Errorf("absent: got %+v", got[1])
	}
	// A failed condition reports the current (empty) value, non-nil.
	res, err := e.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: []byte("empty"), Value: []byte("x"), Version: 2,
		Cond: engine.Condition{Kind: engine.CondAbsent}}}, engine.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Applied || res[0].Version != 1 || res[0].Value == nil {
		t.Errorf("failed CAS: got %+v", res[0])
	}
	// CondValue with an empty value matches the existing empty value.
	res, err = e.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: []byte("empty"), Value: []byte("x"), Version: 3,
		Cond: engine.Condition{Kind: engine.CondValue, Value: []byte{}}}}, engine.ApplyOptions{})
	if err != nil || !res[0].Applied {
		t.Fatalf("CondValue empty: %+v %v", res, err)
	}
	// Scan: values present, KeysOnly leaves them nil.
	var entries []engine.Entry
	if err := e.Scan(ctx, engine.ScanOptions{KeysOnly: true}, func(en engine.Entry) error {
		entries = append(entries, en)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Value != nil || entries[0].Version != 3 {
		t.Errorf("keys-only scan: %+v", entries)
	}
}

func TestErrorsCrossTheWire(t *testing.T) {
	ctx := ctxT(t)
	e := loop(t, memengine.NewWithLimits(engine.Limits{MaxKeySize: 4}))
	_, err := e.Read(ctx, [][]byte{{}})
	if !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("empty key: %v", err)
	}
	_, err = e.Apply(ctx, []engine.Write{put("toolong", "v", 1)}, engine.ApplyOptions{})
	if !errors.Is(err, engine.ErrTooLarge) {
		t.Errorf("long key: %v", err)
	}
	err = e.Scan(ctx, engine.ScanOptions{Start: []byte("b"), End: []byte("a")}, func(engine.Entry) error { return nil })
	if !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("reversed range: %v", err)
	}
	err = e.Scan(ctx, engine.ScanOptions{Limit: -1}, func(engine.Entry) error { return nil })
	if !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("negative limit: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.Read(cctx, [][]byte{[]byte("k")}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestUnknownKindsAreInvalid(t *testing.T) {
	ctx := ctxT(t)
	rpc, _, _ := serve(t, memengine.New())
	for _, w := range []*enginepb.Write{
		{Kind: enginepb.OpKind(257), Key: []byte("k"), Value: []byte("v"), Version: 1},
		{Kind: enginepb.OpKind_OP_KIND_UNSPECIFIED, Key: []byte("k")},
		{Kind: enginepb.OpKind_OP_KIND_PUT, Key: []byte("k"), Version: 1, Cond: &enginepb.Condition{Kind: enginepb.CondKind(256)}},
	} {
		_, err := rpc.Apply(ctx, &enginepb.ApplyRequest{Writes: []*enginepb.Write{w}})
		if err := FromStatus(err); !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("%v: got %v", w, err)
		}
	}
	got, err := rpc.Read(ctx, &enginepb.ReadRequest{Keys: [][]byte{[]byte("k")}})
	if err != nil || got.GetEntries()[0].GetVersion() != 0 {
		t.Fatalf("an invalid write was applied: %v %v", got, err)
	}
}

func TestProtocolMismatch(t *testing.T) {
	ctx := ctxT(t)
	rpc, _, _ := serve(t, memengine.New())
	_, err := rpc.Describe(ctx, &enginepb.DescribeRequest{ProtocolVersion: engine.ProtocolVersion + 1})
	if err := FromStatus(err); !errors.Is(err, ErrProtocolMismatch) {
		t.Errorf("describe: %v", err)
	}
	_, err = rpc.Read(ctx, &enginepb.ReadRequest{ProtocolVersion: 99, Keys: [][]byte{[]byte("k")}})
	if err := FromStatus(err); !errors.Is(err, ErrProtocolMismatch) {
		t.Errorf("read: %v", err)
	}
}

// wrongVersion answers the handshake with another protocol version.
type wrongVersion struct {
	enginepb.UnimplementedEngineServer
}

func (wrongVersion) Describe(context.Context, *enginepb.DescribeRequest) (*enginepb.DescribeResponse, error) {
	return &enginepb.DescribeResponse{ProtocolVersion: engine.ProtocolVersion + 7}, nil
}

func TestClientRefusesOtherProtocol(t *testing.T) {
	ctx := ctxT(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	enginepb.RegisterEngineServer(srv, wrongVersion{})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := NewClient(conn)
	if _, err := c.Read(ctx, [][]byte{[]byte("k")}); !errors.Is(err, ErrProtocolMismatch) {
		t.Fatalf("got %v", err)
	}
}

// panicky panics in every call but Describe and Close.
type panicky struct{ engine.Engine }

func (panicky) Read(context.Context, [][]byte) ([]engine.Entry, error) { panic("boom") }
func (panicky) Apply(context.Context, []engine.Write, engine.ApplyOptions) ([]engine.Result, error) {
	var m map[string]int
	m["x"]++ // a runtime panic
	return nil, nil
}
func (panicky) Scan(_ context.Context, _ engine.ScanOptions, fn func(engine.Entry) error) error {
	_ = fn(engine.Entry{Key: []byte("a"), Version: 1})
	panic(fmt.Errorf("scan exploded"))
}

func TestPanicsBecomeInternal(t *testing.T) {
	ctx := ctxT(t)
	e := loop(t, panicky{memengine.New()})
	for i := 0; i < 2; i++ { // the server survives the first round
		if _, err := e.Read(ctx, [][]byte{[]byte("k")}); !errors.Is(err, engine.ErrInternal) {
			t.Errorf("read: %v", err)
		}
		if _, err := e.Apply(ctx, []engine.Write{put("k", "v", 1)}, engine.ApplyOptions{}); !errors.Is(err, engine.ErrInternal) {
			t.Errorf("apply: %v", err)
		}
		if err := e.Scan(ctx, engine.ScanOptions{}, func(engine.Entry) error { return nil }); !errors.Is(err, engine.ErrInternal) {
			t.Errorf("scan: %v", err)
		}
	}
}

func TestLargeValuesAndPages(t *testing.T) {
	ctx := ctxT(t)
	e := loop(t, memengine.New())
	big := bytes.Repeat([]byte{0xAB}, 9<<20) // beyond gRPC's 4 MiB default
	if _, err := e.Apply(ctx, []engine.Write{put("big", string(big), 1)}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := e.Read(ctx, [][]byte{[]byte("big")})
	if err != nil || !bytes.Equal(got[0].Value, big) {
		t.Fatalf("read big: %v", err)
	}
	// Many entries: several pages, in order, forward and reverse, with limits.
	const n = 3000
	var ws []engine.Write
	for i := 0; i < n; i++ {
		ws = append(ws, put(fmt.Sprintf("k%05d", i), fmt.Sprint(i), uint64(10+i)))
	}
	if _, err := e.Apply(ctx, ws, engine.ApplyOptions{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		reverse bool
		limit   int
		want    int
	}{{false, 0, n}, {true, 0, n}, {false, 1500, 1500}, {true, 7, 7}} {
		var keys []string
		err := e.Scan(ctx, engine.ScanOptions{Start: []byte("k"), End: []byte("l"), Reverse: tc.reverse, Limit: tc.limit},
			func(en engine.Entry) error {
				keys = append(keys, string(en.Key))
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != tc.want {
			t.Fatalf("%+v: %d entries", tc, len(keys))
		}
		for i := range keys {
			want := i
			if tc.reverse {
				want = n - 1 - i
			}
			if keys[i] != fmt.Sprintf("k%05d", want) {
				t.Fatalf("%+v: entry %d is %s", tc, i, keys[i])
			}
		}
	}
	// fn's error comes back unwrapped, and stops the scan.
	stop := errors.New("stop here")
	calls := 0
	err = e.Scan(ctx, engine.ScanOptions{}, func(engine.Entry) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("fn error: %v after %d calls", err, calls)
	}
}

func TestReturnedSlicesAreOwned(t *testing.T) {
	ctx := ctxT(t)
	e := loop(t, memengine.New())
	key, val := []byte("key"), []byte("value")
	if _, err := e.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: key, Value: val, Version: 1}}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	key[0], val[0] = 'X', 'X' // the caller's slices are the caller's
	got, err := e.Read(ctx, [][]byte{[]byte("key")})
	if err != nil {
		t.Fatal(err)
	}
	got[0].Value[0] = 'Z'
	again, err := e.Read(ctx, [][]byte{[]byte("key")})
	if err != nil || string(again[0].Value) != "value" {
		t.Fatalf("stored value changed: %q %v", again[0].Value, err)
	}
}

func TestCloseSemantics(t *testing.T) {
	ctx := ctxT(t)
	mem := memengine.New()
	e := loop(t, mem)
	d := e.Describe()
	if d.Name != memengine.Name || d.Protocol != engine.ProtocolVersion {
		t.Fatalf("describe: %+v", d)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := e.Read(ctx, [][]byte{[]byte("k")}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if _, err := e.Apply(ctx, []engine.Write{put("k", "v", 1)}, engine.ApplyOptions{}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("apply after close: %v", err)
	}
	if err := e.Scan(ctx, engine.ScanOptions{}, func(engine.Entry) error { return nil }); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("scan after close: %v", err)
	}
	if e.Describe().Name != memengine.Name {
		t.Error("describe after close lost the description")
	}
	// The remote engine was closed too.
	if _, err := mem.Read(ctx, [][]byte{[]byte("k")}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("remote engine not closed: %v", err)
	}
}

func TestServerGoneIsUnavailable(t *testing.T) {
	ctx := ctxT(t)
	_, conn, srv := serve(t, memengine.New())
	c := NewClient(conn)
	if _, err := c.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := c.Read(ctx, [][]byte{[]byte("k")}); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close with the server gone: %v", err)
	}
}

// blocking blocks Read until its context is done, then reports it.
type blocking struct {
	engine.Engine
	started chan struct{}
	saw     chan error
}

func (b blocking) Read(ctx context.Context, _ [][]byte) ([]engine.Entry, error) {
	close(b.started)
	<-ctx.Done()
	b.saw <- ctx.Err()
	return nil, ctx.Err()
}

func TestCancellationReachesTheEngine(t *testing.T) {
	b := blocking{Engine: memengine.New(), started: make(chan struct{}), saw: make(chan error, 1)}
	e := loop(t, b)
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	go func() {
		_, err := e.Read(ctx, [][]byte{[]byte("k")})
		done <- err
	}()
	await(t, "the call in the engine", b.started)
	cancel()
	if err := await(t, "the caller", done); !errors.Is(err, context.Canceled) {
		t.Errorf("caller got %v", err)
	}
	if err := <-b.saw; !errors.Is(err, context.Canceled) {
		t.Errorf("engine saw %v", err)
	}
}

// stalledDescribe is a Server whose Describe waits for release, after
// signalling entered.
type stalledDescribe struct {
	*Server
	entered chan struct{}
	release chan struct{}
}

func (s stalledDescribe) Describe(ctx context.Context, r *enginepb.DescribeRequest) (*enginepb.DescribeResponse, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.release
	return s.Server.Describe(ctx, r)
}

// TestHandshakeWaitEndsWithContext: while one caller, with no deadline,
// waits for a handshake the server does not answer, another caller's call
// still ends with its own context: it does not queue behind the first.
func TestHandshakeWaitEndsWithContext(t *testing.T) {
	srv := stalledDescribe{NewServer(memengine.New()), make(chan struct{}, 1), make(chan struct{})}
	_, addr := serveOn(t, srv)
	c := NewClient(dial(t, addr))
	first := make(chan error, 1)
	go func() {
		_, err := c.Read(context.Background(), [][]byte{[]byte("k")})
		first <- err
	}()
	<-srv.entered
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Read(ctx, [][]byte{[]byte("k")})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("call behind a stalled handshake: %v, want its own deadline", err)
		}
	case <-time.After(time.Minute): // a hang, not a measure of speed
		t.Fatal("a call with a deadline is still blocked behind another caller's handshake")
	}
	close(srv.release)
	if err := <-first; err != nil {
		t.Fatalf("the first caller's read, once the handshake was answered: %v", err)
	}
}
