package client

import (
	"context"
	"io"
	"net"
	"path"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// The tests run against the real server (internal/servertest). This file
// holds the real parts they put around it: a counter of the client's RPCs,
// a TCP proxy that can cut connections, a server without the Stream method,
// and a context whose deadline passes on demand.

// callCounter counts the RPCs a client makes, through its own dial options:
// unary calls by method, and streams opened.
type callCounter struct {
	mu      sync.Mutex
	unary   map[string]int // by method name: "Get", "Put", ...
	streams int
}

func (cc *callCounter) option() Option {
	return WithDialOptions(
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			cc.mu.Lock()
			if cc.unary == nil {
				cc.unary = map[string]int{}
			}
			cc.unary[path.Base(method)]++
			cc.mu.Unlock()
			return invoker(ctx, method, req, reply, conn, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, conn *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			st, err := streamer(ctx, desc, conn, method, opts...)
			if err == nil && method == kvpb.KV_Stream_FullMethodName {
				cc.mu.Lock()
				cc.streams++
				cc.mu.Unlock()
			}
			return st, err
		}),
	)
}

// calls returns the number of unary calls of method so far.
func (cc *callCounter) calls(method string) int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.unary[method]
}

// unaryKV returns the number of unary KV calls so far (Scan and Status
// excluded).
func (cc *callCounter) unaryKV() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	n := 0
	for _, m := range []string{"Get", "BatchGet", "Put", "Delete", "CompareAndSwap", "Batch"} {
		n += cc.unary[m]
	}
	return n
}

// opened returns the number of streams opened so far.
func (cc *callCounter) opened() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.streams
}

// proxy is a TCP proxy on 127.0.0.1 in front of a server. cut closes the
// connections open through it, as a network failure would; new
// connections go through.
type proxy struct {
	addr   string
	target string
	lis    net.Listener
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: lis.Addr().String(), target: target, lis: lis}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		lis.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		down, err := p.lis.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, down, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, down)
		go p.pipe(down, up)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// cut closes every connection open through the proxy.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// unaryOnly is a KV server without the Stream method, like a server from
// before the stream: it forwards the unary calls to a real server through a
// real client connection (Scan is not forwarded).
type unaryOnly struct {
	kvpb.UnimplementedKVServer
	addr  string
	kv    kvpb.KVClient
	calls atomic.Int32 // unary KV calls forwarded (Status excluded)
}

func startUnaryOnly(t *testing.T, backend string) *unaryOnly {
	t.Helper()
	conn, err := grpc.NewClient(backend, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &unaryOnly{addr: lis.Addr().String(), kv: kvpb.NewKVClient(conn)}
	srv := grpc.NewServer()
	kvpb.RegisterKVServer(srv, u)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
		conn.Close()
	})
	return u
}

// forward counts one unary KV call and forwards it.
func forward[Req, Resp any](u *unaryOnly, call func(context.Context, Req, ...grpc.CallOption) (Resp, error), ctx context.Context, r Req) (Resp, error) {
	u.calls.Add(1)
	return call(ctx, r)
}

func (u *unaryOnly) Get(ctx context.Context, r *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	return forward(u, u.kv.Get, ctx, r)
}

func (u *unaryOnly) BatchGet(ctx context.Context, r *kvpb.BatchGetRequest) (*kvpb.BatchGetResponse, error) {
	return forward(u, u.kv.BatchGet, ctx, r)
}

func (u *unaryOnly) Put(ctx context.Context, r *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	return forward(u, u.kv.Put, ctx, r)
}

func (u *unaryOnly) Delete(ctx context.Context, r *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	return forward(u, u.kv.Delete, ctx, r)
}

func (u *unaryOnly) CompareAndSwap(ctx context.Context, r *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, error) {
	return forward(u, u.kv.CompareAndSwap, ctx, r)
}

func (u *unaryOnly) Batch(ctx context.Context, r *kvpb.BatchRequest) (*kvpb.BatchResponse, error) {
	return forward(u, u.kv.Batch, ctx, r)
}

func (u *unaryOnly) Status(ctx context.Context, r *kvpb.StatusRequest) (*kvpb.StatusResponse, error) {
	return u.kv.Status(ctx, r)
}

// expiringCtx is a context whose deadline passes when the test calls
// expire, so that a call can first be seen to reach the server.
type expiringCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newExpiringCtx() *expiringCtx {
	return &expiringCtx{Context: context.Background(), done: make(chan struct{})}
}

func (c *expiringCtx) Done() <-chan struct{} { return c.done }

func (c *expiringCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (c *expiringCtx) expire() { c.once.Do(func() { close(c.done) }) }
