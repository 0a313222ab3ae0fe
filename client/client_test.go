package client

import (
	"bytes"
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
	"google.golang.org/grpc/status"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

func dial(t *testing.T, f *fakeServer, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, f.addr, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var modes = []struct {
	name string
	opts []Option
}{
	{"stream", nil},
	{"unary", []Option{WithUnary()}},
	{"streams4", []Option{WithStreams(4)}},
}

func TestOperations(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			f := startFake(t)
			c := dial(t, f, m.opts...)
			ctx := testCtx(t)

			if _, _, found, err := c.Get(ctx, []byte("a")); err != nil || found {
				t.Fatalf("Get absent: found=%v err=%v", found, err)
			}
			p1, err := c.Put(ctx, []byte("a"), []byte("1"))
			if err != nil || p1.Version == 0 {
				t.Fatalf("Put: %+v %v", p1, err)
			}
			p2, err := c.Put(ctx, []byte("a"), []byte("2"), WithPrevious(), WithAsync())
			if err != nil || p2.Version <= p1.Version || p2.PreviousVersion != p1.Version || string(p2.PreviousValue) != "1" {
				t.Fatalf("Put prev: %+v %v", p2, err)
			}
			v, ver, found, err := c.Get(ctx, []byte("a"))
			if err != nil || !found || string(v) != "2" || ver != p2.Version {
				t.Fatalf("Get: %q %d %v %v", v, ver, found, err)
			}
			// Empty value is a value.
			if _, err := c.Put(ctx, []byte("e"), nil); err != nil {
				t.Fatal(err)
			}
			if v, _, found, err := c.Get(ctx, []byte("e")); err != nil || !found || v == nil || len(v) != 0 {
				t.Fatalf("Get empty: %q %v %v", v, found, err)
			}

			kvs, err := c.BatchGet(ctx, [][]byte{[]byte("a"), []byte("zz"), []byte("e")})
			if err != nil || len(kvs) != 3 || string(kvs[0].Value) != "2" || kvs[1].Exists() || !kvs[2].Exists() {
				t.Fatalf("BatchGet: %+v %v", kvs, err)
			}

			// CAS failure is a result.
			r, err := c.CompareAndSwap(ctx, []byte("a"), IfVersion(p1.Version), []byte("x"))
			if err != nil || r.Succeeded || r.CurrentVersion != p2.Version || string(r.CurrentValue) != "2" {
				t.Fatalf("CAS fail: %+v %v", r, err)
			}
			r, err = c.CompareAndSwap(ctx, []byte("a"), IfVersion(p2.Version), []byte("3"))
			if err != nil || !r.Succeeded || r.Version <= p2.Version {
				t.Fatalf("CAS ok: %+v %v", r, err)
			}
			if r, err := c.CompareAndSwap(ctx, []byte("n"), IfAbsent(), []byte("new")); err != nil || !r.Succeeded {
				t.Fatalf("CAS absent: %+v %v", r, err)
			}
			if r, err := c.CompareAndSwap(ctx, []byte("n"), IfValue([]byte("new")), []byte("newer")); err != nil || !r.Succeeded {
				t.Fatalf("CAS value: %+v %v", r, err)
			}
			if r, err := c.CompareAndSwap(ctx, []byte("missing"), IfExists(), []byte("x")); err != nil || r.Succeeded || r.CurrentVersion != 0 {
				t.Fatalf("CAS exists: %+v %v", r, err)
			}
			if r, err := c.CompareAndDelete(ctx, []byte("n"), IfExists()); err != nil || !r.Succeeded || string(r.CurrentValue) != "newer" {
				t.Fatalf("CAS delete: %+v %v", r, err)
			}

			// Batch: failure applies nothing, success applies everything.
			br, err := c.Batch(ctx, []Op{
				PutOp([]byte("b1"), []byte("x"), Always()),
				CheckOp([]byte("a"), IfVersion(1)),
			})
			if err != nil || br.Succeeded || len(br.Results) != 2 || !br.Results[0].ConditionHeld || br.Results[1].ConditionHeld {
				t.Fatalf("Batch fail: %+v %v", br, err)
			}
			if _, _, found, _ := c.Get(ctx, []byte("b1")); found {
				t.Fatal("failed batch applied a write")
			}
			br, err = c.Batch(ctx, []Op{
				PutOp([]byte("b1"), []byte("x"), IfAbsent()),
				PutOp([]byte("b2"), []byte("y"), Always()),
				DeleteOp([]byte("e"), IfExists()),
			}, WithAsync())
			if err != nil || !br.Succeeded || br.Version == 0 || br.Results[2].Version == 0 {
				t.Fatalf("Batch ok: %+v %v", br, err)
			}

			d, err := c.Delete(ctx, []byte("b2"), WithPrevious())
			if err != nil || !d.Deleted || string(d.PreviousValue) != "y" {
				t.Fatalf("Delete: %+v %v", d, err)
			}
			if d, err := c.Delete(ctx, []byte("b2")); err != nil || d.Deleted {
				t.Fatalf("Delete absent: %+v %v", d, err)
			}

			for i := range 10 {
				if _, err := c.Put(ctx, fmt.Appendf(nil, "s%02d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			all, err := c.ScanAll(ctx, []byte("s"), []byte("t"), ScanOptions{})
			if err != nil || len(all) != 10 || string(all[0].Key) != "s00" || string(all[9].Value) != "v9" {
				t.Fatalf("ScanAll: %d %v", len(all), err)
			}
			rev, err := c.ScanAll(ctx, []byte("s"), []byte("t"), ScanOptions{Reverse: true, Limit: 4, KeysOnly: true})
			if err != nil || len(rev) != 4 || string(rev[0].Key) != "s09" || rev[0].Value != nil || rev[0].Version == 0 {
				t.Fatalf("ScanAll reverse: %+v %v", rev, err)
			}
			n := 0
			for kv, err := range c.Scan(ctx, []byte("s"), nil, ScanOptions{}) {
				if err != nil {
					t.Fatal(err)
				}
				if n++; n == 5 {
					if string(kv.Key) != "s04" {
						t.Fatalf("5th key %q", kv.Key)
					}
					break
				}
			}
			if _, err := c.ScanAll(ctx, []byte("b"), []byte("a"), ScanOptions{}); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("reversed range: %v", err)
			}

			st, err := c.Status(ctx)
			if err != nil || st.Engine != "map" || st.Limits.MaxBatchOps != 100 || st.Uptime != 3*time.Second {
				t.Fatalf("Status: %+v %v", st, err)
			}

			if _, _, _, err := c.Get(ctx, nil); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("empty key: %v", err)
			}
		})
	}
}

