// Package certify certifies a storage-engine plugin binary: it runs the
// conformance suite (package conformance, through conformance.Check) against
// the real plugin process, adds the cases only a plugin has (SIGKILL in the
// middle of writes, protocol mismatch, stray standard output, a hang at
// start, no process left behind), and reports the result with the binary's
// SHA-256 and the engine's self-description. NewCommand mounts it in the
// CLI as "flaredb conformance --plugin PATH".
//
// It launches plugins with package host, exactly as the server does. It
// does not import the server, and, like package conformance, it is a tool:
// production code has no reason to import it.
package certify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/plugins/host"
	"github.com/flaredb/flaredb/plugins/internal/pluginproto"
)

// Defaults for zero fields of Options.
const (
	// DefaultHangTimeout is the start timeout of the hang-at-start case.
	DefaultHangTimeout = 5 * time.Second
	// DefaultAckedWrites is how many acknowledged writes the SIGKILL case
	// waits for before killing the plugin.
	DefaultAckedWrites = 300
)

// Options tune Run. The zero value runs every case with the defaults.
type Options struct {
	// Filter, when set, selects the cases (conformance and plugin cases
	// alike) whose name it matches.
	Filter *regexp.Regexp
	// CaseTimeout bounds each case (default conformance.DefaultCaseTimeout).
	CaseTimeout time.Duration
	// TempDir is where the cases' data directories are made (default
	// os.TempDir()); they are removed afterwards.
	TempDir string
	// HangTimeout is the start timeout the hang-at-start case gives the
	// plugin (default DefaultHangTimeout).
	HangTimeout time.Duration
	// AckedWrites is how many writes the SIGKILL case has acknowledged
	// before it kills the plugin (default DefaultAckedWrites).
	AckedWrites int
	// Logger receives the plugins' logs; nil discards them.
	Logger *slog.Logger
	// Progress, when set, is called with each case's result as soon as it
	// is known, from the goroutine that called Run.
	Progress func(conformance.CaseResult)
}

// Binary identifies the plugin binary certified.
type Binary struct {
	Path   string   `json:"path"`
	Args   []string `json:"args,omitempty"`
	SHA256 string   `json:"sha256"`
	Size   int64    `json:"size"`
}

// Report is the outcome of Run. It marshals to JSON for machines;
// WriteTable prints it for people.
type Report struct {
	// Suite is conformance.SuiteVersion.
	Suite string `json:"suite"`
	// Protocol is the engine protocol certified (engine.ProtocolVersion).
	Protocol int `json:"protocol"`
	// Engine is the plugin's self-description.
	Engine engine.Description `json:"engine"`
	// Plugin is the binary certified.
	Plugin Binary `json:"plugin"`
	// Cases are the conformance suite's results, run against the plugin.
	Cases []conformance.CaseResult `json:"cases"`
	// PluginCases are the results of the plugin-only cases.
	PluginCases []conformance.CaseResult `json:"plugin_cases"`
	// Passed, Failed and Skipped count both lists by status.
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	// Duration is the time the whole certification took.
	Duration time.Duration `json:"duration_ns"`
}

// OK reports whether the certification passed: at least one case passed
// and none failed (a run whose every case was skipped certifies nothing).
func (r Report) OK() bool {
	return r.Failed == 0 && r.Passed > 0
}

// WriteTable prints the report for people: the binary, then one line per
// case (with the messages of failed ones), then the verdict.
func (r Report) WriteTable(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "plugin: %s\nsha256: %s (%d bytes)\n", r.Plugin.Path, r.Plugin.SHA256, r.Plugin.Size); err != nil {
		return err
	}
	merged := conformance.Report{
		Suite: r.Suite, Protocol: r.Protocol, Engine: r.Engine,
		Cases:  append(append([]conformance.CaseResult(nil), r.Cases...), r.PluginCases...),
		Passed: r.Passed, Failed: r.Failed, Skipped: r.Skipped, Duration: r.Duration,
	}
	return merged.WriteTable(w)
}

