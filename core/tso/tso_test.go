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

// TestMustExist: an oracle that must find its file refuses to start
// without it (timestamps would restart from the clock, below those in
// use), and starts with it.
func TestMustExist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tso")
	if _, err := Open(path, &Options{MustExist: true}); !errors.Is(err, ErrMissing) {
		t.Fatalf("no file, MustExist: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused Open created the file: %v", err)
	}
	if _, err := Open(path, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, &Options{MustExist: true}); err != nil {
		t.Fatalf("file present, MustExist: %v", err)
	}
}

// TestFloor: every timestamp exceeds the floor, with or without a file,
// even with the clock far behind it; a floor below the file's mark changes
// nothing.
func TestFloor(t *testing.T) {
	clk := &fakeClock{t: time.UnixMilli(1_700_000_000_000)}
	floor := Compose(1_700_000_000_000+int64(time.Hour/time.Millisecond), 12345)
	for _, withFile := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "tso")
		if withFile {
			o, err := Open(path, &Options{Now: clk.now})
			if err != nil {
				t.Fatal(err)
			}
			o.Next(1)
		}
		o, err := Open(path, &Options{Now: clk.now, Floor: floor})
		if err != nil {
			t.Fatal(err)
		}
		ts, err := o.Next(1)
		if err != nil || ts <= floor {
			t.Fatalf("withFile=%v: %d, %v; want above the floor %d", withFile, ts, err, floor)
		}
		// The new mark is persisted: a restart without the floor stays
		// above it.
		o2, err := Open(path, &Options{Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		if ts2, err := o2.Next(1); err != nil || ts2 <= ts {
			t.Fatalf("withFile=%v: after a restart %d, %v; want above %d", withFile, ts2, err, ts)
		}
	}
	// A floor below the mark: timestamps still exceed the mark.
	path := filepath.Join(t.TempDir(), "tso")
	o, _ := Open(path, &Options{Now: clk.now})
	first, _ := o.Next(1)
	o2, err := Open(path, &Options{Now: clk.now, Floor: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := o2.Next(1); err != nil || ts <= first {
		t.Fatalf("low floor: %d, %v; want above %d", ts, err, first)
	}
}

// TestPersistFailure: when the mark cannot be persisted, Next issues
// nothing and keeps the old limit, and the next call tries again.
func TestPersistFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tso")
	clk := &fakeClock{t: time.UnixMilli(1_700_000_000_000)}
	o, err := Open(path, &Options{Now: clk.now, Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	last, err := o.Next(1)
	if err != nil {
		t.Fatal(err)
	}
	// Past the window, with the directory unwritable: nothing is issued.
	clk.set(clk.now().Add(5 * time.Second))
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if os.Getuid() == 0 {
		// root writes anyway: make the directory go away instead.
		os.Chmod(dir, 0o700)
		moved := dir + ".moved"
		if err := os.Rename(dir, moved); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(moved, dir)
	}
	for range 2 {
		if ts, err := o.Next(1); err == nil {
			t.Fatalf("issued %d without persisting the mark", ts)
		}
		if o.Last() != last {
			t.Fatalf("a failed Next moved Last from %d to %d", last, o.Last())
		}
	}
	// Writable again: the next call persists and issues.
	if os.Getuid() == 0 {
		os.Rename(dir+".moved", dir)
	}
	os.Chmod(dir, 0o700)
	ts, err := o.Next(1)
	if err != nil || ts <= last {
		t.Fatalf("after recovery: %d, %v", ts, err)
	}
	if m, err := readMark(path); err != nil || m <= Physical(ts) {
		t.Fatalf("mark %d (%v) not above the issued %d", m, err, Physical(ts))
	}
}

// TestStaleTempsRemoved: temporary files left by a process killed while
// persisting are removed on Open.
func TestStaleTempsRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tso")
	if _, err := Open(path, nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{".tso-123", ".tso-456"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(path, nil); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "tso" {
		t.Fatalf("left in the directory: %v", entries)
	}
}

// TestExhausted: near the end of the physical range, Open and Next fail
// with ErrExhausted instead of wrapping around to small timestamps.
func TestExhausted(t *testing.T) {
	clk := &fakeClock{t: time.UnixMilli(maxPhysical - 10)}
	path := filepath.Join(t.TempDir(), "tso")
	if _, err := Open(path, &Options{Now: clk.now, Window: time.Second}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Open at the end of time: %v", err)
	}
	clk.set(time.UnixMilli(maxPhysical - 2000))
	o, err := Open(path, &Options{Now: clk.now, Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := 0; ; i++ {
		clk.set(clk.now().Add(500 * time.Millisecond))
		ts, err := o.Next(1)
		if errors.Is(err, ErrExhausted) {
			break
		}
		if err != nil || ts <= last || i > 10 {
			t.Fatalf("step %d: %d, %v (last %d)", i, ts, err, last)
		}
		last = ts
	}
}

// TestSubMillisecondWindow: a window below a millisecond is one, not zero
// (which would persist on every call).
func TestSubMillisecondWindow(t *testing.T) {
	o, err := Open(filepath.Join(t.TempDir(), "tso"), &Options{Window: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	if o.window != 1 {
		t.Fatalf("window %d ms", o.window)
	}
}

// TestLastIssued: 0 until the oracle issues a timestamp (Last is only a
// starting point then, 262143 on a fresh file), then the newest issued,
// and 0 again after a reopen.
func TestLastIssued(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tso")
	o, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.LastIssued(); got != 0 {
		t.Fatalf("fresh oracle: LastIssued %d, want 0 (Last %d)", got, o.Last())
	}
	first, err := o.Next(3)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.LastIssued(); got != first+2 {
		t.Fatalf("after Next(3) = %d: LastIssued %d, want %d", first, got, first+2)
	}
	o, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.LastIssued(); got != 0 {
		t.Fatalf("reopened oracle: LastIssued %d, want 0", got)
	}
}
