package server_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// deafStore is the reference engine behind a store stuck in I/O: its Apply
// ignores its context and returns only once disk is closed, and Close waits
// for the calls in progress, as kvengine.Adapter does.
type deafStore struct {
	engine.Engine
	disk    chan struct{}
	entered chan struct{} // closed when the first Apply arrives
	once    sync.Once
	calls   sync.WaitGroup
}

func (e *deafStore) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	e.calls.Add(1)
	defer e.calls.Done()
	e.once.Do(func() { close(e.entered) })
	<-e.disk
	return e.Engine.Apply(context.Background(), ws, o)
}

func (e *deafStore) Close() error {
	e.calls.Wait()
	return e.Engine.Close()
}

// TestShutdownWithStuckEngine: an in-process engine stuck in a call that
// ignores contexts does not hold shutdown forever. Past engine.call_timeout,
// shutdown waits while its own context lasts: if the engine comes back
// meanwhile, it closes cleanly and frees the data directory; if not,
// shutdown returns an error saying the engine is stuck and keeps the data
// directory locked, since the stuck call may still write.
func TestShutdownWithStuckEngine(t *testing.T) {
	cases := []struct {
		name            string
		shutdownTimeout time.Duration
		unstickAfter    time.Duration // 0: stays stuck
	}{
		{"stays stuck", 100 * time.Millisecond, 0},
		{"comes back after call_timeout", time.Minute, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { testShutdownWithStuckEngine(t, tc.shutdownTimeout, tc.unstickAfter) })
	}
}

func testShutdownWithStuckEngine(t *testing.T, shutdownTimeout, unstickAfter time.Duration) {
	eng := &deafStore{Engine: memengine.New(), disk: make(chan struct{}), entered: make(chan struct{})}
	var unstick sync.Once
	t.Cleanup(func() { unstick.Do(func() { close(eng.disk) }) })
	dir := t.TempDir()
	srv, err := startTest(t, testServer{
		dataDir: dir,
		name:    "memory",
		open:    func(string) (engine.Engine, error) { return eng, nil },
		config:  func(c *config.Config) { c.Engine.CallTimeout = config.Duration(200 * time.Millisecond) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The put reaches the engine and sticks there (the engine ignores
	// call_timeout's context); the client then gives up on it.
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	put := make(chan error, 1)
	go func() {
		_, err := kvpb.NewKVClient(conn).Put(pctx, &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		put <- err
	}()
	select {
	case <-eng.entered:
	case <-ctx.Done():
		t.Fatal("the put never reached the engine")
	}
	pcancel()
	select {
	case err := <-put:
		if err == nil {
			t.Fatal("a put into the stuck engine succeeded")
		}
	case <-ctx.Done():
		t.Fatal("the put given up on did not return")
	}

	if unstickAfter > 0 {
		// The disk comes back well after call_timeout, within the
		// shutdown timeout.
		time.AfterFunc(unstickAfter, func() { unstick.Do(func() { close(eng.disk) }) })
	}
	done := make(chan error, 1)
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer scancel()
		done <- srv.Shutdown(sctx)
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("shutdown hangs on the stuck engine")
	}
	stuck := unstickAfter == 0
	if stuck != (err != nil && strings.Contains(err.Error(), "a call into the engine is stuck")) {
		t.Fatalf("shutdown: %v; want an error naming the stuck engine: %v", err, stuck)
	}
	if !stuck && err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	// The directory stays locked against another server while the engine
	// is stuck, and is free once it has closed.
	_, err = startTest(t, testServer{dataDir: dir, name: "memory", open: func(string) (engine.Engine, error) { return memengine.New(), nil }})
	if locked := err != nil && strings.Contains(err.Error(), "in use by another FlareDB server"); locked != stuck {
		t.Fatalf("second server on the directory: %v; want it refused: %v", err, stuck)
	}
}
