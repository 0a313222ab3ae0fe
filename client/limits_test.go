package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/internal/servertest"
)

// TestCoalescingFitsTheMessageLimit: with a message limit below the default
// coalescing bound, concurrent writes are still packed into messages the
// client may send; none breaks the stream (which would leave every write in
// it of unknown outcome).
func TestCoalescingFitsTheMessageLimit(t *testing.T) {
	srv := servertest.Start(t, nil)
	c := dial(t, srv.Addr, WithMaxMessageSize(64<<10))
	ctx := testCtx(t)
	value := bytes.Repeat([]byte("v"), 4<<10)
	putConcurrently(t, ctx, c, 64, value)
	for i := range 64 {
		v, _, found, err := c.Get(ctx, []byte(fmt.Sprintf("k%02d", i)))
		if err != nil || !found || !bytes.Equal(v, value) {
			t.Fatalf("get k%02d: found=%v err=%v", i, found, err)
		}
	}
}

// TestAnswerWithinClientLimit: an answer larger than the client accepts
// (its limit is below the server's) fails its own request with ErrTooLarge;
// it does not break the stream under the other requests on it.
func TestAnswerWithinClientLimit(t *testing.T) {
	srv := servertest.Start(t, nil)
	var cc callCounter
	c := dial(t, srv.Addr, cc.option(), WithMaxMessageSize(64<<10))
	ctx := testCtx(t)
	big := bytes.Repeat([]byte("b"), 100<<10) // stored behind the client's back
	if _, err := srv.Faults.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: []byte("big"), Value: big, Version: 1}}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	hold, put := heldPut(t, ctx, srv, c, "slow")
	if _, _, _, err := c.Get(ctx, []byte("big")); !errors.Is(err, ErrTooLarge) {
		t.Errorf("get of a value beyond the client's limit: %v, want ErrTooLarge", err)
	}
	hold.Release()
	if err := <-put; err != nil {
		t.Errorf("the write on the same stream: %v", err)
	}
	if n := cc.opened(); n != 1 {
		t.Errorf("%d streams opened, want 1 (none broken)", n)
	}
}

// TestCoalescingFitsTheServerLimit: with a server whose message limit is
// below the client's coalescing bound, the client learns it when it
// connects and packs concurrent writes into messages the server accepts.
func TestCoalescingFitsTheServerLimit(t *testing.T) {
	srv := servertest.Start(t, &servertest.Options{Config: func(c *config.Config) {
		c.Limits.MaxKeySize = 1 << 10
		c.Limits.MaxValueSize = 32 << 10
		c.Limits.MaxMessageSize = 64 << 10
	}})
	value := bytes.Repeat([]byte("v"), 4<<10)
	// New asks the limit; a lazy client asks before its first stream call.
	for _, lazy := range []bool{false, true} {
		t.Run(fmt.Sprintf("lazy=%v", lazy), func(t *testing.T) {
			var opts []Option
			if lazy {
				opts = append(opts, WithLazyConnect())
			}
			c := dial(t, srv.Addr, opts...)
			putConcurrently(t, testCtx(t), c, 64, value)
		})
	}
}

// putConcurrently puts keys k00, k01, ... (n of them) with value from n
// goroutines at once, failing t for each put that fails.
func putConcurrently(t *testing.T, ctx context.Context, c *Client, n int, value []byte) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Put(ctx, []byte(fmt.Sprintf("k%02d", i)), value); err != nil {
				errs <- fmt.Errorf("put %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// heldPut starts a Put of key that the server's engine holds, and returns
// once it is held: release the hold, then read the Put's error from the
// channel.
func heldPut(t *testing.T, ctx context.Context, srv *servertest.Server, c *Client, key string) (*servertest.Hold, <-chan error) {
	t.Helper()
	hold := srv.Faults.Hold([]byte(key))
	put := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, []byte(key), []byte("v"))
		put <- err
	}()
	select {
	case <-hold.Arrived():
	case <-ctx.Done():
		t.Fatal("the held write never reached the engine")
	}
	return hold, put
}
