package cli

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/spf13/cobra"

	"github.com/flaredb/flaredb/client"
)

const benchLong = `Load-test a server with a simple workload and report throughput and latency.

Workloads:
  put        unconditional puts of random keys
  get        gets of random existing keys
  cas-low    read-then-CAS loops over many keys (low contention)
  cas-high   read-then-CAS loops over few keys (high contention, --keys
             defaults to 8)
  scan       scans of --scan-limit entries from random existing keys
  mixed      --read-percent gets, the rest split between puts and
             read-then-CAS

Keys are "k" followed by a zero-padded number, --key-size bytes long, drawn
uniformly from --keys keys. For get, scan, cas and mixed the keys are
written first (not measured). --warmup runs the workload unmeasured before
the measurement. The run ends after --duration or --ops operations,
whichever comes first (or on Ctrl-C, still printing the report). A
read-then-CAS pair counts as one operation; a CAS that loses its race
counts as a conflict, not an error.

Prints a progress line each second on stderr and a final report (with
--json, one JSON object) with ops/s, errors, CAS conflicts and latency
percentiles (p50, p90, p99, p99.9, max) from an HDR histogram. Exits with
code 1 if any operation failed. --timeout bounds connecting and loading,
not the run.`

type benchConfig struct {
	workload    string
	concurrency int
	duration    time.Duration
	ops         int64
	valueSize   int
	keySize     int
	keys        int
	warmup      time.Duration
	scanLimit   int
	readPercent int
	async       bool
	noLoad      bool
	streams     int
}

func newBenchCommand() *cobra.Command {
	var cfg benchConfig
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test the server",
		Long:  benchLong,
		Example: `  flaredb bench --workload put --concurrency 64 --duration 10s
  flaredb bench --workload cas-high --ops 100000 --json
  flaredb bench --workload get --unary --warmup 2s`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := loadGlobals(cmd)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("keys") && cfg.workload == "cas-high" {
				cfg.keys = 8
			}
			if err := cfg.validate(); err != nil {
				return err
			}
			return runBench(cmd.Context(), g, cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.workload, "workload", "put", "put, get, cas-low, cas-high, scan or mixed")
	f.IntVar(&cfg.concurrency, "concurrency", 64, "concurrent workers")
	f.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to measure")
	f.Int64Var(&cfg.ops, "ops", 0, "stop after this many operations (0: no limit)")
	f.IntVar(&cfg.valueSize, "value-size", 128, "value size in bytes")
	f.IntVar(&cfg.keySize, "key-size", 16, "key size in bytes")
	f.IntVar(&cfg.keys, "keys", 10000, "number of distinct keys (cas-high: 8)")
	f.DurationVar(&cfg.warmup, "warmup", 0, "unmeasured run before measuring (--warmup alone: 1s)")
	f.Lookup("warmup").NoOptDefVal = "1s"
	f.IntVar(&cfg.scanLimit, "scan-limit", 100, "entries per scan (scan workload)")
	f.IntVar(&cfg.readPercent, "read-percent", 80, "percentage of gets (mixed workload)")
	f.BoolVar(&cfg.async, "async", false, "writes acknowledged before they are synced")
	f.BoolVar(&cfg.noLoad, "no-load", false, "skip writing the keys first")
	f.IntVar(&cfg.streams, "streams", 1, "multiplexed streams to spread requests over (without --unary)")
	return cmd
}

func (c *benchConfig) validate() error {
	switch c.workload {
	case "put", "get", "cas-low", "cas-high", "scan", "mixed":
	default:
		return UsageErrorf("unknown workload %q (want put, get, cas-low, cas-high, scan or mixed)", c.workload)
	}
	switch {
	case c.concurrency < 1:
		return UsageErrorf("--concurrency must be at least 1")
	case c.duration <= 0:
		return UsageErrorf("--duration must be positive")
	case c.ops < 0:
		return UsageErrorf("--ops must not be negative")
	case c.valueSize < 0:
		return UsageErrorf("--value-size must not be negative")
	case c.keys < 1:
		return UsageErrorf("--keys must be at least 1")
	case c.warmup < 0:
		return UsageErrorf("--warmup must not be negative")
	case c.scanLimit < 1:
		return UsageErrorf("--scan-limit must be at least 1")
	case c.streams < 1:
		return UsageErrorf("--streams must be at least 1")
	case c.readPercent < 0 || c.readPercent > 100:
		return UsageErrorf("--read-percent must be within 0..100")
	}
	if digits := len(strconv.Itoa(c.keys - 1)); c.keySize < 1+digits {
		return UsageErrorf("--key-size %d is too small for %d keys (need at least %d)", c.keySize, c.keys, 1+digits)
	}
	return nil
}

func (c *benchConfig) key(i int) []byte {
	return fmt.Appendf(make([]byte, 0, c.keySize), "k%0*d", c.keySize-1, i)
}

func (c *benchConfig) needsLoad() bool {
	return c.workload != "put" && !c.noLoad
}

