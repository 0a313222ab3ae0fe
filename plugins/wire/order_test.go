package wire

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// stallDeletes is an engine whose deletes wait for release, ignoring their
// context (an engine stuck in its storage), after signalling entered.
type stallDeletes struct {
	engine.Engine
	entered chan struct{}
	release chan struct{}
}

func (e *stallDeletes) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	for _, w := range ws {
		if w.Kind == engine.OpDelete {
			e.entered <- struct{}{}
			<-e.release
			break
		}
	}
	return e.Engine.Apply(context.WithoutCancel(ctx), ws, o)
}

// TestLateApplyIsNotOvertaken: a delete the client gave up on while the
// engine still runs it must not be overtaken by the next write of its key:
// the put sent after it reaches the engine only once the delete has
// returned, so the put, acknowledged last, is what stays. Writes of other
// keys do not wait.
func TestLateApplyIsNotOvertaken(t *testing.T) {
	e := &stallDeletes{Engine: memengine.New(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv := NewServer(e)
	_, addr := serveOn(t, srv)
	c := NewClient(dial(t, addr))
	defer c.Close()
	// On a failure below, the stalled delete must end before the server
	// stops.
	var once sync.Once
	release := func() { once.Do(func() { close(e.release) }) }
	defer release()
	ctx := ctxT(t)
	if _, err := c.Apply(ctx, []engine.Write{put("k", "v1", 1)}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	// The client gives up on the delete while the engine runs it.
	abandon, cancel := context.WithCancel(ctx)
	defer cancel()
	deleted := make(chan error, 1)
	go func() {
		_, err := c.Apply(abandon, []engine.Write{{Kind: engine.OpDelete, Key: []byte("k")}}, engine.ApplyOptions{})
		deleted <- err
	}()
	await(t, "the delete in the engine", e.entered)
	cancel()
	if err := await(t, "the abandoned delete", deleted); !errors.Is(err, context.Canceled) {
		t.Fatalf("stalled delete: %v, want its cancellation", err)
	}

	// Another key does not wait for the stalled delete.
	if _, err := c.Apply(ctx, []engine.Write{put("other", "x", 2)}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var putErr error
	var putDone atomic.Bool
	go func() {
		defer wg.Done()
		_, putErr = c.Apply(ctx, []engine.Write{put("k", "v2", 3)}, engine.ApplyOptions{})
		putDone.Store(true)
	}()
	// Once the put has arrived (two Applies of "k" admitted) or returned,
	// let the late delete finish.
	waitUntil(t, func() bool {
		srv.order.mu.Lock()
		defer srv.order.mu.Unlock()
		return len(srv.order.running) == 2 || putDone.Load()
	})
	release()
	wg.Wait()
	if putErr != nil {
		t.Fatalf("put after the late delete: %v", putErr)
	}
	es, err := c.Read(ctx, [][]byte{[]byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	if string(es[0].Value) != "v2" || es[0].Version != 3 {
		t.Fatalf("k = %q version %d: the late delete overtook the put acknowledged after it", es[0].Value, es[0].Version)
	}
}

// waitUntil polls cond for up to a minute (a hang, not a measure of speed).
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition still false after a minute")
		}
		time.Sleep(time.Millisecond)
	}
}

// countApplies is the reference engine counting the Apply calls it gets.
type countApplies struct {
	engine.Engine
	calls atomic.Int32
}

func (e *countApplies) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	e.calls.Add(1)
	return e.Engine.Apply(ctx, ws, o)
}

// TestEndedApplyDoesNotStart: an Apply whose context ended before it
// started (one read from a stream the client had already reset) never
// reaches the engine, whether or not it had to wait for another, and
// leaves the order.
func TestEndedApplyDoesNotStart(t *testing.T) {
	for _, behind := range []bool{false, true} {
		e := &countApplies{Engine: memengine.New()}
		srv := NewServer(e)
		req := &enginepb.ApplyRequest{ProtocolVersion: engine.ProtocolVersion, Writes: writesToPB([]engine.Write{put("k", "v", 1)})}
		var earlier *ticket
		if behind {
			earlier, _ = srv.order.admit(nil, req.GetWrites())
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		late, _ := srv.order.admit(nil, req.GetWrites())
		if _, err := srv.apply(ctx, req, late); !errors.Is(err, context.Canceled) {
			t.Errorf("behind another: %v: apply with an ended context: %v, want context.Canceled", behind, err)
		}
		srv.order.finish(earlier)
		if n := e.calls.Load(); n != 0 {
			t.Errorf("behind another: %v: %d engine Applies, want none", behind, n)
		}
		if n := len(srv.order.running); n != 0 {
			t.Errorf("behind another: %v: %d Applies left in the order", behind, n)
		}
	}
}