func TestReturnedSlicesAreOwned(t *testing.T) {
	f := startFake(t)
	c := dial(t, f)
	ctx := testCtx(t)
	key, val := []byte("k"), []byte("value")
	if _, err := c.Put(ctx, key, val); err != nil {
		t.Fatal(err)
	}
	key[0], val[0] = 'X', 'X' // the client kept no reference
	v, _, _, err := c.Get(ctx, []byte("k"))
	if err != nil || string(v) != "value" {
		t.Fatalf("Get: %q %v", v, err)
	}
	v[0] = 'Y'
	v2, _, _, _ := c.Get(ctx, []byte("k"))
	if string(v2) != "value" || &v2[0] == &v[0] {
		t.Fatalf("second Get: %q", v2)
	}
}

// TestCoalescing holds the sender on its first message until n calls are
// queued; they must then travel together in one message.
func TestCoalescing(t *testing.T) {
	const n = 40
	f := startFake(t)
	release := make(chan struct{})
	var queued atomic.Int32
	var first sync.Once
	c := dial(t, f, func(o *options) {
		o.testHookSend = func(int) { first.Do(func() { <-release }) }
		o.testHookEnqueue = func() {
			if queued.Add(1) == n {
				close(release)
			}
		}
	})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	keys := make([][]byte, n)
	for i := range n {
		keys[i] = fmt.Appendf(nil, "k%d", i)
		wg.Go(func() {
			if _, err := c.Put(ctx, keys[i], keys[i]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// The sender took what was queued when it woke (at least one call) and
	// stopped; once released, it packs all the rest into one message.
	if got := f.messages.Load(); got > 2 {
		t.Fatalf("%d puts took %d messages, want at most 2", n, got)
	}
	if got := f.maxOpsPerMsg.Load(); got < n/2 {
		t.Fatalf("largest message carried %d ops, want >= %d", got, n/2)
	}
	if got := f.unaryCalls.Load(); got != 0 {
		t.Fatalf("%d unary calls", got)
	}
	kvs, err := c.BatchGet(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, kv := range kvs {
		if !bytes.Equal(kv.Value, keys[i]) {
			t.Errorf("%s = %q", keys[i], kv.Value)
		}
	}
}

func TestCoalescingBound(t *testing.T) {
	const n, bound = 40, 8
	f := startFake(t)
	release := make(chan struct{})
	var queued atomic.Int32
	var first sync.Once
	c := dial(t, f, WithCoalescing(bound, 0), func(o *options) {
		o.testHookSend = func(ops int) {
			if ops > bound {
				panic("message over bound")
			}
			first.Do(func() { <-release })
		}
		o.testHookEnqueue = func() {
			if queued.Add(1) == n {
				close(release)
			}
		}
	})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := c.Put(ctx, fmt.Appendf(nil, "k%d", i), nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := f.maxOpsPerMsg.Load(); got != bound {
		t.Fatalf("largest message carried %d ops, want %d", got, bound)
	}
}

// TestDispatchByID runs many concurrent calls; the fake answers each
// message's requests in reverse order.
func TestDispatchByID(t *testing.T) {
	f := startFake(t)
	c := dial(t, f, WithStreams(2))
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 50 {
				k := fmt.Appendf(nil, "g%d/%d", g, i)
				p, err := c.Put(ctx, k, k)
				if err != nil {
					t.Error(err)
					return
				}
				r, err := c.CompareAndSwap(ctx, k, IfVersion(p.Version), append(k, '!'))
				if err != nil || !r.Succeeded {
					t.Errorf("cas %s: %+v %v", k, r, err)
					return
				}
				v, ver, _, err := c.Get(ctx, k)
				if err != nil || string(v) != string(k)+"!" || ver != r.Version {
					t.Errorf("get %s: %q %d %v", k, v, ver, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestContextCancel(t *testing.T) {
	f := startFake(t)
	c := dial(t, f)
	ctx := testCtx(t)

	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, _, _, err := c.Get(cctx, []byte("block1"))
		done <- err
	}()
	<-f.seenBlocked // the request is on the server
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Get: %v", err)
	}

	dctx, dcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer dcancel()
	if _, err := c.Put(dctx, []byte("block2"), []byte("v")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timed out Put: %v", err)
	}
	<-f.seenBlocked

	// The late answers are dropped; the stream keeps working.
	close(f.release)
	for i := range 20 {
		k := fmt.Appendf(nil, "after%d", i)
		if _, err := c.Put(ctx, k, k); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.streams.Load(); got != 1 {
		t.Fatalf("%d streams, want 1", got)
	}

	// A context already done fails before anything is sent.
	if _, _, _, err := c.Get(cctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with done ctx: %v", err)
	}
}

func TestStreamBreak(t *testing.T) {
	f := startFake(t)
	c := dial(t, f, WithRetry(RetryPolicy{InitialBackoff: time.Millisecond}))
	ctx := testCtx(t)
	if _, err := dial(t, f, WithUnary()).Put(ctx, []byte("block-r"), []byte("r")); err != nil {
		t.Fatal(err)
	}

	readDone := make(chan error, 1)
	go func() {
		v, _, _, err := c.Get(ctx, []byte("block-r"))
		if err == nil && string(v) != "r" {
			err = fmt.Errorf("read %q", v)
		}
		readDone <- err
	}()
	writeDone := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, []byte("block-w"), []byte("w"))
		writeDone <- err
	}()
	<-f.seenBlocked
	<-f.seenBlocked

	_, err := c.Put(ctx, []byte("break"), []byte("x"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Put on breaking stream: %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.Unavailable || !errors.Is(err, ErrInternal) {
		t.Fatalf("error details: %#v", err)
	}
	// The sent write is not retried: it may have been applied.
	if err := <-writeDone; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("pending write: %v", err)
	}
	// The read is retried on a new stream.
	if err := <-readDone; err != nil {
		t.Fatalf("pending read: %v", err)
	}
	if _, err := c.Put(ctx, []byte("after"), []byte("y")); err != nil {
		t.Fatal(err)
	}
	if got := f.streams.Load(); got != 2 {
		t.Fatalf("%d streams, want 2", got)
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		reason string
		code   codes.Code
		is     []error
	}{
		{kvpb.ReasonNotFound, codes.NotFound, []error{ErrNotFound}},
		{kvpb.ReasonTooLarge, codes.InvalidArgument, []error{ErrTooLarge, ErrInvalidArgument}},
		{kvpb.ReasonInvalidArgument, codes.InvalidArgument, []error{ErrInvalidArgument}},
		{kvpb.ReasonClosed, codes.Unavailable, []error{ErrClosed, ErrUnavailable}},
		{kvpb.ReasonShuttingDown, codes.Unavailable, []error{ErrShuttingDown, ErrUnavailable}},
		{kvpb.ReasonUnsupported, codes.Unimplemented, []error{ErrUnsupported}},
		{kvpb.ReasonCorrupt, codes.DataLoss, []error{ErrCorrupt}},
		{kvpb.ReasonInternal, codes.Internal, []error{ErrInternal}},
	}
	for _, m := range modes[:2] {
		t.Run(m.name, func(t *testing.T) {
			f := startFake(t)
			c := dial(t, f, append(m.opts, WithRetry(RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond}))...)
			ctx := testCtx(t)
			for _, tc := range cases {
				_, err := c.Put(ctx, []byte("err/"+tc.reason), []byte("v"))
				for _, want := range tc.is {
					if !errors.Is(err, want) {
						t.Errorf("%s: %v is not %v", tc.reason, err, want)
					}
				}
				if errors.Is(err, ErrNotFound) != (tc.reason == kvpb.ReasonNotFound) {
					t.Errorf("%s: ErrNotFound match wrong", tc.reason)
				}
				var e *Error
				if !errors.As(err, &e) || e.Code != tc.code || e.Reason != tc.reason || e.Message != "injected "+tc.reason {
					t.Errorf("%s: %#v", tc.reason, err)
					continue
				}
				st := status.Convert(err)
				if st.Code() != tc.code || len(st.Details()) != 1 {
					t.Errorf("%s: status %v", tc.reason, st)
				}
			}
			// A read with an Unavailable answer is retried (and fails again).
			if _, _, _, err := c.Get(ctx, []byte("err/"+kvpb.ReasonUnavailable)); !errors.Is(err, ErrUnavailable) {
				t.Errorf("get unavailable: %v", err)
			}
		})
	}
}

func TestRetryUnary(t *testing.T) {
	f := startFake(t)
	c := dial(t, f, WithUnary(), WithRetry(RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Millisecond}))
	ctx := testCtx(t)
	f.failGets.Store(2)
	if _, _, _, err := c.Get(ctx, []byte("k")); err != nil {
		t.Fatalf("Get after 2 failures: %v", err)
	}
	if got := f.unaryCalls.Load(); got != 3 {
		t.Fatalf("%d Get calls, want 3", got)
	}
	f.unaryCalls.Store(0)
	f.failPuts.Store(1)
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Put answered Unavailable: %v", err)
	}
	if got := f.unaryCalls.Load(); got != 1 {
		t.Fatalf("%d Put calls, want 1 (a write that reached the server is not retried)", got)
	}
}

// TestRetryNotSent: writes that certainly never left the client are
// retried, on both paths.
func TestRetryNotSent(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now

	var unaryAttempts, streamAttempts atomic.Int32
	ctx := testCtx(t)
	policy := RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	for _, unary := range []bool{true, false} {
		opts := []Option{WithLazyConnect(), WithRetry(policy), WithDialOptions(
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				unaryAttempts.Add(1)
				return invoker(ctx, method, req, reply, cc, opts...)
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				streamAttempts.Add(1)
				return streamer(ctx, desc, cc, method, opts...)
			}),
		)}
		if unary {
			opts = append(opts, WithUnary())
		}
		c, err := New(ctx, addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, []byte("k"), []byte("v")); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("unary=%v: Put to nowhere: %v", unary, err)
		}
		c.Close()
	}
	if got := unaryAttempts.Load(); got != 3 {
		t.Errorf("%d unary attempts, want 3", got)
	}
	if got := streamAttempts.Load(); got != 3 {
		t.Errorf("%d stream attempts, want 3", got)
	}
}

func TestNewUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	_, err = New(testCtx(t), addr)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("New to nowhere: %v", err)
	}
}

