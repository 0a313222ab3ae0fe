package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flaredb/flaredb/internal/servertest"
)

// TestServerStopsWaitingForAbandonedRequests: a stream request carries its
// caller's deadline, and a request whose caller gives up is cancelled on the
// server too; either way the server answers it while the engine still holds
// the pipeline, instead of keeping it until the engine lets go.
func TestServerStopsWaitingForAbandonedRequests(t *testing.T) {
	srv := servertest.Start(t, nil)
	c := dial(t, srv.Addr)
	ctx := testCtx(t)
	// The write pipeline is one queue: hold one write in the engine, and
	// the writes below wait behind it, on the server, until released.
	first := srv.Faults.Hold([]byte("first"))
	go func() { _, _ = c.Put(ctx, []byte("first"), []byte("v")) }()
	if err := first.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	defer first.Release()

	// answered waits until the server has answered n Stream/Puts as
	// abandoned: DEADLINE_EXCEEDED when the request's own deadline passed
	// first on the server, CANCELLED when the client's cancel came first.
	answered := func(n float64) {
		t.Helper()
		count := func() float64 {
			m := srv.Metrics()
			return m[`flaredb_requests_total{code="DeadlineExceeded",method="Stream/Put"}`] +
				m[`flaredb_requests_total{code="Canceled",method="Stream/Put"}`]
		}
		for deadline := time.Now().Add(time.Minute); count() < n; {
			if time.Now().After(deadline) {
				t.Fatalf("the server answered %v abandoned Puts, want %v, while the engine held the pipeline", count(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// onServer waits until the server holds n requests.
	onServer := func(n float64, what string, done <-chan error) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); srv.Metrics()["flaredb_requests_in_flight"] < n; {
			select {
			case err := <-done:
				t.Fatalf("%s ended before reaching the server: %v", what, err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached the server", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	late := make(chan error, 1)
	go func() { _, err := c.Put(short, []byte("late"), []byte("v")); late <- err }()
	onServer(2, "the write with a deadline", late)
	if err := <-late; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put with a deadline: %v", err)
	}
	answered(1)
	// The answer is counted before the request leaves in_flight: wait for
	// that, so that onServer(2) below sees the next write, not this one.
	for deadline := time.Now().Add(time.Minute); srv.Metrics()["flaredb_requests_in_flight"] > 1; {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned write is still in flight on the server")
		}
		time.Sleep(10 * time.Millisecond)
	}

	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := c.Put(cctx, []byte("cancelled"), []byte("v")); done <- err }()
	onServer(2, "the write to cancel", done)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled put: %v", err)
	}
	answered(2)
}