// benchStats are one phase's counters, shared by the workers.
type benchStats struct {
	ops       atomic.Int64 // operations finished (successful or not)
	errors    atomic.Int64
	conflicts atomic.Int64
	casOK     atomic.Int64
	issued    atomic.Int64 // operations started, for --ops
	firstErr  atomic.Pointer[error]
}

func (s *benchStats) fail(err error) {
	s.errors.Add(1)
	s.firstErr.CompareAndSwap(nil, &err)
}

// benchReport is the final result.
type benchReport struct {
	Workload    string
	Transport   string
	Concurrency int
	Keys        int
	KeySize     int
	ValueSize   int
	Duration    time.Duration
	Ops         int64
	Errors      int64
	Conflicts   int64
	CASOK       int64
	FirstError  string
	Hist        *hdrhistogram.Histogram
	Interrupted bool
}

func newHist() *hdrhistogram.Histogram {
	// Microseconds, 1µs to 1 minute, 3 significant figures.
	return hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
}

func runBench(ctx context.Context, g *globals, cfg benchConfig, stdout, stderr io.Writer) error {
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	c, err := g.dial(cctx, client.WithStreams(cfg.streams))
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()

	value := make([]byte, cfg.valueSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	var wopts []client.WriteOption
	if cfg.async {
		wopts = append(wopts, client.WithAsync())
	}

	if cfg.needsLoad() {
		fmt.Fprintf(stderr, "loading %d keys...\n", cfg.keys)
		lctx, cancel := context.WithTimeout(ctx, g.timeout)
		err := loadKeys(lctx, c, &cfg, value)
		cancel()
		if err != nil {
			return fmt.Errorf("loading keys: %w", err)
		}
	}
	if cfg.warmup > 0 {
		fmt.Fprintf(stderr, "warming up for %s...\n", cfg.warmup)
		wctx, cancel := context.WithTimeout(ctx, cfg.warmup)
		runPhase(wctx, c, &cfg, value, wopts, &benchStats{})
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	rctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	stats := &benchStats{}
	progressDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(progressDone)
		progress(rctx, stats, start, stderr)
	}()
	hist := runPhase(rctx, c, &cfg, value, wopts, stats)
	elapsed := time.Since(start)
	cancel()
	<-progressDone

	rep := benchReport{
		Workload: cfg.workload, Transport: "stream", Concurrency: cfg.concurrency,
		Keys: cfg.keys, KeySize: cfg.keySize, ValueSize: cfg.valueSize,
		Duration: elapsed, Ops: stats.ops.Load(), Errors: stats.errors.Load(),
		Conflicts: stats.conflicts.Load(), CASOK: stats.casOK.Load(), Hist: hist,
		Interrupted: ctx.Err() != nil,
	}
	if g.unary {
		rep.Transport = "unary"
	}
	if p := stats.firstErr.Load(); p != nil {
		rep.FirstError = (*p).Error()
	}
	if g.json {
		err = writeJSON(stdout, rep.json())
	} else {
		err = rep.print(stdout)
	}
	if err != nil {
		return err
	}
	if rep.Errors > 0 {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%d operations failed; first error: %s", rep.Errors, rep.FirstError)}
	}
	return nil
}

// loadKeys writes every key once, with concurrency workers.
// loadWorkers is the least number of concurrent writers loadKeys uses.
const loadWorkers = 64

func loadKeys(ctx context.Context, c *client.Client, cfg *benchConfig, value []byte) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	// Load with plenty of workers whatever the workload's concurrency, so a
	// single-client run does not spend its --timeout on loading.
	for range min(max(cfg.concurrency, loadWorkers), cfg.keys) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(cfg.keys) || ctx.Err() != nil {
					return
				}
				if _, err := c.Put(ctx, cfg.key(int(i)), value, client.WithAsync()); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// runPhase runs the workload until ctx ends or --ops operations have been
// issued, and returns the merged latency histogram.
func runPhase(ctx context.Context, c *client.Client, cfg *benchConfig, value []byte, wopts []client.WriteOption, stats *benchStats) *hdrhistogram.Histogram {
	hists := make([]*hdrhistogram.Histogram, cfg.concurrency)
	var wg sync.WaitGroup
	for w := range cfg.concurrency {
		hists[w] = newHist()
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w)+1, uint64(time.Now().UnixNano())))
			h := hists[w]
			for !phaseOver(ctx) {
				if cfg.ops > 0 && stats.issued.Add(1) > cfg.ops {
					return
				}
				t0 := time.Now()
				err := benchOp(ctx, c, cfg, rng, value, wopts, stats)
				lat := time.Since(t0)
				if err != nil {
					if phaseOver(ctx) {
						return // the phase ended during the operation: not counted
					}
					stats.fail(err)
				}
				stats.ops.Add(1)
				us := max(lat.Microseconds(), 1)
				if err := h.RecordValue(us); err != nil {
					_ = h.RecordValue(h.HighestTrackableValue())
				}
			}
		})
	}
	wg.Wait()
	total := newHist()
	for _, h := range hists {
		total.Merge(h)
	}
	return total
}

