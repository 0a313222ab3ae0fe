package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// rawStream is one Stream call made by hand, to control what each Stream
// sends and when.
type rawStream struct {
	t  *testing.T
	st grpc.BidiStreamingClient[enginepb.StreamRequest, enginepb.StreamResponse]
	id uint64
}

func openRaw(t *testing.T, ctx context.Context, rpc enginepb.EngineClient, client string, epoch uint64) *rawStream {
	t.Helper()
	if client != "" {
		ctx = streamAppend(ctx, client, epoch)
	}
	st, err := rpc.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &rawStream{t: t, st: st}
}

// call sends one call and returns its answer's error (nil for a success),
// or the error that ended the stream instead.
func (r *rawStream) call(build func(*enginepb.StreamCall)) error {
	r.t.Helper()
	r.id++
	c := &enginepb.StreamCall{Id: r.id}
	build(c)
	if err := r.st.Send(&enginepb.StreamRequest{Calls: []*enginepb.StreamCall{c}}); err != nil {
		_, err = r.st.Recv() // the stream's own end says why
		return err
	}
	resp, err := r.st.Recv()
	if err != nil {
		return err
	}
	if n := len(resp.GetAnswers()); n != 1 || resp.GetAnswers()[0].GetId() != r.id {
		r.t.Fatalf("want the answer of call %d alone, got %v", r.id, resp.GetAnswers())
	}
	if e := resp.GetAnswers()[0].GetError(); e != nil {
		return fromStreamError(e)
	}
	return nil
}

// rawVersion numbers the raw streams' puts.
var rawVersion atomic.Uint64

func (r *rawStream) put(key string) error {
	return r.call(func(c *enginepb.StreamCall) {
		c.Call = &enginepb.StreamCall_Apply{Apply: &enginepb.ApplyRequest{
			ProtocolVersion: engine.ProtocolVersion,
			Writes:          writesToPB([]engine.Write{{Kind: engine.OpPut, Key: []byte(key), Value: []byte("v"), Version: rawVersion.Add(1)}}),
		}}
	})
}

func (r *rawStream) read(key string) error {
	return r.call(func(c *enginepb.StreamCall) {
		c.Call = &enginepb.StreamCall_Read{Read: &enginepb.ReadRequest{ProtocolVersion: engine.ProtocolVersion, Keys: [][]byte{[]byte(key)}}}
	})
}

// TestNewerStreamFencesOlder: once a client's Stream of a higher epoch has
// opened, the calls still to come on its older Stream never run, a Stream
// of a lower epoch is refused, and neither touches the Streams of other
// clients or of unnamed ones. This is what keeps a write the client gave
// up on, sent on a Stream it abandoned, from landing after the writes it
// sends next on a new Stream.
func TestNewerStreamFencesOlder(t *testing.T) {
	ctx := ctxT(t)
	e := &countApplies{Engine: memengine.New()}
	_, addr := serveOn(t, NewServer(e))
	rpc := enginepb.NewEngineClient(dial(t, addr))

	old := openRaw(t, ctx, rpc, "c1", 1)
	if err := old.put("before"); err != nil {
		t.Fatalf("put on the first stream: %v", err)
	}
	other := openRaw(t, ctx, rpc, "c2", 1)
	if err := other.put("other-before"); err != nil {
		t.Fatalf("put on another client's stream: %v", err)
	}
	unnamed := openRaw(t, ctx, rpc, "", 0)
	newer := openRaw(t, ctx, rpc, "c1", 2)
	if err := newer.read("before"); err != nil { // the newer stream is open on the server
		t.Fatalf("read on the newer stream: %v", err)
	}

	if err := old.put("late"); err == nil {
		t.Error("a put on the fenced-off stream succeeded")
	} else if !errors.Is(err, engine.ErrUnavailable) && status.Code(err) != codes.Canceled {
		t.Errorf("a put on the fenced-off stream: %v, want unavailable or the stream canceled", err)
	}
	stale := openRaw(t, ctx, rpc, "c1", 1)
	if err := stale.put("stale"); status.Code(err) != codes.Unavailable {
		t.Errorf("a put on a stream older than the newest: %v, want the stream refused as unavailable", err)
	}
	for _, s := range []struct {
		name string
		r    *rawStream
	}{{"newer", newer}, {"other client", other}, {"unnamed", unnamed}} {
		if err := s.r.put(s.name); err != nil {
			t.Errorf("put on the %s stream: %v", s.name, err)
		}
	}

	if n := e.calls.Load(); n != 5 {
		t.Errorf("the engine got %d Applies, want 5 (before, other-before, and one per live stream)", n)
	}
	es, err := e.Read(ctx, [][]byte{[]byte("late"), []byte("stale"), []byte("newer")})
	if err != nil {
		t.Fatal(err)
	}
	if es[0].Version != 0 || es[1].Version != 0 || es[2].Version == 0 {
		t.Errorf("late, stale, newer: %+v; want only newer written", es)
	}
}

