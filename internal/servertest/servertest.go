// Package servertest runs a real FlareDB server inside a test's process, for
// the tests of the packages that talk to one (the Go client, the CLI): the
// stock server of package core/server, listening on 127.0.0.1 on ports the
// kernel picks, over the memory reference engine (engines/memengine).
//
// The engine is wrapped in Faults, which makes chosen engine calls fail
// with a contract error or wait until the test releases them: faults a real
// server meets but would not produce on demand. Everything else, from the
// error translation to the multiplexed stream, is the production code.
//
// It is test support only. Production code must not import it: it imports
// package testing and builds servers with test settings.
package servertest

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/server"
	"github.com/flaredb/flaredb/engines/memengine"
)

// Options configure Start. A nil *Options means the defaults.
type Options struct {
	// Config, when set, edits the configuration before the server starts
	// (limits, TLS, ...). It receives config.Default() with the memory
	// engine, the gRPC and metrics listeners on 127.0.0.1 with ephemeral
	// ports, and a data directory from TempDir.
	Config func(*config.Config)
}

// Server is a running server. Start stops it when the test ends.
type Server struct {
	// Addr is the gRPC address, host:port.
	Addr string
	// MetricsAddr is the address of the HTTP listener serving /metrics
	// (empty if Options.Config disabled it).
	MetricsAddr string
	// Faults is the server's engine: inject faults through it.
	Faults *Faults

	tb  testing.TB
	srv *server.Server
}

// Start starts a server and registers its shutdown with tb.Cleanup: held
// engine calls are released, then the server drains and stops. It fails
// tb if the server cannot start. The server's log is printed if the test
// fails.
func Start(tb testing.TB, o *Options) *Server {
	tb.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.DataDir = tb.TempDir()
	cfg.Engine.Name = memengine.Name
	if o != nil && o.Config != nil {
		o.Config(&cfg)
	}

	faults := newFaults(memengine.New())
	openers := server.Openers{memengine.Name: {
		Mode: "in-process",
		Open: func(context.Context, config.Config, string, *slog.Logger) (engine.Engine, error) {
			return faults, nil
		},
	}}
	logPath := filepath.Join(tb.TempDir(), "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := server.Start(context.Background(), cfg, openers, slog.New(slog.NewTextHandler(logFile, nil)))
	if err != nil {
		logFile.Close()
		tb.Fatalf("servertest: start: %v", err)
	}
	s := &Server{Addr: srv.Addr().String(), Faults: faults, tb: tb, srv: srv}
	if a := srv.MetricsAddr(); a != nil {
		s.MetricsAddr = a.String()
	}
	tb.Cleanup(func() {
		faults.releaseAll()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("servertest: shutdown: %v", err)
		}
		logFile.Close()
		if tb.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				tb.Logf("server log:\n%s", b)
			}
		}
	})
	return s
}

// Shutdown shuts the server down now, as the test's end would (it may be
// called before that, which then does nothing more).
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Engine returns the engine's self-description, which the server reports
// in its Status.
func (s *Server) Engine() engine.Description { return s.Faults.Describe() }

// Metrics fetches /metrics and returns every sample, keyed by the series
// as the Prometheus text format writes it, labels sorted by name: for
// example `flaredb_stream_message_ops_bucket{le="8"}` or
// `flaredb_requests_total{code="OK",method="Put"}`. A series that was never
// observed is absent.
func (s *Server) Metrics() map[string]float64 {
	s.tb.Helper()
	if s.MetricsAddr == "" {
		s.tb.Fatal("servertest: the metrics listener is disabled")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.MetricsAddr+"/metrics", nil)
	if err != nil {
		s.tb.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.tb.Fatalf("servertest: metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.tb.Fatalf("servertest: metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			s.tb.Fatalf("servertest: metrics: malformed line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			s.tb.Fatalf("servertest: metrics: line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		s.tb.Fatalf("servertest: metrics: %v", err)
	}
	return out
}
