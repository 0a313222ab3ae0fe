package conformance

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/flaredb/flaredb/core/engine"
)

// DefaultCaseTimeout is how long Check lets one case run when
// CheckOptions.CaseTimeout is zero.
const DefaultCaseTimeout = 2 * time.Minute

// Statuses of a CaseResult.
const (
	StatusPass = "pass"
	StatusFail = "fail"
	StatusSkip = "skip"
)

// OpenCaseName is the name of the pseudo-case under which Check reports a
// failure to open and describe the engine before any case ran.
const OpenCaseName = "open"

// CheckOptions tune Check. The zero value runs every case with the default
// timeout in the system's temporary directory.
type CheckOptions struct {
	// Filter, when set, selects the cases whose Name it matches.
	Filter *regexp.Regexp
	// CaseTimeout bounds each case (default DefaultCaseTimeout). A case
	// still running then fails, its context is cancelled, and after a short
	// grace period its goroutine is abandoned, still running, so that a
	// hung engine cannot hang the check.
	CaseTimeout time.Duration
	// TempDir is where each case's directories are made (default
	// os.TempDir()). They are removed when the case ends.
	TempDir string
	// Progress, when set, is called with each case's result as soon as the
	// case ends, from the goroutine that called Check.
	Progress func(CaseResult)
}

// Report is the outcome of Check: what ran, against what, and how each case
// went. It marshals to JSON for machines; WriteTable prints it for people.
type Report struct {
	// Suite is SuiteVersion.
	Suite string `json:"suite"`
	// Protocol is the engine protocol the suite tests
	// (engine.ProtocolVersion).
	Protocol int `json:"protocol"`
	// Engine is the engine's self-description.
	Engine engine.Description `json:"engine"`
	// Cases holds one result per case run, in order.
	Cases []CaseResult `json:"cases"`
	// Passed, Failed and Skipped count Cases by status.
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	// Duration is the time the whole check took.
	Duration time.Duration `json:"duration_ns"`
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	// Name is the case's name.
	Name string `json:"name"`
	// Status is StatusPass, StatusFail or StatusSkip.
	Status string `json:"status"`
	// Messages are what the case logged and reported, in order: for a
	// skip, the reason; for a failure, what went wrong.
	Messages []string `json:"messages,omitempty"`
	// Duration is the time the case ran (up to its timeout).
	Duration time.Duration `json:"duration_ns"`
}

// OK reports whether the check passed: at least one case ran and none
// failed.
func (r Report) OK() bool { return r.Failed == 0 && len(r.Cases) > 0 }

// Check runs the suite's cases against the engine f opens without package
// testing: the runner behind the CLI's certify command. It first opens one
// engine to read its Description; if that fails, the report holds a single
// failed case named OpenCaseName. Then it runs each selected case, one
// after another, each on its own goroutine with a recorder implementing T:
// Fatalf and Skipf end the case (runtime.Goexit), a panic in the case or in
// the engine on the case's goroutine is recovered and fails the case, and a
// case that outlives its timeout fails and is abandoned. When ctx is done,
// the running case is stopped and the cases not yet run fail as not run.
func Check(ctx context.Context, f Factory, opts CheckOptions) Report {
	start := time.Now()
	if opts.CaseTimeout <= 0 {
		opts.CaseTimeout = DefaultCaseTimeout
	}
	rep := Report{Suite: SuiteVersion, Protocol: engine.ProtocolVersion}
	finish := func() Report {
		rep.Duration = time.Since(start)
		return rep
	}
	add := func(res CaseResult) {
		rep.Cases = append(rep.Cases, res)
		switch res.Status {
		case StatusPass:
			rep.Passed++
		case StatusFail:
			rep.Failed++
		case StatusSkip:
			rep.Skipped++
		}
		if opts.Progress != nil {
			opts.Progress(res)
		}
	}

	var desc engine.Description
	open := Case{Name: OpenCaseName, Run: func(t T, h *Harness) {
		desc = describe(t, f)
	}}
	if res := runCase(ctx, open, f, engine.Description{}, opts); res.Status != StatusPass {
		if res.Status == StatusSkip { // describe never skips; be safe
			res.Status = StatusFail
		}
		add(res)
		return finish()
	}
	rep.Engine = desc

	for _, c := range Cases() {
		if opts.Filter != nil && !opts.Filter.MatchString(c.Name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			add(CaseResult{Name: c.Name, Status: StatusFail, Messages: []string{"not run: " + err.Error()}})
			continue
		}
		add(runCase(ctx, c, f, desc, opts))
	}
	return finish()
}

// runCase runs one case on its own goroutine and returns its result.
func runCase(ctx context.Context, c Case, f Factory, desc engine.Description, opts CheckOptions) CaseResult {
	caseCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	rec := &recorder{name: c.Name, base: opts.TempDir}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer rec.runCleanups()
		defer func() {
			if r := recover(); r != nil {
				rec.record(true, false, fmt.Sprintf("panic: %v\n%s", r, debug.Stack()))
			}
		}()
		c.Run(rec, NewHarness(caseCtx, rec, f, desc))
	}()

	timer := time.NewTimer(opts.CaseTimeout)
	defer timer.Stop()
	var stopped string
	select {
	case <-done:
	case <-timer.C:
		stopped = fmt.Sprintf("case did not finish within %v", opts.CaseTimeout)
	case <-ctx.Done():
		stopped = fmt.Sprintf("check stopped: %v", ctx.Err())
	}
	if stopped != "" {
		// Let the case wind down (its engine calls see the cancelled
		// context), else abandon it.
		cancel()
		grace := time.NewTimer(min(opts.CaseTimeout/10+time.Second, 10*time.Second))
		defer grace.Stop()
		select {
		case <-done:
			rec.record(true, false, stopped+"; stopped after its context was cancelled")
		case <-grace.C:
			rec.record(true, false, stopped+"; its goroutine was abandoned, still running (the engine may be hung)")
		}
	}
	return rec.result(time.Since(start))
}

