package host_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/rocksdbengine"
	"github.com/flaredb/flaredb/internal/testbin"
	"github.com/flaredb/flaredb/plugins/host"
)

func put(k, v string, ver uint64) engine.Write {
	return engine.Write{Kind: engine.OpPut, Key: []byte(k), Value: []byte(v), Version: ver}
}

// launch starts the named test binary on a fresh data directory, closing it
// when the test ends.
func launch(t *testing.T, name string, mod func(*host.Config)) (*host.Plugin, *logRecorder) {
	t.Helper()
	cfg := host.Config{Path: bins[name], DataDir: t.TempDir(), SocketDir: t.TempDir()}
	if mod != nil {
		mod(&cfg)
	}
	log, rec := newLogRecorder(t)
	p, err := host.Launch(ctxT(t), cfg, log)
	if err != nil {
		t.Fatalf("launch %s: %v\nlog:\n%s", name, err, rec.dump())
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, rec
}

func TestBasicCalls(t *testing.T) {
	p, _ := launch(t, "memory", nil)
	ctx := ctxT(t)
	d := p.Describe()
	if d.Name != "memory" || d.Protocol != engine.ProtocolVersion {
		t.Fatalf("describe: %+v", d)
	}
	if _, err := p.Apply(ctx, []engine.Write{put("a", "1", 1), put("b", "", 2)}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := p.Read(ctx, [][]byte{[]byte("a"), []byte("b"), []byte("c")})
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0].Value) != "1" || got[1].Value == nil || got[1].Version != 2 || got[2].Version != 0 || got[2].Value != nil {
		t.Fatalf("read: %+v", got)
	}
	if _, err := p.Read(ctx, [][]byte{{}}); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("typed error lost: %v", err)
	}
	stop := errors.New("stop")
	if err := p.Scan(ctx, engine.ScanOptions{}, func(engine.Entry) error { return stop }); err != stop {
		t.Fatalf("scan fn error: %v", err)
	}
	big := bytes.Repeat([]byte("x"), 9<<20)
	if _, err := p.Apply(ctx, []engine.Write{put("big", string(big), 3)}, engine.ApplyOptions{}); err != nil {
		t.Fatalf("large value: %v", err)
	}
	if got, err := p.Read(ctx, [][]byte{[]byte("big")}); err != nil || !bytes.Equal(got[0].Value, big) {
		t.Fatalf("large value read back: %v", err)
	}
	if s := p.Status(); s.State != host.StateRunning || s.PID == 0 {
		t.Fatalf("status: %+v", s)
	}
}

func TestCloseSemantics(t *testing.T) {
	p, _ := launch(t, "memory", nil)
	ctx := ctxT(t)
	pid := p.PID()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := p.Read(ctx, [][]byte{[]byte("k")}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if _, err := p.Apply(ctx, []engine.Write{put("k", "v", 1)}, engine.ApplyOptions{}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("apply after close: %v", err)
	}
	if err := p.Scan(ctx, engine.ScanOptions{}, func(engine.Entry) error { return nil }); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("scan after close: %v", err)
	}
	if p.Describe().Name != "memory" {
		t.Errorf("describe after close: %+v", p.Describe())
	}
	if s := p.Status(); s.State != host.StateClosed || s.PID != 0 {
		t.Errorf("status after close: %+v", s)
	}
	if haveProc() && processAlive(pid) {
		t.Errorf("plugin process %d still alive after Close", pid)
	}
}

