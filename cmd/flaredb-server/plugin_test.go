package main_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flaredb/flaredb/internal/testbin"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// TestPluginKilledUnderLoad kills the plugin process with SIGKILL while
// clients write through the server: the server stays up, answers
// Unavailable (never hangs) while the plugin is down, restarts it, loses no
// acknowledged write, and leaves no process behind when it stops.
func TestPluginKilledUnderLoad(t *testing.T) {
	for _, mode := range []string{"rocksdb-plugin", "badger-plugin"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			s := startServer(t, dir, engineArgs(mode)...)
			c := s.dial()
			first := s.pluginPID()
			if first == 0 {
				t.Fatalf("no plugin pid in the log:\n%s", s.stderr.String())
			}

			var mu sync.Mutex
			acked := map[string]uint64{}
			codesSeen := map[codes.Code]int{}
			load, stop := context.WithTimeout(context.Background(), 90*time.Second)
			defer stop()
			var killed, recovered sync.WaitGroup
			killed.Add(1)
			recovered.Add(1)
			var once sync.Once
			var wg sync.WaitGroup
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; load.Err() == nil && i < 20000; i++ {
						key := fmt.Sprintf("w%d/%d", w, i)
						callCtx, cancel := context.WithTimeout(load, 20*time.Second)
						r, err := c.Put(callCtx, &kvpb.PutRequest{Key: []byte(key), Value: []byte("v")})
						cancel()
						mu.Lock()
						if err != nil {
							codesSeen[status.Code(err)]++
						} else {
							acked[key] = r.Version
							if codesSeen[codes.Unavailable] > 0 && len(acked) > 0 {
								once.Do(recovered.Done)
							}
						}
						mu.Unlock()
						if err != nil {
							time.Sleep(10 * time.Millisecond) // back off while the plugin restarts
						}
					}
				}()
			}
			// Kill the plugin once writes flow.
			waitUntil(t, "writes to be acknowledged", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 200 })
			if err := testbin.KillPID(first); err != nil {
				t.Fatal(err)
			}
			killed.Done()
			waitGone(t, first)
			// Calls fail as unavailable, then succeed again once the host
			// has restarted the plugin.
			done := make(chan struct{})
			go func() { recovered.Wait(); close(done) }()
			select {
			case <-done:
			case <-load.Done():
				t.Fatalf("writes did not recover after the plugin was killed; codes seen %v\n%s", codesSeen, s.stderr.String())
			}
			stop()
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			for code := range codesSeen {
				if code != codes.Unavailable && code != codes.DeadlineExceeded && code != codes.Canceled {
					t.Fatalf("calls failed with %v during the outage, want Unavailable: %v", code, codesSeen)
				}
			}
			if codesSeen[codes.Unavailable] == 0 {
				t.Fatalf("no call saw Unavailable: %v", codesSeen)
			}
			second := s.pluginPIDs()
			if len(second) < 2 {
				t.Fatalf("the plugin was not restarted:\n%s", s.stderr.String())
			}
			// Every acknowledged write is there.
			x := ctx(t)
			for k, v := range acked {
				g, err := c.Get(x, &kvpb.GetRequest{Key: []byte(k)})
				if err != nil || g.Version != v {
					t.Fatalf("%s: acknowledged at %d, now %v %v", k, v, g, err)
				}
			}
			t.Logf("%d writes acknowledged, %d failed as unavailable during the outage", len(acked), codesSeen[codes.Unavailable])
			s.stop()
			for _, pid := range second {
				if alive(pid) {
					t.Fatalf("plugin process %d left behind after the server stopped", pid)
				}
			}
		})
	}
}

