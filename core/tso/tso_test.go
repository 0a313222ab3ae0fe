package tso

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestMonotonicAcrossClockStepsAndRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tso")
	clk := &fakeClock{t: time.UnixMilli(1_700_000_000_000)}
	opts := &Options{Now: clk.now, Window: time.Second}
	o, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	next := func(n int) {
		t.Helper()
		ts, err := o.Next(n)
		if err != nil {
			t.Fatal(err)
		}
		if ts <= last {
			t.Fatalf("timestamp %d not above %d", ts, last)
		}
		last = ts + uint64(n) - 1
	}
	steps := []struct {
		name  string
		clock time.Duration // relative change of the clock before the step
		n     int
	}{
		{"first", 0, 1},
		{"same millisecond", 0, 10},
		{"clock forward", 5 * time.Millisecond, 1},
		{"clock steps back an hour", -time.Hour, 5},
		{"logical counter exhausted", 0, maxLogical},
		{"after exhaustion", 0, 3},
		{"past the window", 10 * time.Second, 1},
	}
	for _, s := range steps {
		clk.set(clk.now().Add(s.clock))
		next(s.n)
	}
	// Restart with the clock an hour behind the last issued timestamp.
	clk.set(clk.now().Add(-time.Hour))
	o2, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	o = o2
	next(1)
	if got := o.Last(); got != last {
		t.Fatalf("Last() = %d, want %d", got, last)
	}
}

func TestConcurrentUnique(t *testing.T) {
	o, err := Open(filepath.Join(t.TempDir(), "tso"), nil)
	if err != nil {
		t.Fatal(err)
	}
	const workers, per = 8, 2000
	out := make(chan uint64, workers*per)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				ts, err := o.Next(1)
				if err != nil {
					t.Error(err)
					return
				}
				out <- ts
			}
		}()
	}
	wg.Wait()
	close(out)
	seen := make(map[uint64]bool)
	for ts := range out {
		if seen[ts] {
			t.Fatalf("timestamp %d issued twice", ts)
		}
		seen[ts] = true
	}
	if len(seen) != workers*per {
		t.Fatalf("got %d timestamps, want %d", len(seen), workers*per)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tso")
	o, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, -1, maxLogical + 1} {
		if _, err := o.Next(n); err == nil {
			t.Errorf("Next(%d) succeeded", n)
		}
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open on a corrupt mark: %v, want ErrCorrupt", err)
	}
	if _, err := Open(filepath.Join(dir, "missing-dir", "tso"), nil); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

func FuzzDecodeMark(f *testing.F) {
	f.Add(encodeMark(0))
	f.Add(encodeMark(1_700_000_000_000))
	f.Add([]byte("FLARETSO"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMark(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same bytes.
		if got := encodeMark(m); string(got) != string(b) {
			t.Fatalf("round trip of %x gave %x", b, got)
		}
	})
}
