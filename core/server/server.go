// Package server is FlareDB's stock server: it opens the configured engine
// on a locked data directory, serves the public gRPC KV API (proto/kvpb)
// over it with health and reflection services, exposes Prometheus metrics
// and a health endpoint over HTTP, and shuts down gracefully.
//
// Engines reach it through Openers that the binary's main passes in (no
// global registry): the server itself imports only the engine contract,
// never an engine or the plugin host.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kv"
	"github.com/flaredb/flaredb/core/kvengine"
	"github.com/flaredb/flaredb/core/metrics"
	"github.com/flaredb/flaredb/core/tso"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// Opener opens an engine for the configuration; dir is the engine's own
// directory inside the data directory. Mode is "in-process" or "plugin".
type Opener struct {
	Mode string
	Open func(ctx context.Context, cfg config.Config, dir string, log *slog.Logger) (engine.Engine, error)
}

// Openers maps engine names (as in engine.name) to their openers.
type Openers map[string]Opener

// Names returns the engine names, sorted.
func (o Openers) Names() []string {
	names := make([]string, 0, len(o))
	for n := range o {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Server is a running FlareDB server. Create it with Start; stop it with
// Shutdown.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	lock    *dirLock
	oracle  *tso.Oracle
	eng     engine.Engine
	svc     *kv.Service
	grpc    *grpc.Server
	health  *health.Server
	http    *http.Server
	lis     net.Listener
	httpLis net.Listener
	metrics *metrics.Metrics

	serveErr chan error
	once     sync.Once
}

// Addr returns the gRPC listener's address.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// MetricsAddr returns the HTTP listener's address, or nil when disabled.
func (s *Server) MetricsAddr() net.Addr {
	if s.httpLis == nil {
		return nil
	}
	return s.httpLis.Addr()
}

// Start validates cfg, locks the data directory, opens the engine and the
// timestamp oracle, binds the listeners and starts serving. On any failure
// it releases whatever it took and returns an error that says what to do.
func Start(ctx context.Context, cfg config.Config, openers Openers, log *slog.Logger) (srv *Server, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(slices.DeleteFunc(openers.Names(), func(n string) bool { return n == "plugin" })); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	op, ok := openers[cfg.Engine.Name]
	if !ok {
		return nil, fmt.Errorf("engine %q is not available in this build (available: %v)", cfg.Engine.Name, openers.Names())
	}
	s := &Server{cfg: cfg, log: log, metrics: metrics.New(), serveErr: make(chan error, 2)}
	defer func() {
		if err != nil {
			s.release()
		}
	}()

	dataDir, err := cfg.AbsDataDir()
	if err != nil {
		return nil, fmt.Errorf("data directory %q: %w", cfg.DataDir, err)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create data directory: %w", err)
	}
	if s.lock, err = lockDir(dataDir); err != nil {
		return nil, err
	}
	if s.oracle, err = tso.Open(filepath.Join(dataDir, "tso"), nil); err != nil {
		return nil, fmt.Errorf("timestamp oracle: %w", err)
	}
	engDir := filepath.Join(dataDir, "engine-"+cfg.Engine.Name)
	if cfg.Engine.Name == "plugin" {
		engDir = filepath.Join(dataDir, "engine-plugin")
	}
	if err := os.MkdirAll(engDir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create engine directory: %w", err)
	}
	log.Info("opening engine", "engine", cfg.Engine.Name, "mode", op.Mode, "dir", engDir)
	if s.eng, err = op.Open(ctx, cfg, engDir, log); err != nil {
		return nil, fmt.Errorf("open engine %q in %s: %w", cfg.Engine.Name, engDir, err)
	}
	d := s.eng.Describe()
	if d.Protocol != engine.ProtocolVersion {
		return nil, fmt.Errorf("engine %q implements contract version %d, this server needs %d", d.Name, d.Protocol, engine.ProtocolVersion)
	}
	if st, ok := s.eng.(interface{ Stats() kvengine.Stats }); ok {
		s.metrics.RegisterEngineStats(func() (uint64, uint64) {
			x := st.Stats()
			return x.StoreWrites, x.Commits
		})
	}
	s.svc = kv.New(s.eng, s.oracle, kv.Options{
		Limits: kv.Limits{
			MaxKeySize:   int(cfg.Limits.MaxKeySize),
			MaxValueSize: int(cfg.Limits.MaxValueSize),
			MaxBatchOps:  cfg.Limits.MaxBatchOps,
			MaxScanLimit: cfg.Limits.MaxScanLimit,
		},
		Sync:       cfg.Engine.Sync,
		BatchReads: op.Mode == "plugin",
		// A plugin's round trip leaves the pipeline idle; overlapping
		// groups (of disjoint keys) measured about 8 % more puts/s.
		PipelineDepth: map[bool]int{true: 4, false: 1}[op.Mode == "plugin"],
		Logger:        log,
		Metrics:       s.metrics,
	})

	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(int(cfg.Limits.MaxMessageSize)),
		grpc.MaxSendMsgSize(int(cfg.Limits.MaxMessageSize)),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	}
	if cfg.TLS.Enabled() {
		tc, err := serverTLS(cfg.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	s.grpc = grpc.NewServer(opts...)
	kvpb.RegisterKVServer(s.grpc, &kvServer{
		svc: s.svc, m: s.metrics, mode: op.Mode, start: time.Now(),
		maxMsg: int(cfg.Limits.MaxMessageSize),
	})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	if s.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("cannot listen on %s (listen): %w", cfg.Listen, err)
	}
	if cfg.MetricsListen != "" {
		if s.httpLis, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("cannot listen on %s (metrics_listen): %w", cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", s.healthz)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := s.http.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.serveErr <- fmt.Errorf("metrics server: %w", err)
			}
		}()
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(kvpb.KV_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	go func() {
		if err := s.grpc.Serve(s.lis); err != nil {
			s.serveErr <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	log.Info("serving", "listen", s.lis.Addr().String(), "metrics", cfg.MetricsListen,
		"engine", d.Name, "engine_version", d.Version, "mode", op.Mode, "sync", cfg.Engine.Sync, "tls", cfg.TLS.Enabled())
	return s, nil
}

// Err returns a channel that receives an error if a listener fails while
// serving.
func (s *Server) Err() <-chan error { return s.serveErr }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.svc.Get(ctx, []byte("\x00flaredb-health")); err != nil {
		http.Error(w, "engine: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	s.metrics.InFlight.Inc()
	defer s.metrics.InFlight.Dec()
	resp, err := h(ctx, req)
	method := filepath.Base(info.FullMethod)
	s.metrics.Requests.WithLabelValues(method, status.Code(err).String()).Inc()
	s.metrics.Latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
	if err != nil {
		s.log.Debug("request failed", "method", method, "err", err)
	}
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	s.metrics.InFlight.Inc()
	defer s.metrics.InFlight.Dec()
	err := h(srv, ss)
	method := filepath.Base(info.FullMethod)
	s.metrics.Requests.WithLabelValues(method, status.Code(err).String()).Inc()
	if method == "Scan" {
		s.metrics.Latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
	}
	return err
}

// Shutdown stops the server gracefully: health turns NOT_SERVING, new calls
// are refused, calls in flight drain until ctx ends (then they are
// cancelled), the write pipeline finishes, and the engine, oracle and
// data-directory lock are released. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.log.Info("shutting down: draining in-flight calls")
		s.health.Shutdown()
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			s.log.Warn("shutdown timeout: cancelling calls still in flight")
			s.grpc.Stop()
			<-done
		}
		if s.http != nil {
			hctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.http.Shutdown(hctx)
			cancel()
		}
		err = s.release()
		s.log.Info("shut down")
	})
	return err
}

// release closes whatever Start opened, in reverse order.
func (s *Server) release() error {
	var errs []error
	if s.grpc != nil {
		s.grpc.Stop()
	}
	// Closing a listener twice is harmless; a listener that was never
	// served would otherwise stay open.
	if s.lis != nil {
		s.lis.Close()
	}
	if s.httpLis != nil {
		s.httpLis.Close()
	}
	if s.svc != nil {
		s.svc.Close()
	}
	if s.eng != nil {
		if err := s.eng.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close engine: %w", err))
		}
	}
	if s.lock != nil {
		if err := s.lock.release(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func serverTLS(c config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %s: no PEM certificates found", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
