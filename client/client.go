package client

import (
	"context"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flaredb/flaredb/internal/streammux"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// Client is a connection to one FlareDB server. It is safe for concurrent
// use; share one Client rather than creating one per request. Close it when
// done.
type Client struct {
	addr string
	opts options
	conn *grpc.ClientConn
	kv   kvpb.KVClient

	base   context.Context // parent of the streams' contexts; canceled by Close
	cancel context.CancelFunc

	muxes    []*streammux.Mux[*kvpb.StreamResult]
	next     atomic.Uint64 // round robin over muxes
	ids      atomic.Uint64 // request ids on the streams
	noStream atomic.Bool   // the server has no Stream method: use unary calls
	closed   atomic.Bool

	// The bound on one coalesced stream message: opts.maxBytesPerMsg,
	// lowered to the server's limit once learned (learnLimit).
	maxBytes   atomic.Int64
	limitKnown atomic.Bool   // the server's limit is learned, or cannot be
	limitAsk   chan struct{} // held (capacity 1) while asking the server
}

// New returns a client for the server at addr ("host:port", or any gRPC
// target such as "dns:///host:port" or "unix:///path"). Unless
// WithLazyConnect is given, it waits until the connection is up, and fails
// with an error matching ErrUnavailable when the server cannot be reached
// or with ctx.Err() when ctx ends first. ctx bounds only the connection
// attempt, not the Client's life. An invalid address or option gives an
// error matching ErrInvalidArgument.
func New(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	o.ensureDefaults()

	creds := insecure.NewCredentials()
	if o.tls != nil {
		creds = credentials.NewTLS(o.tls)
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(o.maxMsgSize),
			grpc.MaxCallSendMsgSize(o.maxMsgSize),
		),
	}
	dopts = append(dopts, o.dialOpts...)
	conn, err := grpc.NewClient(addr, dopts...)
	if err != nil {
		return nil, invalid("address %q: %v", addr, err)
	}
	c := &Client{
		addr:     addr,
		opts:     o,
		conn:     conn,
		kv:       kvpb.NewKVClient(conn),
		limitAsk: make(chan struct{}, 1),
	}
	c.maxBytes.Store(int64(o.maxBytesPerMsg))
	c.base, c.cancel = context.WithCancel(context.Background())
	c.muxes = make([]*streammux.Mux[*kvpb.StreamResult], o.streams)
	for i := range c.muxes {
		c.muxes[i] = c.newMux()
	}
	if !o.lazy {
		if err := c.waitReady(ctx); err != nil {
			_ = c.Close()
			return nil, err
		}
		c.learnLimit(ctx)
	}
	return c, nil
}

// learnLimit lowers the bound on a coalesced stream message to the
// server's message limit, which Status reports: a larger message would
// break the stream under every call in it. New asks once connected; a
// lazy client, or one whose question failed, asks before its next stream
// call (one caller at a time, under that caller's ctx), until the server
// answers. A server without Status is not asked again, and its limit is
// taken to be the client's.
func (c *Client) learnLimit(ctx context.Context) {
	if c.limitKnown.Load() || c.opts.testHookNoLimit {
		return
	}
	select {
	case c.limitAsk <- struct{}{}:
		defer func() { <-c.limitAsk }()
	case <-ctx.Done():
		return
	}
	if c.limitKnown.Load() {
		return
	}
	resp, err := c.kv.Status(ctx, &kvpb.StatusRequest{})
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			c.limitKnown.Store(true)
		}
		return
	}
	m := resp.GetLimits().GetMaxMessageSize()
	if m > messageHeadroom && m < math.MaxInt32 && c.maxBytes.Load() > int64(m)-messageHeadroom {
		n := max(int(m)-messageHeadroom, 1)
		c.maxBytes.Store(int64(n))
		for _, mx := range c.muxes {
			mx.SetMaxBytes(n)
		}
	}
	c.limitKnown.Store(true)
}

