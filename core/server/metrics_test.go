package server_test

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

func streamPut(id uint64, key string) *kvpb.StreamOp {
	return &kvpb.StreamOp{Id: id, Request: &kvpb.StreamOp_Put{Put: &kvpb.PutRequest{Key: []byte(key), Value: []byte("v")}}}
}

// TestStreamMetrics: requests carried by the multiplexed Stream are counted
// once each (Stream/Put), the Stream call itself not at all, and they are in
// flight from their arrival to their answer, whatever the stream does.
func TestStreamMetrics(t *testing.T) {
	eng := &testEngine{Engine: memengine.New()}
	srv, err := startTest(t, testServer{dataDir: t.TempDir(), name: "memory", open: func(string) (engine.Engine, error) {
		return eng, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := kvClient(t, srv)
	inFlight := func() string {
		v, _ := metric(t, srv, "flaredb_requests_in_flight")
		return v
	}

	// Three writes held in the engine: three requests in flight on one
	// stream.
	release := eng.holdWrites()
	t.Cleanup(release)
	st, err := c.Stream(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&kvpb.StreamRequest{Ops: []*kvpb.StreamOp{streamPut(1, "a"), streamPut(2, "b"), streamPut(3, "c")}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "3 requests in flight", func() bool { return inFlight() == "3" })
	release()
	for answered := 0; answered < 3; {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range r.Results {
			if res.Error != nil {
				t.Fatalf("stream put %d: %v", res.Id, res.Error)
			}
		}
		answered += len(r.Results)
	}
	// Answered, the stream still open: nothing in flight.
	eventually(t, "nothing in flight with the stream open", func() bool { return inFlight() == "0" })
	// A cancel (of a request already answered) is no request of its own:
	// it gets no answer and is never in flight; the put after it is
	// answered once both were read.
	cancelOp := &kvpb.StreamOp{Id: 1, Request: &kvpb.StreamOp_Cancel{Cancel: &kvpb.StreamCancel{}}}
	if err := st.Send(&kvpb.StreamRequest{Ops: []*kvpb.StreamOp{cancelOp, streamPut(4, "d")}}); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); err != nil || len(r.Results) != 1 || r.Results[0].Id != 4 {
		t.Fatalf("after a cancel and a put: %v %v", r, err)
	}
	eventually(t, "nothing in flight after a cancel", func() bool { return inFlight() == "0" })
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v", err)
	}

	// One unary Put beside them.
	if _, err := c.Put(callCtx(t), &kvpb.PutRequest{Key: []byte("u"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]string{
		`flaredb_requests_total{code="OK",method="Stream/Put"}`: "4",
		`flaredb_requests_total{code="OK",method="Put"}`:        "1",
		`flaredb_requests_in_flight`:                            "0",
	} {
		if got, _ := metric(t, srv, series); got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}

	// A stream cancelled with a request in progress leaves nothing in
	// flight, whether its answer was sent or not.
	sctx, cancel := context.WithCancel(callCtx(t))
	defer cancel()
	st2, err := c.Stream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	release = eng.holdWrites()
	t.Cleanup(release)
	if err := st2.Send(&kvpb.StreamRequest{Ops: []*kvpb.StreamOp{streamPut(4, "d")}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "1 request in flight", func() bool { return inFlight() == "1" })
	cancel()
	release()
	eventually(t, "nothing in flight after the cancelled stream", func() bool { return inFlight() == "0" })

	for _, code := range []string{"OK", "Canceled", "Unknown"} {
		series := fmt.Sprintf(`flaredb_requests_total{code=%q,method="Stream"}`, code)
		if got, ok := metric(t, srv, series); ok {
			t.Errorf("%s = %s: the Stream call is counted as a request", series, got)
		}
	}
}

// restartingEngine is a testEngine supervised like a plugin: it reports
// its restarts.
type restartingEngine struct {
	*testEngine
	restarts atomic.Int32
}

func (e *restartingEngine) Restarts() int { return int(e.restarts.Load()) }

// TestEngineRestartsMetric: a supervised engine's restarts are exported;
// an engine without supervision has no such series.
func TestEngineRestartsMetric(t *testing.T) {
	eng := &restartingEngine{testEngine: &testEngine{Engine: memengine.New()}}
	srv, err := startTest(t, testServer{dataDir: t.TempDir(), name: "plugin", mode: "plugin", open: func(string) (engine.Engine, error) {
		return eng, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	eng.restarts.Store(3)
	if got, _ := metric(t, srv, "flaredb_engine_restarts_total"); got != "3" {
		t.Fatalf("flaredb_engine_restarts_total = %q, want 3", got)
	}
	stopTest(t, srv)

	plain, err := startTest(t, testServer{dataDir: t.TempDir(), name: "memory", open: func(string) (engine.Engine, error) {
		return &testEngine{Engine: memengine.New()}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := metric(t, plain, "flaredb_engine_restarts_total"); ok {
		t.Fatalf("an unsupervised engine exports restarts: %q", got)
	}
	stopTest(t, plain)
}

// TestHealthChecksAreNotEngineReads: health probes read through the
// engine, but do not count among its reads in the metrics.
func TestHealthChecksAreNotEngineReads(t *testing.T) {
	srv, err := startTest(t, testServer{dataDir: t.TempDir(), name: "memory", open: func(string) (engine.Engine, error) {
		return &testEngine{Engine: memengine.New()}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer stopTest(t, srv)
	const series = `flaredb_engine_call_duration_seconds_count{op="read"}`
	before, _ := metric(t, srv, series)
	for range 5 {
		if code, body := httpGet(t, "http://"+srv.MetricsAddr().String()+"/healthz"); code != 200 {
			t.Fatalf("/healthz: %d %s", code, body)
		}
	}
	if after, _ := metric(t, srv, series); after != before {
		t.Fatalf("%s went from %q to %q over 5 health checks", series, before, after)
	}
	if _, err := kvClient(t, srv).Get(callCtx(t), &kvpb.GetRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	if after, _ := metric(t, srv, series); after == before {
		t.Fatalf("%s did not count a client's read", series)
	}
}