// Run certifies the plugin cfg describes. cfg.DataDir is ignored: every
// case gets fresh directories under opts.TempDir. The error is for a
// certification that could not run at all (an invalid cfg, an unreadable
// binary, a binary whose SHA-256 is not cfg.SHA256: host.ErrChecksumMismatch);
// everything about the plugin itself, including a plugin that does
// not start, is in the Report as failed cases.
func Run(ctx context.Context, cfg host.Config, opts Options) (Report, error) {
	start := time.Now()
	rep := Report{Suite: conformance.SuiteVersion, Protocol: engine.ProtocolVersion}
	if cfg.Path == "" {
		return rep, fmt.Errorf("%w: certify: no plugin binary given", engine.ErrInvalidArgument)
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return rep, fmt.Errorf("certify: %w", err)
	}
	cfg.Path = path
	cfg.DataDir = "unused" // replaced per case; Validate wants one
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return rep, fmt.Errorf("certify: plugin binary: %w", err)
	}
	sum, err := host.SHA256File(path)
	if err != nil {
		return rep, fmt.Errorf("certify: plugin binary: %w", err)
	}
	if cfg.SHA256 != "" && !strings.EqualFold(cfg.SHA256, sum) {
		return rep, fmt.Errorf("%w: %s has SHA-256 %s, expected %s", host.ErrChecksumMismatch, path, sum, cfg.SHA256)
	}
	rep.Plugin = Binary{Path: path, Args: cfg.Args, SHA256: sum, Size: fi.Size()}
	// Pin the binary: every launch of the certification checks that it is
	// the one hashed here.
	cfg.SHA256 = sum
	if opts.CaseTimeout <= 0 {
		opts.CaseTimeout = conformance.DefaultCaseTimeout
	}
	if opts.HangTimeout <= 0 {
		opts.HangTimeout = DefaultHangTimeout
	}
	if opts.AckedWrites <= 0 {
		opts.AckedWrites = DefaultAckedWrites
	}
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}

	// The handshake case must pass before anything else is worth running:
	// a binary that never completes the handshake would make every case
	// wait out its start timeout, and one that is refused or describes
	// itself wrongly would fail them all for the same reason.
	pc := &pluginCases{cfg: cfg, opts: opts}
	hs := pc.run(ctx, pluginCase{"plugin/handshake", pc.handshake})
	if hs.Status == conformance.StatusFail {
		hs.Messages = append(hs.Messages, pc.handshakeFailed(ctx))
		if opts.Progress != nil {
			opts.Progress(hs)
		}
		rep.PluginCases = []conformance.CaseResult{hs}
		rep.Failed = 1
		rep.Duration = time.Since(start)
		return rep, nil
	}

	factory := func(dir string) (engine.Engine, error) {
		c := cfg
		c.DataDir = dir
		lctx, cancel := context.WithTimeout(ctx, opts.CaseTimeout)
		defer cancel()
		return host.Open(lctx, c, opts.Logger)
	}
	cr := conformance.Check(ctx, factory, conformance.CheckOptions{
		Filter:      opts.Filter,
		CaseTimeout: opts.CaseTimeout,
		TempDir:     opts.TempDir,
		Progress:    opts.Progress,
	})
	rep.Engine = cr.Engine
	if rep.Engine.Name == "" {
		rep.Engine = pc.desc // no conformance case ran
	}
	rep.Cases = cr.Cases

	for _, c := range pc.list() {
		if opts.Filter != nil && !opts.Filter.MatchString(c.name) {
			continue
		}
		res := hs
		if c.name != hs.Name {
			res = pc.run(ctx, c)
		}
		rep.PluginCases = append(rep.PluginCases, res)
		if opts.Progress != nil {
			opts.Progress(res)
		}
	}
	for _, c := range append(append([]conformance.CaseResult(nil), rep.Cases...), rep.PluginCases...) {
		switch c.Status {
		case conformance.StatusPass:
			rep.Passed++
		case conformance.StatusFail:
			rep.Failed++
		case conformance.StatusSkip:
			rep.Skipped++
		}
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// pluginCase is one plugin-only case.
type pluginCase struct {
	name string
	run  func(ctx context.Context, r *recorder)
}

// recorder collects what a plugin case reports. Its methods are safe for
// concurrent use.
type recorder struct {
	mu      sync.Mutex
	msgs    []string
	failed  bool
	skipped bool
	dir     string
	dirs    atomic.Int64
	cleanup []func()
}

func (r *recorder) logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func (r *recorder) failf(format string, args ...any) {
	r.logf(format, args...)
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
}

func (r *recorder) skipf(format string, args ...any) {
	r.logf(format, args...)
	r.mu.Lock()
	r.skipped = true
	r.mu.Unlock()
}

// tempDir returns a new directory for the case, removed when it ends.
func (r *recorder) tempDir() string {
	d := filepath.Join(r.dir, strconv.FormatInt(r.dirs.Add(1), 10))
	_ = os.MkdirAll(d, 0o700)
	return d
}

// socketDir returns a new directory with a short path (a Unix socket path
// must fit in about 100 bytes), removed when the case ends.
func (r *recorder) socketDir() string {
	d, err := os.MkdirTemp("", "fdbc")
	if err != nil {
		return ""
	}
	r.mu.Lock()
	r.cleanup = append(r.cleanup, func() { _ = os.RemoveAll(d) })
	r.mu.Unlock()
	return d
}

type pluginCases struct {
	cfg  host.Config
	opts Options
	// desc is the engine's self-description, set by the handshake case,
	// which Run runs first.
	desc engine.Description
	// launched and launchErr are the outcome of the handshake case's
	// launch: launched is set when the plugin started, launchErr when the
	// launch failed; neither when the case failed before launching.
	launched  bool
	launchErr error
}

// handshakeFailed is the last message of a failed handshake case, after
// which Run runs no other case: it says why the handshake failed, as far
// as the launch tells (the case's earlier messages give the details).
func (pc *pluginCases) handshakeFailed(ctx context.Context) string {
	const why = "the handshake case failed: "
	const rest = "; no other case was run"
	err := pc.launchErr
	switch {
	case ctx.Err() != nil:
		return why + fmt.Sprintf("the certification was stopped (%v)", context.Cause(ctx)) + rest
	case errors.Is(err, host.ErrStartTimeout):
		st := pc.cfg.StartTimeout
		if st == 0 {
			st = host.DefaultStartTimeout
		}
		return why + fmt.Sprintf("the plugin did not complete the handshake within the start timeout (%v)", st) + rest
	case errors.Is(err, context.DeadlineExceeded):
		return why + fmt.Sprintf("the plugin did not complete the handshake within the case timeout (%v), which bounds its launch", pc.opts.CaseTimeout) + rest
	case err != nil:
		return why + "the plugin could not be launched, or its launch was refused (see the launch error)" + rest
	case pc.launched:
		return why + "the plugin started, but its self-description is wrong" + rest
	default:
		return "the handshake case failed" + rest
	}
}

// run runs one case with a timeout, recovering a panic into a failure.
func (pc *pluginCases) run(ctx context.Context, c pluginCase) (res conformance.CaseResult) {
	start := time.Now()
	dir, err := os.MkdirTemp(pc.opts.TempDir, "flaredb-certify-")
	r := &recorder{dir: dir}
	res.Name = c.name
	if err != nil {
		r.failf("temporary directory: %v", err)
	} else {
		cctx, cancel := context.WithTimeout(ctx, pc.opts.CaseTimeout)
		func() {
			defer func() {
				if p := recover(); p != nil {
					r.failf("panic: %v\n%s", p, debug.Stack())
				}
			}()
			c.run(cctx, r)
		}()
		if errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			r.failf("case timed out after %v", pc.opts.CaseTimeout)
		}
		cancel()
		_ = os.RemoveAll(dir)
		for _, f := range r.cleanup {
			f()
		}
	}
	res.Duration = time.Since(start)
	res.Messages = r.msgs
	switch {
	case r.failed:
		res.Status = conformance.StatusFail
	case r.skipped:
		res.Status = conformance.StatusSkip
	default:
		res.Status = conformance.StatusPass
	}
	return res
}

