package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kv"
	"github.com/flaredb/flaredb/internal/servertest"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

func dial(t *testing.T, addr string, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, addr, opts...)
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
			start := time.Now()
			srv := servertest.Start(t, &servertest.Options{Config: func(c *config.Config) {
				c.Limits.MaxKeySize = 1024
				c.Limits.MaxValueSize = 1 << 20
				c.Limits.MaxBatchOps = 100
			}})
			c := dial(t, srv.Addr, m.opts...)
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
			if _, err := c.ScanAll(ctx, []byte("b"), []byte("a"), ScanOptions{}); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("reversed range: %v", err)
			}

			// The server sends a scan in pages of 256 entries: 600 keys
			// take three.
			var versions []uint64 // of each batch: the version of all its keys
			for b := range 6 {
				ops := make([]Op, 100)
				for i := range ops {
					k := fmt.Appendf(nil, "p%03d", b*100+i)
					ops[i] = PutOp(k, k, Always())
				}
				r, err := c.Batch(ctx, ops)
				if err != nil || !r.Succeeded {
					t.Fatalf("Batch %d: %+v %v", b, r, err)
				}
				versions = append(versions, r.Version)
			}
			all, err = c.ScanAll(ctx, []byte("p"), []byte("q"), ScanOptions{})
			if err != nil || len(all) != 600 {
				t.Fatalf("ScanAll pages: %d %v", len(all), err)
			}
			for i, kv := range all {
				if want := fmt.Sprintf("p%03d", i); string(kv.Key) != want || string(kv.Value) != want || kv.Version != versions[i/100] {
					t.Fatalf("ScanAll pages: entry %d is %s=%s@%d", i, kv.Key, kv.Value, kv.Version)
				}
			}
			rev, err = c.ScanAll(ctx, []byte("p"), []byte("q"), ScanOptions{Reverse: true, Limit: 300, KeysOnly: true})
			if err != nil || len(rev) != 300 || string(rev[0].Key) != "p599" || string(rev[299].Key) != "p300" || rev[299].Value != nil {
				t.Fatalf("ScanAll pages reverse: %d %v", len(rev), err)
			}
			// Breaking out of a scan, in its first page or a later one.
			for _, tc := range []struct {
				start string
				n     int
				want  string
			}{{"s", 5, "s04"}, {"p", 300, "p299"}} {
				n := 0
				for kv, err := range c.Scan(ctx, []byte(tc.start), nil, ScanOptions{}) {
					if err != nil {
						t.Fatal(err)
					}
					if n++; n == tc.n {
						if string(kv.Key) != tc.want {
							t.Fatalf("scan from %q: key %d is %q, want %q", tc.start, n, kv.Key, tc.want)
						}
						break
					}
				}
				if n != tc.n {
					t.Fatalf("scan from %q: %d keys, want at least %d", tc.start, n, tc.n)
				}
			}

			st, err := c.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			eng := srv.Engine()
			wantLimits := Limits{MaxKeySize: 1024, MaxValueSize: 1 << 20, MaxBatchOps: 100,
				MaxMessageSize: uint64(config.Default().Limits.MaxMessageSize)}
			if st.Engine != eng.Name || st.EngineVersion != eng.Version || st.EngineProtocol != uint32(eng.Protocol) ||
				st.EngineMode != "in-process" || st.ServerVersion == "" || !st.SyncDefault || st.Limits != wantLimits ||
				st.LastVersion != versions[5] {
				t.Fatalf("Status: %+v, engine %+v, last version %d", st, eng, versions[5])
			}
			// Uptime travels in whole seconds.
			if st.Uptime < 0 || st.Uptime%time.Second != 0 || st.Uptime > time.Since(start) {
				t.Fatalf("Status: uptime %v", st.Uptime)
			}

			if _, _, _, err := c.Get(ctx, nil); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("empty key: %v", err)
			}
		})
	}
}