// waitReady waits until the connection is ready, failing on the first
// connection failure.
func (c *Client) waitReady(ctx context.Context) error {
	c.conn.Connect()
	for {
		s := c.conn.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure:
			// A fail-fast call in this state fails at once with
			// Unavailable, without reaching the server, and its error
			// carries the cause of the connection failure. If the
			// connection came up meanwhile, the server answers: any answer
			// but Unavailable means we are connected.
			_, err := c.kv.Status(ctx, &kvpb.StatusRequest{})
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if status.Code(err) == codes.Unavailable {
				return unavailable(fromStatus(ctx, err), "cannot connect to %s", c.addr)
			}
			return nil
		case connectivity.Shutdown:
			return ErrClosed
		}
		if s == connectivity.Idle {
			// Ready, then dropped back to idle between two looks: nothing
			// reconnects an idle channel but a call or Connect.
			c.conn.Connect()
		}
		if !c.conn.WaitForStateChange(ctx, s) {
			return ctx.Err()
		}
	}
}

// Close ends the client: it fails every waiting call with ErrClosed, stops
// the stream goroutines and closes the connection. Later calls return
// ErrClosed. Close is safe to call more than once and concurrently with
// other calls; calls after the first return nil.
func (c *Client) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	for _, m := range c.muxes {
		m.Close()
	}
	c.cancel()
	for _, m := range c.muxes {
		m.Wait()
	}
	return c.conn.Close()
}

// Target returns the address the client was created with.
func (c *Client) Target() string { return c.addr }

// run performs one call, with retries, over the stream or as a unary call.
// op is the call as a stream request (nil for unary-only methods); unary
// performs it as a unary call; take extracts the answer from a stream
// result and reports whether it had the right type. idempotent allows
// retrying a request that may have reached the server.
func (c *Client) run(ctx context.Context, idempotent bool, op *kvpb.StreamOp,
	unary func(ctx context.Context, opts ...grpc.CallOption) error,
	take func(*kvpb.StreamResult) bool,
) error {
	if c.closed.Load() {
		return ErrClosed
	}
	var data []byte
	if op != nil && !c.opts.unary && !c.noStream.Load() {
		c.learnLimit(ctx)
		op.Id = c.ids.Add(1)
		// The server stops waiting for the request when the caller would
		// have (as it does for a unary call's deadline).
		if d, ok := ctx.Deadline(); ok {
			t := time.Until(d)
			if t <= 0 {
				return context.DeadlineExceeded
			}
			op.TimeoutNanos = int64(t)
		}
		b, err := proto.Marshal(&kvpb.StreamRequest{Ops: []*kvpb.StreamOp{op}})
		if err != nil {
			return invalid("encoding request: %v", err)
		}
		if int64(len(b)) <= c.maxBytes.Load() {
			data = b
		}
	}
	err := c.retry(ctx, func() (bool, error) {
		if data != nil && !c.noStream.Load() {
			m := c.muxes[0]
			if len(c.muxes) > 1 {
				m = c.muxes[c.next.Add(1)%uint64(len(c.muxes))]
			}
			r, notSent, err := m.Do(ctx, op.Id, data)
			if err != nil {
				return idempotent || notSent, err
			}
			if e := r.GetError(); e != nil {
				return idempotent, fromStreamError(e)
			}
			if !take(r) {
				return false, internal("unexpected answer to request %d", op.Id)
			}
			return false, nil
		}
		var p peer.Peer
		if err := unary(ctx, grpc.Peer(&p)); err != nil {
			// No peer: the call never got a transport stream, so the
			// request certainly did not leave the client.
			return idempotent || p.Addr == nil, fromStatus(ctx, err)
		}
		return false, nil
	})
	if err != nil && c.closed.Load() {
		return ErrClosed
	}
	return err
}