func (pc *pluginCases) list() []pluginCase {
	return []pluginCase{
		{"plugin/handshake", pc.handshake},
		{"plugin/no-orphans-after-close", pc.noOrphans},
		{"plugin/sigkill-keeps-acknowledged-writes", pc.sigkill},
		{"plugin/protocol-mismatch-refused", pc.protocolMismatch},
		{"plugin/stray-stdout", pc.strayStdout},
		{"plugin/hang-at-start", pc.hangAtStart},
	}
}

// config returns the plugin's configuration on a fresh data directory.
func (pc *pluginCases) config(r *recorder) host.Config {
	c := pc.cfg
	c.DataDir = r.tempDir()
	c.SocketDir = r.socketDir()
	c.Env = append([]string(nil), pc.cfg.Env...)
	return c
}

func (pc *pluginCases) handshake(ctx context.Context, r *recorder) {
	p, err := host.Launch(ctx, pc.config(r), pc.opts.Logger)
	if err != nil {
		pc.launchErr = err
		r.failf("launch: %v", err)
		return
	}
	pc.launched = true
	defer p.Close()
	d := p.Describe()
	pc.desc = d
	if d.Protocol != engine.ProtocolVersion {
		r.failf("the engine describes protocol %d, want %d", d.Protocol, engine.ProtocolVersion)
	}
	if d.Name == "" {
		r.failf("the engine describes itself with an empty name")
	}
	r.logf("engine %q version %q, pid %d", d.Name, d.Version, p.PID())
}

