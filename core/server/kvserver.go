package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kv"
	"github.com/flaredb/flaredb/core/metrics"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// Version is the server's version string.
const Version = "0.1.0"

// scanPage is the number of entries per ScanResponse message (fewer when
// the values are large: see scanPageBytes).
const (
	scanPage      = 256
	scanPageBytes = 1 << 20
)

// Bounds of the multiplexed stream (Stream).
const (
	// streamInFlight bounds the requests one stream may have in progress;
	// the stream stops reading until some finish.
	streamInFlight = 4096
	// maxResultsPerMsg and maxBytesPerMsg bound the answers coalesced into
	// one StreamResponse (less than maxBytesPerMsg when the message limit
	// is smaller); a single larger answer within the limit is sent alone.
	maxResultsPerMsg = 1024
	maxBytesPerMsg   = 4 << 20
	// answerHeadroom is kept below limits.max_message_size as a margin
	// beyond the exact framing of an answer in a StreamResponse; an answer
	// that does not fit is replaced by a TOO_LARGE error for its request
	// alone. The configuration guarantees max_message_size >= max_key_size
	// + max_value_size + 1 KiB, and an answer carrying one value at the
	// limit is under 100 bytes more than the value, so such answers always
	// fit.
	answerHeadroom = 64
)

// kvServer implements kvpb.KVServer over a kv.Service. Errors are
// translated to status codes here and only here (toStatus).
type kvServer struct {
	kvpb.UnimplementedKVServer
	svc   *kv.Service
	m     *metrics.Metrics
	mode  string
	start time.Time
	// maxMsg is limits.max_message_size, the gRPC send and receive limit;
	// zero or less means none.
	maxMsg int
	// draining, closed when the server begins shutting down, makes every
	// open Stream tell its client (nil: never).
	draining <-chan struct{}
}

func durability(d kvpb.Durability) kv.Durability {
	switch d {
	case kvpb.Durability_DURABILITY_ASYNC:
		return kv.DurabilityAsync
	case kvpb.Durability_DURABILITY_SYNC:
		return kv.DurabilitySync
	}
	return kv.DurabilityDefault
}

func condition(c *kvpb.Condition) (engine.Condition, error) {
	if c == nil {
		return engine.Condition{}, nil
	}
	var k engine.CondKind
	switch c.Kind {
	case kvpb.ConditionKind_CONDITION_NONE:
		k = engine.CondNone
	case kvpb.ConditionKind_CONDITION_VERSION:
		k = engine.CondVersion
	case kvpb.ConditionKind_CONDITION_ABSENT:
		k = engine.CondAbsent
	case kvpb.ConditionKind_CONDITION_EXISTS:
		k = engine.CondExists
	case kvpb.ConditionKind_CONDITION_VALUE:
		k = engine.CondValue
	default:
		return engine.Condition{}, fmt.Errorf("%w: unknown condition kind %d", engine.ErrInvalidArgument, c.Kind)
	}
	return engine.Condition{Kind: k, Version: c.Version, Value: c.Value}, nil
}

func (s *kvServer) get(ctx context.Context, r *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	e, err := s.svc.Get(ctx, r.GetKey())
	if err != nil {
		return nil, err
	}
	return &kvpb.GetResponse{Found: e.Version != 0, Value: e.Value, Version: e.Version}, nil
}

func (s *kvServer) batchGet(ctx context.Context, r *kvpb.BatchGetRequest) (*kvpb.BatchGetResponse, error) {
	es, err := s.svc.BatchGet(ctx, r.GetKeys())
	if err != nil {
		return nil, err
	}
	out := &kvpb.BatchGetResponse{Entries: make([]*kvpb.KeyValue, len(es))}
	for i, e := range es {
		out.Entries[i] = &kvpb.KeyValue{Key: e.Key, Value: e.Value, Version: e.Version}
	}
	return out, nil
}

func (s *kvServer) put(ctx context.Context, r *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	res, err := s.svc.Put(ctx, r.GetKey(), r.GetValue(), durability(r.GetDurability()))
	if err != nil {
		return nil, err
	}
	out := &kvpb.PutResponse{Version: res.Version}
	if r.GetReturnPrevious() {
		out.PreviousValue, out.PreviousVersion = res.Prev.Value, res.Prev.Version
	}
	return out, nil
}

