package server_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/server"
)

// testEngine wraps an engine (the memory engine unless said otherwise)
// for the server tests: it can take another name, fail its reads, hold its
// writes, and records Close.
type testEngine struct {
	engine.Engine
	name string // "" keeps the wrapped engine's

	mu      sync.Mutex
	readErr error         // returned by Read when set
	gate    chan struct{} // when set, Apply waits until it is closed

	closed atomic.Bool
}

func (e *testEngine) Describe() engine.Description {
	d := e.Engine.Describe()
	if e.name != "" {
		d.Name = e.name
	}
	return d
}

func (e *testEngine) failReads(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.readErr = err
}

func (e *testEngine) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	e.mu.Lock()
	err := e.readErr
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return e.Engine.Read(ctx, keys)
}

// holdWrites makes Apply wait until the returned function is called.
func (e *testEngine) holdWrites() (release func()) {
	g := make(chan struct{})
	e.mu.Lock()
	e.gate = g
	e.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(g) }) }
}

func (e *testEngine) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	e.mu.Lock()
	g := e.gate
	e.mu.Unlock()
	if g != nil {
		select {
		case <-g:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return e.Engine.Apply(ctx, ws, o)
}

func (e *testEngine) Close() error {
	e.closed.Store(true)
	return e.Engine.Close()
}

// logBuffer collects a server's log, safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testServer describes a server for startTest.
type testServer struct {
	dataDir string
	name    string // engine.name: the opener's name
	mode    string // "in-process" (the default) or "plugin"
	open    func(dir string) (engine.Engine, error)
	log     io.Writer            // nil discards the log
	config  func(*config.Config) // edits the configuration, if set
}

// startTest starts the server ts describes, with gRPC and metrics
// listeners on ephemeral ports, and shuts it down when the test ends.
func startTest(t *testing.T, ts testServer) (*server.Server, error) {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.MetricsListen = "127.0.0.1:00" // validation rejects two equal addresses
	cfg.DataDir = ts.dataDir
	cfg.Engine.Name = ts.name
	if ts.name == "plugin" {
		// Validation wants an existing file; the test's opener runs none.
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Engine.Plugin.Path = exe
	}
	if ts.config != nil {
		ts.config(&cfg)
	}
	mode := ts.mode
	if mode == "" {
		mode = "in-process"
	}
	openers := server.Openers{ts.name: {Mode: mode, Open: func(_ context.Context, _ config.Config, dir string, _ *slog.Logger) (engine.Engine, error) {
		return ts.open(dir)
	}}}
	w := ts.log
	if w == nil {
		w = io.Discard
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := server.Start(ctx, cfg, openers, slog.New(slog.NewTextHandler(w, nil)))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { stopTest(t, srv) })
	return srv, nil
}

// stopTest shuts srv down (again: Shutdown may be called more than once).
func stopTest(t *testing.T, srv *server.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// eventually polls cond every few milliseconds until it holds, failing
// the test if it does not within 30 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// httpGet returns the status code and body of GET url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metric returns the value of the series named exactly as the Prometheus
// text format writes it (labels sorted by name), and whether it is there.
func metric(t *testing.T, srv *server.Server, series string) (string, bool) {
	t.Helper()
	_, body := httpGet(t, "http://"+srv.MetricsAddr().String()+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v, true
		}
	}
	return "", false
}