// retry runs attempt until it succeeds, fails with an error that is not
// Unavailable, fails in a way it says is unsafe to retry (ok false), or the
// policy's attempts or ctx's deadline run out. The pause between attempts
// grows exponentially, with jitter.
func (c *Client) retry(ctx context.Context, attempt func() (ok bool, err error)) error {
	p := c.opts.retry
	backoff := p.InitialBackoff
	for n := 1; ; n++ {
		ok, err := attempt()
		if err == nil {
			return nil
		}
		if !ok || n >= p.MaxAttempts || !retryable(err) || ctx.Err() != nil || c.closed.Load() {
			return err
		}
		d := time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
		if dl, has := ctx.Deadline(); has && time.Until(dl) < d {
			return err
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		backoff = min(time.Duration(float64(backoff)*p.Multiplier), p.MaxBackoff)
	}
}

func retryable(err error) bool {
	e, ok := asError(err)
	return ok && e.Is(ErrUnavailable)
}

func asError(err error) (*Error, bool) {
	e, ok := err.(*Error)
	return e, ok
}

func checkKey(key []byte) error {
	if len(key) == 0 {
		return invalid("empty key")
	}
	return nil
}

// Get returns key's value and version; found is false (and err nil) when the
// key is absent. The returned value belongs to the caller. Get is retried on
// Unavailable errors. An empty key is ErrInvalidArgument.
func (c *Client) Get(ctx context.Context, key []byte) (value []byte, version uint64, found bool, err error) {
	if err := checkKey(key); err != nil {
		return nil, 0, false, err
	}
	req := &kvpb.GetRequest{Key: key}
	var resp *kvpb.GetResponse
	err = c.run(ctx, true, &kvpb.StreamOp{Request: &kvpb.StreamOp_Get{Get: req}},
		func(ctx context.Context, opts ...grpc.CallOption) (err error) {
			resp, err = c.kv.Get(ctx, req, opts...)
			return err
		},
		func(r *kvpb.StreamResult) bool { resp = r.GetGet(); return resp != nil })
	if err != nil {
		return nil, 0, false, err
	}
	if !resp.GetFound() {
		return nil, 0, false, nil
	}
	v := resp.GetValue()
	if v == nil {
		v = []byte{}
	}
	return v, resp.GetVersion(), true, nil
}

// BatchGet returns one entry per key, in order, all read from one
// consistent point in time; an absent key's entry has Version 0 and a nil
// Value. The returned entries belong to the caller. BatchGet is retried on
// Unavailable errors. An empty key is ErrInvalidArgument; no keys gives an
// empty result without a call.
func (c *Client) BatchGet(ctx context.Context, keys [][]byte) ([]KeyValue, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, err
		}
	}
	req := &kvpb.BatchGetRequest{Keys: keys}
	var resp *kvpb.BatchGetResponse
	err := c.run(ctx, true, &kvpb.StreamOp{Request: &kvpb.StreamOp_BatchGet{BatchGet: req}},
		func(ctx context.Context, opts ...grpc.CallOption) (err error) {
			resp, err = c.kv.BatchGet(ctx, req, opts...)
			return err
		},
		func(r *kvpb.StreamResult) bool { resp = r.GetBatchGet(); return resp != nil })
	if err != nil {
		return nil, err
	}
	entries := resp.GetEntries()
	if len(entries) != len(keys) {
		return nil, internal("batch get: %d entries for %d keys", len(entries), len(keys))
	}
	out := make([]KeyValue, len(entries))
	for i, e := range entries {
		kv := KeyValue{Key: e.GetKey(), Value: e.GetValue(), Version: e.GetVersion()}
		if kv.Key == nil {
			kv.Key = append([]byte(nil), keys[i]...)
		}
		if kv.Version != 0 && kv.Value == nil {
			kv.Value = []byte{}
		}
		if kv.Version == 0 {
			kv.Value = nil
		}
		out[i] = kv
	}
	return out, nil
}

// Put sets key to value unconditionally and returns the key's new version
// (and, with WithPrevious, its previous state). WithAsync relaxes
// durability. A Put is retried only when it certainly did not reach the
// server; after an Unavailable error it may or may not have been applied.
// An empty key is ErrInvalidArgument; a key or value beyond the server's
// limits is ErrTooLarge.
func (c *Client) Put(ctx context.Context, key, value []byte, opts ...WriteOption) (PutResult, error) {
	if err := checkKey(key); err != nil {
		return PutResult{}, err
	}
	w := collectWriteOptions(opts)
	if value == nil {
		value = []byte{}
	}
	req := &kvpb.PutRequest{Key: key, Value: value, ReturnPrevious: w.previous, Durability: durability(w)}
	var resp *kvpb.PutResponse
	err := c.run(ctx, false, &kvpb.StreamOp{Request: &kvpb.StreamOp_Put{Put: req}},
		func(ctx context.Context, opts ...grpc.CallOption) (err error) {
			resp, err = c.kv.Put(ctx, req, opts...)
			return err
		},
		func(r *kvpb.StreamResult) bool { resp = r.GetPut(); return resp != nil })
	if err != nil {
		return PutResult{}, err
	}
	res := PutResult{Version: resp.GetVersion(), PreviousVersion: resp.GetPreviousVersion()}
	if res.PreviousVersion != 0 {
		res.PreviousValue = nonNil(resp.GetPreviousValue())
	}
	return res, nil
}