func (s *kvServer) del(ctx context.Context, r *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	res, err := s.svc.Delete(ctx, r.GetKey(), durability(r.GetDurability()))
	if err != nil {
		return nil, err
	}
	out := &kvpb.DeleteResponse{Deleted: res.Prev.Version != 0}
	if r.GetReturnPrevious() {
		out.PreviousValue, out.PreviousVersion = res.Prev.Value, res.Prev.Version
	}
	return out, nil
}

func (s *kvServer) cas(ctx context.Context, r *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, error) {
	cond, err := condition(r.GetCondition())
	if err != nil {
		return nil, err
	}
	w := engine.Write{Kind: engine.OpPut, Key: r.GetKey(), Value: r.GetValue(), Cond: cond}
	if r.GetDelete() {
		w = engine.Write{Kind: engine.OpDelete, Key: r.GetKey(), Cond: cond}
	}
	res, err := s.svc.Write(ctx, w, durability(r.GetDurability()))
	if err != nil {
		return nil, err
	}
	return &kvpb.CompareAndSwapResponse{
		Succeeded:      res.Applied,
		Version:        res.Version,
		CurrentValue:   res.Prev.Value,
		CurrentVersion: res.Prev.Version,
	}, nil
}

func (s *kvServer) batch(ctx context.Context, r *kvpb.BatchRequest) (*kvpb.BatchResponse, error) {
	writes := make([]engine.Write, len(r.GetOps()))
	for i, op := range r.GetOps() {
		cond, err := condition(op.Condition)
		if err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
		w := engine.Write{Key: op.Key, Value: op.Value, Cond: cond}
		switch op.Kind {
		case kvpb.OpKind_OP_PUT:
			w.Kind = engine.OpPut
		case kvpb.OpKind_OP_DELETE:
			w.Kind = engine.OpDelete
		case kvpb.OpKind_OP_CHECK:
			w.Kind = engine.OpCheck
		default:
			return nil, fmt.Errorf("%w: op %d: unknown kind %d", engine.ErrInvalidArgument, i, op.Kind)
		}
		writes[i] = w
	}
	res, err := s.svc.Batch(ctx, writes, durability(r.GetDurability()))
	if err != nil {
		return nil, err
	}
	out := &kvpb.BatchResponse{Succeeded: res.Applied, Version: res.Version, Results: make([]*kvpb.OpResult, len(res.Results))}
	for i, rr := range res.Results {
		out.Results[i] = &kvpb.OpResult{ConditionHeld: rr.Applied, Value: rr.Value, Version: rr.Version}
	}
	return out, nil
}

// Get implements kvpb.KVServer.
func (s *kvServer) Get(ctx context.Context, r *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	out, err := s.get(ctx, r)
	return out, toStatus(err)
}

// BatchGet implements kvpb.KVServer.
func (s *kvServer) BatchGet(ctx context.Context, r *kvpb.BatchGetRequest) (*kvpb.BatchGetResponse, error) {
	out, err := s.batchGet(ctx, r)
	return out, toStatus(err)
}

// Put implements kvpb.KVServer.
func (s *kvServer) Put(ctx context.Context, r *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	out, err := s.put(ctx, r)
	return out, toStatus(err)
}

// Delete implements kvpb.KVServer.
func (s *kvServer) Delete(ctx context.Context, r *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	out, err := s.del(ctx, r)
	return out, toStatus(err)
}

// CompareAndSwap implements kvpb.KVServer.
func (s *kvServer) CompareAndSwap(ctx context.Context, r *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, error) {
	out, err := s.cas(ctx, r)
	return out, toStatus(err)
}

// Batch implements kvpb.KVServer.
func (s *kvServer) Batch(ctx context.Context, r *kvpb.BatchRequest) (*kvpb.BatchResponse, error) {
	out, err := s.batch(ctx, r)
	return out, toStatus(err)
}

