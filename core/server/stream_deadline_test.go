package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// stalledWrites is the reference engine whose Apply does not answer until
// released (or its context ends), like a plugin stuck on a write; reads
// answer as usual.
type stalledWrites struct {
	engine.Engine
	release chan struct{}
}

func (e *stalledWrites) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	select {
	case <-e.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return e.Engine.Apply(ctx, ws, o)
}

// TestStreamRequestDeadlineAndCancel: on the multiplexed stream a request
// carries its caller's remaining time and can be cancelled by id; either
// way its answer comes without waiting for a stuck engine, and the stream
// keeps serving other requests.
func TestStreamRequestDeadlineAndCancel(t *testing.T) {
	eng := &stalledWrites{Engine: memengine.New(), release: make(chan struct{})}
	srv, err := startTest(t, testServer{dataDir: t.TempDir(), name: "memory", open: func(string) (engine.Engine, error) { return eng, nil }})
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: the stuck writes finish, then shutdown drains.
	t.Cleanup(func() { close(eng.release) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := kvpb.NewKVClient(conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put := func(id uint64, key string, timeout time.Duration) *kvpb.StreamOp {
		return &kvpb.StreamOp{Id: id, TimeoutNanos: int64(timeout),
			Request: &kvpb.StreamOp_Put{Put: &kvpb.PutRequest{Key: []byte(key), Value: []byte("v")}}}
	}
	send := func(ops ...*kvpb.StreamOp) {
		t.Helper()
		if err := st.Send(&kvpb.StreamRequest{Ops: ops}); err != nil {
			t.Fatal(err)
		}
	}
	// next returns the next answer; the test's context bounds the wait.
	next := func() *kvpb.StreamResult {
		t.Helper()
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Results) != 1 {
			t.Fatalf("%d answers in one message, want 1: %v", len(resp.Results), resp.Results)
		}
		return resp.Results[0]
	}

	// A write with a deadline: answered DEADLINE_EXCEEDED, not held.
	send(put(1, "a", 50*time.Millisecond))
	if r := next(); r.Id != 1 || codes.Code(r.GetError().GetCode()) != codes.DeadlineExceeded {
		t.Fatalf("write with a deadline: %v", r)
	}
	// A write without one, then its cancel: answered CANCELLED.
	send(put(2, "b", 0))
	send(&kvpb.StreamOp{Id: 2, Request: &kvpb.StreamOp_Cancel{Cancel: &kvpb.StreamCancel{}}})
	if r := next(); r.Id != 2 || codes.Code(r.GetError().GetCode()) != codes.Canceled {
		t.Fatalf("cancelled write: %v", r)
	}
	// A cancel of an id not in progress changes nothing and gets no answer;
	// reads still work on the same stream.
	send(&kvpb.StreamOp{Id: 99, Request: &kvpb.StreamOp_Cancel{Cancel: &kvpb.StreamCancel{}}},
		&kvpb.StreamOp{Id: 3, Request: &kvpb.StreamOp_Get{Get: &kvpb.GetRequest{Key: []byte("a")}}})
	if r := next(); r.Id != 3 || r.GetError() != nil {
		t.Fatalf("get: %v", r)
	}
}
