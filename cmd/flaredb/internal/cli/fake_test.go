package cli

import (
	"bytes"
	"context"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// fakeServer is a map-backed test double of the FlareDB server, enough for
// the CLI's commands (the client's own tests cover the transport). Keys
// beginning "err/REASON" fail with that reason.
type fakeServer struct {
	kvpb.UnimplementedKVServer

	addr string
	srv  *grpc.Server

	mu      sync.Mutex
	data    map[string]*kvpb.KeyValue
	version uint64

	unaryCalls atomic.Int32
}

func startFake(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{data: map[string]*kvpb.KeyValue{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	f.srv = grpc.NewServer()
	kvpb.RegisterKVServer(f.srv, f)
	go func() { _ = f.srv.Serve(lis) }()
	t.Cleanup(f.srv.Stop)
	return f
}

func reasonCode(reason string) codes.Code {
	switch reason {
	case kvpb.ReasonNotFound:
		return codes.NotFound
	case kvpb.ReasonTooLarge, kvpb.ReasonInvalidArgument:
		return codes.InvalidArgument
	case kvpb.ReasonClosed, kvpb.ReasonUnavailable, kvpb.ReasonShuttingDown:
		return codes.Unavailable
	case kvpb.ReasonUnsupported:
		return codes.Unimplemented
	case kvpb.ReasonCorrupt:
		return codes.DataLoss
	case kvpb.ReasonCanceled:
		return codes.Canceled
	case kvpb.ReasonDeadlineExceeded:
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// kvError is an error as the server's core would produce it.
type kvError struct {
	code   codes.Code
	reason string
	msg    string
}

func (e *kvError) Error() string { return e.msg }

func (e *kvError) status() error {
	st := status.New(e.code, e.msg)
	st, _ = st.WithDetails(&errdetails.ErrorInfo{Domain: kvpb.ErrorDomain, Reason: e.reason})
	return st.Err()
}

func injected(key []byte) error {
	if r, ok := strings.CutPrefix(string(key), "err/"); ok {
		return &kvError{reasonCode(r), r, "injected " + r}
	}
	return nil
}

func unaryErr(err error) error {
	if e, ok := err.(*kvError); ok {
		return e.status()
	}
	return err
}

func (f *fakeServer) cur(key []byte) *kvpb.KeyValue { return f.data[string(key)] }

func holds(cur *kvpb.KeyValue, c *kvpb.Condition) bool {
	switch c.GetKind() {
	case kvpb.ConditionKind_CONDITION_VERSION:
		if cur == nil {
			return c.GetVersion() == 0
		}
		return cur.GetVersion() == c.GetVersion()
	case kvpb.ConditionKind_CONDITION_ABSENT:
		return cur == nil
	case kvpb.ConditionKind_CONDITION_EXISTS:
		return cur != nil
	case kvpb.ConditionKind_CONDITION_VALUE:
		return cur != nil && bytes.Equal(cur.GetValue(), c.GetValue())
	}
	return true
}

func (f *fakeServer) get(r *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	if err := injected(r.GetKey()); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if kv := f.cur(r.GetKey()); kv != nil {
		return &kvpb.GetResponse{Found: true, Value: kv.GetValue(), Version: kv.GetVersion()}, nil
	}
	return &kvpb.GetResponse{}, nil
}

func (f *fakeServer) batchGet(r *kvpb.BatchGetRequest) (*kvpb.BatchGetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &kvpb.BatchGetResponse{}
	for _, k := range r.GetKeys() {
		e := &kvpb.KeyValue{Key: k}
		if kv := f.cur(k); kv != nil {
			e.Value, e.Version = kv.GetValue(), kv.GetVersion()
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, nil
}

func (f *fakeServer) put(r *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	if err := injected(r.GetKey()); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &kvpb.PutResponse{}
	if prev := f.cur(r.GetKey()); prev != nil && r.GetReturnPrevious() {
		resp.PreviousValue, resp.PreviousVersion = prev.GetValue(), prev.GetVersion()
	}
	f.version++
	f.data[string(r.GetKey())] = &kvpb.KeyValue{Key: r.GetKey(), Value: r.GetValue(), Version: f.version}
	resp.Version = f.version
	return resp, nil
}

func (f *fakeServer) del(r *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &kvpb.DeleteResponse{}
	if prev := f.cur(r.GetKey()); prev != nil {
		resp.Deleted = true
		if r.GetReturnPrevious() {
			resp.PreviousValue, resp.PreviousVersion = prev.GetValue(), prev.GetVersion()
		}
		delete(f.data, string(r.GetKey()))
	}
	return resp, nil
}

func (f *fakeServer) cas(r *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, error) {
	if err := injected(r.GetKey()); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.cur(r.GetKey())
	resp := &kvpb.CompareAndSwapResponse{}
	if cur != nil {
		resp.CurrentValue, resp.CurrentVersion = cur.GetValue(), cur.GetVersion()
	}
	if !holds(cur, r.GetCondition()) {
		return resp, nil
	}
	resp.Succeeded = true
	if r.GetDelete() {
		delete(f.data, string(r.GetKey()))
		return resp, nil
	}
	f.version++
	f.data[string(r.GetKey())] = &kvpb.KeyValue{Key: r.GetKey(), Value: r.GetValue(), Version: f.version}
	resp.Version = f.version
	return resp, nil
}

func (f *fakeServer) batch(r *kvpb.BatchRequest) (*kvpb.BatchResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &kvpb.BatchResponse{Succeeded: true}
	for _, op := range r.GetOps() {
		cur := f.cur(op.GetKey())
		res := &kvpb.OpResult{ConditionHeld: holds(cur, op.GetCondition())}
		if cur != nil {
			res.Value, res.Version = cur.GetValue(), cur.GetVersion()
		}
		resp.Succeeded = resp.Succeeded && res.ConditionHeld
		resp.Results = append(resp.Results, res)
	}
	if !resp.Succeeded {
		return resp, nil
	}
	f.version++
	resp.Version = f.version
	for _, op := range r.GetOps() {
		switch op.GetKind() {
		case kvpb.OpKind_OP_PUT:
			f.data[string(op.GetKey())] = &kvpb.KeyValue{Key: op.GetKey(), Value: op.GetValue(), Version: f.version}
		case kvpb.OpKind_OP_DELETE:
			delete(f.data, string(op.GetKey()))
		}
	}
	return resp, nil
}

func (f *fakeServer) Get(_ context.Context, r *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	f.unaryCalls.Add(1)
	resp, err := f.get(r)
	return resp, unaryErr(err)
}

func (f *fakeServer) BatchGet(_ context.Context, r *kvpb.BatchGetRequest) (*kvpb.BatchGetResponse, error) {
	f.unaryCalls.Add(1)
	return f.batchGet(r)
}

func (f *fakeServer) Put(_ context.Context, r *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	f.unaryCalls.Add(1)
	resp, err := f.put(r)
	return resp, unaryErr(err)
}

func (f *fakeServer) Delete(_ context.Context, r *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	f.unaryCalls.Add(1)
	return f.del(r)
}

func (f *fakeServer) CompareAndSwap(_ context.Context, r *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, error) {
	f.unaryCalls.Add(1)
	resp, err := f.cas(r)
	return resp, unaryErr(err)
}

func (f *fakeServer) Batch(_ context.Context, r *kvpb.BatchRequest) (*kvpb.BatchResponse, error) {
	f.unaryCalls.Add(1)
	return f.batch(r)
}

func (f *fakeServer) Scan(r *kvpb.ScanRequest, st grpc.ServerStreamingServer[kvpb.ScanResponse]) error {
	f.mu.Lock()
	var entries []*kvpb.KeyValue
	for _, kv := range f.data {
		if len(r.GetStart()) > 0 && bytes.Compare(kv.GetKey(), r.GetStart()) < 0 {
			continue
		}
		if len(r.GetEnd()) > 0 && bytes.Compare(kv.GetKey(), r.GetEnd()) >= 0 {
			continue
		}
		e := &kvpb.KeyValue{Key: kv.GetKey(), Value: kv.GetValue(), Version: kv.GetVersion()}
		if r.GetKeysOnly() {
			e.Value = nil
		}
		entries = append(entries, e)
	}
	f.mu.Unlock()
	sort.Slice(entries, func(i, j int) bool { return bytes.Compare(entries[i].GetKey(), entries[j].GetKey()) < 0 })
	if r.GetReverse() {
		slices.Reverse(entries)
	}
	if l := r.GetLimit(); l > 0 && uint64(len(entries)) > l {
		entries = entries[:l]
	}
	for len(entries) > 0 { // pages of 3, to exercise paging
		n := min(3, len(entries))
		if err := st.Send(&kvpb.ScanResponse{Entries: entries[:n]}); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

func (f *fakeServer) Status(context.Context, *kvpb.StatusRequest) (*kvpb.StatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &kvpb.StatusResponse{
		ServerVersion: "fake", Engine: "map", EngineMode: "in-process",
		Limits:      &kvpb.Limits{MaxKeySize: 1024, MaxValueSize: 1 << 20, MaxBatchOps: 100},
		SyncDefault: true, LastVersion: f.version, UptimeSeconds: 3,
	}, nil
}

func (f *fakeServer) Stream(st grpc.BidiStreamingServer[kvpb.StreamRequest, kvpb.StreamResponse]) error {
	for {
		req, err := st.Recv()
		if err != nil {
			return nil
		}
		resp := &kvpb.StreamResponse{}
		for _, op := range req.GetOps() {
			resp.Results = append(resp.Results, f.answer(op))
		}
		if err := st.Send(resp); err != nil {
			return err
		}
	}
}

func (f *fakeServer) answer(op *kvpb.StreamOp) *kvpb.StreamResult {
	res := &kvpb.StreamResult{Id: op.GetId()}
	var err error
	switch r := op.GetRequest().(type) {
	case *kvpb.StreamOp_Get:
		var resp *kvpb.GetResponse
		if resp, err = f.get(r.Get); err == nil {
			res.Response = &kvpb.StreamResult_Get{Get: resp}
		}
	case *kvpb.StreamOp_BatchGet:
		var resp *kvpb.BatchGetResponse
		if resp, err = f.batchGet(r.BatchGet); err == nil {
			res.Response = &kvpb.StreamResult_BatchGet{BatchGet: resp}
		}
	case *kvpb.StreamOp_Put:
		var resp *kvpb.PutResponse
		if resp, err = f.put(r.Put); err == nil {
			res.Response = &kvpb.StreamResult_Put{Put: resp}
		}
	case *kvpb.StreamOp_Delete:
		var resp *kvpb.DeleteResponse
		if resp, err = f.del(r.Delete); err == nil {
			res.Response = &kvpb.StreamResult_Delete{Delete: resp}
		}
	case *kvpb.StreamOp_Cas:
		var resp *kvpb.CompareAndSwapResponse
		if resp, err = f.cas(r.Cas); err == nil {
			res.Response = &kvpb.StreamResult_Cas{Cas: resp}
		}
	case *kvpb.StreamOp_Batch:
		var resp *kvpb.BatchResponse
		if resp, err = f.batch(r.Batch); err == nil {
			res.Response = &kvpb.StreamResult_Batch{Batch: resp}
		}
	default:
		err = &kvError{codes.InvalidArgument, kvpb.ReasonInvalidArgument, "empty op"}
	}
	if err != nil {
		e := err.(*kvError)
		res.Error = &kvpb.Error{Code: uint32(e.code), Reason: e.reason, Message: e.msg}
	}
	return res
}
