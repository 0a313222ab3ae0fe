package storetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/kvengine"
)

// Crash re-executes the test binary as a child that runs only the calling
// test, with crashDirEnv naming the store's directory and crashTestEnv the
// test: there Crash writes instead of checking.
const (
	crashDirEnv    = "FLAREDB_STORETEST_CRASH_DIR"
	crashTestEnv   = "FLAREDB_STORETEST_CRASH_TEST"
	crashKillAfter = 300    // acknowledged batches before the parent kills the child
	crashMaxWrites = 100000 // the child never writes more batches than this
)

func crashKeys(i int) (a, b []byte) {
	return []byte(fmt.Sprintf("crash/%06d/a", i)), []byte(fmt.Sprintf("crash/%06d/b\x00\xff", i))
}

func crashValue(i int) []byte {
	return []byte(fmt.Sprintf("value-%d-%s", i, bytes.Repeat([]byte{byte(i)}, i%100)))
}

func crashAck(i int) string { return fmt.Sprintf("ack %d ok", i) }

// Crash kills a writing child process with SIGKILL and checks that every
// batch it acknowledged is in the store after reopening, and that every
// batch is all or nothing. It also checks that, while the child holds the
// store, this process cannot open it (the error names the directory and its
// lock).
//
// Call it from a top-level test of its own (or a subtest): Crash re-executes
// the test binary (os.Args[0]) with -test.run matching exactly the calling
// test, and an environment variable that makes the same call, in the child,
// open the store, write synced two-key batches in a loop and print one line
// per acknowledged batch until it is killed. The calling test must not do
// anything before Crash that must not run in the child.
func Crash(t *testing.T, open Opener) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		if name := os.Getenv(crashTestEnv); name != t.Name() {
			t.Fatalf("crash child: %s names test %q, but this is %q", crashTestEnv, name, t.Name())
		}
		crashChild(t, open, dir)
		return
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashTestEnv+"="+t.Name())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := -1 // the highest acknowledged batch; batches are acknowledged in order
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		// Only whole lines count: a line cut short by the kill does not
		// match its ack exactly.
		if sc.Text() != crashAck(acked+1) {
			continue
		}
		acked++
		if acked == 0 {
			// While the child holds the database, this process cannot
			// open it.
			if s, err := open(t, dir, false); err == nil {
				s.Close()
				cmd.Process.Kill()
				t.Fatal("opened the database while another process had it open")
			} else if !strings.Contains(err.Error(), dir) || !strings.Contains(strings.ToLower(err.Error()), "lock") {
				t.Errorf("open while another process has the database: %q should name the directory and its lock", err)
			}
		}
		if acked+1 == crashKillAfter && !killed {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatalf("kill child %d: %v", cmd.Process.Pid, err)
			}
			killed = true
		}
	}
	werr := cmd.Wait()
	if !killed {
		t.Fatalf("child ended after %d acknowledged batches without being killed: %v\nstderr:\n%s", acked+1, werr, stderr.String())
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not ended by our SIGKILL: %v\nstderr:\n%s", werr, stderr.String())
	}
	t.Logf("child killed after %d acknowledged batches", acked+1)

	s, err := open(t, dir, true)
	if err != nil {
		t.Fatalf("reopen after the crash: %v", err)
	}
	defer s.Close()
	for i := 0; i < crashMaxWrites; i++ {
		a, b := crashKeys(i)
		va, oka, err := s.Get(a)
		if err != nil {
			t.Fatal(err)
		}
		vb, okb, err := s.Get(b)
		if err != nil {
			t.Fatal(err)
		}
		if oka != okb {
			t.Fatalf("batch %d is half applied after the crash (a: %v, b: %v)", i, oka, okb)
		}
		if !oka {
			if i <= acked {
				t.Fatalf("acknowledged batch %d (of %d) is lost after the crash", i, acked+1)
			}
			break // batches are written in order: nothing later was written either
		}
		if want := crashValue(i); !bytes.Equal(va, want) || !bytes.Equal(vb, want) {
			t.Fatalf("batch %d: values %q, %q after the crash, want %q", i, va, vb, want)
		}
	}
}

// crashChild is Crash in the child: it writes synced two-key batches in a
// loop and prints one line per acknowledged batch, until it is killed. It
// never returns.
func crashChild(t *testing.T, open Opener, dir string) {
	s, err := open(t, dir, false)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: open: %v\n", err)
		os.Exit(2)
	}
	for i := range crashMaxWrites {
		a, b := crashKeys(i)
		v := crashValue(i)
		if err := s.Write([]kvengine.Mutation{{Key: a, Value: v}, {Key: b, Value: v}}, true); err != nil {
			fmt.Fprintf(os.Stderr, "child: write %d: %v\n", i, err)
			os.Exit(3)
		}
		// os.Stdout is unbuffered: the line leaves the process only after
		// the write was acknowledged.
		fmt.Println(crashAck(i))
	}
	fmt.Fprintf(os.Stderr, "child: wrote %d batches without being killed\n", crashMaxWrites)
	os.Exit(4)
}

// runPattern is the -test.run pattern that matches exactly the test named
// name (a subtest's name has one element per level, split at "/").
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}