func TestStreamUnimplementedFallsBack(t *testing.T) {
	f := startFake(t, func(f *fakeServer) { f.noStream = true })
	c := dial(t, f)
	ctx := testCtx(t)
	for i := range 3 {
		if _, err := c.Put(ctx, []byte("k"), fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	if got := f.unaryCalls.Load(); got != 3 {
		t.Fatalf("%d unary calls, want 3", got)
	}
}

func TestLargeRequestGoesUnary(t *testing.T) {
	f := startFake(t)
	c := dial(t, f, WithCoalescing(0, 1024))
	ctx := testCtx(t)
	big := bytes.Repeat([]byte("x"), 5000)
	if _, err := c.Put(ctx, []byte("big"), big); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, []byte("small"), []byte("s")); err != nil {
		t.Fatal(err)
	}
	if got := f.unaryCalls.Load(); got != 1 {
		t.Fatalf("%d unary calls, want 1", got)
	}
	v, _, _, err := c.Get(ctx, []byte("big"))
	if err != nil || !bytes.Equal(v, big) {
		t.Fatalf("Get big: %d bytes, %v", len(v), err)
	}
}

func TestClose(t *testing.T) {
	f := startFake(t)
	c := dial(t, f)
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() {
		_, _, _, err := c.Get(ctx, []byte("block"))
		done <- err
	}()
	<-f.seenBlocked
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiting call after Close: %v", err)
	}
	if _, err := c.Put(ctx, []byte("k"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if _, err := c.ScanAll(ctx, nil, nil, ScanOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Scan after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConditionString(t *testing.T) {
	for c, want := range map[*Condition]string{
		{}:                            "always",
		ptr(IfVersion(7)):             "version=7",
		ptr(IfAbsent()):               "absent",
		ptr(IfExists()):               "exists",
		ptr(IfValue([]byte("a\x00"))): `value="a\x00"`,
	} {
		if got := c.String(); got != want {
			t.Errorf("%v: got %s want %s", *c, got, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// BenchmarkPut compares the stream and unary paths under parallel load
// against the in-process fake (go test -bench Put -cpu 2,8).
func BenchmarkPut(b *testing.B) {
	for _, m := range modes[:2] {
		b.Run(m.name, func(b *testing.B) {
			f := startFakeB(b)
			c, err := New(context.Background(), f.addr, m.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			value := bytes.Repeat([]byte("v"), 128)
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				key := []byte("benchkey00000000")
				for pb.Next() {
					if _, err := c.Put(ctx, key, value); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func startFakeB(b *testing.B) *fakeServer {
	f := &fakeServer{data: map[string]*kvpb.KeyValue{}, release: make(chan struct{}), seenBlocked: make(chan string, 100)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	f.addr = lis.Addr().String()
	f.srv = grpc.NewServer()
	kvpb.RegisterKVServer(f.srv, f)
	go func() { _ = f.srv.Serve(lis) }()
	b.Cleanup(f.srv.Stop)
	return f
}