// recorder implements T for Check. It is safe for concurrent use; once
// result has been taken, later reports from an abandoned case are dropped.
type recorder struct {
	name string
	base string

	mu       sync.Mutex
	msgs     []string
	failed   bool
	skipped  bool
	sealed   bool
	cleanups []func()
}

var _ T = (*recorder)(nil)

func (r *recorder) record(fail, skip bool, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sealed {
		return
	}
	r.msgs = append(r.msgs, msg)
	r.failed = r.failed || fail
	r.skipped = r.skipped || skip
}

func (r *recorder) result(d time.Duration) CaseResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sealed = true
	res := CaseResult{Name: r.name, Status: StatusPass, Messages: append([]string(nil), r.msgs...), Duration: d}
	switch {
	case r.failed:
		res.Status = StatusFail
	case r.skipped:
		res.Status = StatusSkip
	}
	return res
}

// Helper does nothing: messages carry no file positions.
func (r *recorder) Helper() {}

// Logf records a message.
func (r *recorder) Logf(format string, args ...any) {
	r.record(false, false, fmt.Sprintf(format, args...))
}

// Errorf records a message and marks the case failed.
func (r *recorder) Errorf(format string, args ...any) {
	r.record(true, false, fmt.Sprintf(format, args...))
}

// Fatalf records a message, marks the case failed and ends the calling
// goroutine, which must be the case's.
func (r *recorder) Fatalf(format string, args ...any) {
	r.record(true, false, fmt.Sprintf(format, args...))
	runtime.Goexit()
}

// Skipf records the reason, marks the case skipped and ends the calling
// goroutine, which must be the case's.
func (r *recorder) Skipf(format string, args ...any) {
	r.record(false, true, fmt.Sprintf(format, args...))
	runtime.Goexit()
}

// Cleanup registers fn to run when the case ends, last registered first.
func (r *recorder) Cleanup(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, fn)
}

// runCleanups runs the registered functions, last first, each protected
// from the others' panics.
func (r *recorder) runCleanups() {
	for {
		r.mu.Lock()
		n := len(r.cleanups)
		if n == 0 {
			r.mu.Unlock()
			return
		}
		fn := r.cleanups[n-1]
		r.cleanups = r.cleanups[:n-1]
		r.mu.Unlock()
		func() {
			defer func() {
				if p := recover(); p != nil {
					r.record(true, false, fmt.Sprintf("panic in cleanup: %v\n%s", p, debug.Stack()))
				}
			}()
			fn()
		}()
	}
}

// TempDir makes a new directory, removed when the case ends.
func (r *recorder) TempDir() string {
	dir, err := os.MkdirTemp(r.base, "flaredb-conformance-")
	if err != nil {
		r.Fatalf("TempDir: %v", err)
	}
	r.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			r.Logf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// Failed reports whether the case has failed.
func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// Name returns the case's name.
func (r *recorder) Name() string { return r.name }

// WriteTable writes r for people: a header naming the suite and the engine,
// one row per case (status, name, time, and the skip reason), the messages
// of each failed case indented below it, and a summary line.
func (r Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	d := r.Engine
	fmt.Fprintf(&b, "FlareDB conformance suite %s, engine protocol %d\n", r.Suite, r.Protocol)
	if d.Name != "" {
		fmt.Fprintf(&b, "engine: %s %s (protocol %d); persistent: %v; limits: key %s, value %s, writes %s, batch %s\n",
			d.Name, d.Version, d.Protocol, d.Capabilities.Persistent,
			limitStr(d.Limits.MaxKeySize, " B"), limitStr(d.Limits.MaxValueSize, " B"),
			limitStr(d.Limits.MaxWrites, ""), limitStr(d.Limits.MaxBatchSize, " B"))
	}
	b.WriteString("\n")
	width := len("CASE")
	for _, c := range r.Cases {
		width = max(width, len(c.Name))
	}
	fmt.Fprintf(&b, "%-6s %-*s %10s  %s\n", "STATUS", width, "CASE", "TIME", "NOTE")
	for _, c := range r.Cases {
		note := ""
		if c.Status == StatusSkip && len(c.Messages) > 0 {
			note = c.Messages[len(c.Messages)-1]
		}
		fmt.Fprintf(&b, "%-6s %-*s %10s  %s\n", c.Status, width, c.Name, c.Duration.Round(time.Millisecond), note)
		if c.Status == StatusFail {
			for _, m := range c.Messages {
				for _, line := range strings.Split(strings.TrimRight(m, "\n"), "\n") {
					fmt.Fprintf(&b, "        %s\n", line)
				}
			}
		}
	}
	verdict := "OK"
	if !r.OK() {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "\n%d passed, %d failed, %d skipped in %s: %s\n", r.Passed, r.Failed, r.Skipped, r.Duration.Round(time.Millisecond), verdict)
	_, err := io.WriteString(w, b.String())
	return err
}

func limitStr(n int, unit string) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d%s", n, unit)
}