// Scan implements kvpb.KVServer: entries are sent in pages of at most
// scanPage entries or about scanPageBytes bytes.
func (s *kvServer) Scan(r *kvpb.ScanRequest, stream kvpb.KV_ScanServer) error {
	o := engine.ScanOptions{Start: r.Start, End: r.End, Reverse: r.Reverse, KeysOnly: r.KeysOnly}
	if r.Limit > uint64(^uint(0)>>1) {
		return toStatus(fmt.Errorf("%w: scan limit %d out of range", engine.ErrInvalidArgument, r.Limit))
	}
	o.Limit = int(r.Limit)
	page := &kvpb.ScanResponse{}
	size := 0
	flush := func() error {
		if len(page.Entries) == 0 {
			return nil
		}
		err := stream.Send(page)
		page = &kvpb.ScanResponse{}
		size = 0
		return err
	}
	err := s.svc.Scan(stream.Context(), o, func(e engine.Entry) error {
		n := len(e.Key) + len(e.Value) + 16
		if len(page.Entries) > 0 && (len(page.Entries) >= scanPage || size+n > scanPageBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		page.Entries = append(page.Entries, &kvpb.KeyValue{Key: e.Key, Value: e.Value, Version: e.Version})
		size += n
		return nil
	})
	if err == nil {
		err = flush()
	}
	return toStatus(err)
}

// Status implements kvpb.KVServer.
func (s *kvServer) Status(ctx context.Context, _ *kvpb.StatusRequest) (*kvpb.StatusResponse, error) {
	d := s.svc.Engine()
	l := s.svc.Limits()
	return &kvpb.StatusResponse{
		ServerVersion:  Version,
		Engine:         d.Name,
		EngineVersion:  d.Version,
		EngineMode:     s.mode,
		EngineProtocol: uint32(d.Protocol),
		Limits: &kvpb.Limits{
			MaxKeySize:     uint64(l.MaxKeySize),
			MaxValueSize:   uint64(l.MaxValueSize),
			MaxBatchOps:    uint64(l.MaxBatchOps),
			MaxMessageSize: uint64(s.maxMsg),
			MaxScanLimit:   uint64(l.MaxScanLimit),
		},
		SyncDefault:   s.svc.SyncDefault(),
		LastVersion:   s.svc.LastVersion(),
		UptimeSeconds: uint64(time.Since(s.start).Seconds()),
	}, nil
}

// streamAnswer is one answer of the multiplexed stream with the bytes it
// adds to a StreamResponse, computed once, by the request's goroutine.
type streamAnswer struct {
	r    *kvpb.StreamResult
	size int
}

// answerLimit returns the most bytes one answer may add to a
// StreamResponse on the stream of ctx: within limits.max_message_size and
// within the client's own receive limit, when its stream declared one (a
// message beyond it would break the client's stream under every request
// on it).
func (s *kvServer) answerLimit(ctx context.Context) int {
	limit, _ := s.msgLimit(ctx)
	if limit <= 0 {
		return math.MaxInt
	}
	return limit - answerHeadroom
}

// msgLimit returns the message limit of the stream of ctx (0: none) and
// the setting it comes from, for error messages.
func (s *kvServer) msgLimit(ctx context.Context) (limit int, from string) {
	limit, from = s.maxMsg, "limits.max_message_size"
	if c, ok := ctx.Value(clientLimitKey{}).(int); ok && c > 0 && (limit <= 0 || c < limit) {
		limit, from = c, "the client's receive limit"
	}
	return limit, from
}

// clientLimitKey is the context key of the receive limit a client declared
// for its stream (kvpb.MaxRecvMessageSizeHeader).
type clientLimitKey struct{}

// withClientLimit returns ctx carrying the receive limit the stream's
// client declared in its metadata, if any.
func withClientLimit(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get(kvpb.MaxRecvMessageSizeHeader) {
		if n, err := strconv.Atoi(v); err == nil && n > answerHeadroom {
			return context.WithValue(ctx, clientLimitKey{}, n)
		}
	}
	return ctx
}

// answer sizes r, the answer to a request that failed with err if err is
// set. An answer too large for one message becomes a TOO_LARGE error (see
// answerTooLarge); the error returned is the request's, for metrics.
func (s *kvServer) answer(ctx context.Context, r *kvpb.StreamResult, err error) (streamAnswer, error) {
	if err == nil {
		n := proto.Size(r)
		if size := resultSize(n); size <= s.answerLimit(ctx) {
			return streamAnswer{r: r, size: size}, nil
		}
		var m proto.Message
		switch x := r.Response.(type) {
		case *kvpb.StreamResult_Put:
			m = x.Put
		case *kvpb.StreamResult_Delete:
			m = x.Delete
		case *kvpb.StreamResult_Cas:
			m = x.Cas
		case *kvpb.StreamResult_Batch:
			m = x.Batch
		}
		limit, from := s.msgLimit(ctx)
		err = answerTooLarge(n, limit, from, applied(m))
	}
	r = &kvpb.StreamResult{Id: r.GetId(), Error: toStreamError(err)}
	return streamAnswer{r: r, size: resultSize(proto.Size(r))}, err
}

// errWriteAnswerTooLarge is the error of a write that was applied but
// whose answer (the keys' previous values) does not fit in a message.
var errWriteAnswerTooLarge = errors.New("write applied, answer too large")

// applied reports whether resp answers a write that changed the store: a
// Put or Delete, or a CompareAndSwap or Batch whose conditions held. Reads
// and writes whose conditions failed changed nothing.
func applied(resp proto.Message) bool {
	switch r := resp.(type) {
	case *kvpb.PutResponse, *kvpb.DeleteResponse:
		return true
	case *kvpb.CompareAndSwapResponse:
		return r.GetSucceeded()
	case *kvpb.BatchResponse:
		return r.GetSucceeded()
	}
	return false
}

// answerTooLarge returns the error for an answer of n bytes beyond the
// message limit. A request that changed nothing (a read, a write whose
// conditions failed) fails as too large (InvalidArgument). A write that was
// applied, and only lost its answer, fails with ResourceExhausted, gRPC's
// code for an oversized message, and says so, so that no one takes it for
// a refused write and retries it. from names the limit's setting.
func answerTooLarge(n, limit int, from string, applied bool) error {
	if applied {
		return fmt.Errorf("%w: %w: the write was applied, but its answer of %d bytes (the previous values) exceeds the %d-byte message limit (%s); "+
			"do not retry it, read the keys with fewer at once", engine.ErrTooLarge, errWriteAnswerTooLarge, n, limit, from)
	}
	return fmt.Errorf("%w: answer of %d bytes exceeds the %d-byte message limit (%s); nothing was changed; ask for fewer keys at once",
		engine.ErrTooLarge, n, limit, from)
}

// resultSize returns the bytes a StreamResult of n encoded bytes adds to a
// StreamResponse: its tag (field 1, results), length and body.
func resultSize(n int) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(n)
}