func (pc *pluginCases) noOrphans(ctx context.Context, r *recorder) {
	cfg := pc.config(r)
	p, err := host.Launch(ctx, cfg, pc.opts.Logger)
	if err != nil {
		r.failf("launch: %v", err)
		return
	}
	pid := p.PID()
	if _, err := p.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: []byte("k"), Value: []byte("v"), Version: 1}}, engine.ApplyOptions{}); err != nil {
		r.failf("Apply: %v", err)
	}
	if err := p.Close(); err != nil {
		r.failf("Close: %v", err)
	}
	if alive(pid) {
		r.failf("plugin process %d is still running after Close", pid)
	}
	if groupAlive(pid) {
		r.failf("processes of the plugin's process group %d are still running after Close", pid)
	}
	if left, _ := os.ReadDir(cfg.SocketDir); len(left) > 0 {
		r.failf("socket directory left behind in %s: %v", cfg.SocketDir, left[0].Name())
	}
}

func (pc *pluginCases) protocolMismatch(ctx context.Context, r *recorder) {
	cfg := pc.config(r)
	cfg.ProtocolVersion = engine.ProtocolVersion + 1
	p, err := host.Launch(ctx, cfg, pc.opts.Logger)
	if err == nil {
		_ = p.Close()
		r.failf("the plugin accepted a host speaking only protocol %d", cfg.ProtocolVersion)
		return
	}
	if !errors.Is(err, host.ErrProtocolMismatch) {
		r.failf("launch with protocol %d: want a protocol mismatch, got: %v", cfg.ProtocolVersion, err)
		return
	}
	r.logf("refused as it should be: %v", err)
	if left, _ := os.ReadDir(cfg.SocketDir); len(left) > 0 {
		r.failf("socket directory left behind: %v", left[0].Name())
	}
}

func (pc *pluginCases) strayStdout(ctx context.Context, r *recorder) {
	cfg := pc.config(r)
	cfg.Env = append(cfg.Env, pluginproto.EnvSelfTest+"="+pluginproto.SelfTestStrayStdout)
	log, rec := newCapture(pc.opts.Logger)
	p, err := host.Launch(ctx, cfg, log)
	if err != nil {
		r.failf("with stray output on standard output, the plugin failed to start: %v", err)
		return
	}
	defer p.Close()
	if _, err := p.Read(ctx, [][]byte{[]byte("k")}); err != nil {
		r.failf("Read: %v", err)
	}
	if err := p.Close(); err != nil {
		r.failf("Close: %v", err)
	}
	if !rec.contains(pluginproto.StrayStdoutMarker) {
		r.skipf("capability: the plugin does not implement the SDK's self-tests (%s=%s had no effect): it was not built with plugins/sdk",
			pluginproto.EnvSelfTest, pluginproto.SelfTestStrayStdout)
		return
	}
	r.logf("stray output was kept out of the handshake and forwarded to the log")
}

var pidAttr = regexp.MustCompile(`"pid":(\d+)`)

