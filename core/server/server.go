// Package server is FlareDB's stock server: it opens the configured engine
// on a locked data directory, serves the public gRPC KV API (proto/kvpb)
// over it with health and reflection services, exposes Prometheus metrics
// and a health endpoint over HTTP, and shuts down gracefully.
//
// Engines reach it through Openers that the binary's main passes in (no
// global registry): the server itself imports only the engine contract,
// never an engine or the plugin host.
//
// # Engine directories
//
// Each engine opens its own directory in the data directory:
// engine-NAME for an engine compiled in, engine-plugin for any plugin. The
// first time an engine opens its directory, the server records the name the
// engine describes itself with in an identity file beside it
// (engine-plugin.identity, for example); later starts refuse, with an error
// wrapping ErrEngineMismatch, an engine with another name (a different
// plugin binary, say) after closing it, so that one engine never serves or
// rewrites another's data. The stock engines also refuse, before writing
// anything, a directory that holds another engine's files. An engine-NAME
// entry that is a symbolic link to a directory is an engine directory like
// any other.
//
// Whether an engine directory holds data is decided by one rule,
// kvengine.DirHoldsData (a lost+found, an engine's claim file and the
// plugin host's lock are no data). Start refuses, with an error wrapping
// ErrEngineSwitch and before the engine opens, to start the configured
// engine selection on a directory never used (no identity, no recorded
// consent, no data) while another engine directory holds data: serving an
// empty store in its place would look like lost data to every client.
// config.StartEmptyEngine (flaredb-server --start-empty-engine) overrides
// the refusal; the consent is recorded beside the engine directory
// (engine-NAME.consent) before the engine opens, so a start that fails
// afterwards need not be given it again, and the file is removed once the
// engine has opened and its identity is recorded. Every start that goes
// ahead logs a warning for each other engine directory holding data, which
// the configured engine does not serve.
//
// # Health
//
// The gRPC health service (the whole server, "", and the KV service) and the
// HTTP /healthz endpoint report the same check: the engine answers a read
// and, when it implements the optional interface
//
//	interface{ Healthy() error }
//
// Healthy returns nil. The gRPC status is NOT_SERVING while Start opens the
// engine (see Start), SERVING from the moment the engine is open until
// Shutdown makes it NOT_SERVING for good. For an engine that can fail apart from the server,
// one served by a plugin or one with a Healthy method, it follows the check
// meanwhile, polled every second: a plugin that is down (its host
// restarting it) is NOT_SERVING, and SERVING again once it answers. Other
// in-process engines are not polled: they are up as long as the server is,
// and a poll would add an engine read every second.
//
// A plugin whose host gave up restarting it (engine.plugin.max_restarts)
// does not come back: the server sends an error on Err, which
// flaredb-server answers by shutting down and exiting with status 1, so
// that a supervisor restarts the server and the plugin with it.
//
// # Metrics
//
// flaredb_requests_total and flaredb_request_duration_seconds count
// requests: each unary call, each Scan, and each request carried by the
// multiplexed Stream (labelled Stream/Get, Stream/Put, ...); the Stream
// call itself is not a request and is not counted. flaredb_requests_in_flight
// is the number of those requests received and not yet answered: unary
// calls and Scans being handled, plus Stream requests received whose
// answer has not been sent. An open Stream with nothing pending counts for
// nothing.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

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
	// Check, if set, validates the engine's own settings in cfg without
	// opening anything, naming the configuration keys at fault (see
	// CheckConfig).
	Check func(cfg config.Config) error
}