// Stream implements kvpb.KVServer: the multiplexed stream. Each request
// runs in its own goroutine (so writes from one message join the write
// pipeline together and share one engine call); the Gets of one message
// are read together, in one engine call. Answers are coalesced: the
// sender packs the answers that are ready into one message, up to
// maxResultsPerMsg answers and maxBytesPerMsg bytes (or the message limit
// when smaller). An answer too large for any message fails its own request
// with TOO_LARGE; the stream and its other requests carry on.
//
// A request runs under its own timeout_nanos, if set, and a StreamCancel
// op naming its id cancels it (Gets excepted: those of one message are
// read together, under the latest of their deadlines). Either way it is
// answered DEADLINE_EXCEEDED or CANCELLED without waiting for the engine.
func (s *kvServer) Stream(stream kvpb.KV_StreamServer) error {
	ctx := withClientLimit(stream.Context())
	results := make(chan streamAnswer, 1024)
	sem := make(chan struct{}, streamInFlight)
	inflight := &streamCalls{cancels: make(map[uint64]*context.CancelFunc)}
	var wg sync.WaitGroup
	sendErr := make(chan error, 1)
	senderDone := make(chan struct{})

	go func() {
		defer close(senderDone)
		budget := min(maxBytesPerMsg, s.answerLimit(ctx))
		send := func(msg *kvpb.StreamResponse) bool {
			err := stream.Send(msg)
			if err == nil {
				return true
			}
			select {
			case sendErr <- err:
			default:
			}
			// Keep draining so that handlers never block.
			for range results {
			}
			return false
		}
		// Once the server drains, the client is told (once): it sends new
		// requests on a new stream and half-closes this one when its
		// requests are answered, which ends this handler. Requests that
		// still come are served as usual.
		drain := s.draining
		for {
			var a streamAnswer
			select {
			case r, ok := <-results:
				if !ok {
					return
				}
				a = r
			case <-drain:
				drain = nil
				if !send(&kvpb.StreamResponse{Draining: true}) {
					return
				}
				continue
			}
			msg := &kvpb.StreamResponse{Results: []*kvpb.StreamResult{a.r}}
			size := a.size
		more:
			for len(msg.Results) < maxResultsPerMsg && size < budget {
				select {
				case a2, ok := <-results:
					if !ok {
						break more
					}
					if size+a2.size > budget {
						if !send(msg) {
							return
						}
						msg, size = &kvpb.StreamResponse{}, 0
					}
					msg.Results = append(msg.Results, a2.r)
					size += a2.size
				default:
					break more
				}
			}
			if !send(msg) {
				return
			}
		}
	}()

	finish := func(err error) error {
		wg.Wait()
		close(results)
		<-senderDone
		select {
		case e := <-sendErr:
			return e
		default:
		}
		return err
	}

	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return finish(nil)
		}
		if err != nil {
			return finish(err)
		}
		if s.m != nil {
			s.m.StreamOps.Observe(float64(len(req.Ops)))
		}
		var gets []*kvpb.StreamOp
		for _, op := range req.Ops {
			switch r := op.Request.(type) {
			case *kvpb.StreamOp_Cancel:
				inflight.cancel(op.Id)
				continue
			case *kvpb.StreamOp_Get:
				if r.Get != nil {
					gets = append(gets, op)
					continue
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return finish(ctx.Err())
			}
			octx, done := inflight.start(ctx, op)
			wg.Add(1)
			go func(op *kvpb.StreamOp) {
				defer wg.Done()
				defer func() { <-sem }()
				a := s.streamOne(octx, op)
				done()
				results <- a
			}(op)
		}
		if len(gets) > 0 {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return finish(ctx.Err())
			}
			gctx, cancel := getsContext(ctx, gets)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s.streamGets(gctx, gets, results)
				cancel()
			}()
		}
	}
}