// TestBadPlugin tries plugin configurations that must be refused at start
// with a clear message.
func TestBadPlugin(t *testing.T) {
	plugin := bin("flaredb-rocksdb-plugin")
	b, err := os.ReadFile(plugin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	dir := t.TempDir()
	script := filepath.Join(dir, "chatty.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho hello, I am not a plugin\nsleep 1\n"), 0o755)
	notExec := filepath.Join(dir, "not-exec")
	os.WriteFile(notExec, []byte("data"), 0o644)
	toml := filepath.Join(dir, "opts.toml")
	os.WriteFile(toml, []byte(fmt.Sprintf("[engine]\nname = \"plugin\"\n[engine.plugin]\npath = %q\nstart_timeout = \"20s\"\n[engine.plugin.options]\nno_such_option = \"1\"\n", plugin)), 0o644)
	withArgs := func(plugin string) string {
		p := filepath.Join(dir, filepath.Base(plugin)+"-args.toml")
		os.WriteFile(p, []byte(fmt.Sprintf("[engine]\nname = \"plugin\"\n[engine.plugin]\npath = %q\nargs = [\"--cache\", \"1GB\"]\n", plugin)), 0o644)
		return p
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"rocksdb plugin with arguments", []string{"--config", withArgs(plugin)}, `takes no arguments, got ["--cache" "1GB"]`},
		{"badger plugin with arguments", []string{"--config", withArgs(bin("flaredb-badger-plugin"))}, `takes no arguments, got ["--cache" "1GB"]`},
		{"missing binary", []string{"--engine", "plugin", "--plugin-path", filepath.Join(dir, "nope")}, "no such file"},
		{"not executable", []string{"--engine", "plugin", "--plugin-path", notExec}, "not executable"},
		{"wrong checksum", []string{"--engine", "plugin", "--plugin-path", plugin, "--plugin-sha256", strings.Repeat("0", 64)}, "checksum"},
		{"not a plugin", []string{"--engine", "plugin", "--plugin-path", script}, "plugin"},
		{"true is not a plugin", []string{"--engine", "plugin", "--plugin-path", "/bin/true"}, "plugin"},
		{"unknown option", []string{"--config", toml}, "no_such_option"},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			_, err := tryStartServer(t, filepath.Join(t.TempDir(), "data"), tc.args...)
			if err == nil {
				t.Fatal("server started")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "goroutine ") {
				t.Fatalf("want a clear error mentioning %q, got:\n%v", tc.want, err)
			}
		})
	}
	// The right checksum is accepted.
	s := startServer(t, t.TempDir(), "--engine", "plugin", "--plugin-path", plugin, "--plugin-sha256", hex.EncodeToString(sum[:]))
	if _, err := s.dial().Put(ctx(t), &kvpb.PutRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	s.stop()
	if errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// TestPluginGivenUpStopsServer: once the host gives up restarting the
// plugin (engine.plugin.max_restarts), the server exits non-zero saying
// why, instead of answering unavailable forever, and leaves no plugin
// process behind; what it acknowledged is there for the next start.
func TestPluginGivenUpStopsServer(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "flaredb-badger-plugin")
	b, err := os.ReadFile(bin("flaredb-badger-plugin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plugin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "flaredb.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[engine]\nname = \"plugin\"\n[engine.plugin]\npath = %q\nmax_restarts = 2\nrestart_max_backoff = \"200ms\"\n", plugin)), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	s := startServer(t, data, "--config", cfg)
	if _, err := s.dial().Put(ctx(t), &kvpb.PutRequest{Key: []byte("k"), Value: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	// Every restart from now on fails: the binary is no plugin any more
	// (replaced by a rename: the running one is busy).
	script := filepath.Join(dir, "not-a-plugin")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho broken >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(script, plugin); err != nil {
		t.Fatal(err)
	}
	pid := s.pluginPID()
	if err := testbin.KillPID(pid); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the server still runs after its plugin was given up:\n%s", s.stderr.String())
	}
	var exit *exec.ExitError
	if !errors.As(s.err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("server exit: %v, want exit status 1\n%s", s.err, s.stderr.String())
	}
	for _, w := range []string{"giving up restarting the plugin", "can no longer serve", "gave up restarting it"} {
		if !strings.Contains(s.stderr.String(), w) {
			t.Errorf("the log lacks %q:\n%s", w, s.stderr.String())
		}
	}
	waitGone(t, pid)

	if err := os.WriteFile(plugin+".new", b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(plugin+".new", plugin); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, data, "--config", cfg)
	g, err := s.dial().Get(ctx(t), &kvpb.GetRequest{Key: []byte("k")})
	if err != nil || string(g.GetValue()) != "kept" {
		t.Fatalf("after the restart: %v %v", g, err)
	}
	s.stop()
}

// TestKilledServerSocketDirRemoved: a server killed with SIGKILL cannot
// remove its plugin's socket directory; the next server on the data
// directory does, and one stopped cleanly leaves none.
func TestKilledServerSocketDirRemoved(t *testing.T) {
	tmp, err := os.MkdirTemp("", "fdbsock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	env := []string{"TMPDIR=" + tmp}
	data := t.TempDir()
	start := func() *server {
		s, err := tryStartServerEnv(t, data, env, engineArgs("badger-plugin")...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start()
	pid := s.pluginPID()
	before, _ := os.ReadDir(tmp)
	if len(before) != 1 {
		t.Fatalf("socket directories while serving: %v", before)
	}
	s.kill()
	waitGone(t, pid) // the plugin notices its host is gone
	if left, _ := os.ReadDir(tmp); len(left) != 1 || left[0].Name() != before[0].Name() {
		t.Fatalf("after SIGKILL: %v", left)
	}
	s = start()
	now, _ := os.ReadDir(tmp)
	if len(now) != 1 || now[0].Name() == before[0].Name() {
		t.Errorf("the killed server's socket directory %s was not removed: %v", before[0].Name(), now)
	}
	if !strings.Contains(s.stderr.String(), "removed the socket directory of a plugin host that did not stop cleanly") {
		t.Errorf("the removal is not logged:\n%s", s.stderr.String())
	}
	s.stop()
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("after a clean stop: %v", left)
	}
}
