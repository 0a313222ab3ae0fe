package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/internal/servertest"
)

// benchJSON is the part of bench's --json report the tests read.
type benchJSON struct {
	Workload    string             `json:"workload"`
	Duration    float64            `json:"duration_seconds"`
	Ops         int64              `json:"ops"`
	OpsPerSec   float64            `json:"ops_per_second"`
	Errors      int64              `json:"errors"`
	Conflicts   int64              `json:"cas_conflicts"`
	CASOK       int64              `json:"cas_succeeded"`
	Reads       *int64             `json:"reads"`
	Misses      *int64             `json:"misses"`
	FirstError  string             `json:"first_error"`
	Interrupted bool               `json:"interrupted"`
	Latency     map[string]float64 `json:"latency_us"`
}

func parseBench(t *testing.T, stdout string) benchJSON {
	t.Helper()
	var rep benchJSON
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %q", err, stdout)
	}
	return rep
}

// TestBenchWarmupFlag: --warmup takes its duration as a separate argument,
// as the command's own example does.
func TestBenchWarmupFlag(t *testing.T) {
	srv := servertest.Start(t, nil)
	r := runCLI(t, "", "--addr", srv.Addr, "--json", "bench", "--workload", "get", "--warmup", "50ms",
		"--ops", "20", "--concurrency", "2", "--keys", "10", "--key-size", "4")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if rep := parseBench(t, r.stdout); rep.Ops != 20 {
		t.Fatalf("%+v", rep)
	}
	if !strings.Contains(r.stderr, "warming up for 50ms") {
		t.Fatalf("stderr %q", r.stderr)
	}
	// --warmup needs a value now.
	r = runCLI(t, "", "--addr", srv.Addr, "bench", "--warmup")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "needs an argument") {
		t.Fatalf("%+v", r)
	}
}

// TestBenchFailedOps: failed operations are errors, not ops; they do not
// count towards ops/s nor the latency percentiles, but --ops still counts
// them as issued.
func TestBenchFailedOps(t *testing.T) {
	srv := servertest.Start(t, nil)
	srv.Faults.FailKey([]byte("k0"), fmt.Errorf("injected: %w", engine.ErrTooLarge))

	// Every operation fails.
	r := runCLI(t, "", "--addr", srv.Addr, "--json", "bench", "--workload", "put", "--ops", "30",
		"--concurrency", "3", "--keys", "1", "--key-size", "2")
	if r.code != ExitFailure {
		t.Fatalf("%+v", r)
	}
	rep := parseBench(t, r.stdout)
	if rep.Ops != 0 || rep.OpsPerSec != 0 || rep.Errors != 30 || !strings.Contains(rep.FirstError, "injected") {
		t.Fatalf("%+v", rep)
	}
	for p, v := range rep.Latency {
		if v != 0 {
			t.Fatalf("latency %s = %v from failed operations only", p, v)
		}
	}
	if !strings.Contains(r.stderr, "30 operations failed") {
		t.Fatalf("stderr %q", r.stderr)
	}

	// Half of the keys fail: ops and errors add up to --ops.
	r = runCLI(t, "", "--addr", srv.Addr, "--json", "bench", "--workload", "put", "--ops", "200",
		"--concurrency", "4", "--keys", "2", "--key-size", "2")
	if r.code != ExitFailure {
		t.Fatalf("%+v", r)
	}
	rep = parseBench(t, r.stdout)
	if rep.Ops+rep.Errors != 200 || rep.Ops == 0 || rep.Errors == 0 {
		t.Fatalf("%+v", rep)
	}
	if want := float64(rep.Ops) / rep.Duration; math.Abs(rep.OpsPerSec-want) > 1e-6*want {
		t.Fatalf("ops/s %v, want %v", rep.OpsPerSec, want)
	}
}