// opContext returns the context of one stream request: the stream's,
// bounded by the request's timeout_nanos when set.
func opContext(ctx context.Context, op *kvpb.StreamOp) (context.Context, context.CancelFunc) {
	if t := op.GetTimeoutNanos(); t > 0 {
		return context.WithTimeout(ctx, time.Duration(t))
	}
	return context.WithCancel(ctx)
}

// getsContext returns the context of the Gets of one message, read
// together: bounded by the latest of their deadlines when every Get has
// one (a Get whose own deadline passed first is answered anyway; its
// client has stopped waiting). Gets are not cancelled one by one.
func getsContext(ctx context.Context, gets []*kvpb.StreamOp) (context.Context, context.CancelFunc) {
	var latest int64
	for _, op := range gets {
		t := op.GetTimeoutNanos()
		if t <= 0 {
			return context.WithCancel(ctx)
		}
		latest = max(latest, t)
	}
	return context.WithTimeout(ctx, time.Duration(latest))
}

// streamCalls holds the cancel function of each request of one stream in
// progress (Gets excepted), by id, for the client's cancel messages.
type streamCalls struct {
	mu      sync.Mutex
	cancels map[uint64]*context.CancelFunc
}

// start returns op's context and the function to call when op is done.
func (c *streamCalls) start(ctx context.Context, op *kvpb.StreamOp) (context.Context, func()) {
	octx, cancel := opContext(ctx, op)
	token := &cancel
	c.mu.Lock()
	if old := c.cancels[op.Id]; old != nil {
		(*old)() // a client reusing an id in progress: the old request loses
	}
	c.cancels[op.Id] = token
	c.mu.Unlock()
	return octx, func() {
		c.mu.Lock()
		if c.cancels[op.Id] == token {
			delete(c.cancels, op.Id)
		}
		c.mu.Unlock()
		cancel()
	}
}