// Delete removes key; deleting an absent key succeeds with Deleted false.
// With WithPrevious it returns the key's previous state; WithAsync relaxes
// durability. It is retried only when it certainly did not reach the
// server. An empty key is ErrInvalidArgument.
func (c *Client) Delete(ctx context.Context, key []byte, opts ...WriteOption) (DeleteResult, error) {
	if err := checkKey(key); err != nil {
		return DeleteResult{}, err
	}
	w := collectWriteOptions(opts)
	req := &kvpb.DeleteRequest{Key: key, ReturnPrevious: w.previous, Durability: durability(w)}
	var resp *kvpb.DeleteResponse
	err := c.run(ctx, false, &kvpb.StreamOp{Request: &kvpb.StreamOp_Delete{Delete: req}},
		func(ctx context.Context, opts ...grpc.CallOption) (err error) {
			resp, err = c.kv.Delete(ctx, req, opts...)
			return err
		},
		func(r *kvpb.StreamResult) bool { resp = r.GetDelete(); return resp != nil })
	if err != nil {
		return DeleteResult{}, err
	}
	res := DeleteResult{Deleted: resp.GetDeleted(), PreviousVersion: resp.GetPreviousVersion()}
	if res.PreviousVersion != 0 {
		res.PreviousValue = nonNil(resp.GetPreviousValue())
	}
	return res, nil
}

// CompareAndSwap writes value to key if cond holds. A failed condition is
// a result with Succeeded false and the key's current value and version, not
// an error. WithAsync relaxes durability; WithPrevious is implied. It is
// retried only when it certainly did not reach the server: after an
// Unavailable error it may or may not have been applied (read the key to
// find out). An empty key is ErrInvalidArgument.
func (c *Client) CompareAndSwap(ctx context.Context, key []byte, cond Condition, value []byte, opts ...WriteOption) (CASResult, error) {
	if value == nil {
		value = []byte{}
	}
	return c.cas(ctx, key, cond, value, false, opts)
}

// CompareAndDelete deletes key if cond holds; otherwise, like
// CompareAndSwap, it returns Succeeded false with the key's current state.
// On success Version is 0 and CurrentValue/CurrentVersion are the deleted
// state.
func (c *Client) CompareAndDelete(ctx context.Context, key []byte, cond Condition, opts ...WriteOption) (CASResult, error) {
	return c.cas(ctx, key, cond, nil, true, opts)
}

func (c *Client) cas(ctx context.Context, key []byte, cond Condition, value []byte, del bool, opts []WriteOption) (CASResult, error) {
	if err := checkKey(key); err != nil {
		return CASResult{}, err
	}
	w := collectWriteOptions(opts)
	req := &kvpb.CompareAndSwapRequest{Key: key, Condition: cond.proto(), Value: value, Delete: del, Durability: durability(w)}
	var resp *kvpb.CompareAndSwapResponse
	err := c.run(ctx, false, &kvpb.StreamOp{Request: &kvpb.StreamOp_Cas{Cas: req}},
		func(ctx context.Context, opts ...grpc.CallOption) (err error) {
			resp, err = c.kv.CompareAndSwap(ctx, req, opts...)
			return err
		},
		func(r *kvpb.StreamResult) bool { resp = r.GetCas(); return resp != nil })
	if err != nil {
		return CASResult{}, err
	}
	res := CASResult{
		Succeeded:      resp.GetSucceeded(),
		Version:        resp.GetVersion(),
		CurrentVersion: resp.GetCurrentVersion(),
	}
	if res.CurrentVersion != 0 {
		res.CurrentValue = nonNil(resp.GetCurrentValue())
	}
	return res, nil
}