// phaseOver reports whether the phase has ended: its context is done, or
// its deadline has passed and the timer that will cancel it has not fired
// yet (under load it can lag; operations started then fail at once with
// a deadline error that is not the server's fault).
func phaseOver(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func benchOp(ctx context.Context, c *client.Client, cfg *benchConfig, rng *rand.Rand, value []byte, wopts []client.WriteOption, stats *benchStats) error {
	key := cfg.key(rng.IntN(cfg.keys))
	switch cfg.workload {
	case "put":
		_, err := c.Put(ctx, key, value, wopts...)
		return err
	case "get":
		_, _, _, err := c.Get(ctx, key)
		return err
	case "cas-low", "cas-high":
		return readCAS(ctx, c, key, value, wopts, stats)
	case "scan":
		for _, err := range c.Scan(ctx, key, nil, client.ScanOptions{Limit: cfg.scanLimit}) {
			if err != nil {
				return err
			}
		}
		return nil
	case "mixed":
		r := rng.IntN(100)
		switch {
		case r < cfg.readPercent:
			_, _, _, err := c.Get(ctx, key)
			return err
		case (r-cfg.readPercent)%2 == 0:
			_, err := c.Put(ctx, key, value, wopts...)
			return err
		default:
			return readCAS(ctx, c, key, value, wopts, stats)
		}
	}
	return fmt.Errorf("unknown workload %q", cfg.workload)
}

// readCAS reads key and writes it back conditionally on the version read.
func readCAS(ctx context.Context, c *client.Client, key, value []byte, wopts []client.WriteOption, stats *benchStats) error {
	_, ver, _, err := c.Get(ctx, key)
	if err != nil {
		return err
	}
	r, err := c.CompareAndSwap(ctx, key, client.IfVersion(ver), value, wopts...)
	if err != nil {
		return err
	}
	if r.Succeeded {
		stats.casOK.Add(1)
	} else {
		stats.conflicts.Add(1)
	}
	return nil
}

// progress prints a line on w each second until ctx ends.
func progress(ctx context.Context, s *benchStats, start time.Time, w io.Writer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ops := s.ops.Load()
			fmt.Fprintf(w, "[%4.0fs] ops %d (%d/s)  errors %d  cas conflicts %d\n",
				now.Sub(start).Seconds(), ops, ops-last, s.errors.Load(), s.conflicts.Load())
			last = ops
		}
	}
}

func (r *benchReport) opsPerSec() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Duration.Seconds()
}

func (r *benchReport) json() object {
	h := r.Hist
	return object{
		{"workload", r.Workload},
		{"transport", r.Transport},
		{"concurrency", r.Concurrency},
		{"keys", r.Keys},
		{"key_size", r.KeySize},
		{"value_size", r.ValueSize},
		{"duration_seconds", r.Duration.Seconds()},
		{"ops", r.Ops},
		{"ops_per_second", r.opsPerSec()},
		{"errors", r.Errors},
		{"cas_conflicts", r.Conflicts},
		{"cas_succeeded", r.CASOK},
		{"first_error", r.FirstError},
		{"interrupted", r.Interrupted},
		{"latency_us", object{
			{"mean", h.Mean()},
			{"p50", h.ValueAtQuantile(50)},
			{"p90", h.ValueAtQuantile(90)},
			{"p99", h.ValueAtQuantile(99)},
			{"p99.9", h.ValueAtQuantile(99.9)},
			{"max", h.Max()},
		}},
	}
}

func (r *benchReport) print(w io.Writer) error {
	h := r.Hist
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\t%s (%s, %d workers, %d keys of %d bytes, %d-byte values)\n",
		r.Workload, r.Transport, r.Concurrency, r.Keys, r.KeySize, r.ValueSize)
	fmt.Fprintf(tw, "duration\t%s%s\n", r.Duration.Round(time.Millisecond), map[bool]string{true: " (interrupted)"}[r.Interrupted])
	fmt.Fprintf(tw, "ops\t%d (%.1f ops/s)\n", r.Ops, r.opsPerSec())
	fmt.Fprintf(tw, "errors\t%d\n", r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(tw, "first error\t%s\n", r.FirstError)
	}
	if r.Workload == "cas-low" || r.Workload == "cas-high" || r.Workload == "mixed" {
		fmt.Fprintf(tw, "cas\t%d succeeded, %d conflicts\n", r.CASOK, r.Conflicts)
	}
	fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n",
		us(h.ValueAtQuantile(50)), us(h.ValueAtQuantile(90)), us(h.ValueAtQuantile(99)),
		us(h.ValueAtQuantile(99.9)), us(h.Max()), us(int64(h.Mean())))
	return tw.Flush()
}

// us formats microseconds for humans.
func us(v int64) string {
	return (time.Duration(v) * time.Microsecond).String()
}
