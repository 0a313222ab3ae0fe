package main_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// TestCrashKeepsAcknowledgedWrites kills the server with SIGKILL in the
// middle of a concurrent write load, restarts it on the same directory, and
// checks that every acknowledged write is there and that versions keep
// increasing.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	for _, mode := range []string{"rocksdb", "badger", "rocksdb-plugin", "badger-plugin"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			s := startServer(t, dir, engineArgs(mode)...)
			c := s.dial()

			type ack struct {
				value   string
				version uint64
			}
			var mu sync.Mutex
			acked := map[string]ack{}
			var maxVersion uint64
			loadCtx, stopLoad := context.WithTimeout(context.Background(), 60*time.Second)
			defer stopLoad()
			var wg sync.WaitGroup
			const workers, perWorker = 16, 2000
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < perWorker; i++ {
						key := fmt.Sprintf("w%02d/k%03d", w, i%100)
						val := fmt.Sprintf("%d", i)
						r, err := c.Put(loadCtx, &kvpb.PutRequest{Key: []byte(key), Value: []byte(val)})
						if err != nil {
							return // the server died: unacknowledged
						}
						mu.Lock()
						acked[key] = ack{val, r.Version}
						maxVersion = max(maxVersion, r.Version)
						mu.Unlock()
					}
				}()
			}
			// Kill once a good number of writes were acknowledged.
			for {
				mu.Lock()
				n := len(acked)
				mu.Unlock()
				if n >= 500 || loadCtx.Err() != nil {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			pluginPID := s.pluginPID()
			s.kill()
			if pluginPID != 0 {
				// The plugin notices its host is gone and exits: no orphan
				// keeps the data directory.
				waitGone(t, pluginPID)
			}
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			if len(acked) == 0 {
				t.Fatal("no write was acknowledged before the kill")
			}

			s2 := startServer(t, dir, engineArgs(mode)...)
			c2 := s2.dial()
			x := ctx(t)
			for key, a := range acked {
				g, err := c2.Get(x, &kvpb.GetRequest{Key: []byte(key)})
				if err != nil {
					t.Fatal(err)
				}
				// A later write to the same key may have landed without its
				// acknowledgement reaching us; never an older one.
				if !g.Found || g.Version < a.version {
					t.Fatalf("%s: acknowledged %q@%d, found %v %q@%d", key, a.value, a.version, g.Found, g.Value, g.Version)
				}
			}
			p, err := c2.Put(x, &kvpb.PutRequest{Key: []byte("after"), Value: []byte("x")})
			if err != nil {
				t.Fatal(err)
			}
			if p.Version <= maxVersion {
				t.Fatalf("version after restart %d is not above %d", p.Version, maxVersion)
			}
			t.Logf("%d keys acknowledged before SIGKILL, all present after restart", len(acked))
			s2.stop()
		})
	}
}