// CheckConfig checks what cfg.Validate cannot check alone, without
// opening, binding or writing anything: the configured engine's own
// settings (Opener.Check; for a plugin, that its binary could run and has
// the configured checksum), the TLS files (the key pair loads and matches,
// the client CA holds certificates), and that data_dir is not a file nor
// in an engine directory. flaredb-server runs it for
// --check-config and before starting, so that a configuration it accepts
// does not fail at start for one of these reasons.
func CheckConfig(cfg config.Config, openers Openers) error {
	var errs []error
	if dataDir, err := cfg.AbsDataDir(); err != nil {
		errs = append(errs, fmt.Errorf("data_dir %q: %w", cfg.DataDir, err))
	} else if fi, err := os.Stat(dataDir); err == nil && !fi.IsDir() {
		errs = append(errs, fmt.Errorf("data_dir %s is not a directory: the data directory must be a directory, or not exist yet", dataDir))
	} else if err := refuseEngineDirAsDataDir(dataDir); err != nil {
		errs = append(errs, fmt.Errorf("data_dir: %w", err))
	}
	if op, ok := openers[cfg.Engine.Name]; ok && op.Check != nil {
		if err := op.Check(cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.TLS.Enabled() {
		if _, err := serverTLS(cfg.TLS); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
	mode    string // the engine's: "in-process" or "plugin"

	serveErr chan error
	// released is closed when release begins.
	released     chan struct{}
	releasedOnce sync.Once
	once         sync.Once
	// draining is closed when Shutdown begins: the KV streams tell their
	// clients, who half-close them once answered (see kvServer.Stream).
	draining chan struct{}

	// healthStop, closed by stopHealthWatch, stops the goroutine that
	// keeps the gRPC health status in line with the engine; healthDone is
	// closed when it has returned. Both are nil until it starts.
	healthStop     chan struct{}
	healthDone     chan struct{}
	healthStopOnce sync.Once

	// kv is the KV service; ready is set once it can serve (its svc is
	// set): until then the interceptors answer its calls UNAVAILABLE.
	kv    *kvServer
	ready atomic.Bool
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

// Start validates cfg, binds the listeners, locks the data directory,
// opens the timestamp oracle and the engine, and starts serving. On any
// failure it releases whatever it took and returns an error that says what
// to do. ctx bounds the engine's opening (and the oracle's recovery with
// cfg.RecoverTSO); it does not govern the server once Start has returned.
//
// The order matters to whoever probes the server. The listeners (listen
// and, if set, metrics_listen) are bound first, before the data directory
// is created, locked or read, so that an address in use fails the start
// before it touches anything, and they serve at once, while the engine
// opens, which may take long (a plugin starting, RocksDB replaying its
// log): meanwhile the gRPC health service says NOT_SERVING, GET /healthz
// answers 503 "starting", and every KV call (the multiplexed Stream too)
// fails UNAVAILABLE, saying the server is starting, so a client gets an
// answer instead of a connection that stays silent. Once the engine is
// open, just before Start returns, health turns SERVING and KV calls are
// served. A TCP connect is therefore no readiness check: probe the gRPC
// health service or /healthz. A start that fails stops both servers and
// closes the listeners.
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
	s := &Server{cfg: cfg, log: log, metrics: metrics.New(), serveErr: make(chan error, 3), released: make(chan struct{})}
	defer func() {
		if err != nil {
			// No drain to wait for: an engine that does not close within
			// call_timeout is left to the process's exit.
			done, cancel := context.WithCancel(context.Background())
			cancel()
			s.release(done)
		}
	}()

	dataDir, err := cfg.AbsDataDir()
	if err != nil {
		return nil, fmt.Errorf("data directory %q: %w", cfg.DataDir, err)
	}
	if err := refuseEngineDirAsDataDir(dataDir); err != nil {
		return nil, err
	}
	// The listeners are bound first: an address in use fails the start
	// before it takes the data directory or opens the engine. They serve
	// at once: health says NOT_SERVING, /healthz 503 and every KV call
	// UNAVAILABLE ("starting") until the engine is open, so a client that
	// connects meanwhile gets an answer rather than a silent connection.
	if err := s.listen(); err != nil {
		return nil, err
	}
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
	s.draining = make(chan struct{})
	// The KV service answers UNAVAILABLE until the engine is open (see
	// the interceptors); Start fills in s.kv.svc, then sets s.ready.
	s.kv = &kvServer{
		m: s.metrics, mode: op.Mode, draining: s.draining,
		maxMsg: int(cfg.Limits.MaxMessageSize),
	}
	kvpb.RegisterKVServer(s.grpc, s.kv)
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(kvpb.KV_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	if cfg.MetricsListen != "" {
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
	go func() {
		if err := s.grpc.Serve(s.lis); err != nil {
			s.serveErr <- fmt.Errorf("grpc server: %w", err)
		}
	}()

	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create data directory: %w", err)
	}
	if s.lock, err = lockDir(dataDir); err != nil {
		return nil, err
	}
	engDir := filepath.Join(dataDir, "engine-"+cfg.Engine.Name)
	// Consent (StartEmptyEngine) is recorded here, before anything below
	// can fail the start.
	if err := checkEngineSwitch(dataDir, engDir, cfg.Engine.Name, cfg.StartEmptyEngine); err != nil {
		return nil, err
	}
	tsoPath := filepath.Join(dataDir, "tso")
	if !cfg.RecoverTSO {
		// With engine data there, the oracle's file must be too: started
		// afresh from the clock, it could issue versions below stored
		// ones (a clock that was ahead, a restored backup), and a key
		// deleted and written again would get a smaller version.
		held, err := engineData(dataDir)
		if err != nil {
			return nil, err
		}
		s.oracle, err = tso.Open(tsoPath, &tso.Options{MustExist: len(held) > 0})
		if errors.Is(err, tso.ErrMissing) {
			return nil, fmt.Errorf("timestamp oracle: %s is missing, but %s holds engine data (%s): new versions could fall "+
				"below stored ones and break compare-and-swap by version; restore the file, or start once with --recover-tso, "+
				"which reads the engine's newest version and starts the oracle above it", tsoPath, dataDir, strings.Join(held, ", "))
		}
		if err != nil {
			return nil, fmt.Errorf("timestamp oracle: %w", err)
		}
	}
	if err := os.MkdirAll(engDir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create engine directory: %w", err)
	}
	removeStaleIdentityTemps(dataDir)
	warnOtherEngineDirs(log, dataDir, engDir, cfg.Engine.Name)
	log.Info("opening engine", "engine", cfg.Engine.Name, "mode", op.Mode, "dir", engDir)
	s.mode = op.Mode
	if s.eng, err = op.Open(ctx, cfg, engDir, log); err != nil {
		return nil, fmt.Errorf("open engine %q in %s: %w", cfg.Engine.Name, engDir, err)
	}
	d := s.eng.Describe()
	if d.Protocol != engine.ProtocolVersion {
		return nil, fmt.Errorf("engine %q implements contract version %d, this server needs %d", d.Name, d.Protocol, engine.ProtocolVersion)
	}
	if d.Name == "" {
		return nil, fmt.Errorf("engine %q (in %s) describes itself without a name: the server cannot record which engine owns the directory", cfg.Engine.Name, engDir)
	}
	// The engine is closed (by release) if the directory is another's.
	if err := claimEngineDir(engDir, d.Name); err != nil {
		return nil, err
	}
	// The identity now records that the directory is in use.
	if err := os.Remove(consentPath(engDir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("cannot remove the consent file, which the engine identity has replaced", "file", consentPath(engDir), "err", err)
	}
	if cfg.RecoverTSO {
		if s.oracle, err = recoverOracle(ctx, s.eng, dataDir, tsoPath, log); err != nil {
			return nil, err
		}
	}
	if f, ok := s.eng.(interface{ Failed() <-chan struct{} }); ok {
		go s.watchFailed(f.Failed())
	}
	if r, ok := s.eng.(interface{ Restarts() int }); ok {
		s.metrics.RegisterEngineRestarts(r.Restarts)
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
		CallTimeout:   cfg.Engine.CallTimeout.D(),
		Logger:        log,
		Metrics:       s.metrics,
	})

	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(kvpb.KV_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if _, ok := s.eng.(interface{ Healthy() error }); ok || op.Mode == "plugin" {
		s.healthStop, s.healthDone = make(chan struct{}), make(chan struct{})
		go s.watchHealth()
	}
	s.kv.svc, s.kv.start = s.svc, time.Now()
	s.ready.Store(true)
	log.Info("serving", "listen", s.lis.Addr().String(), "metrics", cfg.MetricsListen,
		"engine", d.Name, "engine_version", d.Version, "mode", op.Mode, "sync", cfg.Engine.Sync, "tls", cfg.TLS.Enabled())
	return s, nil
}

// watchFailed reports on Err that the engine can no longer serve once
// failed is closed (a plugin whose host gave up restarting it): a server
// that answers unavailable forever helps no one, while its exit lets a
// supervisor restart it, and the plugin with it. It returns when the
// server releases the engine.
func (s *Server) watchFailed(failed <-chan struct{}) {
	select {
	case <-failed:
	case <-s.released:
		return
	}
	why := errors.New("it gave up")
	if h, ok := s.eng.(interface{ Healthy() error }); ok {
		if err := h.Healthy(); err != nil {
			why = err
		}
	}
	s.serveErr <- fmt.Errorf("engine %q can no longer serve: %w; stopping the server (restart it to restart the engine)", s.cfg.Engine.Name, why)
}

// listen binds the gRPC listener and, if configured, the metrics one.
func (s *Server) listen() error {
	var err error
	if s.lis, err = net.Listen("tcp", s.cfg.Listen); err != nil {
		return fmt.Errorf("cannot listen on %s (listen): %w", s.cfg.Listen, err)
	}
	if s.cfg.MetricsListen != "" {
		if s.httpLis, err = net.Listen("tcp", s.cfg.MetricsListen); err != nil {
			return fmt.Errorf("cannot listen on %s (metrics_listen): %w", s.cfg.MetricsListen, err)
		}
	}
	return nil
}

// Err returns a channel that receives an error if a listener fails while
// serving, or if the engine can no longer serve at all (a plugin whose
// host gave up restarting it).
func (s *Server) Err() <-chan error { return s.serveErr }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	// Shutting down: as gRPC health says NOT_SERVING, so that a load
	// balancer probing over HTTP stops sending traffic here too.
	select {
	case <-s.draining:
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	default:
	}
	if !s.ready.Load() {
		http.Error(w, "starting: the engine is not open yet", http.StatusServiceUnavailable)
		return
	}
	if err := s.checkHealth(r.Context()); err != nil {
		http.Error(w, "engine: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// healthInterval is how often the gRPC health status is brought in line
// with the engine's health.
const healthInterval = time.Second

// healthTimeout bounds one health check.
const healthTimeout = 2 * time.Second

// healthKey is the key the health check reads.
var healthKey = []byte("\x00flaredb-health")

// checkHealth is the one health check, for /healthz and the gRPC health
// service: the engine's own verdict when it offers one (the optional
// Healthy method), then a read through the service, as a client's would
// go. It returns nil when the engine can serve.
func (s *Server) checkHealth(ctx context.Context) error {
	if h, ok := s.eng.(interface{ Healthy() error }); ok {
		if err := h.Healthy(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	return s.svc.Probe(ctx, healthKey)
}

// watchHealth sets the gRPC health status of the server and the KV service
// from checkHealth every healthInterval, logging changes, until
// stopHealthWatch. Start has set it to SERVING.
func (s *Server) watchHealth() {
	defer close(s.healthDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// A check in progress ends when the watch is stopped.
		select {
		case <-s.healthStop:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	serving := true
	for {
		select {
		case <-s.healthStop:
			return
		case <-t.C:
		}
		err := s.checkHealth(ctx)
		if ctx.Err() != nil {
			return // stopped during the check: its verdict means nothing
		}
		if (err == nil) == serving {
			continue
		}
		serving = err == nil
		st := healthpb.HealthCheckResponse_SERVING
		if serving {
			s.log.Info("engine healthy again: health status SERVING")
		} else {
			st = healthpb.HealthCheckResponse_NOT_SERVING
			s.log.Warn("engine unhealthy: health status NOT_SERVING", "err", err)
		}
		// After Shutdown the health server ignores these.
		s.health.SetServingStatus("", st)
		s.health.SetServingStatus(kvpb.KV_ServiceDesc.ServiceName, st)
	}
}

// stopHealthWatch stops watchHealth and waits for it to return. It is
// safe to call more than once, and before the watch started.
func (s *Server) stopHealthWatch() {
	if s.healthStop == nil {
		return
	}
	s.healthStopOnce.Do(func() { close(s.healthStop) })
	<-s.healthDone
}

// warnOtherEngineDirs logs a warning for each engine directory in dataDir,
// other than engDir, that holds data: the configured engine does not serve
// it. It only reads.
func warnOtherEngineDirs(log *slog.Logger, dataDir, engDir, configured string) {
	others, err := otherEngineDirs(dataDir, engDir)
	if err != nil {
		log.Warn("cannot list the data directory's engine directories", "dir", dataDir, "err", err)
		return
	}
	for _, o := range others {
		owner := o.Engine
		if owner == "" {
			owner = "unrecorded"
		}
		log.Warn("the data directory holds another engine directory, whose data this engine selection does not serve",
			"dir", o.Path, "owner", owner, "engine", configured, "serving_dir", engDir)
	}
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	s.metrics.InFlight.Inc()
	defer s.metrics.InFlight.Dec()
	var resp any
	var err error
	if s.starting(info.FullMethod) {
		err = toStatus(errStarting)
	} else {
		resp, err = h(ctx, req)
	}
	method := filepath.Base(info.FullMethod)
	if err == nil {
		// gRPC would refuse an answer over the send limit with a bare
		// ResourceExhausted; say which limit and whether a write was
		// applied, as the stream does for the same answer. Only answers
		// carrying many values can be that large: one value always fits
		// (the configuration requires max_message_size to exceed
		// max_key_size + max_value_size), so the rest are not measured.
		if m, ok := resp.(proto.Message); ok && manyValues(m) && s.cfg.Limits.MaxMessageSize > 0 {
			if n := proto.Size(m); int64(n) > int64(s.cfg.Limits.MaxMessageSize) {
				resp, err = nil, toStatus(answerTooLarge(n, int(s.cfg.Limits.MaxMessageSize), "limits.max_message_size", applied(m)))
			}
		}
	}
	s.metrics.Requests.WithLabelValues(method, status.Code(err).String()).Inc()
	s.metrics.Latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
	if err != nil {
		s.log.Debug("request failed", "method", method, "err", err)
	}
	return resp, err
}

// errStarting answers the KV calls that arrive before the engine is open.
var errStarting = fmt.Errorf("%w: the server is starting: its engine is not open yet; retry shortly "+
	"(gRPC health says SERVING, and /healthz 200, once it is)", engine.ErrUnavailable)

// starting reports whether method is a KV call that arrived before the
// server could serve it.
func (s *Server) starting(method string) bool {
	return !s.ready.Load() && strings.HasPrefix(method, "/"+kvpb.KV_ServiceDesc.ServiceName+"/")
}

// streamInterceptor counts a streaming call of the KV service as one
// request (a Scan, for example), except the multiplexed Stream: it is not a
// request but carries them, and the KV server counts each one in
// requests_total (Stream/Get, ...), so counting the call too would count
// twice. For it, in-flight follows its requests, from their arrival to
// their answer's sending (see muxStream).
//
// The streams of other services (a gRPC health Watch, reflection) are not
// requests in flight: they wait for the client, for as long as it likes.
// They end when the server starts draining, or GracefulStop would wait for
// them until the shutdown timeout.
func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if s.starting(info.FullMethod) {
		err := toStatus(errStarting)
		s.metrics.Requests.WithLabelValues(filepath.Base(info.FullMethod), status.Code(err).String()).Inc()
		return err
	}
	if info.FullMethod == kvpb.KV_Stream_FullMethodName {
		ms := &muxStream{ServerStream: ss, inFlight: s.metrics.InFlight}
		defer ms.finish()
		return h(srv, ms)
	}
	if !strings.HasPrefix(info.FullMethod, "/"+kvpb.KV_ServiceDesc.ServiceName+"/") {
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		go func() {
			select {
			case <-s.draining:
				cancel()
			case <-ctx.Done():
			}
		}()
		return h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
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

// engineData returns the names of the engine directories in dataDir that
// hold data, by the rule otherEngineDirs uses (kvengine.DirHoldsData).
func engineData(dataDir string) ([]string, error) {
	names, err := engineDirNames(dataDir)
	if err != nil {
		return nil, err
	}
	var held []string
	for _, name := range names {
		ok, err := kvengine.DirHoldsData(filepath.Join(dataDir, name))
		if err != nil {
			return nil, err
		}
		if ok {
			held = append(held, name)
		}
	}
	return held, nil
}

// recoverOracle opens the oracle at path above the newest version eng
// stores, above the newest file time in the data directory's engine
// directories (plus a margin), and above its file's mark if the file is
// there and intact, reading every key once.
//
// A deleted key's last version is stored nowhere: the file times stand in
// for it, as versions follow the clock that stamped the files. Versions
// that ran ahead of that clock (it was stepped back after they were
// issued) and belonged to keys since deleted are beyond any recovery; the
// oracle's own file is the only record of them.
func recoverOracle(ctx context.Context, eng engine.Engine, dataDir, path string, log *slog.Logger) (*tso.Oracle, error) {
	if _, err := os.Stat(path); err == nil {
		log.Warn("--recover-tso with the oracle's file present: recovering anyway; drop the flag once recovered, every start with it reads every key", "file", path)
	}
	log.Warn("recovering the timestamp oracle: reading every key's version", "file", path)
	var newest uint64
	keys := 0
	err := eng.Scan(ctx, engine.ScanOptions{KeysOnly: true}, func(e engine.Entry) error {
		newest = max(newest, e.Version)
		keys++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recover the timestamp oracle: scan the engine: %w", err)
	}
	floor := newest
	newestFile, err := newestFileTime(dataDir)
	if err != nil {
		return nil, fmt.Errorf("recover the timestamp oracle: %w", err)
	}
	if !newestFile.IsZero() {
		// The oracle's window (3 s) ahead of the clock, and a margin.
		floor = max(floor, tso.Compose(newestFile.Add(recoverMargin).UnixMilli(), 0))
	}
	o, err := tso.Open(path, &tso.Options{Floor: floor})
	if errors.Is(err, tso.ErrCorrupt) {
		// Kept aside, not deleted: whoever investigates may want it.
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("recover the timestamp oracle: move the corrupt file aside: %w", rerr)
		}
		log.Warn("the corrupt timestamp-oracle file was moved aside", "file", aside)
		o, err = tso.Open(path, &tso.Options{Floor: floor})
	}
	if err != nil {
		return nil, fmt.Errorf("recover the timestamp oracle: %w", err)
	}
	log.Warn("timestamp oracle recovered", "keys", keys, "newest_version", newest, "newest_file", newestFile, "next_above", o.Last())
	return o, nil
}

// recoverMargin is how far above the newest file time a recovered oracle
// starts: more than the oracle's window, by which versions may run ahead
// of the clock.
const recoverMargin = 10 * time.Second

// newestFileTime returns the latest modification time of the files under
// dataDir's engine directories (zero when there are none), following an
// engine directory that is a symbolic link (links inside are not followed).
func newestFileTime(dataDir string) (time.Time, error) {
	dirs, err := filepath.Glob(filepath.Join(dataDir, engineDirPrefix+"*"))
	if err != nil {
		return time.Time{}, err
	}
	var newest time.Time
	for _, d := range dirs {
		// WalkDir does not follow a root that is a link.
		root, err := filepath.EvalSymlinks(d)
		if err != nil {
			return time.Time{}, fmt.Errorf("read file times in %s: %w", d, err)
		}
		err = filepath.WalkDir(root, func(_ string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.Type().IsRegular() {
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return err
			}
			if fi.ModTime().After(newest) {
				newest = fi.ModTime()
			}
			return nil
		})
		if err != nil {
			return time.Time{}, fmt.Errorf("read file times in %s: %w", d, err)
		}
	}
	return newest, nil
}

// ctxStream is a server stream with another context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context implements grpc.ServerStream.
func (c *ctxStream) Context() context.Context { return c.ctx }

// muxStream counts the requests of one multiplexed Stream in flight: each
// request of a message received adds one, each answer of a message sent
// takes one away, and finish takes away those never answered (the stream
// ended first). The KV server answers every request exactly once.
type muxStream struct {
	grpc.ServerStream
	inFlight prometheus.Gauge
	pending  atomic.Int64 // received and not yet answered
}

// RecvMsg implements grpc.ServerStream.
func (m *muxStream) RecvMsg(msg any) error {
	err := m.ServerStream.RecvMsg(msg)
	if req, ok := msg.(*kvpb.StreamRequest); ok && err == nil {
		// A cancel is no request of its own: it gets no answer.
		n := 0
		for _, op := range req.Ops {
			if _, cancel := op.Request.(*kvpb.StreamOp_Cancel); !cancel {
				n++
			}
		}
		if n > 0 {
			m.pending.Add(int64(n))
			m.inFlight.Add(float64(n))
		}
	}
	return err
}

// SendMsg implements grpc.ServerStream.
func (m *muxStream) SendMsg(msg any) error {
	if resp, ok := msg.(*kvpb.StreamResponse); ok && len(resp.Results) > 0 {
		m.pending.Add(-int64(len(resp.Results)))
		m.inFlight.Sub(float64(len(resp.Results)))
	}
	return m.ServerStream.SendMsg(msg)
}

// finish takes the requests still pending out of the gauge, once the
// handler has returned (and so sends nothing more).
func (m *muxStream) finish() {
	if n := m.pending.Swap(0); n != 0 {
		m.inFlight.Sub(float64(n))
	}
}

// Shutdown stops the server gracefully: health turns NOT_SERVING, new calls
// are refused, calls in flight drain until ctx ends (then they are
// cancelled; each open KV stream is told the server is draining, and a
// client that half-closes it once its requests are answered lets it end
// before that), the write pipeline finishes, and the engine, oracle and
// data-directory lock are released. An engine that does not close in time
// (see release) is left to the process's exit, and the error says so. It
// is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.log.Info("shutting down: draining in-flight calls")
		s.stopHealthWatch()
		s.health.Shutdown()
		if s.draining != nil {
			close(s.draining)
		}
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
		err = s.release(ctx)
		s.log.Info("shut down")
	})
	return err
}

// manyValues reports whether m is an answer that carries more than one
// value (BatchGet, Batch).
func manyValues(m proto.Message) bool {
	switch m.(type) {
	case *kvpb.BatchGetResponse, *kvpb.BatchResponse:
		return true
	}
	return false
}

// release closes whatever Start opened, in reverse order.
//
// An in-process engine gets until ctx ends, and at least
// engine.call_timeout, to close together with the write pipeline. One still
// busy then — a store stuck in I/O ignores contexts, so its calls and its
// Close wait for the disk — is left behind, and so is the data directory's
// lock, which keeps another server off the directory while the stuck call
// may still write: the process's exit releases both. The error says so. A
// plugin is not bounded here: its host bounds the plugin's close by the
// plugin's stop timeout and kills what remains, and the pipeline's calls to
// it end with call_timeout.
func (s *Server) release(ctx context.Context) error {
	var errs []error
	s.releasedOnce.Do(func() { close(s.released) })
	s.stopHealthWatch()
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
	closed := make(chan error, 1)
	go func() {
		if s.svc != nil {
			s.svc.Close()
		}
		var err error
		if s.eng != nil {
			if cerr := s.eng.Close(); cerr != nil {
				err = fmt.Errorf("close engine: %w", cerr)
			}
		}
		closed <- err
	}()
	var giveUp <-chan time.Time
	bound := s.cfg.Engine.CallTimeout.D()
	if bound <= 0 {
		bound = kv.DefaultCallTimeout
	}
	if s.mode != "plugin" {
		t := time.NewTimer(bound)
		defer t.Stop()
		giveUp = t.C
	}
	select {
	case err := <-closed:
		if err != nil {
			errs = append(errs, err)
		}
	case <-giveUp:
		// At least call_timeout has passed; wait on while ctx lasts.
		select {
		case err := <-closed:
			if err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			err := fmt.Errorf("close engine: not closed within %s (engine.call_timeout) and the shutdown timeout: a call into the engine is stuck; "+
				"the engine and the data directory's lock are left to the process's exit", bound)
			s.log.Error("engine did not close", "err", err)
			return errors.Join(append(errs, err)...)
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