func TestNoOrphansAfterClose(t *testing.T) {
	if !haveProc() {
		t.Skip("capability: no /proc to inspect processes")
	}
	for _, name := range []string{"memory", "stray", "crashy"} {
		t.Run(name, func(t *testing.T) {
			sockets := t.TempDir()
			p, _ := launch(t, name, func(c *host.Config) { c.SocketDir = sockets })
			pid := p.PID()
			if !processAlive(pid) {
				t.Fatalf("plugin %d not alive while running", pid)
			}
			if left, _ := os.ReadDir(sockets); len(left) == 0 {
				t.Fatalf("no socket directory while running")
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if processAlive(pid) {
				t.Errorf("process %d alive after Close", pid)
			}
			if m := groupMembers(pid); len(m) > 0 {
				t.Errorf("processes %v of the plugin's group alive after Close", m)
			}
			if left, _ := os.ReadDir(sockets); len(left) > 0 {
				t.Errorf("socket directory not removed: %v", left)
			}
		})
	}
}

func TestTwoHostsOnOneDataDir(t *testing.T) {
	dir := t.TempDir()
	first, _ := launch(t, "memory", func(c *host.Config) { c.DataDir = dir })
	_, err := host.Launch(ctxT(t), host.Config{Path: bins["memory"], DataDir: dir}, nil)
	if !errors.Is(err, host.ErrDataDirLocked) {
		t.Fatalf("second host on %s: %v", dir, err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Errorf("the error does not name the holder: %v", err)
	}
	t.Log(err)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, _ := launch(t, "memory", func(c *host.Config) { c.DataDir = dir })
	if second.PID() == 0 {
		t.Fatal("no process after the first host released the directory")
	}
}

// requireRocksDB skips t when RocksDB is not compiled into this test
// binary (a build without cgo) and fails it when RocksDB is there but
// cannot open a fresh directory.
func requireRocksDB(t *testing.T) {
	t.Helper()
	e, err := rocksdbengine.Open(t.TempDir(), nil)
	if errors.Is(err, engine.ErrUnsupported) {
		t.Skipf("capability: rocksdb not compiled into this test binary: %v", err)
	}
	if err != nil {
		t.Fatalf("rocksdb: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestEngineRefusesSharedDir shows the second line of defence: a persistent
// engine inside the plugin refuses a directory another process holds, even
// without the host's lock.
func TestEngineRefusesSharedDir(t *testing.T) {
	requireRocksDB(t)
	dir := t.TempDir()
	e, err := rocksdbengine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	_, err = host.Launch(ctxT(t), host.Config{Path: bins["rocksdb"], DataDir: dir}, nil)
	if !errors.Is(err, host.ErrPluginExited) || !strings.Contains(strings.ToLower(err.Error()), "lock") {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
}

func TestStartErrors(t *testing.T) {
	tmp := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := write("garbage.sh", "#!/bin/sh\necho 'hello, I am not a plugin at all'\nsleep 60\n", 0o755)
	silent := write("silent.sh", "#!/bin/sh\nexit 0\n", 0o755)
	failing := write("failing.sh", "#!/bin/sh\necho 'cannot open the frobnicator' >&2\nexit 3\n", 0o755)
	silentFailing := write("silentfailing.sh", "#!/bin/sh\nexit 4\n", 0o755)
	notExec := write("notexec", "#!/bin/sh\nexit 0\n", 0o644)
	junk := write("junk", "\x00\x01\x02 this is not an executable format", 0o755)
	sum, err := host.SHA256File(bins["memory"])
	if err != nil {
		t.Fatal(err)
	}
	wrongSum := strings.Repeat("ab", 32)

	cases := []struct {
		name    string
		cfg     host.Config
		want    error
		mention []string
	}{
		{"missing binary", host.Config{Path: filepath.Join(tmp, "nope")}, fs.ErrNotExist, []string{"does not exist"}},
		{"not executable", host.Config{Path: notExec}, host.ErrNotExecutable, []string{"chmod +x"}},
		{"directory", host.Config{Path: tmp}, host.ErrNotExecutable, []string{"not a regular file"}},
		{"exec format", host.Config{Path: junk}, host.ErrNotExecutable, []string{"exec format error"}},
		{"wrong checksum", host.Config{Path: bins["memory"], SHA256: wrongSum}, host.ErrChecksumMismatch, []string{sum, wrongSum}},
		{"garbage on stdout", host.Config{Path: garbage}, host.ErrNotPlugin, []string{"hello, I am not a plugin at all"}},
		{"silent exit", host.Config{Path: silent}, host.ErrNotPlugin, []string{"exit status 0"}},
		{"failing exit", host.Config{Path: failing}, host.ErrPluginExited, []string{"exit status 3", "cannot open the frobnicator"}},
		{"silent failing exit", host.Config{Path: silentFailing}, host.ErrPluginExited, []string{"exit status 4", "printing nothing"}},
		{"start timeout out of range", host.Config{Path: bins["memory"], StartTimeout: math.MaxInt64}, engine.ErrInvalidArgument, []string{"StartTimeout"}},
		{"protocol mismatch", host.Config{Path: bins["badproto"]}, host.ErrProtocolMismatch,
			[]string{fmt.Sprintf("protocol %d", engine.ProtocolVersion+98), fmt.Sprintf("speaks %d", engine.ProtocolVersion)}},
		{"hangs at start", host.Config{Path: bins["hang"], StartTimeout: 2 * time.Second}, host.ErrStartTimeout, []string{"2s", "child pid"}},
		{"bad engine option", host.Config{Path: bins["badger"], Options: map[string]string{"num_compactors": "many"}},
			host.ErrPluginExited, []string{"num_compactors", "many"}},
		{"unknown engine option", host.Config{Path: bins["badger"], Options: map[string]string{"colour": "blue"}},
			host.ErrPluginExited, []string{"unknown option", "colour"}},
		{"empty path", host.Config{}, engine.ErrInvalidArgument, []string{"Path is empty"}},
		{"bad checksum syntax", host.Config{Path: bins["memory"], SHA256: "xyz"}, engine.ErrInvalidArgument, []string{"64 hex"}},
	}
	if _, err := os.Stat("/bin/true"); err == nil {
		cases = append(cases, struct {
			name    string
			cfg     host.Config
			want    error
			mention []string
		}{"/bin/true", host.Config{Path: "/bin/true"}, host.ErrNotPlugin, []string{"without printing the go-plugin handshake"}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg.Path != "" {
				cfg.DataDir = t.TempDir()
			}
			sockets := t.TempDir()
			cfg.SocketDir = sockets
			log, rec := newLogRecorder(t)
			p, err := host.Launch(ctxT(t), cfg, log)
			if err == nil {
				_ = p.Close()
				t.Fatalf("launch succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v\nlog:\n%s", err, tc.want, rec.dump())
			}
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error does not mention %q: %v", m, err)
				}
			}
			t.Log(err)
			if haveProc() {
				for _, m := range regexp.MustCompile(`child pid (\d+)`).FindAllStringSubmatch(err.Error(), -1) {
					pid, _ := strconv.Atoi(m[1])
					if processAlive(pid) {
						t.Errorf("the plugin's child %d survived the failed launch", pid)
					}
				}
			}
			if left, _ := os.ReadDir(sockets); len(left) > 0 {
				t.Errorf("socket directory left behind: %v", left)
			}
			if cfg.DataDir != "" {
				// The lock was released: a good plugin can use the directory.
				ok, err := host.Launch(ctxT(t), host.Config{Path: bins["memory"], DataDir: cfg.DataDir}, nil)
				if err != nil {
					t.Fatalf("data directory still locked after the failed launch: %v", err)
				}
				_ = ok.Close()
			}
		})
	}
	t.Run("socket directory missing", func(t *testing.T) {
		// Not the binary's fault: neither "not executable" nor "does not
		// exist" (which names a missing binary).
		_, err := host.Launch(ctxT(t), host.Config{Path: bins["memory"], DataDir: t.TempDir(), SocketDir: filepath.Join(tmp, "no", "such")}, nil)
		if err == nil || errors.Is(err, host.ErrNotExecutable) || errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v, want an error that blames neither the binary nor its path", err)
		}
		t.Log(err)
	})
	t.Run("right checksum", func(t *testing.T) {
		launch(t, "memory", func(c *host.Config) { c.SHA256 = strings.ToUpper(sum) })
	})
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := host.Launch(ctx, host.Config{Path: bins["hang"], DataDir: t.TempDir()}, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestStrayStdout(t *testing.T) {
	p, rec := launch(t, "stray", nil)
	ctx := ctxT(t)
	for i := 1; i <= 3; i++ {
		if _, err := p.Apply(ctx, []engine.Write{put("k", strconv.Itoa(i), uint64(i))}, engine.ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := p.Read(ctx, [][]byte{[]byte("k")})
	if err != nil || string(got[0].Value) != "3" {
		t.Fatalf("read: %+v %v", got, err)
	}
	// What the plugin printed was forwarded into the log, not lost and not
	// mistaken for the handshake.
	for _, s := range []string{"stray: opening via os.Stdout", "stray: opening via fd 1", "stray: apply via os.Stdout", "stray: apply via fd 1"} {
		if !waitFor(func() bool { return len(rec.find(s)) > 0 }) {
			t.Errorf("%q not in the log:\n%s", s, rec.dump())
		}
	}
}

// TestHungPluginIsKilledAndRestarted: a plugin process that stops
// answering (SIGSTOP) during any kind of call leaves its callers to their
// deadlines; the host then probes it, and when the probe is not answered
// within HangTimeout it kills the process and restarts the plugin like a
// crashed one.
func TestHungPluginIsKilledAndRestarted(t *testing.T) {
	freeze := []byte("__freeze__")
	for _, tc := range []struct {
		call string
		do   func(context.Context, *host.Plugin) error
	}{
		{"apply", func(ctx context.Context, p *host.Plugin) error {
			_, err := p.Apply(ctx, []engine.Write{put("__freeze__", "x", 2)}, engine.ApplyOptions{})
			return err
		}},
		{"read", func(ctx context.Context, p *host.Plugin) error {
			_, err := p.Read(ctx, [][]byte{freeze})
			return err
		}},
		{"scan", func(ctx context.Context, p *host.Plugin) error {
			return p.Scan(ctx, engine.ScanOptions{Start: freeze}, func(engine.Entry) error { return nil })
		}},
	} {
		t.Run(tc.call, func(t *testing.T) {
			p, rec := launch(t, "crashy", func(c *host.Config) {
				c.Restart.InitialBackoff = 10 * time.Millisecond
				c.HangTimeout = time.Second
			})
			ctx := ctxT(t)
			if _, err := p.Apply(ctx, []engine.Write{put("k", "v", 1)}, engine.ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
			pid := p.PID()
			// Long enough for the call to reach the plugin on a slow
			// machine (one that expired first would not freeze it).
			short, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if err := tc.do(short, p); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s on a frozen plugin: %v", tc.call, err)
			}
			if !waitFor(func() bool { s := p.Status(); return s.State == host.StateRunning && s.Restarts == 1 }) {
				t.Fatalf("not restarted: %+v\n%s", p.Status(), rec.dump())
			}
			if p.PID() == pid {
				t.Fatal("same pid after restart")
			}
			if haveProc() && processAlive(pid) {
				t.Fatalf("the frozen process %d is still alive", pid)
			}
			if len(rec.find("liveness probe")) == 0 {
				t.Errorf("no liveness probe in the log:\n%s", rec.dump())
			}
			if _, err := p.Apply(ctx, []engine.Write{put("k2", "v", 3)}, engine.ApplyOptions{}); err != nil {
				t.Fatalf("after restart: %v", err)
			}
		})
	}
}

// TestSlowCallerDeadlineDoesNotRestart: a caller whose deadline passes on
// a plugin that still answers triggers a probe that is answered: nothing
// is restarted.
func TestSlowCallerDeadlineDoesNotRestart(t *testing.T) {
	p, _ := launch(t, "crashy", func(c *host.Config) { c.HangTimeout = 5 * time.Second })
	ctx := ctxT(t)
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	if _, err := p.Read(expired, [][]byte{[]byte("k")}); err == nil {
		t.Fatal("read with an expired deadline succeeded")
	}
	// The probe (if one started) is answered; a later call still works on
	// the same process, which was never restarted.
	pid := p.PID()
	for i := 0; i < 20; i++ {
		if _, err := p.Read(ctx, [][]byte{[]byte("k")}); err != nil {
			t.Fatal(err)
		}
	}
	if s := p.Status(); s.Restarts != 0 || p.PID() != pid {
		t.Fatalf("restarted: %+v", s)
	}
}

func TestCrashIsDetectedAndRestarted(t *testing.T) {
	p, rec := launch(t, "crashy", func(c *host.Config) { c.Restart.InitialBackoff = 10 * time.Millisecond })
	ctx := ctxT(t)
	for i, key := range []string{"__crash__", "__panic__"} {
		pid := p.PID()
		_, err := p.Apply(ctx, []engine.Write{put(key, "x", 1)}, engine.ApplyOptions{})
		if !errors.Is(err, engine.ErrUnavailable) {
			t.Fatalf("%s: got %v", key, err)
		}
		if !waitFor(func() bool { s := p.Status(); return s.State == host.StateRunning && s.Restarts == i+1 }) {
			t.Fatalf("%s: not restarted: %+v\n%s", key, p.Status(), rec.dump())
		}
		if p.PID() == pid {
			t.Fatalf("%s: same pid after restart", key)
		}
		if err := p.Healthy(); err != nil {
			t.Fatalf("%s: unhealthy after restart: %v", key, err)
		}
		if _, err := p.Apply(ctx, []engine.Write{put("k", "v", uint64(10+i))}, engine.ApplyOptions{}); err != nil {
			t.Fatalf("%s: after restart: %v", key, err)
		}
	}
	if len(rec.find("ERROR", "panic: crashy: panic on demand")) == 0 {
		t.Errorf("the plugin's panic was not logged as an error:\n%s", rec.dump())
	}
	if len(rec.find("plugin process died")) != 2 {
		t.Errorf("want two crash reports:\n%s", rec.dump())
	}
}

func TestGiveUpRestarting(t *testing.T) {
	p, _ := launch(t, "crashy", func(c *host.Config) { c.Restart.MaxRestarts = -1 })
	ctx := ctxT(t)
	if _, err := p.Apply(ctx, []engine.Write{put("__crash__", "x", 1)}, engine.ApplyOptions{}); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	if !waitFor(func() bool { return p.Status().State == host.StateFailed }) {
		t.Fatalf("status %+v", p.Status())
	}
	if _, err := p.Read(ctx, [][]byte{[]byte("k")}); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("read while failed: %v", err)
	}
	if err := p.Healthy(); !errors.Is(err, engine.ErrUnavailable) || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("health while failed: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Healthy(); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("health after close: %v", err)
	}
}

// TestKillNineMidWrite SIGKILLs a persistent plugin under a synced write
// load, keeps the host from restarting it for a while (by removing the
// binary's execute permission, which does not affect the running process),
// checks that calls meanwhile fail with engine.ErrUnavailable and never
// hang, lets it restart, and checks that every acknowledged write survived.
func TestKillNineMidWrite(t *testing.T) {
	for _, name := range []string{"rocksdb", "badger"} {
		t.Run(name, func(t *testing.T) {
			if name == "rocksdb" {
				requireRocksDB(t)
			}
			killNineMidWrite(t, name)
		})
	}
}

func killNineMidWrite(t *testing.T, name string) {
	bin := filepath.Join(t.TempDir(), name)
	b, err := os.ReadFile(bins[name])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, rec := launch(t, name, func(c *host.Config) {
		c.Path = bin
		c.DataDir = dir
		c.Restart.InitialBackoff = 5 * time.Millisecond
		c.Restart.MaxBackoff = 50 * time.Millisecond
	})
	ctx := ctxT(t)

	const writers = 4
	var (
		mu      sync.Mutex
		acked   = map[string]uint64{}
		other   []error
		unavail int
		version uint64
	)
	nextVersion := func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		version++
		return version
	}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	stopWriters := func() { stopOnce.Do(func() { close(stop); wg.Wait() }) }
	defer stopWriters() // on a failure, too: no writers left spinning
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1_000_000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%07d", w, i)
				ver := nextVersion()
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				_, err := p.Apply(cctx, []engine.Write{put(key, "value-"+key, ver)}, engine.ApplyOptions{})
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					acked[key] = ver
				case errors.Is(err, engine.ErrUnavailable):
					unavail++
				default:
					other = append(other, err)
				}
				mu.Unlock()
				if errors.Is(err, engine.ErrUnavailable) {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	if !waitFor(func() bool { return ackedCount() >= 200 }) {
		t.Fatalf("writes are not being acknowledged:\n%s", rec.dump())
	}
	if err := os.Chmod(bin, 0o644); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	if err := testbin.KillPID(pid); err != nil {
		t.Fatal(err)
	}
	// The host notices, and cannot restart the plugin while the binary is
	// not executable.
	if !waitFor(func() bool {
		s := p.Status()
		return s.State == host.StateRestarting && errors.Is(s.LastError, host.ErrNotExecutable)
	}) {
		t.Fatalf("status %+v", p.Status())
	}
	for i := 0; i < 10; i++ {
		if _, err := p.Apply(ctx, []engine.Write{put("during-outage", "x", nextVersion())}, engine.ApplyOptions{}); !errors.Is(err, engine.ErrUnavailable) {
			t.Fatalf("write during the outage: %v", err)
		}
		if _, err := p.Read(ctx, [][]byte{[]byte("k")}); !errors.Is(err, engine.ErrUnavailable) {
			t.Fatalf("read during the outage: %v", err)
		}
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	before := ackedCount()
	if !waitFor(func() bool { return p.Status().State == host.StateRunning && ackedCount() >= before+200 }) {
		t.Fatalf("no progress after the restart: %+v\n%s", p.Status(), rec.dump())
	}
	stopWriters()
	if haveProc() && processAlive(pid) {
		t.Errorf("killed process %d still alive", pid)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(other) > 0 {
		t.Fatalf("%d writes failed with errors other than unavailable, first: %v", len(other), other[0])
	}
	t.Logf("%d acknowledged writes, %d unavailable answers, %d restarts", len(acked), unavail, p.Status().Restarts)
	// Every acknowledged write survived the SIGKILL.
	keys := make([][]byte, 0, len(acked))
	for k := range acked {
		keys = append(keys, []byte(k))
	}
	for i := 0; i < len(keys); i += 1000 {
		chunk := keys[i:min(i+1000, len(keys))]
		got, err := p.Read(ctx, chunk)
		if err != nil {
			t.Fatal(err)
		}
		for j, e := range got {
			k := string(chunk[j])
			if e.Version != acked[k] || string(e.Value) != "value-"+k {
				t.Fatalf("acknowledged write %s@%d lost: read %q@%d", k, acked[k], e.Value, e.Version)
			}
		}
	}
}

func TestPluginRunByHand(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(bins["badger"])
	cmd.Env = append(os.Environ(), "FLAREDB_PLUGIN_DATA_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v", err)
	}
	if !strings.Contains(string(out), "not meant to be run by hand") {
		t.Errorf("output: %s", out)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("run by hand, the plugin touched its data directory: %v", left)
	}
}

func TestLongSocketDirRefused(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 80))
	_, err := host.Launch(ctxT(t), host.Config{Path: bins["memory"], DataDir: t.TempDir(), SocketDir: long}, nil)
	if !errors.Is(err, engine.ErrInvalidArgument) || !strings.Contains(err.Error(), "shorter") {
		t.Fatalf("got %v", err)
	}
}

func TestOfferingAnotherProtocolIsRefused(t *testing.T) {
	_, err := host.Launch(ctxT(t), host.Config{Path: bins["memory"], DataDir: t.TempDir(), ProtocolVersion: engine.ProtocolVersion + 1}, nil)
	if !errors.Is(err, host.ErrProtocolMismatch) {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
}

func TestRocksDBPluginWithoutCgo(t *testing.T) {
	_, err := host.Launch(ctxT(t), host.Config{Path: bins["rocksdb-nocgo"], DataDir: t.TempDir()}, nil)
	if !errors.Is(err, host.ErrPluginExited) || !strings.Contains(err.Error(), "built without cgo") {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
}

// TestPluginDiesWithItsHost SIGKILLs a host process and checks that its
// plugin does not survive it (so it cannot keep the data directory busy),
// and that the directory can then be used again.
func TestPluginDiesWithItsHost(t *testing.T) {
	if !haveProc() {
		t.Skip("capability: no /proc to inspect processes")
	}
	dir := t.TempDir()
	// A host killed with SIGKILL cannot remove its socket directory: give
	// it one the test removes.
	cmd := exec.Command(bins["testhost"], bins["badger"], dir, t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var line [32]byte
	n, _ := out.Read(line[:])
	pid, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil || !processAlive(pid) {
		t.Fatalf("test host printed %q: %v", line[:n], err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !waitFor(func() bool { return !processAlive(pid) }) {
		t.Fatalf("plugin %d outlived its host", pid)
	}
	p, _ := launch(t, "badger", func(c *host.Config) { c.DataDir = dir })
	if p.PID() == 0 {
		t.Fatal("no plugin")
	}
}

// escapee writes a wrapper script that starts a process leaving the
// plugin's process group (setsid) with the plugin's standard output and
// error, then execs command (the plugin, or anything). It returns the
// script; the escaped process is killed by its pid when the test ends.
func escapee(t *testing.T, command string) string {
	t.Helper()
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Fatalf("setsid is needed for this test: %v", err)
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "escaped.pid")
	script := filepath.Join(dir, "wrapper.sh")
	// Each run of the script (a restart runs it again) adds its pid.
	body := fmt.Sprintf("#!/bin/sh\nsetsid sh -c 'echo $$ >> %s; exec sleep 600' &\nexec %s\n", pidFile, command)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b, _ := os.ReadFile(pidFile)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				_ = testbin.KillPID(pid)
			}
		}
	})
	return script
}

// returnsWithin fails t if f has not returned after a minute: a hang (the
// escaped process lives ten), not a measure of speed.
func returnsWithin(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s: still blocked after a minute (held by the escaped process)", what)
	}
}

// TestGroupKilledWhenLeaderExits: processes a plugin started in its group
// die as soon as the plugin process itself has exited and been reaped,
// before anything kills it: the host signals the group then and never
// later, when its number may belong to another process's group.
func TestGroupKilledWhenLeaderExits(t *testing.T) {
	if !haveProc() {
		t.Fatal("/proc is needed for this test, to find the plugin's group")
	}
	pid, line, err := host.RunToExit("/bin/sh", "-c", "sleep 300 & echo $!; exit 0")
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(line)
	if err != nil {
		t.Fatalf("child pid %q: %v", line, err)
	}
	if !waitFor(func() bool { return !processAlive(child) && len(groupMembers(pid)) == 0 }) {
		if p, err := os.FindProcess(child); err == nil {
			_ = p.Kill()
		}
		t.Fatalf("the plugin's child %d outlived it in its group %d", child, pid)
	}
}

// TestEscapee: a process that left the plugin's
// group keeps the plugin's standard output and error open; it must not
// hold Close, a restart after a crash, or a launch that timed out.
func TestEscapee(t *testing.T) {
	t.Run("close", func(t *testing.T) {
		p, err := host.Launch(ctxT(t), host.Config{Path: escapee(t, bins["memory"]), DataDir: t.TempDir(),
			SocketDir: t.TempDir(), StopTimeout: time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Apply(ctxT(t), []engine.Write{put("k", "v", 1)}, engine.ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		returnsWithin(t, "Close", func() {
			if err := p.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	})
	t.Run("restart", func(t *testing.T) {
		p, err := host.Launch(ctxT(t), host.Config{Path: escapee(t, bins["crashy"]), DataDir: t.TempDir(),
			SocketDir: t.TempDir(), StopTimeout: time.Second, Restart: host.RestartPolicy{InitialBackoff: 10 * time.Millisecond}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer returnsWithin(t, "Close", func() { _ = p.Close() })
		ctx := ctxT(t)
		if _, err := p.Apply(ctx, []engine.Write{put("__crash__", "x", 1)}, engine.ApplyOptions{}); !errors.Is(err, engine.ErrUnavailable) {
			t.Fatalf("crash: %v", err)
		}
		returnsWithin(t, "restart", func() {
			for {
				if s := p.Status(); s.State == host.StateRunning && s.Restarts == 1 {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
		if _, err := p.Apply(ctx, []engine.Write{put("k", "v", 2)}, engine.ApplyOptions{}); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	})
	t.Run("start timeout", func(t *testing.T) {
		script := escapee(t, "sleep 600") // never prints the handshake
		returnsWithin(t, "Launch", func() {
			_, err := host.Launch(ctxT(t), host.Config{Path: script, DataDir: t.TempDir(), SocketDir: t.TempDir(),
				StartTimeout: time.Second}, nil)
			if !errors.Is(err, host.ErrStartTimeout) {
				t.Errorf("launch: %v, want ErrStartTimeout", err)
			}
		})
	})
}

// TestVerifiedBinaryIsExecuted: the binary is changed between its
// checksum check and its start (as by someone who can write the file),
// either replaced by a rename or rewritten in place (as cp does): the host
// still starts the bytes it verified (on Linux, from a sealed copy made
// while hashing), not the new ones, and names the path it was given.
func TestVerifiedBinaryIsExecuted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("executing the verified bytes needs Linux's memory files and /proc/self/fd")
	}
	copyFile := func(t *testing.T, from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path, with string)
	}{
		{"renamed over", func(t *testing.T, path, with string) {
			copyFile(t, with, path+".new")
			if err := os.Rename(path+".new", path); err != nil {
				t.Error(err)
			}
		}},
		{"rewritten in place", func(t *testing.T, path, with string) {
			copyFile(t, with, path) // truncates and writes the same inode
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "plugin")
			copyFile(t, bins["memory"], path)
			sum, err := host.SHA256File(path)
			if err != nil {
				t.Fatal(err)
			}
			changed := 0
			host.SetTestHookVerified(func(p string) {
				if p != path || changed > 0 {
					return
				}
				changed++
				// The new bytes hang at start, unlike the verified plugin.
				tc.change(t, path, bins["hang"])
				if now, err := host.SHA256File(path); err != nil || now == sum {
					t.Errorf("the binary was not changed: sha256 %s, err %v", now, err)
				}
			})
			defer host.SetTestHookVerified(nil)
			p, _ := launch(t, "memory", func(c *host.Config) {
				c.Path, c.SHA256 = path, sum
				c.StartTimeout = 20 * time.Second
			})
			if changed != 1 {
				t.Fatalf("the binary was changed %d times", changed)
			}
			if d := p.Describe(); d.Name != "memory" {
				t.Fatalf("started %+v, not the verified memory plugin", d)
			}
			// What runs is the verified binary, under the configured name.
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID()))
			if err != nil {
				t.Fatal(err)
			}
			if argv0, _, _ := strings.Cut(string(b), "\x00"); argv0 != path {
				t.Fatalf("the plugin's argv[0] is %q, want %q", argv0, path)
			}
		})
	}
}

// TestVerifiedScriptStarts: a plugin started through a script (a wrapper
// setting something up, say) with a checksum still starts: a script is
// executed by its path, as its interpreter must reopen it.
func TestVerifiedScriptStarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wrapper.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexec "+bins["memory"]+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := host.SHA256File(path)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := launch(t, "memory", func(c *host.Config) { c.Path, c.SHA256 = path, sum })
	if d := p.Describe(); d.Name != "memory" {
		t.Fatalf("started %+v", d)
	}
}

// TestFrozenAfterHandshake: a plugin that prints its handshake line and
// then stops answering (frozen with SIGSTOP before it accepts the
// connection) is killed once StartTimeout has passed, like one that never
// prints it; Launch fails with ErrStartTimeout, nothing is left running and
// the data directory is free again.
func TestFrozenAfterHandshake(t *testing.T) {
	if _, err := exec.LookPath("mkfifo"); err != nil {
		t.Fatalf("mkfifo is needed for this test: %v", err)
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "plugin.pid")
	script := filepath.Join(dir, "freeze.sh")
	// The wrapper passes the plugin's first line (its handshake) on, after
	// stopping the plugin.
	// The fifo lives in a directory of the test's, so that the test's
	// cleanup removes it even when the wrapper is killed.
	body := fmt.Sprintf(`#!/bin/sh
d=%s
mkfifo "$d/out"
%s "$@" >"$d/out" &
pid=$!
echo $pid > %s
exec 3<"$d/out"
read -r line <&3
kill -STOP $pid
printf '%%s\n' "$line"
rm -rf "$d"
wait $pid
`, t.TempDir(), bins["memory"], pidFile)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	done := make(chan error, 1)
	go func() {
		p, err := host.Launch(ctxT(t), host.Config{Path: script, DataDir: data, SocketDir: t.TempDir(), StartTimeout: 3 * time.Second}, nil)
		if err == nil {
			_ = p.Close()
		}
		done <- err
	}()
	// Without a bound of its own, go-plugin's connection waits about 20s
	// (gRPC's connect timeout): five times StartTimeout, still below that,
	// tells a hang apart, and is no measure of speed.
	select {
	case err := <-done:
		if !errors.Is(err, host.ErrStartTimeout) || !strings.Contains(err.Error(), "did not accept the connection") {
			t.Fatalf("launch: %v, want ErrStartTimeout for a plugin that did not accept the connection", err)
		}
		t.Log(err)
	case <-time.After(15 * time.Second):
		t.Fatal("Launch still blocked 15s after a 3s start timeout")
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if haveProc() && !waitFor(func() bool { return !processAlive(pid) }) {
		t.Errorf("the frozen plugin %d survived the failed launch", pid)
	}
	ok, err := host.Launch(ctxT(t), host.Config{Path: bins["memory"], DataDir: data}, nil)
	if err != nil {
		t.Fatalf("data directory still locked after the failed launch: %v", err)
	}
	_ = ok.Close()
}

// TestRawStdoutDrained: a plugin not built with the SDK writes long lines
// (no newline, 100 KiB a call) straight to its standard output, the pipe
// its handshake came on. The host keeps reading it, so the plugin never
// blocks on a full pipe: every call is answered, and the output is logged.
func TestRawStdoutDrained(t *testing.T) {
	p, rec := launch(t, "rawout", nil)
	for i := 1; i <= 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := p.Apply(ctx, []engine.Write{put("k", "v", uint64(i))}, engine.ApplyOptions{})
		cancel()
		if err != nil {
			t.Fatalf("apply %d: %v (restarts %d)", i, err, p.Status().Restarts)
		}
	}
	// 500 KiB were written: the log has them, in pieces of at most
	// maxLogLine (64 KiB), as stdout.
	if !waitFor(func() bool { return len(rec.find("stream=stdout", "xxxx")) >= 500/64 }) {
		t.Fatalf("the plugin's standard output was not logged: %d pieces", len(rec.find("stream=stdout", "xxxx")))
	}
	if got := rec.find("stream=stdout", "rawout: apply output"); len(got) == 0 {
		t.Error("the output's marker was not logged")
	}
}

// TestStaleSocketDirRemoved: a host killed without Close leaves its socket
// directory, recorded in the data directory's lock file; the next host to
// lock the directory removes it, unless the record may not be a dead
// host's (a copy of a live data directory carries the live host's record:
// its plugin listens on the socket) or the directory holds what a host
// does not make.
func TestStaleSocketDirRemoved(t *testing.T) {
	// A pid that was a process of ours and has exited.
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	dead := done.Process.Pid
	for _, tc := range []struct {
		name    string
		pid     int    // recorded with the directory
		inside  string // "socket" (nothing listening), "listening", "dir" or "file": one entry made in the stale directory
		name2   string // the entry's name (plugin123 unless set)
		outside bool   // the stale directory is not in the host's SocketDir
		removed bool
	}{
		{name: "a socket", pid: dead, inside: "socket", removed: true},
		{name: "empty", pid: dead, removed: true},
		{name: "a foreign file", pid: dead, inside: "file", name2: "notes.txt"},
		{name: "dir as socket", pid: dead, inside: "dir"},
		{name: "file as socket", pid: dead, inside: "file"},
		// Sockets, not pids, tell whether the host is gone: a pid can
		// be reused (PID 1 in a container is ours after every restart).
		{name: "listened on", pid: dead, inside: "listening"},
		{name: "live pid", pid: os.Getppid(), inside: "socket", removed: true},
		{name: "our own pid", pid: os.Getpid(), inside: "socket", removed: true},
		{name: "empty live pid", pid: os.Getppid()},
		{name: "empty no pid", pid: 0},
		{name: "not in SocketDir", pid: dead, inside: "socket", outside: true},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			sockets, data := t.TempDir(), t.TempDir()
			parent := sockets
			if tc.outside {
				parent = t.TempDir()
			}
			stale := filepath.Join(parent, "plugin-dir4242")
			if err := os.Mkdir(stale, 0o700); err != nil {
				t.Fatal(err)
			}
			entry := filepath.Join(stale, "plugin123")
			if tc.name2 != "" {
				entry = filepath.Join(stale, tc.name2)
			}
			switch tc.inside {
			case "socket", "listening":
				l, err := net.ListenUnix("unix", &net.UnixAddr{Name: entry, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				l.SetUnlinkOnClose(false)
				if tc.inside == "listening" {
					defer l.Close()
				} else {
					l.Close()
				}
			case "dir":
				if err := os.Mkdir(entry, 0o700); err != nil {
					t.Fatal(err)
				}
			case "file":
				if err := os.WriteFile(entry, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			record := strconv.Itoa(tc.pid) + "\n" + stale + "\n"
			if err := os.WriteFile(filepath.Join(data, host.LockFileName), []byte(record), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := host.Launch(ctxT(t), host.Config{Path: bins["memory"], DataDir: data, SocketDir: sockets}, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = os.Stat(stale)
			if gone := errors.Is(err, fs.ErrNotExist); gone != tc.removed {
				t.Errorf("stale socket directory removed: %v, want %v", gone, tc.removed)
			}
			if !tc.removed && tc.inside != "" {
				if _, err := os.Lstat(entry); err != nil {
					t.Errorf("the entry in the directory left: %v", err)
				}
			}
			left, _ := os.ReadDir(sockets)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			after, _ := os.ReadDir(sockets)
			want := 0 // the stale directory, if left in SocketDir
			if !tc.removed && !tc.outside {
				want = 1
			}
			if len(after) != want || len(left) != want+1 {
				t.Errorf("socket directories while running %v, after Close %v", left, after)
			}
		})
	}
}