// holdFirst is the reference engine holding its first Apply until release
// is closed, and logging the value of each Apply's first write in the
// order they are done.
type holdFirst struct {
	engine.Engine
	entered, release chan struct{}
	calls            atomic.Int32
	mu               sync.Mutex
	log              []string
}

func (e *holdFirst) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	if e.calls.Add(1) == 1 {
		close(e.entered)
		<-e.release
	}
	rs, err := e.Engine.Apply(ctx, ws, o)
	e.mu.Lock()
	e.log = append(e.log, string(ws[0].Value))
	e.mu.Unlock()
	return rs, err
}

// TestFencedApplyInProgressStaysFirst: an Apply of the old Stream already
// in the engine when the fence comes still keeps the new Stream's Apply of
// the same key waiting until it returns, and the old Stream's Apply that
// was only waiting behind it never runs.
func TestFencedApplyInProgressStaysFirst(t *testing.T) {
	ctx := ctxT(t)
	e := &holdFirst{Engine: memengine.New(), entered: make(chan struct{}), release: make(chan struct{})}
	srv := NewServer(e)
	_, addr := serveOn(t, srv)
	rpc := enginepb.NewEngineClient(dial(t, addr))
	running := func() []*ticket {
		srv.order.mu.Lock()
		defer srv.order.mu.Unlock()
		return slices.Clone(srv.order.running)
	}

	old := openRaw(t, ctx, rpc, "c", 1)
	send := func(r *rawStream, value string) {
		r.id++
		w := engine.Write{Kind: engine.OpPut, Key: []byte("k"), Value: []byte(value), Version: rawVersion.Add(1)}
		err := r.st.Send(&enginepb.StreamRequest{Calls: []*enginepb.StreamCall{{Id: r.id, Call: &enginepb.StreamCall_Apply{Apply: &enginepb.ApplyRequest{
			ProtocolVersion: engine.ProtocolVersion, Writes: writesToPB([]engine.Write{w})}}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	send(old, "old-running")
	await(t, "the first Apply in the engine", e.entered)
	send(old, "old-waiting")
	waitUntil(t, func() bool { return len(running()) == 2 })
	waiting := running()[1]

	newer := openRaw(t, ctx, rpc, "c", 2)
	if err := newer.read("k"); err != nil { // the newer stream is open on the server
		t.Fatalf("read on the newer stream: %v", err)
	}
	send(newer, "new")
	// The old waiting Apply gives up; the new one waits behind the running one.
	waitUntil(t, func() bool { r := running(); return len(r) == 2 && r[1] != waiting })
	close(e.release)
	resp, err := newer.st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if a := resp.GetAnswers(); len(a) != 1 || a[0].GetError() != nil {
		t.Fatalf("the new stream's put: %v", a)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if want := []string{"old-running", "new"}; !slices.Equal(e.log, want) {
		t.Errorf("Applies done in the engine: %q, want %q", e.log, want)
	}
}

// TestClientNumbersItsStreams: each Stream a Client opens carries the
// Client's name and an epoch higher than the last, and two Clients have
// different names.
func TestClientNumbersItsStreams(t *testing.T) {
	ctx := ctxT(t)
	type seen struct {
		name, epoch string
	}
	var mu sync.Mutex
	var streams []seen
	srv := grpc.NewServer(append(ServerOptions(), grpc.StreamInterceptor(
		func(impl any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			md, _ := metadata.FromIncomingContext(ss.Context())
			mu.Lock()
			streams = append(streams, seen{name: firstOf(md.Get(mdStreamClient)), epoch: firstOf(md.Get(mdStreamEpoch))})
			first := len(streams) == 1
			mu.Unlock()
			if first {
				// Once the call is on it, so that it is this call that
				// fails (a stream refused before the call queued would be
				// replaced without a word).
				_ = ss.RecvMsg(new(enginepb.StreamRequest))
				return status.Error(codes.Unavailable, "the first stream breaks")
			}
			return h(impl, ss)
		}))...)
	enginepb.RegisterEngineServer(srv, NewServer(memengine.New()))
	lis := listen(t)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn := dial(t, lis.Addr().String())

	c1, c2 := NewClient(conn), NewClient(conn)
	defer c1.Close()
	defer c2.Close()
	if _, err := c1.Read(ctx, [][]byte{[]byte("k")}); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("read on the breaking stream: %v, want unavailable", err)
	}
	for i, c := range []*Client{c1, c2} {
		if _, err := c.Read(ctx, [][]byte{[]byte("k")}); err != nil {
			t.Fatalf("client %d: read: %v", i+1, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(streams) != 3 {
		t.Fatalf("streams opened: %+v, want 3", streams)
	}
	want := []seen{{c1.name, "1"}, {c1.name, "2"}, {c2.name, "1"}}
	for i := range want {
		if streams[i] != want[i] || want[i].name == "" {
			t.Errorf("stream %d: %+v, want %+v (non-empty name)", i, streams[i], want[i])
		}
	}
	if c1.name == c2.name {
		t.Errorf("two clients share the name %q", c1.name)
	}
}

func firstOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// TestIdleClientsAreForgotten: the server remembers at most maxIdleClients
// clients without an open Stream, forgetting those idle the longest first,
// and never one with an open Stream; a client that keeps reconnecting does
// not make it hold more.
func TestIdleClientsAreForgotten(t *testing.T) {
	var o applyOrder
	nop := func() {}
	live, ok := o.openStream("live", 1, nop)
	if !ok {
		t.Fatal("first stream refused")
	}
	name := func(i int) string { return fmt.Sprint("idle-", i) }
	const n = maxIdleClients + 10
	for i := 0; i < n; i++ {
		st, ok := o.openStream(name(i), 1, nop)
		if !ok {
			t.Fatalf("stream of client %d refused", i)
		}
		o.closeStream(st)
	}
	if got := len(o.clients); got != maxIdleClients+1 {
		t.Errorf("%d clients remembered, want %d idle and the live one", got, maxIdleClients)
	}
	for i := 0; i < n; i++ {
		_, kept := o.clients[name(i)]
		if want := i >= n-maxIdleClients; kept != want {
			t.Errorf("client %d (of %d, in the order they went idle): remembered %v, want %v", i, n, kept, want)
		}
	}
	if _, ok := o.openStream("live", 0, nop); ok {
		t.Error("a stream older than the live one was accepted")
	}
	if _, ok := o.openStream(name(n-1), 0, nop); ok {
		t.Error("a stream older than a remembered idle client's last was accepted")
	}
	for i := 0; i < 10*maxIdleClients; i++ {
		st, _ := o.openStream("reconnecting", uint64(i+1), nop)
		o.closeStream(st)
	}
	if len(o.idle) > 2*maxIdleClients+1 || o.nIdle > maxIdleClients {
		t.Errorf("after many reconnects: %d idle entries, %d live, want at most %d and %d", len(o.idle), o.nIdle, 2*maxIdleClients+1, maxIdleClients)
	}
	o.closeStream(live)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// splitView is a client stream interceptor that plays a lost connection
// whose loss the server has not yet noticed. The first Stream is opened
// with a context the client's cancellation does not reach (so the server
// never hears of its end), and once broken is closed the client's view of
// it fails as if the connection had dropped, while the real Stream stays
// open (until the connection closes); what the server sends on it
// afterwards goes to late.
type splitView struct {
	opened atomic.Int32
	broken chan struct{}
	late   chan lateMsg
}

// lateMsg is what the first Stream received after its break: a message,
// or the error that ended it.
type lateMsg struct {
	resp *enginepb.StreamResponse
	err  error
}

func (v *splitView) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if v.opened.Add(1) != 1 {
		return streamer(ctx, desc, cc, method, opts...)
	}
	cs, err := streamer(context.WithoutCancel(ctx), desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &splitStream{ClientStream: cs, v: v}, nil
}

type splitStream struct {
	grpc.ClientStream
	v *splitView
}

func (s *splitStream) RecvMsg(m any) error {
	got := make(chan error, 1)
	resp := new(enginepb.StreamResponse)
	go func() { got <- s.ClientStream.RecvMsg(resp) }()
	select {
	case err := <-got:
		if err == nil {
			proto.Merge(m.(*enginepb.StreamResponse), resp)
		}
		return err
	case <-s.v.broken:
		go func() {
			for {
				err := <-got
				s.v.late <- lateMsg{resp, err}
				if err != nil {
					return
				}
				resp = new(enginepb.StreamResponse)
				go func() { got <- s.ClientStream.RecvMsg(resp) }()
			}
		}()
		return status.Error(codes.Unavailable, "test: the connection dropped")
	}
}

// holdFirstMessage is a server stream interceptor that, on the Stream of
// epoch 1, reads the first message as it arrives but hands it to the
// handler only once release is closed: a call that reached the server and
// waits there, unread, while its client moves on.
type holdFirstMessage struct {
	arrived chan struct{}
	release chan struct{}
}

func (h *holdFirstMessage) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if _, epoch, ok := streamIdentity(ss.Context()); ok && epoch == 1 {
		ss = &heldStream{ServerStream: ss, h: h}
	}
	return handler(srv, ss)
}

type heldStream struct {
	grpc.ServerStream
	h    *holdFirstMessage
	once sync.Once
}

func (s *heldStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	s.once.Do(func() {
		close(s.h.arrived)
		<-s.h.release
	})
	return err
}

// TestClientStreamFencedEndToEnd: a Client's Stream breaks on its side
// while a delete it sent waits on the server, unread; the Client's next
// write, a put of the same key, goes on a new Stream and lands; then the
// server reads the old delete. It must not run (it would erase the newer
// put; a delete, unlike a put, carries no version the engine could refuse
// as stale): the server answers it as superseded, or ends the old Stream.
func TestClientStreamFencedEndToEnd(t *testing.T) {
	ctx := ctxT(t)
	mem := memengine.New()
	hold := &holdFirstMessage{arrived: make(chan struct{}), release: make(chan struct{})}
	release := sync.OnceFunc(func() { close(hold.release) })
	lis := listen(t)
	srv := grpc.NewServer(append(ServerOptions(), grpc.StreamInterceptor(hold.intercept))...)
	enginepb.RegisterEngineServer(srv, NewServer(mem))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	t.Cleanup(release) // before Stop: a test that fails early leaves no handler held
	view := &splitView{broken: make(chan struct{}), late: make(chan lateMsg, 16)}
	conn, err := grpc.NewClient(lis.Addr().String(), append(DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStreamInterceptor(view.intercept))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := NewClient(conn)
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Handshake(ctx); err != nil {
		t.Fatal(err)
	}

	oldDone := make(chan error, 1)
	go func() {
		_, err := c.Apply(ctx, []engine.Write{{Kind: engine.OpDelete, Key: []byte("k")}}, engine.ApplyOptions{})
		oldDone <- err
	}()
	await(t, "the old delete at the server", hold.arrived)
	close(view.broken)
	if err := await(t, "the old delete's caller", oldDone); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("the delete on the broken stream: %v, want unavailable", err)
	}
	if _, err := c.Apply(ctx, []engine.Write{put("k", "new", 1)}, engine.ApplyOptions{}); err != nil {
		t.Fatalf("the put on the new stream: %v", err)
	}
	if n := view.opened.Load(); n != 2 {
		t.Fatalf("%d streams opened, want 2", n)
	}
	release()

	// The server answers the old delete as fenced off, or ends the old Stream
	// (the fence cancels its context) before it reads the delete's call.
	switch m := await(t, "the old delete's answer or the old stream's end", view.late); {
	case m.err != nil:
		if status.Code(m.err) != codes.Canceled {
			t.Errorf("the old stream ended with %v, want canceled", m.err)
		}
	case len(m.resp.GetAnswers()) != 1:
		t.Errorf("late answers: %v", m.resp.GetAnswers())
	default:
		if err := fromStreamError(m.resp.GetAnswers()[0].GetError()); !errors.Is(err, engine.ErrUnavailable) || !strings.Contains(err.Error(), "superseded") {
			t.Errorf("the old delete's answer: %v, want unavailable, superseded", err)
		}
	}
	es, err := mem.Read(ctx, [][]byte{[]byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	if string(es[0].Value) != "new" || es[0].Version != 1 {
		t.Errorf("k holds %q at version %d, want the newer put's \"new\" at 1", es[0].Value, es[0].Version)
	}
}
