// Package testbin builds the binaries that tests run as real processes —
// the server, the CLI, plugin binaries — once per test binary, in parallel,
// into a temporary directory that is removed when the tests end.
//
// It is test support only: production code must not import it.
package testbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Spec is one binary to build.
type Spec struct {
	// Pkg is the package's import path.
	Pkg string
	// Env is added to the environment of go build (CGO_ENABLED=0, say).
	Env []string
	// Race builds with the race detector.
	Race bool
}

// Build builds each spec into a new temporary directory (named with
// prefix), the binary named by its key, and returns the directory. If any
// build fails it removes the directory and returns every failure, with the
// compiler's output, joined.
func Build(prefix string, specs map[string]Spec) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for name, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"build", "-o", filepath.Join(dir, name)}
			if s.Race {
				args = append(args, "-race")
			}
			cmd := exec.Command("go", append(args, s.Pkg)...)
			if len(s.Env) > 0 {
				cmd.Env = append(os.Environ(), s.Env...)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("go build %s: %w\n%s", s.Pkg, err, out))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		_ = os.RemoveAll(dir)
		return "", errors.Join(errs...)
	}
	return dir, nil
}

// Main is the body of a TestMain: it builds specs (see Build), passes
// their directory to built, runs the tests, removes the directory and exits
// with the tests' code. A failed build exits 1, after printing why, without
// running any test.
func Main(m *testing.M, prefix string, specs map[string]Spec, built func(dir string)) {
	d, err := Build(prefix, specs)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built(d)
	code := m.Run()
	_ = os.RemoveAll(d)
	os.Exit(code)
}

// KillPID sends SIGKILL to the process pid: a portable os.Process.Kill, so
// that tests that kill the processes they started build everywhere.
func KillPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
