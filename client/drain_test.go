package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flaredb/flaredb/internal/servertest"
)

// TestShutdownDrainsStreams: a server shutting down tells each open stream;
// the client half-closes it once its requests are answered (a write held
// in the engine meanwhile still gets its answer), so that the graceful
// shutdown ends instead of waiting out its timeout for a client that keeps
// its stream open.
func TestShutdownDrainsStreams(t *testing.T) {
	for _, m := range []struct {
		name string
		opts []Option
	}{{"stream", nil}, {"streams4", []Option{WithStreams(4)}}} {
		t.Run(m.name, func(t *testing.T) {
			srv := servertest.Start(t, nil)
			c := dial(t, srv.Addr, m.opts...)
			ctx := testCtx(t)
			for _, k := range []string{"a", "b", "c", "d"} { // open the streams
				if _, err := c.Put(ctx, []byte(k), []byte("1")); err != nil {
					t.Fatal(err)
				}
			}
			hold, put := heldPut(t, ctx, srv, c, "slow")
			shut := make(chan error, 1)
			go func() {
				sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				shut <- srv.Shutdown(sctx)
			}()
			hold.Release()
			if err := <-put; err != nil {
				t.Errorf("the write in flight when the shutdown began: %v", err)
			}
			// A hang bound (the shutdown timeout is a minute), not a speed.
			select {
			case err := <-shut:
				if err != nil {
					t.Errorf("shutdown: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("shutdown still waiting after 30s: the client's stream was not drained")
			}
			if _, err := c.Put(ctx, []byte("after"), []byte("x")); err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("put after the shutdown: %v, want an error from the server's absence", err)
			}
		})
	}
}