// TestBenchDuration: a run bounded by --duration lasts about that long and
// reports ops/s as ops over that duration.
func TestBenchDuration(t *testing.T) {
	srv := servertest.Start(t, nil)
	const d = 1.0 // seconds
	r := runCLI(t, "", "--addr", srv.Addr, "--json", "bench", "--workload", "put", "--duration", "1s",
		"--concurrency", "500", "--value-size", "8")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	rep := parseBench(t, r.stdout)
	// The clock starts before the deadline is set and stops when the
	// workers are done: never before the deadline. (How long after is left
	// to the machine: no timing assertion.)
	if rep.Duration < d {
		t.Fatalf("duration %vs for --duration 1s", rep.Duration)
	}
	if rep.Ops == 0 || rep.Interrupted {
		t.Fatalf("%+v", rep)
	}
	if want := float64(rep.Ops) / rep.Duration; math.Abs(rep.OpsPerSec-want) > 1e-6*want {
		t.Fatalf("ops/s %v, want %v", rep.OpsPerSec, want)
	}
}

// TestBenchHighConcurrency: many workers do not each get a latency
// histogram (~140 KB each: 2.8 GB for 20000 workers).
func TestBenchHighConcurrency(t *testing.T) {
	srv := servertest.Start(t, nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := runCLI(t, "", "--addr", srv.Addr, "--json", "bench", "--workload", "put", "--ops", "200",
		"--concurrency", "20000", "--duration", "1m", "--value-size", "8")
	runtime.ReadMemStats(&after)
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if rep := parseBench(t, r.stdout); rep.Ops != 200 {
		t.Fatalf("%+v", rep)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Fatalf("allocated %d MB for 20000 workers", alloc>>20)
	}

	r = runCLI(t, "", "--addr", srv.Addr, "bench", "--concurrency", "100001")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--concurrency must be at most 100000") {
		t.Fatalf("%+v", r)
	}
}

// TestBenchSizeLimits: key and value sizes beyond the server's limits, or
// beyond any sane size, are usage errors, found before anything is
// allocated or run.
func TestBenchSizeLimits(t *testing.T) {
	srv := servertest.Start(t, &servertest.Options{Config: func(c *config.Config) {
		c.Limits.MaxKeySize = 64
		c.Limits.MaxValueSize = 1024
	}})
	cases := []struct {
		args   []string
		stderr string
	}{
		{[]string{"--value-size", "1025"}, "--value-size 1025 exceeds the server's max_value_size (1024 bytes)"},
		{[]string{"--key-size", "65"}, "--key-size 65 exceeds the server's max_key_size (64 bytes)"},
		{[]string{"--workload", "get", "--key-size", "100"}, "--key-size 100 exceeds the server's max_key_size (64 bytes)"},
		{[]string{"--value-size", "4611686018427387904"}, "--value-size must be at most 1073741824"},
		{[]string{"--value-size", "2147483648"}, "--value-size must be at most 1073741824"},
		{[]string{"--key-size", "4611686018427387904"}, "--key-size must be at most 1073741824"},
	}
	for _, tc := range cases {
		args := append([]string{"--addr", srv.Addr, "bench", "--ops", "10"}, tc.args...)
		r := runCLI(t, "", args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tc.stderr) || r.stdout != "" {
			t.Fatalf("%v: %+v", tc.args, r)
		}
		if strings.Contains(r.stderr, "loading") {
			t.Fatalf("%v: loaded keys before refusing: %q", tc.args, r.stderr)
		}
	}
	// At the limits, it runs.
	r := runCLI(t, "", "--addr", srv.Addr, "bench", "--ops", "10", "--key-size", "64", "--value-size", "1024")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
}

