package client

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

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
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
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
	for i := range 64 {
		v, _, found, err := c.Get(ctx, []byte(fmt.Sprintf("k%02d", i)))
		if err != nil || !found || !bytes.Equal(v, value) {
			t.Fatalf("get k%02d: found=%v err=%v", i, found, err)
		}
	}
}