// Batch applies ops atomically: if every op's condition holds, every put
// and delete applies with one new version; otherwise nothing applies and
// Succeeded is false (not an error), with ConditionHeld per op saying which
// conditions failed. Results always carry each key's state before the
// batch. WithAsync relaxes durability. Batch is retried only when it
// certainly did not reach the server. Too many ops (see
// ServerStatus.Limits) is ErrTooLarge; an empty key or an unknown OpKind is
// ErrInvalidArgument. The ops' slices are not kept after Batch returns.
func (c *Client) Batch(ctx context.Context, ops []Op, opts ...WriteOption) (BatchResult, error) {
	w := collectWriteOptions(opts)
	req := &kvpb.BatchRequest{Ops: make([]*kvpb.Op, len(ops)), Durability: durability(w)}
	for i, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return BatchResult{}, invalid("op %d: empty key", i)
		}
		p := &kvpb.Op{Key: op.Key, Condition: op.Cond.proto()}
		switch op.Kind {
		case OpPut:
			p.Kind = kvpb.OpKind_OP_PUT
			p.Value = nonNil(op.Value)
		case OpDelete:
			p.Kind = kvpb.OpKind_OP_DELETE
		case OpCheck:
			p.Kind = kvpb.OpKind_OP_CHECK
		default:
			return BatchResult{}, invalid("op %d: unknown kind %v", i, op.Kind)
		}
		req.Ops[i] = p
	}
	var resp *kvpb.BatchResponse
	err := c.run(ctx, false, &kvpb.StreamOp{Request: &kvpb.StreamOp_Batch{Batch: req}},
		func(ctx context.Context, opts ...grpc.CallOption) (err error) {
			resp, err = c.kv.Batch(ctx, req, opts...)
			return err
		},
		func(r *kvpb.StreamResult) bool { resp = r.GetBatch(); return resp != nil })
	if err != nil {
		return BatchResult{}, err
	}
	if len(resp.GetResults()) != len(ops) {
		return BatchResult{}, internal("batch: %d results for %d ops", len(resp.GetResults()), len(ops))
	}
	res := BatchResult{Succeeded: resp.GetSucceeded(), Version: resp.GetVersion(), Results: make([]OpResult, len(ops))}
	for i, r := range resp.GetResults() {
		or := OpResult{ConditionHeld: r.GetConditionHeld(), Version: r.GetVersion()}
		if or.Version != 0 {
			or.Value = nonNil(r.GetValue())
		}
		res.Results[i] = or
	}
	return res, nil
}

// Status describes the server, its engine and its limits. It is retried on
// Unavailable errors.
func (c *Client) Status(ctx context.Context) (ServerStatus, error) {
	var resp *kvpb.StatusResponse
	err := c.run(ctx, true, nil,
		func(ctx context.Context, opts ...grpc.CallOption) (err error) {
			resp, err = c.kv.Status(ctx, &kvpb.StatusRequest{}, opts...)
			return err
		}, nil)
	if err != nil {
		return ServerStatus{}, err
	}
	l := resp.GetLimits()
	return ServerStatus{
		ServerVersion:  resp.GetServerVersion(),
		Engine:         resp.GetEngine(),
		EngineVersion:  resp.GetEngineVersion(),
		EngineMode:     resp.GetEngineMode(),
		EngineProtocol: resp.GetEngineProtocol(),
		Limits: Limits{
			MaxKeySize:     l.GetMaxKeySize(),
			MaxValueSize:   l.GetMaxValueSize(),
			MaxBatchOps:    l.GetMaxBatchOps(),
			MaxMessageSize: l.GetMaxMessageSize(),
			MaxScanLimit:   l.GetMaxScanLimit(),
		},
		SyncDefault: resp.GetSyncDefault(),
		LastVersion: resp.GetLastVersion(),
		Uptime:      time.Duration(resp.GetUptimeSeconds()) * time.Second,
	}, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
