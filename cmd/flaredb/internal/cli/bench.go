package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
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
  scan       scans of up to --scan-limit entries from random existing
             keys, within the bench's keys (up to "l", exclusive)
  mixed      --read-percent gets, the rest split between puts and
             read-then-CAS

Keys are "k" followed by a zero-padded number, --key-size bytes long, drawn
uniformly from --keys keys. --key-size and --value-size must be within the
server's limits (max_key_size and max_value_size, as its status reports
them) and at most 1 GiB. For get, scan, cas and mixed the keys are written
first (not measured). --warmup runs the workload unmeasured for that long
before the measurement. The run ends after --duration, or once --ops
operations have been issued (successful or not), whichever comes first. A
read-then-CAS pair counts as one operation; a CAS that loses its race
counts as a conflict, not an error (and is a successful operation).

Ops are successful operations: "ops" and ops/s count only operations that
succeeded, and the latency percentiles are theirs. Failed operations are
counted as errors, apart. Reads (gets, and scans) that found nothing, a get
of an absent key or a scan that returned no entries, are successful but
counted as misses too: with --no-load on an empty store every read misses,
and a warning on stderr says so when most reads missed.

Prints a progress line each second on stderr and a final report (with
--json, one JSON object) with ops, ops/s, errors, reads and misses, CAS
conflicts and latency percentiles (p50, p90, p99, p99.9, max) from an HDR histogram. Exits with
code 1 if any operation failed. Ctrl-C during the measurement ends it: the
report is printed, and the command exits with code 1. --timeout bounds
connecting and loading, not the run.`

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
	f.IntVar(&cfg.concurrency, "concurrency", 64, fmt.Sprintf("concurrent workers (at most %d)", maxBenchConcurrency))
	f.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to measure")
	f.Int64Var(&cfg.ops, "ops", 0, "stop after issuing this many operations, successful or not (0: no limit)")
	f.IntVar(&cfg.valueSize, "value-size", 128, "value size in bytes")
	f.IntVar(&cfg.keySize, "key-size", 16, "key size in bytes")
	f.IntVar(&cfg.keys, "keys", 10000, "number of distinct keys (cas-high: 8)")
	f.DurationVar(&cfg.warmup, "warmup", 0, "how long to run the workload unmeasured before measuring (0: no warmup)")
	f.IntVar(&cfg.scanLimit, "scan-limit", 100, "entries per scan (scan workload)")
	f.IntVar(&cfg.readPercent, "read-percent", 80, "percentage of gets (mixed workload)")
	f.BoolVar(&cfg.async, "async", false, "writes acknowledged before they are synced")
	f.BoolVar(&cfg.noLoad, "no-load", false, "skip writing the keys first")
	f.IntVar(&cfg.streams, "streams", 1, "multiplexed streams to spread requests over (without --unary)")
	return cmd
}

const (
	// maxBenchConcurrency bounds --concurrency.
	maxBenchConcurrency = 100000
	// maxBenchSize bounds --key-size and --value-size whatever the
	// server's limits, so that no server (one without limits, say) can make
	// the CLI allocate absurd amounts of memory.
	maxBenchSize = 1 << 30
)

// validate checks the flags on their own; runBench checks the sizes
// against the server's limits once connected. Nothing is allocated after
// the flags before both checks.
func (c *benchConfig) validate() error {
	switch c.workload {
	case "put", "get", "cas-low", "cas-high", "scan", "mixed":
	default:
		return UsageErrorf("unknown workload %q (want put, get, cas-low, cas-high, scan or mixed)", c.workload)
	}
	switch {
	case c.concurrency < 1:
		return UsageErrorf("--concurrency must be at least 1")
	case c.concurrency > maxBenchConcurrency:
		return UsageErrorf("--concurrency must be at most %d", maxBenchConcurrency)
	case c.duration <= 0:
		return UsageErrorf("--duration must be positive")
	case c.ops < 0:
		return UsageErrorf("--ops must not be negative")
	case c.valueSize < 0:
		return UsageErrorf("--value-size must not be negative")
	case c.valueSize > maxBenchSize:
		return UsageErrorf("--value-size must be at most %d (1 GiB)", maxBenchSize)
	case c.keySize > maxBenchSize:
		return UsageErrorf("--key-size must be at most %d (1 GiB)", maxBenchSize)
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

// checkLimits refuses key and value sizes beyond the server's limits (0:
// none), which would make every operation fail.
func (c *benchConfig) checkLimits(l client.Limits) error {
	if l.MaxKeySize > 0 && uint64(c.keySize) > l.MaxKeySize {
		return UsageErrorf("--key-size %d exceeds the server's max_key_size (%d bytes)", c.keySize, l.MaxKeySize)
	}
	if l.MaxValueSize > 0 && uint64(c.valueSize) > l.MaxValueSize {
		return UsageErrorf("--value-size %d exceeds the server's max_value_size (%d bytes)", c.valueSize, l.MaxValueSize)
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
	ops       atomic.Int64 // operations that succeeded
	errors    atomic.Int64 // operations that failed
	conflicts atomic.Int64
	casOK     atomic.Int64
	reads     atomic.Int64 // successful gets and scans (not a CAS's read)
	misses    atomic.Int64 // reads that found nothing
	issued    atomic.Int64 // operations started (successful or not), for --ops
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
	Ops         int64 // successful operations
	Errors      int64 // failed operations
	Conflicts   int64
	CASOK       int64
	Reads       int64 // successful gets and scans
	Misses      int64 // reads that found nothing
	NoLoad      bool  // the keys were not loaded first (--no-load)
	FirstError  string
	Hist        *hdrhistogram.Histogram // successful operations' latencies
	Interrupted bool
}

func newHist() *hdrhistogram.Histogram {
	// Microseconds, 1µs to 1 minute, 3 significant figures (~140 KB).
	return hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
}

// latencies records the workers' latencies in a few HDR histograms, each
// behind a mutex: one per worker would cost ~140 KB each (gigabytes for
// tens of thousands of workers, and time to merge them). Worker w records
// into shard w % len(shards).
type latencies struct {
	shards []latencyShard
}

type latencyShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	_  [48]byte // keeps shards' mutexes on separate cache lines
}

// newLatencies returns a recorder for workers workers, with
// min(workers, 4*GOMAXPROCS) shards.
func newLatencies(workers int) *latencies {
	l := &latencies{shards: make([]latencyShard, max(min(workers, 4*runtime.GOMAXPROCS(0)), 1))}
	for i := range l.shards {
		l.shards[i].h = newHist()
	}
	return l
}

// record records worker's operation that took d. It is safe for
// concurrent use.
func (l *latencies) record(worker int, d time.Duration) {
	s := &l.shards[worker%len(l.shards)]
	us := max(d.Microseconds(), 1)
	s.mu.Lock()
	if err := s.h.RecordValue(us); err != nil {
		_ = s.h.RecordValue(s.h.HighestTrackableValue())
	}
	s.mu.Unlock()
}

// merged returns every shard's latencies in one histogram; call it once,
// after the workers are done (it merges into the first shard).
func (l *latencies) merged() *hdrhistogram.Histogram {
	total := l.shards[0].h
	for i := 1; i < len(l.shards); i++ {
		total.Merge(l.shards[i].h)
	}
	return total
}

// errorContext is err with what it was doing, err's message keeping one
// "flaredb: " prefix at its front: client errors carry one, and Execute
// adds one to any message without it.
type errorContext struct {
	what string
	err  error
}

func (e *errorContext) Error() string {
	msg := e.err.Error()
	if rest, ok := strings.CutPrefix(msg, "flaredb: "); ok {
		return "flaredb: " + e.what + ": " + rest
	}
	return e.what + ": " + msg
}

func (e *errorContext) Unwrap() error { return e.err }

func runBench(ctx context.Context, g *globals, cfg benchConfig, stdout, stderr io.Writer) error {
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	c, err := g.dial(cctx, client.WithStreams(cfg.streams))
	if err != nil {
		cancel()
		return err
	}
	defer c.Close()
	st, err := c.Status(cctx)
	cancel()
	switch {
	case errors.Is(err, client.ErrUnsupported):
		// A server without Status: its limits are unknown.
	case err != nil:
		return &errorContext{"reading the server's limits", err}
	default:
		if err := cfg.checkLimits(st.Limits); err != nil {
			return err
		}
	}

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
		if ctx.Err() != nil {
			return errors.New("interrupted while loading keys")
		}
		if err != nil {
			return &errorContext{"loading keys", err}
		}
	}
	if cfg.warmup > 0 {
		fmt.Fprintf(stderr, "warming up for %s...\n", cfg.warmup)
		wctx, cancel := context.WithTimeout(ctx, cfg.warmup)
		runPhase(wctx, c, &cfg, value, wopts, &benchStats{}, nil)
		cancel()
		if ctx.Err() != nil {
			return errors.New("interrupted during warmup")
		}
	}

	// Everything the workers record into exists before the clock starts,
	// and the clock stops when they are done, before their latencies are
	// merged.
	stats := &benchStats{}
	lat := newLatencies(cfg.concurrency)
	progressDone := make(chan struct{})
	start := time.Now()
	rctx, cancel := context.WithDeadline(ctx, start.Add(cfg.duration))
	defer cancel()
	go func() {
		defer close(progressDone)
		progress(rctx, stats, start, stderr)
	}()
	runPhase(rctx, c, &cfg, value, wopts, stats, lat)
	elapsed := time.Since(start)
	interrupted := ctx.Err() != nil
	cancel()
	<-progressDone

	rep := benchReport{
		Workload: cfg.workload, Transport: "stream", Concurrency: cfg.concurrency,
		Keys: cfg.keys, KeySize: cfg.keySize, ValueSize: cfg.valueSize,
		Duration: elapsed, Ops: stats.ops.Load(), Errors: stats.errors.Load(),
		Conflicts: stats.conflicts.Load(), CASOK: stats.casOK.Load(), Hist: lat.merged(),
		Reads: stats.reads.Load(), Misses: stats.misses.Load(), NoLoad: cfg.noLoad,
		Interrupted: interrupted,
	}
	if g.unary {
		rep.Transport = "unary"
	}
	firstErr := stats.firstErr.Load()
	if firstErr != nil {
		rep.FirstError = (*firstErr).Error()
	}
	if g.json {
		err = writeJSON(stdout, rep.json())
	} else {
		err = rep.print(stdout)
	}
	if err != nil {
		return err
	}
	if w := rep.missWarning(); w != "" {
		fmt.Fprintln(stderr, w)
	}
	var what []string
	if rep.Interrupted {
		what = append(what, fmt.Sprintf("run interrupted after %s", elapsed.Round(time.Millisecond)))
	}
	if rep.Errors > 0 {
		what = append(what, fmt.Sprintf("%d operations failed", rep.Errors))
	}
	switch {
	case firstErr != nil:
		// The first error carries its own "flaredb: " prefix.
		what = append(what, "first error")
		return &ExitError{Code: ExitFailure, Err: &errorContext{strings.Join(what, "; "), *firstErr}}
	case len(what) > 0:
		return &ExitError{Code: ExitFailure, Err: errors.New(strings.Join(what, "; "))}
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
// issued, and returns when every worker is done. Successful operations'
// latencies go into lat, unless it is nil; failed operations are only
// counted in stats.
func runPhase(ctx context.Context, c *client.Client, cfg *benchConfig, value []byte, wopts []client.WriteOption, stats *benchStats, lat *latencies) {
	var wg sync.WaitGroup
	for w := range cfg.concurrency {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w)+1, uint64(time.Now().UnixNano())))
			for !phaseOver(ctx) {
				if cfg.ops > 0 && stats.issued.Add(1) > cfg.ops {
					return
				}
				t0 := time.Now()
				err := benchOp(ctx, c, cfg, rng, value, wopts, stats)
				d := time.Since(t0)
				if err != nil {
					if phaseOver(ctx) {
						return // the phase ended during the operation: not counted
					}
					stats.fail(err)
					continue
				}
				stats.ops.Add(1)
				if lat != nil {
					lat.record(w, d)
				}
			}
		})
	}
	wg.Wait()
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
		return benchGet(ctx, c, key, stats)
	case "cas-low", "cas-high":
		return readCAS(ctx, c, key, value, wopts, stats)
	case "scan":
		n := 0
		// Within the bench's "k" keys: other data in the store is
		// neither read nor counted as a hit.
		for _, err := range c.Scan(ctx, key, benchKeysEnd, client.ScanOptions{Limit: cfg.scanLimit}) {
			if err != nil {
				return err
			}
			n++
		}
		stats.read(n > 0)
		return nil
	case "mixed":
		if rng.IntN(100) < cfg.readPercent {
			return benchGet(ctx, c, key, stats)
		}
		// A write: a put or a read-then-CAS, evenly, whatever the
		// read percentage.
		if rng.IntN(2) == 0 {
			_, err := c.Put(ctx, key, value, wopts...)
			return err
		}
		return readCAS(ctx, c, key, value, wopts, stats)
	}
	return fmt.Errorf("unknown workload %q", cfg.workload)
}

// benchKeysEnd is the exclusive end of the bench's keys, which all start
// with "k".
var benchKeysEnd = []byte("l")

// benchGet gets key, counting a miss if it is absent.
func benchGet(ctx context.Context, c *client.Client, key []byte, stats *benchStats) error {
	_, _, found, err := c.Get(ctx, key)
	if err != nil {
		return err
	}
	stats.read(found)
	return nil
}

// read counts a successful read, and a miss unless it found something.
func (s *benchStats) read(found bool) {
	s.reads.Add(1)
	if !found {
		s.misses.Add(1)
	}
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

// progress prints a line on w each second until ctx ends: successful
// operations so far and in the last second, and failures.
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
			fmt.Fprintf(w, "[%4.0fs] successful ops %d (%d/s)  errors %d  cas conflicts %d\n",
				now.Sub(start).Seconds(), ops, ops-last, s.errors.Load(), s.conflicts.Load())
			last = ops
		}
	}
}

// opsPerSec is successful operations per second.
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
		{"reads", r.Reads},
		{"misses", r.Misses},
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
	if r.Workload == "get" || r.Workload == "scan" || r.Workload == "mixed" {
		fmt.Fprintf(tw, "misses\t%d of %d reads found nothing (%s)\n", r.Misses, r.Reads, r.missPercent())
	}
	if r.Workload == "cas-low" || r.Workload == "cas-high" || r.Workload == "mixed" {
		fmt.Fprintf(tw, "cas\t%d succeeded, %d conflicts\n", r.CASOK, r.Conflicts)
	}
	fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n",
		us(h.ValueAtQuantile(50)), us(h.ValueAtQuantile(90)), us(h.ValueAtQuantile(99)),
		us(h.ValueAtQuantile(99.9)), us(h.Max()), us(int64(h.Mean())))
	return tw.Flush()
}

// missPercent is the share of reads that missed, for humans.
func (r *benchReport) missPercent() string {
	if r.Reads == 0 {
		return "no reads"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(r.Misses)/float64(r.Reads))
}

// missWarning is a warning for stderr when most reads found nothing (the
// run did not measure reads of stored data), or "".
func (r *benchReport) missWarning() string {
	if r.Reads == 0 || 2*r.Misses <= r.Reads {
		return ""
	}
	w := fmt.Sprintf("flaredb: warning: %d of %d reads (%s) found nothing", r.Misses, r.Reads, r.missPercent())
	if r.NoLoad {
		w += ": the keys were not loaded (--no-load)"
	}
	return w
}

// us formats microseconds for humans.
func us(v int64) string {
	return (time.Duration(v) * time.Microsecond).String()
}