// TestBenchMixedSplit: writes are split between puts and read-then-CAS
// whatever --read-percent (at 99, every write was a put).
func TestBenchMixedSplit(t *testing.T) {
	srv := servertest.Start(t, nil)
	r := runCLI(t, "", "--addr", srv.Addr, "--json", "bench", "--workload", "mixed", "--read-percent", "99",
		"--ops", "5000", "--concurrency", "16", "--keys", "20", "--key-size", "4", "--duration", "1m")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	// About 25 CAS expected; none at all has probability 0.995^5000 < 1e-10.
	rep := parseBench(t, r.stdout)
	if cas := rep.CASOK + rep.Conflicts; cas == 0 || cas > 250 {
		t.Fatalf("%d CAS in %d ops at 99%% reads: %+v", cas, rep.Ops, rep)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes that reports
// when its content first contains want.
type syncBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	seen chan struct{}
}

func newSyncBuffer(want string) *syncBuffer {
	return &syncBuffer{want: want, seen: make(chan struct{})}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	if s.want != "" && strings.Contains(s.b.String(), s.want) {
		s.want = ""
		close(s.seen)
	}
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// interruptBench runs bench through Execute with a context it cancels (as
// Main's Ctrl-C handler does) once stderr shows when.
func interruptBench(t *testing.T, when string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	errb := newSyncBuffer(when)
	go func() {
		select {
		case <-errb.seen:
			cancel()
		case <-ctx.Done():
		}
	}()
	done := make(chan int)
	go func() { done <- Execute(ctx, NewRootCommand(), args, strings.NewReader(""), &out, errb) }()
	select {
	case code = <-done:
	case <-time.After(time.Minute):
		t.Fatalf("bench not interrupted; stderr: %s", errb.String())
	}
	return code, out.String(), errb.String()
}

// TestBenchInterrupt: Ctrl-C during the run prints the report and fails;
// during the warmup it fails with a clear error.
func TestBenchInterrupt(t *testing.T) {
	srv := servertest.Start(t, nil)
	// The first progress line shows the measured run has started.
	code, stdout, stderr := interruptBench(t, "errors 0",
		"--addr", srv.Addr, "--json", "bench", "--workload", "put", "--concurrency", "2", "--duration", "1m")
	if code != ExitFailure || !strings.Contains(stderr, "flaredb: run interrupted after ") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if rep := parseBench(t, stdout); !rep.Interrupted || rep.Ops == 0 || rep.Duration >= 60 {
		t.Fatalf("%+v", rep)
	}

	code, stdout, stderr = interruptBench(t, "warming up",
		"--addr", srv.Addr, "bench", "--workload", "put", "--concurrency", "2", "--warmup", "1m")
	if code != ExitFailure || !strings.HasSuffix(stderr, "flaredb: interrupted during warmup\n") || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestBenchErrorPrefix: errors from the server are printed with one
// "flaredb: " prefix, like other commands' errors.
func TestBenchErrorPrefix(t *testing.T) {
	srv := servertest.Start(t, nil)
	srv.Faults.FailKey([]byte("k0"), fmt.Errorf("injected: %w", engine.ErrTooLarge))
	// Loading the keys fails.
	r := runCLI(t, "", "--addr", srv.Addr, "bench", "--workload", "get", "--ops", "10", "--keys", "1", "--key-size", "2")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "flaredb: loading keys: too large: ") ||
		strings.Count(r.stderr, "flaredb:") != 1 {
		t.Fatalf("%+v", r)
	}
	// The operations fail.
	r = runCLI(t, "", "--addr", srv.Addr, "bench", "--workload", "put", "--ops", "10", "--keys", "1", "--key-size", "2")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "flaredb: 10 operations failed; first error: too large: ") ||
		strings.Count(r.stderr, "flaredb:") != 1 {
		t.Fatalf("%+v", r)
	}
}

// TestBenchMisses: reads that find nothing (gets of absent keys, empty
// scans) are counted as misses, in the JSON and the human report, and a
// warning on stderr says when most reads missed, as with --no-load on an
// empty store.
func TestBenchMisses(t *testing.T) {
	const ops = 40
	cases := []struct {
		workload string
		noLoad   bool
		reads    int64 // successful gets and scans
		misses   int64
		foreign  bool // the store holds keys of its own, after the bench's
	}{
		{"get", true, ops, ops, false},
		{"scan", true, ops, ops, false},
		{"scan", true, ops, ops, true},   // scans stay within the bench's keys
		{"mixed", true, ops, ops, false}, // --read-percent 100: no writes
		{"get", false, ops, 0, false},
		{"scan", false, ops, 0, false},
		{"mixed", false, ops, 0, false},
		{"put", true, 0, 0, false},
		{"cas-low", true, 0, 0, false}, // a CAS's read is not counted
	}
	missLine := regexp.MustCompile(`(?m)^misses +(\d+) of (\d+) reads found nothing \((.*)\)$`)
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s no-load=%v foreign=%v", tc.workload, tc.noLoad, tc.foreign), func(t *testing.T) {
			srv := servertest.Start(t, nil) // an empty store
			if tc.foreign {
				for _, k := range []string{"l", "user:1", "zz"} {
					if r := runCLI(t, "", "--addr", srv.Addr, "put", k, "v"); r.code != 0 {
						t.Fatalf("%+v", r)
					}
				}
			}
			args := []string{"--addr", srv.Addr, "bench", "--workload", tc.workload, "--ops", fmt.Sprint(ops),
				"--concurrency", "2", "--keys", "100", "--key-size", "4", "--value-size", "8", "--duration", "1m",
				"--read-percent", "100", "--scan-limit", "3"}
			if tc.noLoad {
				args = append(args, "--no-load")
			}
			r := runCLI(t, "", append([]string{"--json"}, args...)...)
			if r.code != 0 {
				t.Fatalf("%+v", r)
			}
			rep := parseBench(t, r.stdout)
			if rep.Reads == nil || rep.Misses == nil {
				t.Fatalf("no reads or misses in %s", r.stdout)
			}
			if rep.Ops != ops || *rep.Reads != tc.reads || *rep.Misses != tc.misses {
				t.Fatalf("%d ops, %d reads, %d misses; want %d, %d, %d", rep.Ops, *rep.Reads, *rep.Misses, ops, tc.reads, tc.misses)
			}
			warning := fmt.Sprintf("flaredb: warning: %d of %d reads (100.0%%) found nothing: the keys were not loaded (--no-load)\n", ops, ops)
			if tc.misses > 0 && !strings.Contains(r.stderr, warning) || tc.misses == 0 && strings.Contains(r.stderr, "warning") {
				t.Fatalf("stderr %q; want a warning: %v", r.stderr, tc.misses > 0)
			}

			// The human report (the store is as empty, or as loaded, as
			// before: no workload here writes but put and cas-low).
			r = runCLI(t, "", args...)
			if r.code != 0 {
				t.Fatalf("%+v", r)
			}
			m := missLine.FindStringSubmatch(r.stdout)
			if tc.reads == 0 {
				if m != nil {
					t.Fatalf("misses line in a workload without reads: %s", r.stdout)
				}
				return
			}
			want := map[bool]string{true: "100.0%", false: "0.0%"}[tc.misses > 0]
			if m == nil || m[1] != fmt.Sprint(tc.misses) || m[2] != fmt.Sprint(tc.reads) || m[3] != want {
				t.Fatalf("want misses %d of %d (%s) in\n%s", tc.misses, tc.reads, want, r.stdout)
			}
		})
	}
}

// TestBenchMissWarning: the warning comes when more than half of the reads
// missed, and names --no-load only when it was given.
func TestBenchMissWarning(t *testing.T) {
	cases := []struct {
		reads, misses int64
		noLoad        bool
		want          string
	}{
		{0, 0, true, ""},
		{10, 0, true, ""},
		{10, 5, true, ""},
		{10, 6, true, "flaredb: warning: 6 of 10 reads (60.0%) found nothing: the keys were not loaded (--no-load)"},
		{10, 10, false, "flaredb: warning: 10 of 10 reads (100.0%) found nothing"},
	}
	for _, tc := range cases {
		r := benchReport{Reads: tc.reads, Misses: tc.misses, NoLoad: tc.noLoad}
		if got := r.missWarning(); got != tc.want {
			t.Errorf("%d of %d, no-load %v: %q, want %q", tc.misses, tc.reads, tc.noLoad, got, tc.want)
		}
	}
}
