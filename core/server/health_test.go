package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/server"
	"github.com/flaredb/flaredb/engines/memengine"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// healthEngine is a testEngine with the optional Healthy method.
type healthEngine struct {
	*testEngine
	mu  sync.Mutex
	err error
}

func (e *healthEngine) Healthy() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

func (e *healthEngine) setHealthy(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.err = err
}

// healthOf returns the gRPC health status of service ("" for the server).
func healthOf(t *testing.T, c healthpb.HealthClient, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	r, err := c.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health check %q: %v", service, err)
	}
	return r.Status
}

// waitHealth waits until both the server's and the KV service's status are
// want, and /healthz agrees.
func waitHealth(t *testing.T, srv *server.Server, c healthpb.HealthClient, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	eventually(t, "health "+want.String(), func() bool {
		return healthOf(t, c, "") == want && healthOf(t, c, kvpb.KV_ServiceDesc.ServiceName) == want
	})
	code, body := httpGet(t, "http://"+srv.MetricsAddr().String()+"/healthz")
	if (code == http.StatusOK) != (want == healthpb.HealthCheckResponse_SERVING) {
		t.Fatalf("gRPC health is %v but /healthz answers %d %s", want, code, body)
	}
}

func healthClient(t *testing.T, srv *server.Server) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// watchersLeft reports whether a health watch goroutine is still running.
func watchersLeft() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "server.(*Server).watchHealth")
}

// TestHealthFollowsPluginEngine takes a plugin engine down (its reads fail
// as the plugin host's do once it gave up restarting the plugin) and up
// again: the gRPC health status follows, as /healthz does, and the watch
// ends with Shutdown.
func TestHealthFollowsPluginEngine(t *testing.T) {
	eng := &testEngine{Engine: memengine.New()}
	srv, err := startTest(t, testServer{dataDir: t.TempDir(), name: "plugin", mode: "plugin", open: func(string) (engine.Engine, error) {
		return eng, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := healthClient(t, srv)
	waitHealth(t, srv, c, healthpb.HealthCheckResponse_SERVING)

	eng.failReads(fmt.Errorf("%w: plugin test is down (the host gave up restarting it)", engine.ErrUnavailable))
	waitHealth(t, srv, c, healthpb.HealthCheckResponse_NOT_SERVING)

	eng.failReads(nil)
	waitHealth(t, srv, c, healthpb.HealthCheckResponse_SERVING)

	stopTest(t, srv)
	eventually(t, "the health watch to end", func() bool { return !watchersLeft() })
}

// TestHealthOptionalInterface: an in-process engine with a Healthy method
// is watched too, and its verdict counts even when reads succeed.
func TestHealthOptionalInterface(t *testing.T) {
	eng := &healthEngine{testEngine: &testEngine{Engine: memengine.New()}}
	srv, err := startTest(t, testServer{dataDir: t.TempDir(), name: "memory", open: func(string) (engine.Engine, error) {
		return eng, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := healthClient(t, srv)
	eng.setHealthy(errors.New("test: storage is read-only"))
	waitHealth(t, srv, c, healthpb.HealthCheckResponse_NOT_SERVING)
	eng.setHealthy(nil)
	waitHealth(t, srv, c, healthpb.HealthCheckResponse_SERVING)
	stopTest(t, srv)
	eventually(t, "the health watch to end", func() bool { return !watchersLeft() })
}

// TestShutdownWithHealthWatch: an open gRPC health Watch (as clients with
// client-side health checking keep) is not a request in flight, hears
// NOT_SERVING when the server drains and then ends, so it does not hold
// the drain; /healthz answers 503 during the drain, as gRPC health does.
func TestShutdownWithHealthWatch(t *testing.T) {
	eng := &testEngine{Engine: memengine.New()}
	var log logBuffer
	srv, err := startTest(t, testServer{dataDir: t.TempDir(), name: "memory", log: &log, open: func(string) (engine.Engine, error) {
		return eng, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := callCtx(t)
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v, %v", r, err)
	}
	if v, _ := metric(t, srv, "flaredb_requests_in_flight"); v != "0" {
		t.Fatalf("in flight with only a health watch open: %s", v)
	}

	// A write held in the engine keeps the drain going.
	release := eng.holdWrites()
	defer release()
	put := make(chan error, 1)
	go func() {
		_, err := kvpb.NewKVClient(conn).Put(ctx, &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		put <- err
	}()
	eventually(t, "the put to be in flight", func() bool {
		v, _ := metric(t, srv, "flaredb_requests_in_flight")
		return v == "1"
	})
	shut := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shut <- srv.Shutdown(sctx)
	}()

	// The watch hears NOT_SERVING, then ends, while the write is held.
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch during the drain: %v, %v", r, err)
	}
	if r, err := watch.Recv(); err == nil {
		t.Fatalf("the watch goes on during the drain: %v", r)
	}
	if code, body := httpGet(t, "http://"+srv.MetricsAddr().String()+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Fatalf("/healthz during the drain: %d %s", code, body)
	}
	select {
	case err := <-put:
		t.Fatalf("the held write ended before its release: %v", err)
	default:
	}
	release()
	if err := <-put; err != nil {
		t.Fatalf("the write in flight: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if strings.Contains(log.String(), "shutdown timeout") {
		t.Fatalf("the drain ran into its timeout:\n%s", log.String())
	}
}