// TestBadStartup tries configurations and environments that must be
// refused with a clear message and a non-zero exit, never a crash.
func TestBadStartup(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notADir := write("file", "x")
	cases := []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{"malformed toml", []string{"--config", write("bad.toml", "listen = [unclosed")}, []string{"bad.toml"}},
		{"unknown key", []string{"--config", write("unknown.toml", "lisen = \"127.0.0.1:1\"\n")}, []string{"unknown keys: lisen"}},
		{"unknown engine", []string{"--engine", "leveldb"}, []string{`unknown engine`, "badger", "memory", "rocksdb", "plugin"}},
		{"contradictory config", []string{"--config", write("contra.toml", "[tls]\ncert_file = \"/nonexistent.pem\"\n[limits]\nmax_key_size = 0\n[engine.plugin]\npath = \"/x\"\n")},
			[]string{"tls: cert_file and key_file must be set together", "limits.max_key_size", "engine.plugin.path set but engine.name is \"rocksdb\""}},
		{"bad size", []string{"--max-value-size", "lots"}, []string{"--max-value-size", "bad size"}},
		{"plugin without path", []string{"--engine", "plugin"}, []string{"engine.plugin.path: required"}},
		{"data dir is a file", []string{"--data-dir", notADir}, []string{"data_dir " + notADir + " is not a directory"}},
		{"missing config file", []string{"--config", filepath.Join(dir, "nope.toml")}, []string{"nope.toml"}},
		{"bad listen", []string{"--listen", "localhost"}, []string{"listen", "host:port"}},
		{"unknown flag", []string{"--bogus-flag"}, []string{"unknown flag: --bogus-flag", "--help"}},
		{"flag without value", []string{"--listen"}, []string{"--listen", "--help"}},
		{"bad boolean", []string{"--check-config=maybe"}, []string{"check-config", "--help"}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			_, err := tryStartServer(t, filepath.Join(t.TempDir(), "data"), tc.args...)
			if err == nil {
				t.Fatal("server started")
			}
			msg := err.Error()
			if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") {
				t.Fatalf("server crashed:\n%s", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("stderr lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

// TestSecondServerSameDirectory checks the data-directory lock.
func TestSecondServerSameDirectory(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "--engine", "rocksdb")
	_, err := tryStartServer(t, dir, "--engine", "rocksdb")
	if err == nil || !strings.Contains(err.Error(), "in use by another FlareDB server") {
		t.Fatalf("second server: %v", err)
	}
	// The first one is unharmed.
	if _, err := s.dial().Put(ctx(t), &kvpb.PutRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	s.stop()
}

// TestPortInUse checks the message for an address already bound.
func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = tryStartServer(t, t.TempDir(), "--engine", "memory", "--listen", l.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "cannot listen on "+l.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("server on a busy port: %v", err)
	}
}

// TestGracefulShutdownDrains sends SIGTERM while writes are in flight: the
// server exits cleanly, every write acknowledged before is on disk.
func TestGracefulShutdownDrains(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "--engine", "rocksdb")
	c := s.dial()
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	x, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				k := fmt.Sprintf("g%d/%d", w, i)
				if _, err := c.Put(x, &kvpb.PutRequest{Key: []byte(k), Value: []byte("v")}); err != nil {
					return
				}
				mu.Lock()
				acked[k] = true
				mu.Unlock()
			}
		}()
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 {
			break
		}
		select {
		case <-writersDone:
			t.Fatalf("every writer stopped after %d acknowledged writes", n)
		case <-time.After(5 * time.Millisecond):
		}
	}
	s.stop()
	wg.Wait()
	if !strings.Contains(s.stderr.String(), "msg=\"shut down\"") {
		t.Fatalf("no clean shutdown in the log:\n%s", s.stderr.String())
	}
	s2 := startServer(t, dir, "--engine", "rocksdb")
	c2 := s2.dial()
	for k := range acked {
		g, err := c2.Get(ctx(t), &kvpb.GetRequest{Key: []byte(k)})
		if err != nil || !g.Found {
			t.Fatalf("%s acknowledged before shutdown, missing after: %v", k, err)
		}
	}
	s2.stop()
}

// TestSignals: SIGHUP (a closed terminal, a log rotation) is ignored, with
// a warning, and the server goes on serving; SIGINT, like SIGTERM, drains
// and exits 0.
func TestSignals(t *testing.T) {
	s := startServer(t, t.TempDir(), "--engine", "memory")
	c := s.dial()
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.stderr.String(), "SIGHUP ignored") {
		select {
		case <-s.done:
			t.Fatalf("SIGHUP ended the server (%v):\n%s", s.err, s.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no word of SIGHUP in the log:\n%s", s.stderr.String())
		}
	}
	if _, err := c.Put(ctx(t), &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("put after SIGHUP: %v", err)
	}
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		s.kill()
		t.Fatalf("SIGINT did not stop the server:\n%s", s.stderr.String())
	}
	if s.err != nil || !strings.Contains(s.stderr.String(), `msg="shut down"`) {
		t.Fatalf("after SIGINT: %v\n%s", s.err, s.stderr.String())
	}
}
