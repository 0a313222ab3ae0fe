// Package metrics defines the server's Prometheus metrics in one place, on a
// registry of their own (no global state). A nil *Metrics is valid and
// records nothing, so library code and tests need not set one up. It imports
// nothing of FlareDB's: the packages that record metrics import it.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the server's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	Requests   *prometheus.CounterVec   // method, code
	Latency    *prometheus.HistogramVec // method
	InFlight   prometheus.Gauge
	GroupSize  prometheus.Histogram // writes per engine Apply from the write pipeline
	EngineTime *prometheus.HistogramVec
	CASFailed  prometheus.Counter
	StreamOps  prometheus.Histogram // requests per multiplexed stream message
	ReadBatch  prometheus.Histogram // keys per merged engine Read (plugin engines)
}

// New creates and registers the collectors, including the Go runtime and
// process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flaredb", Name: "requests_total",
			Help: "Requests handled, by method and gRPC status code; each request of a multiplexed Stream counts once as Stream/<method>, the Stream call itself not at all.",
		}, []string{"method", "code"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "flaredb", Name: "request_duration_seconds",
			Help:    "Request latency by method.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
		}, []string{"method"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "flaredb", Name: "requests_in_flight",
			Help: "Requests received and not yet answered: unary calls and Scans being handled, and requests of multiplexed Streams awaiting their answer (an open Stream itself counts for nothing).",
		}),
		GroupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "flaredb", Name: "write_group_size",
			Help:    "Writes merged into one engine call by the write pipeline (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		EngineTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "flaredb", Name: "engine_call_duration_seconds",
			Help:    "Engine call latency by operation.",
			Buckets: prometheus.ExponentialBuckets(20e-6, 2, 18),
		}, []string{"op"}),
		CASFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "flaredb", Name: "condition_failures_total",
			Help: "Conditional writes and batches whose condition did not hold.",
		}),
		StreamOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "flaredb", Name: "stream_message_ops",
			Help:    "Requests carried by one message of the multiplexed stream.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		ReadBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "flaredb", Name: "read_batch_keys",
			Help:    "Keys of each engine Read made by the read batcher, which merges concurrent reads (plugin engines only; in-process engines are read directly).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
	}
	r.MustRegister(m.Requests, m.Latency, m.InFlight, m.GroupSize, m.EngineTime, m.CASFailed, m.StreamOps, m.ReadBatch,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveEngine records the duration of one engine call.
func (m *Metrics) ObserveEngine(op string, start time.Time) {
	if m == nil {
		return
	}
	m.EngineTime.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// ObserveGroup records the size of one write group.
func (m *Metrics) ObserveGroup(n int) {
	if m == nil {
		return
	}
	m.GroupSize.Observe(float64(n))
}

// ObserveReadBatch records the keys of one engine Read of the read batcher.
func (m *Metrics) ObserveReadBatch(keys int) {
	if m == nil {
		return
	}
	m.ReadBatch.Observe(float64(keys))
}

// ConditionFailed counts one failed condition.
func (m *Metrics) ConditionFailed() {
	if m == nil {
		return
	}
	m.CASFailed.Inc()
}

// RegisterEngineRestarts exports how many times a supervised engine (a
// plugin) was restarted after it crashed or hung.
func (m *Metrics) RegisterEngineRestarts(restarts func() int) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "flaredb", Name: "engine_restarts_total",
		Help: "Restarts of the engine's plugin process after a crash or a hang.",
	}, func() float64 { return float64(restarts()) }))
}

// RegisterEngineStats exports an adapter-based engine's figures: store
// writes and the commits they carried (their ratio is the engine's
// group-commit factor).
func (m *Metrics) RegisterEngineStats(stats func() (storeWrites, commits uint64)) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "flaredb", Name: "engine_store_writes_total",
			Help: "Writes the engine made to its store (one fsync each when synced).",
		}, func() float64 { w, _ := stats(); return float64(w) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "flaredb", Name: "engine_commits_total",
			Help: "Engine calls whose writes reached the store; several share one store write under group commit.",
		}, func() float64 { _, c := stats(); return float64(c) }),
	)
}
