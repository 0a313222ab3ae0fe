package main_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"

	"github.com/flaredb/flaredb/internal/testbin"
)

// binDir holds the binaries built once for the whole test run.
var binDir string

func TestMain(m *testing.M) {
	specs := map[string]testbin.Spec{}
	for _, pkg := range []string{
		"github.com/flaredb/flaredb/cmd/flaredb-server", "github.com/flaredb/flaredb/cmd/flaredb",
		"github.com/flaredb/flaredb/cmd/flaredb-rocksdb-plugin", "github.com/flaredb/flaredb/cmd/flaredb-badger-plugin",
		"github.com/flaredb/flaredb/examples/bboltengine/cmd/flaredb-bbolt-plugin",
		"github.com/flaredb/flaredb/plugins/internal/testplugins/forgetful",
	} {
		specs[filepath.Base(pkg)] = testbin.Spec{Pkg: pkg, Race: raceBuild}
	}
	testbin.Main(m, "flaredb-it-", specs, func(dir string) { binDir = dir })
}

func bin(name string) string { return filepath.Join(binDir, name) }

// engineModes are the ways the integration tests run the server: each stock
// engine in process, and the persistent ones as plugin subprocesses.
var engineModes = []string{"rocksdb", "badger", "memory", "rocksdb-plugin", "badger-plugin"}

// engineArgs returns the server flags for an engine mode. Plugin modes
// choose the plugin in a configuration file, as an operator would.
func engineArgs(mode string) []string {
	if engine, ok := strings.CutSuffix(mode, "-plugin"); ok {
		path := filepath.Join(binDir, mode+".toml")
		if _, err := os.Stat(path); err != nil {
			toml := fmt.Sprintf("[engine]\nname = \"plugin\"\n\n[engine.plugin]\npath = %q\nstart_timeout = \"60s\"\n",
				bin("flaredb-"+engine+"-plugin"))
			if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
				panic(err)
			}
		}
		return []string{"--config", path}
	}
	return []string{"--engine", mode}
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// server is a flaredb-server process started by a test.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	dir    string
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

var listenRE = regexp.MustCompile(`msg=serving listen=(\S+)`)

// startServer starts flaredb-server with args (plus a data directory and
// ephemeral ports unless the args set them) and waits until it serves.
func startServer(t *testing.T, dir string, args ...string) *server {
	t.Helper()
	s, err := tryStartServer(t, dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tryStartServer(t *testing.T, dir string, args ...string) (*server, error) {
	t.Helper()
	return tryStartServerEnv(t, dir, nil, args...)
}

// tryStartServerEnv is tryStartServer with env (KEY=VALUE) added to the
// server's environment.
func tryStartServerEnv(t *testing.T, dir string, env []string, args ...string) (*server, error) {
	t.Helper()
	all := []string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--metrics-listen", ""}
	all = append(all, args...)
	cmd := exec.Command(bin("flaredb-server"), all...)
	cmd.Env = append(cleanEnv(), env...)
	s := &server{t: t, cmd: cmd, dir: dir, stderr: &syncBuffer{}, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(s.stderr, pw)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.err = cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case s.addr = <-addrc:
	case <-s.done:
		return nil, fmt.Errorf("server exited before serving (%v):\n%s", s.err, s.stderr.String())
	case <-time.After(90 * time.Second):
		s.kill()
		return nil, fmt.Errorf("server did not start within 90s:\n%s", s.stderr.String())
	}
	t.Cleanup(s.kill)
	return s, nil
}

func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "FLAREDB_") {
			env = append(env, e)
		}
	}
	return env
}

// kill stops the process with SIGKILL (by PID) and waits for it.
func (s *server) kill() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		s.kill()
		s.t.Fatalf("server did not stop within 60s of SIGTERM:\n%s", s.stderr.String())
	}
	if s.err != nil {
		s.t.Fatalf("server exited with %v after SIGTERM:\n%s", s.err, s.stderr.String())
	}
}

// dial returns a raw API client for s.
func (s *server) dial() kvpb.KVClient {
	s.t.Helper()
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { conn.Close() })
	return kvpb.NewKVClient(conn)
}

// cli runs the flaredb CLI against s and returns stdout, stderr and the exit
// code.
func (s *server) cli(args ...string) (string, string, int) {
	s.t.Helper()
	return runCLI(s.t, append([]string{"--addr", s.addr}, args...)...)
}

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runCLITimeout(t, 60*time.Second, args...)
}

// runCLITimeout is runCLI with a bound of its own, for long commands such
// as a whole certification run.
func runCLITimeout(t *testing.T, limit time.Duration, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin("flaredb"), args...)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("flaredb %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

var (
	pluginPIDRE  = regexp.MustCompile(`msg="plugin started" .*\bpid=(\d+)`)
	pluginPIDsRE = regexp.MustCompile(`msg="plugin (?:re)?started" .*\bpid=(\d+)`)
)

// pluginPID returns the PID of the server's plugin process, or 0 when the
// engine runs in process.
func (s *server) pluginPID() int {
	m := pluginPIDRE.FindStringSubmatch(s.stderr.String())
	if m == nil {
		return 0
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// pluginPIDs returns the PIDs of every plugin process the server started,
// in order.
func (s *server) pluginPIDs() []int {
	var pids []int
	for _, m := range pluginPIDsRE.FindAllStringSubmatch(s.stderr.String(), -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	return pids
}

// waitUntil polls cond and fails the test if it does not hold within a
// minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// waitGone fails the test unless pid exits within a minute.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = testbin.KillPID(pid)
			t.Fatalf("process %d still running a minute after its server died", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