func TestReturnedSlicesAreOwned(t *testing.T) {
	srv := servertest.Start(t, nil)
	c := dial(t, srv.Addr)
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

// streamMessages reads from the server's metrics how many stream messages
// it received, how many ops they carried in all, and how many carried more
// than atMost ops (atMost is a bucket bound of the histogram: 1, 2, 4, ...).
func streamMessages(t *testing.T, srv *servertest.Server, atMost int) (msgs, ops, over int) {
	t.Helper()
	m := srv.Metrics()
	bucket, ok := m[fmt.Sprintf(`flaredb_stream_message_ops_bucket{le="%d"}`, atMost)]
	if !ok {
		t.Fatalf("no histogram bucket le=%d in the server's metrics", atMost)
	}
	msgs = int(m["flaredb_stream_message_ops_count"])
	return msgs, int(m["flaredb_stream_message_ops_sum"]), msgs - int(bucket)
}

// TestCoalescing holds the sender on its first message until n calls are
// queued; they must then travel together in one message.
func TestCoalescing(t *testing.T) {
	const n = 40
	srv := servertest.Start(t, nil)
	var cc callCounter
	release := make(chan struct{})
	var queued atomic.Int32
	var first sync.Once
	c := dial(t, srv.Addr, cc.option(), func(o *options) {
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
	msgs, ops, over := streamMessages(t, srv, 16)
	if ops != n {
		t.Fatalf("the server received %d ops on the stream, want %d", ops, n)
	}
	if msgs > 2 {
		t.Fatalf("%d puts took %d messages, want at most 2", n, msgs)
	}
	if over < 1 {
		t.Fatalf("no message carried more than 16 ops")
	}
	if got := cc.unaryKV(); got != 0 {
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
	srv := servertest.Start(t, nil)
	release := make(chan struct{})
	var queued, sends, largest atomic.Int32
	var first sync.Once
	c := dial(t, srv.Addr, WithCoalescing(bound, 0), func(o *options) {
		o.testHookSend = func(ops int) {
			sends.Add(1)
			for m := largest.Load(); int32(ops) > m; m = largest.Load() {
				if largest.CompareAndSwap(m, int32(ops)) {
					break
				}
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
	if got := largest.Load(); got != bound {
		t.Fatalf("largest message carried %d ops, want %d", got, bound)
	}
	// What the server received: the same messages, none over the bound,
	// some over half of it.
	msgs, ops, over := streamMessages(t, srv, bound)
	_, _, overHalf := streamMessages(t, srv, bound/2)
	if msgs != int(sends.Load()) || ops != n || over != 0 || overHalf < 1 {
		t.Fatalf("server received %d messages (client sent %d) carrying %d ops; %d over %d ops, %d over %d",
			msgs, sends.Load(), ops, over, bound, overHalf, bound/2)
	}
}

// TestDispatchByID checks that answers reach their callers by id, not in
// the order of the requests: a held request is overtaken by a later one on
// the same stream, then many concurrent calls run.
func TestDispatchByID(t *testing.T) {
	srv := servertest.Start(t, nil)
	ctx := testCtx(t)

	var cc callCounter
	c1 := dial(t, srv.Addr, cc.option())
	for _, k := range []string{"slow", "fast"} {
		if _, err := c1.Put(ctx, []byte(k), []byte(k+"!")); err != nil {
			t.Fatal(err)
		}
	}
	hold := srv.Faults.Hold([]byte("slow"))
	slow := make(chan error, 1)
	go func() {
		v, _, _, err := c1.Get(ctx, []byte("slow"))
		if err == nil && string(v) != "slow!" {
			err = fmt.Errorf("read %q", v)
		}
		slow <- err
	}()
	if err := hold.Wait(ctx); err != nil {
		t.Fatalf("the held Get did not reach the engine: %v", err)
	}
	if v, _, _, err := c1.Get(ctx, []byte("fast")); err != nil || string(v) != "fast!" {
		t.Fatalf("Get overtaking a held one: %q %v", v, err)
	}
	hold.Release()
	if err := <-slow; err != nil {
		t.Fatalf("held Get: %v", err)
	}
	if got := cc.opened(); got != 1 {
		t.Fatalf("%d streams, want 1", got)
	}

	c := dial(t, srv.Addr, WithStreams(2))
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
	srv := servertest.Start(t, nil)
	var cc callCounter
	c := dial(t, srv.Addr, cc.option())
	ctx := testCtx(t)

	hold1 := srv.Faults.Hold([]byte("block1"))
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, _, _, err := c.Get(cctx, []byte("block1"))
		done <- err
	}()
	if err := hold1.Wait(ctx); err != nil { // the request is on the server
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Get: %v", err)
	}

	// A deadline that passes while the request is on the server.
	hold2 := srv.Faults.Hold([]byte("block2"))
	dctx := newExpiringCtx()
	go func() {
		_, err := c.Put(dctx, []byte("block2"), []byte("v"))
		done <- err
	}()
	if err := hold2.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	dctx.expire()
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timed out Put: %v", err)
	}

	// The late answers are dropped; the stream keeps working.
	hold1.Release()
	hold2.Release()
	for i := range 20 {
		k := fmt.Appendf(nil, "after%d", i)
		if _, err := c.Put(ctx, k, k); err != nil {
			t.Fatal(err)
		}
	}
	if got := cc.opened(); got != 1 {
		t.Fatalf("%d streams, want 1", got)
	}

	// A context already done fails before anything is sent.
	if _, _, _, err := c.Get(cctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with done ctx: %v", err)
	}
}

// TestStreamBreak breaks the stream while a read and a write wait in the
// server's engine: the write, which may have been applied, is not retried;
// the read is, on a new stream.
func TestStreamBreak(t *testing.T) {
	cases := []struct {
		name    string
		config  func(*config.Config)
		proxy   bool
		noLimit bool
		// breakStream breaks the stream c uses.
		breakStream func(t *testing.T, ctx context.Context, c *Client, px *proxy)
	}{
		{
			// A message over the server's limit: the server ends the stream
			// with ResourceExhausted at once. (The client does not learn
			// the server's limit, as with a server that has none, so it
			// sends the message on the stream instead of alone.)
			name:    "server ends the stream",
			noLimit: true,
			config: func(c *config.Config) {
				c.Limits.MaxKeySize = 1 << 10
				c.Limits.MaxValueSize = 16 << 10
				c.Limits.MaxMessageSize = 32 << 10
			},
			breakStream: func(t *testing.T, ctx context.Context, c *Client, _ *proxy) {
				_, err := c.Put(ctx, []byte("big"), bytes.Repeat([]byte("x"), 40<<10))
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Put on breaking stream: %v", err)
				}
				// The error says why the stream ended.
				var e, cause *Error
				if !errors.As(err, &e) || e.Code != codes.Unavailable || !errors.Is(err, ErrTooLarge) {
					t.Fatalf("error details: %#v", err)
				}
				if !errors.As(e.Unwrap(), &cause) || cause.Code != codes.ResourceExhausted {
					t.Fatalf("cause: %#v", e.Unwrap())
				}
			},
		},
		{
			name:        "connection cut",
			proxy:       true,
			breakStream: func(_ *testing.T, _ context.Context, _ *Client, px *proxy) { px.cut() },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := servertest.Start(t, &servertest.Options{Config: tc.config})
			ctx := testCtx(t)
			if _, err := dial(t, srv.Addr, WithUnary()).Put(ctx, []byte("r"), []byte("r")); err != nil {
				t.Fatal(err)
			}
			var px *proxy
			addr := srv.Addr
			if tc.proxy {
				px = startProxy(t, srv.Addr)
				addr = px.addr
			}
			var cc callCounter
			opts := []Option{cc.option(), WithRetry(RetryPolicy{InitialBackoff: time.Millisecond})}
			if tc.noLimit {
				opts = append(opts, func(o *options) { o.testHookNoLimit = true })
			}
			c := dial(t, addr, opts...)

			holdR, holdW := srv.Faults.Hold([]byte("r")), srv.Faults.Hold([]byte("w"))
			read, write := make(chan error, 1), make(chan error, 1)
			go func() {
				v, _, _, err := c.Get(ctx, []byte("r"))
				if err == nil && string(v) != "r" {
					err = fmt.Errorf("read %q", v)
				}
				read <- err
			}()
			go func() {
				_, err := c.Put(ctx, []byte("w"), []byte("w"))
				write <- err
			}()
			for _, h := range []*servertest.Hold{holdR, holdW} {
				if err := h.Wait(ctx); err != nil {
					t.Fatalf("a request did not reach the engine: %v", err)
				}
			}

			tc.breakStream(t, ctx, c, px)
			// The server goes on with the write; its answer is lost with the
			// stream, so the client cannot know that it was applied.
			holdW.Release()
			err := <-write
			var e *Error
			if !errors.Is(err, ErrUnavailable) || !errors.As(err, &e) || e.Code != codes.Unavailable {
				t.Fatalf("pending write: %#v", err)
			}
			if err := <-read; err != nil {
				t.Fatalf("pending read: %v", err)
			}
			if _, err := c.Put(ctx, []byte("after"), []byte("y")); err != nil {
				t.Fatal(err)
			}
			if got := cc.opened(); got != 2 {
				t.Fatalf("%d streams, want 2", got)
			}
			if v, _, _, err := c.Get(ctx, []byte("w")); err != nil || string(v) != "w" {
				t.Fatalf("Get w: %q %v", v, err)
			}
		})
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		reason string
		err    error // returned by the engine
		code   codes.Code
		is     []error
	}{
		{kvpb.ReasonNotFound, engine.ErrNotFound, codes.NotFound, []error{ErrNotFound}},
		{kvpb.ReasonTooLarge, engine.ErrTooLarge, codes.InvalidArgument, []error{ErrTooLarge, ErrInvalidArgument}},
		{kvpb.ReasonInvalidArgument, engine.ErrInvalidArgument, codes.InvalidArgument, []error{ErrInvalidArgument}},
		{kvpb.ReasonClosed, engine.ErrClosed, codes.Unavailable, []error{ErrClosed, ErrUnavailable}},
		{kvpb.ReasonShuttingDown, kv.ErrShuttingDown, codes.Unavailable, []error{ErrShuttingDown, ErrUnavailable}},
		{kvpb.ReasonUnsupported, engine.ErrUnsupported, codes.Unimplemented, []error{ErrUnsupported}},
		{kvpb.ReasonCorrupt, engine.ErrCorrupt, codes.DataLoss, []error{ErrCorrupt}},
		{kvpb.ReasonInternal, engine.ErrInternal, codes.Internal, []error{ErrInternal}},
	}
	for _, m := range modes[:2] {
		t.Run(m.name, func(t *testing.T) {
			srv := servertest.Start(t, nil)
			c := dial(t, srv.Addr, append(m.opts, WithRetry(RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond}))...)
			ctx := testCtx(t)
			for _, tc := range cases {
				key := []byte("err/" + tc.reason)
				injected := fmt.Errorf("injected %s: %w", tc.reason, tc.err)
				srv.Faults.FailKey(key, injected)
				_, err := c.Put(ctx, key, []byte("v"))
				for _, want := range tc.is {
					if !errors.Is(err, want) {
						t.Errorf("%s: %v is not %v", tc.reason, err, want)
					}
				}
				if errors.Is(err, ErrNotFound) != (tc.reason == kvpb.ReasonNotFound) {
					t.Errorf("%s: ErrNotFound match wrong", tc.reason)
				}
				var e *Error
				if !errors.As(err, &e) || e.Code != tc.code || e.Reason != tc.reason || e.Message != injected.Error() {
					t.Errorf("%s: %#v", tc.reason, err)
					continue
				}
				st := status.Convert(err)
				if st.Code() != tc.code || len(st.Details()) != 1 {
					t.Errorf("%s: status %v", tc.reason, st)
				}
			}
			// A read with an Unavailable answer is retried (and fails again).
			key := []byte("err/" + kvpb.ReasonUnavailable)
			srv.Faults.FailKey(key, fmt.Errorf("injected: %w", engine.ErrUnavailable))
			if _, _, _, err := c.Get(ctx, key); !errors.Is(err, ErrUnavailable) {
				t.Errorf("get unavailable: %v", err)
			}
			if got := srv.Faults.Touched(key); got != 2 {
				t.Errorf("the engine read %s %d times, want 2", key, got)
			}
		})
	}
}

func TestRetryUnary(t *testing.T) {
	srv := servertest.Start(t, nil)
	var cc callCounter
	c := dial(t, srv.Addr, cc.option(), WithUnary(), WithRetry(RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Millisecond}))
	ctx := testCtx(t)
	srv.Faults.FailNext(servertest.CallRead, 2, fmt.Errorf("try later: %w", engine.ErrUnavailable))
	if _, _, _, err := c.Get(ctx, []byte("k")); err != nil {
		t.Fatalf("Get after 2 failures: %v", err)
	}
	if got := cc.calls("Get"); got != 3 {
		t.Fatalf("%d Get calls, want 3", got)
	}
	srv.Faults.FailNext(servertest.CallApply, 1, fmt.Errorf("try later: %w", engine.ErrUnavailable))
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Put answered Unavailable: %v", err)
	}
	if got := cc.calls("Put"); got != 1 {
		t.Fatalf("%d Put calls, want 1 (a write that reached the server is not retried)", got)
	}
}

// TestRetryNotSent: writes that certainly never left the client are
// retried, on both paths.
func TestRetryNotSent(t *testing.T) {
	addr := servertest.DeadAddr(t)

	var unaryAttempts, streamAttempts atomic.Int32
	ctx := testCtx(t)
	policy := RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	for _, unary := range []bool{true, false} {
		opts := []Option{WithLazyConnect(), WithRetry(policy), WithDialOptions(
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				if strings.HasSuffix(method, "/Put") { // not the lazy client's Status
					unaryAttempts.Add(1)
				}
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
	_, err := New(testCtx(t), servertest.DeadAddr(t))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("New to nowhere: %v", err)
	}
}

func TestStreamUnimplementedFallsBack(t *testing.T) {
	srv := servertest.Start(t, nil)
	front := startUnaryOnly(t, srv.Addr)
	c := dial(t, front.addr)
	ctx := testCtx(t)
	for i := range 3 {
		if _, err := c.Put(ctx, []byte("k"), fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	if got := front.calls.Load(); got != 3 {
		t.Fatalf("%d unary calls, want 3", got)
	}
	if v, _, _, err := dial(t, srv.Addr).Get(ctx, []byte("k")); err != nil || string(v) != "2" {
		t.Fatalf("Get from the server behind: %q %v", v, err)
	}
}

func TestLargeRequestGoesUnary(t *testing.T) {
	srv := servertest.Start(t, nil)
	var cc callCounter
	c := dial(t, srv.Addr, cc.option(), WithCoalescing(0, 1024))
	ctx := testCtx(t)
	big := bytes.Repeat([]byte("x"), 5000)
	if _, err := c.Put(ctx, []byte("big"), big); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, []byte("small"), []byte("s")); err != nil {
		t.Fatal(err)
	}
	if got := cc.unaryKV(); got != 1 {
		t.Fatalf("%d unary calls, want 1", got)
	}
	v, _, _, err := c.Get(ctx, []byte("big"))
	if err != nil || !bytes.Equal(v, big) {
		t.Fatalf("Get big: %d bytes, %v", len(v), err)
	}
}

func TestClose(t *testing.T) {
	srv := servertest.Start(t, nil)
	c := dial(t, srv.Addr)
	ctx := testCtx(t)
	hold := srv.Faults.Hold([]byte("block"))
	done := make(chan error, 1)
	go func() {
		_, _, _, err := c.Get(ctx, []byte("block"))
		done <- err
	}()
	if err := hold.Wait(ctx); err != nil {
		t.Fatal(err)
	}
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
// against a real server on the memory engine (go test -bench Put -cpu 2,8).
func BenchmarkPut(b *testing.B) {
	for _, m := range modes[:2] {
		b.Run(m.name, func(b *testing.B) {
			srv := servertest.Start(b, nil)
			c, err := New(context.Background(), srv.Addr, m.opts...)
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

// TestWriteAnswerTooLarge: a batch that was applied but whose answer (the
// previous values) exceeds the server's message limit fails with
// ErrTooLarge and code ResourceExhausted, not ErrInvalidArgument, and is not
// retried; a batch refused by its condition, whose answer is as large,
// fails with ErrTooLarge and ErrInvalidArgument and changed nothing.
func TestWriteAnswerTooLarge(t *testing.T) {
	const maxMsg = 1 << 20
	srv := servertest.Start(t, &servertest.Options{Config: func(c *config.Config) {
		c.Limits.MaxValueSize = maxMsg - 8<<10
		c.Limits.MaxMessageSize = maxMsg
	}})
	big := bytes.Repeat([]byte("v"), maxMsg-16<<10)
	for _, m := range modes[:2] {
		t.Run(m.name, func(t *testing.T) {
			c := dial(t, srv.Addr, append(m.opts, WithRetry(RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond}))...)
			ctx := testCtx(t)
			k0, k1 := []byte(m.name+"/0"), []byte(m.name+"/1")
			for _, k := range [][]byte{k0, k1} {
				if _, err := c.Put(ctx, k, big); err != nil {
					t.Fatal(err)
				}
			}

			// Refused by its condition: nothing changed.
			_, err := c.Batch(ctx, []Op{DeleteOp(k0, IfVersion(1<<62)), DeleteOp(k1, Always())})
			var e *Error
			if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &e) || e.Code != codes.InvalidArgument {
				t.Fatalf("refused batch: %#v, want ErrTooLarge and ErrInvalidArgument", err)
			}
			if _, _, found, err := c.Get(ctx, k1); err != nil || !found {
				t.Fatalf("%s after the refused batch: found %v, err %v", k1, found, err)
			}

			// Applied: the error says so and the batch is not sent again.
			before := srv.Faults.Touched(k0)
			_, err = c.Batch(ctx, []Op{DeleteOp(k0, Always()), DeleteOp(k1, Always())})
			if !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrInvalidArgument) || !errors.As(err, &e) ||
				e.Code != codes.ResourceExhausted || !strings.Contains(e.Message, "the write was applied") {
				t.Fatalf("applied batch: %#v, want ErrTooLarge with ResourceExhausted saying it was applied", err)
			}
			if n := srv.Faults.Touched(k0) - before; n != 1 {
				t.Errorf("the engine saw the applied batch %d times, want 1", n)
			}
			for _, k := range [][]byte{k0, k1} {
				if _, _, found, err := c.Get(ctx, k); err != nil || found {
					t.Errorf("%s after the applied batch: found %v, err %v", k, found, err)
				}
			}
		})
	}
}
