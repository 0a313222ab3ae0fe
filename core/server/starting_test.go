package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/flaredb/flaredb/client"
	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/server"
	"github.com/flaredb/flaredb/engines/memengine"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// freeAddr returns a 127.0.0.1 address nothing listens on (just now).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestServesWhileStarting: while the engine opens (a plugin starting,
// RocksDB replaying its log), the server already answers on its
// addresses: health NOT_SERVING, /healthz 503, and every KV call, unary or
// the multiplexed Stream, UNAVAILABLE saying the server is starting; once
// the engine is open it serves. A start that fails then closes the
// addresses.
func TestServesWhileStarting(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "opens", true: "fails"}[fail], func(t *testing.T) {
			cfg := config.Default()
			cfg.Listen, cfg.MetricsListen = freeAddr(t), freeAddr(t)
			cfg.DataDir = t.TempDir()
			cfg.Engine.Name = "memory"
			opening, proceed := make(chan struct{}), make(chan struct{})
			openers := server.Openers{"memory": {Mode: "in-process", Open: func(context.Context, config.Config, string, *slog.Logger) (engine.Engine, error) {
				close(opening)
				<-proceed
				if fail {
					return nil, errors.New("the engine cannot open")
				}
				return memengine.New(), nil
			}}}
			type started struct {
				srv *server.Server
				err error
			}
			done := make(chan started, 1)
			go func() {
				srv, err := server.Start(context.Background(), cfg, openers, slog.New(slog.NewTextHandler(io.Discard, nil)))
				done <- started{srv, err}
			}()
			select {
			case <-opening:
			case r := <-done:
				t.Fatalf("Start returned before opening the engine: %v", r.err)
			}
			released := false
			defer func() {
				if !released {
					close(proceed)
					if r := <-done; r.srv != nil {
						stopTest(t, r.srv)
					}
				}
			}()

			conn, err := grpc.NewClient(cfg.Listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			hc := healthpb.NewHealthClient(conn)
			for _, svc := range []string{"", kvpb.KV_ServiceDesc.ServiceName} {
				if st := healthOf(t, hc, svc); st != healthpb.HealthCheckResponse_NOT_SERVING {
					t.Errorf("health %q while starting = %v, want NOT_SERVING", svc, st)
				}
			}
			if code, body := httpGet(t, "http://"+cfg.MetricsListen+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
				t.Errorf("/healthz while starting = %d %q, want 503 starting", code, body)
			}
			starting := func(what string, err error) {
				t.Helper()
				if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "the server is starting") {
					t.Errorf("%s while starting = %v, want UNAVAILABLE: the server is starting", what, err)
				}
			}
			kc := kvpb.NewKVClient(conn)
			_, err = kc.Get(callCtx(t), &kvpb.GetRequest{Key: []byte("k")})
			starting("unary Get", err)
			_, err = kc.Put(callCtx(t), &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")})
			starting("unary Put", err)
			if st, err := kc.Stream(callCtx(t)); err != nil {
				starting("Stream", err)
			} else {
				_, err = st.Recv()
				starting("Stream", err)
			}
			// What an application sees through the SDK.
			if c, err := client.New(callCtx(t), cfg.Listen); err != nil {
				if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "starting") {
					t.Errorf("client.New while starting = %v, want unavailable: starting", err)
				}
			} else {
				_, _, _, err := c.Get(callCtx(t), []byte("k"))
				if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "starting") {
					t.Errorf("client Get while starting = %v, want unavailable: starting", err)
				}
				c.Close()
			}

			released = true
			close(proceed)
			r := <-done
			if fail {
				if r.err == nil {
					stopTest(t, r.srv)
					t.Fatal("Start succeeded with an engine that failed to open")
				}
				for _, addr := range []string{cfg.Listen, cfg.MetricsListen} {
					if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
						c.Close()
						t.Errorf("%s still accepts connections after a failed start", addr)
					}
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer stopTest(t, r.srv)
			waitHealth(t, r.srv, hc, healthpb.HealthCheckResponse_SERVING)
			if _, err := kc.Put(callCtx(t), &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
				t.Fatalf("Put once started: %v", err)
			}
			g, err := kc.Get(callCtx(t), &kvpb.GetRequest{Key: []byte("k")})
			if err != nil || string(g.GetValue()) != "v" {
				t.Fatalf("Get once started = %v, %v", g, err)
			}
		})
	}
}