// cancel cancels request id if it is in progress.
func (c *streamCalls) cancel(id uint64) {
	c.mu.Lock()
	cancel := c.cancels[id]
	c.mu.Unlock()
	if cancel != nil {
		(*cancel)()
	}
}

// streamGets answers the Gets of one stream message with one engine read
// when every key is valid, or one by one otherwise.
func (s *kvServer) streamGets(ctx context.Context, ops []*kvpb.StreamOp, results chan<- streamAnswer) {
	start := time.Now()
	if len(ops) > 1 && len(ops) <= s.svc.Limits().MaxBatchOps {
		keys := make([][]byte, len(ops))
		for i, op := range ops {
			keys[i] = op.GetGet().GetKey()
		}
		if es, err := s.svc.BatchGet(ctx, keys); err == nil {
			var failed error
			nFailed := 0
			for i, e := range es {
				a, err := s.answer(ctx, &kvpb.StreamResult{Id: ops[i].Id, Response: &kvpb.StreamResult_Get{
					Get: &kvpb.GetResponse{Found: e.Version != 0, Value: e.Value, Version: e.Version}}}, nil)
				if err != nil {
					failed = err
					nFailed++
				}
				results <- a
			}
			if n := len(ops) - nFailed; n > 0 {
				s.observe("Stream/Get", start, nil, n)
			}
			if nFailed > 0 {
				s.observe("Stream/Get", start, failed, nFailed)
			}
			return
		}
	}
	for _, op := range ops {
		results <- s.streamOne(ctx, op)
	}
}

func (s *kvServer) observe(method string, start time.Time, err error, n int) {
	if s.m == nil {
		return
	}
	code := codes.OK
	if err != nil {
		code, _, _ = classify(err)
	}
	s.m.Requests.WithLabelValues(method, code.String()).Add(float64(n))
	s.m.Latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

// streamOne runs one request of the multiplexed stream and returns its
// answer, sized (see answer).
func (s *kvServer) streamOne(ctx context.Context, op *kvpb.StreamOp) streamAnswer {
	start := time.Now()
	out := &kvpb.StreamResult{Id: op.Id}
	var err error
	var method string
	switch r := op.Request.(type) {
	case *kvpb.StreamOp_Get:
		method = "Stream/Get"
		var resp *kvpb.GetResponse
		if resp, err = s.get(ctx, r.Get); err == nil {
			out.Response = &kvpb.StreamResult_Get{Get: resp}
		}
	case *kvpb.StreamOp_BatchGet:
		method = "Stream/BatchGet"
		var resp *kvpb.BatchGetResponse
		if resp, err = s.batchGet(ctx, r.BatchGet); err == nil {
			out.Response = &kvpb.StreamResult_BatchGet{BatchGet: resp}
		}
	case *kvpb.StreamOp_Put:
		method = "Stream/Put"
		var resp *kvpb.PutResponse
		if resp, err = s.put(ctx, r.Put); err == nil {
			out.Response = &kvpb.StreamResult_Put{Put: resp}
		}
	case *kvpb.StreamOp_Delete:
		method = "Stream/Delete"
		var resp *kvpb.DeleteResponse
		if resp, err = s.del(ctx, r.Delete); err == nil {
			out.Response = &kvpb.StreamResult_Delete{Delete: resp}
		}
	case *kvpb.StreamOp_Cas:
		method = "Stream/CompareAndSwap"
		var resp *kvpb.CompareAndSwapResponse
		if resp, err = s.cas(ctx, r.Cas); err == nil {
			out.Response = &kvpb.StreamResult_Cas{Cas: resp}
		}
	case *kvpb.StreamOp_Batch:
		method = "Stream/Batch"
		var resp *kvpb.BatchResponse
		if resp, err = s.batch(ctx, r.Batch); err == nil {
			out.Response = &kvpb.StreamResult_Batch{Batch: resp}
		}
	default:
		method = "Stream/Unknown"
		err = fmt.Errorf("%w: stream op %d carries no request", engine.ErrInvalidArgument, op.Id)
	}
	// A nil sub-request reaches the handlers as a nil pointer; they read
	// it through the generated getters, which make it an empty request
	// that validation rejects.
	a, err := s.answer(ctx, out, err)
	s.observe(method, start, err, 1)
	return a
}
