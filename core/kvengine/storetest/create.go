package storetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/kvengine"
)

// CrashDuringCreate re-executes the test binary as a child that creates a
// store in the directory createDirEnv names, for the test createTestEnv
// names.
const (
	createDirEnv  = "FLAREDB_STORETEST_CREATE_DIR"
	createTestEnv = "FLAREDB_STORETEST_CREATE_TEST"
	createRounds  = 24 // children killed, each in a fresh directory
	// maxExtraRounds more are killed while none was half-way through.
	maxExtraRounds = 48
	openingLine    = "opening"
	openedLine     = "opened"
)

// CrashDuringCreate kills, with SIGKILL, child processes that are creating
// the store in fresh directories. A first child, killed once its store is
// open, measures how long a creation takes (D); then round i kills its
// child i/(createRounds-4)×D after the child said it starts to open, so the
// kills fall at a spread of moments of the creation (and a few after it),
// with more rounds while none landed half-way through a creation (a
// directory holding the library's first files but no open store), which
// fails the test if it never happens. Then every directory must
// open (the creation is finished or started again) and keep a synced
// write across a reopen: a creation killed half-way must never leave a
// directory the engine refuses.
//
// Call it from a top-level test of its own, as Crash: the child runs the
// same test, and must do nothing before CrashDuringCreate that must not
// run in the child.
func CrashDuringCreate(t *testing.T, open Opener) {
	if dir := os.Getenv(createDirEnv); dir != "" {
		if name := os.Getenv(createTestEnv); name != t.Name() {
			t.Fatalf("create child: %s names test %q, but this is %q", createTestEnv, name, t.Name())
		}
		createChild(t, open, dir)
		return
	}
	base := t.TempDir()
	_, took := killChild(t, filepath.Join(base, "db00"), -1)
	before, halfway := 0, 0 // children killed before their store was open; of those, after it had begun writing files
	rounds := 1
	for i := 1; i < createRounds || (halfway == 0 && i < createRounds+maxExtraRounds); i++ {
		dir := filepath.Join(base, fmt.Sprintf("db%02d", i))
		delay := took * time.Duration(i%createRounds) / (createRounds - 4)
		if opened, _ := killChild(t, dir, delay); !opened {
			before++
			if begun(dir) {
				halfway++
			}
		}
		rounds++
	}
	t.Logf("a creation took %v; %d of %d children were killed before their store was open, %d of them half-way through creating it",
		took, before, rounds-1, halfway)
	if halfway == 0 {
		t.Fatalf("in %d rounds no kill landed while the store was being created: the recovery from a half-created store went unchecked", rounds-1)
	}
	for i := range rounds {
		dir := filepath.Join(base, fmt.Sprintf("db%02d", i))
		s, err := open(t, dir, false)
		if err != nil {
			t.Fatalf("open after a creation was killed: %v", err)
		}
		MustWrite(t, s, true, Put("k", dir))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = open(t, dir, true)
		if err != nil {
			t.Fatalf("reopen %s: %v", dir, err)
		}
		WantGet(t, s, "k", []byte(dir))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// begun reports whether dir holds a file that the store's library wrote
// (anything but FlareDB's own claim on the directory).
func begun(dir string) bool {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), kvengine.ClaimFileName) {
			return true
		}
	}
	return false
}

// killChild starts a child creating the store in dir and kills it after
// delay from its opening line (a negative delay: once it says its store is
// open). It reports whether the child had said so, and how long after its
// opening line.
func killChild(t *testing.T, dir string, delay time.Duration) (opened bool, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), createDirEnv+"="+dir, createTestEnv+"="+t.Name())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 4)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The child's first line says it starts to open.
	for l := range lines {
		if l == openingLine {
			break
		}
	}
	start := time.Now()
	if delay < 0 {
		for l := range lines {
			if l == openedLine {
				opened, took = true, time.Since(start)
				break
			}
		}
		if !opened {
			_ = cmd.Wait()
			t.Fatalf("the child did not open the store\nstderr:\n%s", stderr.String())
		}
	} else {
		time.Sleep(delay)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill child %d: %v", cmd.Process.Pid, err)
	}
	for l := range lines {
		if l == openedLine && !opened {
			opened, took = true, time.Since(start)
		}
	}
	_ = cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not ended by our SIGKILL (%v)\nstderr:\n%s", cmd.ProcessState, stderr.String())
	}
	return opened, took
}

// createChild is CrashDuringCreate in the child: it says it starts to
// open, creates the store in dir, says so and waits to be killed. It never
// returns.
func createChild(t *testing.T, open Opener, dir string) {
	fmt.Println(openingLine)
	s, err := open(t, dir, false)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: open: %v\n", err)
		os.Exit(2)
	}
	fmt.Println(openedLine)
	_ = s                       // open until the kill
	time.Sleep(2 * time.Minute) // the parent kills it long before
	os.Exit(3)
}