func (pc *pluginCases) hangAtStart(ctx context.Context, r *recorder) {
	cfg := pc.config(r)
	cfg.Env = append(cfg.Env, pluginproto.EnvSelfTest+"="+pluginproto.SelfTestHang)
	cfg.StartTimeout = pc.opts.HangTimeout
	p, err := host.Launch(ctx, cfg, pc.opts.Logger)
	if err == nil {
		_ = p.Close()
		r.skipf("capability: the plugin does not implement the SDK's self-tests (%s=%s had no effect): it was not built with plugins/sdk",
			pluginproto.EnvSelfTest, pluginproto.SelfTestHang)
		return
	}
	if !errors.Is(err, host.ErrStartTimeout) {
		r.failf("a plugin hanging at start: want a start timeout, got: %v", err)
		return
	}
	m := pidAttr.FindStringSubmatch(err.Error())
	if m == nil {
		r.failf("the hanging plugin's pid is not in the error: %v", err)
		return
	}
	pid, _ := strconv.Atoi(m[1])
	if alive(pid) || groupAlive(pid) {
		r.failf("the hanging plugin (pid %d) or its process group survived the start timeout", pid)
	}
	if left, _ := os.ReadDir(cfg.SocketDir); len(left) > 0 {
		r.failf("socket directory left behind: %v", left[0].Name())
	}
}

// sigkill writes under load with sync durability, SIGKILLs the plugin in
// the middle, lets the host restart it, and checks that every acknowledged
// write survived and that every failed call said engine.ErrUnavailable.
func (pc *pluginCases) sigkill(ctx context.Context, r *recorder) {
	if !pc.desc.Capabilities.Persistent {
		r.skipf("capability: the engine declares itself not persistent")
		return
	}
	cfg := pc.config(r)
	cfg.Restart = host.RestartPolicy{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	p, err := host.Launch(ctx, cfg, pc.opts.Logger)
	if err != nil {
		r.failf("launch: %v", err)
		return
	}
	defer p.Close()

	const writers = 4
	var (
		mu      sync.Mutex
		acked   = map[string]uint64{}
		unavail int
		other   error
		version atomic.Uint64
	)
	version.Store(uint64(time.Now().UnixMilli()) << 18)
	ackedN := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10_000_000; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				key := fmt.Sprintf("certify/%d/%08d", w, i)
				ver := version.Add(1)
				_, err := p.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: []byte(key), Value: []byte(key), Version: ver}}, engine.ApplyOptions{})
				mu.Lock()
				switch {
				case err == nil:
					acked[key] = ver
				case errors.Is(err, engine.ErrUnavailable):
					unavail++
				case ctx.Err() == nil && other == nil:
					other = err
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	finish := func() { close(stop); wg.Wait() }
	if !poll(ctx, func() bool { return ackedN() >= pc.opts.AckedWrites }) {
		finish()
		r.failf("only %d writes acknowledged before the deadline", ackedN())
		return
	}
	pid := p.PID()
	if err := sigkill(pid); err != nil {
		finish()
		r.failf("SIGKILL %d: %v", pid, err)
		return
	}
	before := ackedN()
	restarted := poll(ctx, func() bool {
		s := p.Status()
		return s.Restarts >= 1 && s.State == host.StateRunning && ackedN() >= before+pc.opts.AckedWrites/2
	})
	finish()
	if !restarted {
		r.failf("after SIGKILL the plugin was not restarted, or writes did not resume: %+v", p.Status())
		return
	}
	mu.Lock()
	defer mu.Unlock()
	r.logf("%d writes acknowledged, %d answered unavailable, plugin restarted %d time(s)", len(acked), unavail, p.Status().Restarts)
	if other != nil {
		r.failf("a write failed with an error other than engine.ErrUnavailable: %v", other)
	}
	keys := make([][]byte, 0, len(acked))
	for k := range acked {
		keys = append(keys, []byte(k))
	}
	lost := 0
	for i := 0; i < len(keys); i += 500 {
		chunk := keys[i:min(i+500, len(keys))]
		got, err := p.Read(ctx, chunk)
		if err != nil {
			r.failf("Read after the restart: %v", err)
			return
		}
		for j, e := range got {
			k := string(chunk[j])
			if e.Version != acked[k] || string(e.Value) != k {
				if lost < 5 {
					r.failf("acknowledged write %s@%d lost: read %q@%d", k, acked[k], e.Value, e.Version)
				}
				lost++
			}
		}
	}
	if lost > 0 {
		r.failf("%d of %d acknowledged writes lost", lost, len(acked))
	}
}

// poll waits (bounded by ctx) for cond.
func poll(ctx context.Context, cond func() bool) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
}
