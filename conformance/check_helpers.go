package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/flaredb/flaredb/core/engine"
)

// state is what a key holds: a value and a version, version 0 meaning
// absent (and then the value is nil).
type state struct {
	value   []byte
	version uint64
}

// absent is the state of a key that does not exist.
var absent = state{}

func present(value string, version uint64) state {
	return state{value: []byte(value), version: version}
}

func stateOf(e engine.Entry) state { return state{value: e.Value, version: e.Version} }

func (s state) String() string {
	if s.version == 0 {
		return "absent"
	}
	return fmt.Sprintf("%s@%d", fmtBytes(s.value), s.version)
}

// sameState compares two states, treating a nil and an empty value alike
// for a present key.
func sameState(a, b state) bool {
	return a.version == b.version && bytes.Equal(a.value, b.value)
}

// checkEntry reports an entry that does not carry key and want. An absent
// entry must have a nil Value (the contract says so).
func checkEntry(t T, what string, got engine.Entry, key []byte, want state) bool {
	t.Helper()
	ok := true
	if !bytes.Equal(got.Key, key) {
		t.Errorf("%s: entry key %s, want %s", what, fmtKey(got.Key), fmtKey(key))
		ok = false
	}
	if !sameState(stateOf(got), want) {
		t.Errorf("%s: key %s is %s, want %s", what, fmtKey(key), stateOf(got), want)
		ok = false
	} else if want.version == 0 && got.Value != nil {
		t.Errorf("%s: absent key %s has non-nil Value %s; the contract says nil", what, fmtKey(key), fmtBytes(got.Value))
		ok = false
	}
	return ok
}

// checkResult reports a Result other than (applied, want), want being the
// key's state the Result must describe.
func checkResult(t T, what string, got engine.Result, applied bool, want state) bool {
	t.Helper()
	ok := true
	if got.Applied != applied {
		t.Errorf("%s: Applied=%v, want %v", what, got.Applied, applied)
		ok = false
	}
	gs := state{value: got.Value, version: got.Version}
	if !sameState(gs, want) {
		t.Errorf("%s: result reports %s, want %s", what, gs, want)
		ok = false
	} else if want.version == 0 && got.Value != nil {
		t.Errorf("%s: result for an absent key has non-nil Value %s; the contract says nil", what, fmtBytes(got.Value))
		ok = false
	}
	return ok
}

// checkEntries reports a list of entries that differs from want in length,
// keys, values or versions. With keysOnly, every got Value must be nil.
func checkEntries(t T, what string, got, want []engine.Entry, keysOnly bool) bool {
	t.Helper()
	ok := true
	n := max(len(got), len(want))
	for i := 0; i < n; i++ {
		switch {
		case i >= len(got):
			t.Errorf("%s: entry %d missing, want %s", what, i, fmtEntry(want[i]))
			ok = false
		case i >= len(want):
			t.Errorf("%s: unexpected entry %d: %s", what, i, fmtEntry(got[i]))
			ok = false
		case !bytes.Equal(got[i].Key, want[i].Key) || got[i].Version != want[i].Version ||
			(!keysOnly && !bytes.Equal(got[i].Value, want[i].Value)):
			t.Errorf("%s: entry %d is %s, want %s", what, i, fmtEntry(got[i]), fmtEntry(want[i]))
			ok = false
		case keysOnly && got[i].Value != nil:
			t.Errorf("%s: entry %d (%s) has a value in a keys-only scan", what, i, fmtKey(got[i].Key))
			ok = false
		}
		if !ok && i > 20 {
			t.Errorf("%s: (further differences not shown; got %d entries, want %d)", what, len(got), len(want))
			break
		}
	}
	return ok
}

// checkErr reports an error that does not match target with errors.Is.
func checkErr(t T, what string, err, target error) bool {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, target)
		return false
	}
	if !errors.Is(err, target) {
		t.Errorf("%s: error %q does not match %v (errors.Is)", what, err, target)
		return false
	}
	return true
}

// expectStates reads keys from e and reports any whose state is not the
// corresponding want.
func (h *Harness) expectStates(e engine.Engine, what string, keys [][]byte, want []state) {
	h.t.Helper()
	got := h.MustRead(e, keys...)
	for i, k := range keys {
		checkEntry(h.t, what, got[i], k, want[i])
	}
}

// expectUnchanged reads keys from e and reports any whose entry differs from
// before (a Read of the same keys).
func (h *Harness) expectUnchanged(e engine.Engine, what string, keys [][]byte, before []engine.Entry) {
	h.t.Helper()
	want := make([]state, len(before))
	for i, b := range before {
		want[i] = stateOf(b)
	}
	h.expectStates(e, what+" (state must be unchanged)", keys, want)
}

// workers runs fn(0) ... fn(n-1) on n goroutines and waits for them. A panic
// in one is recovered and reported through t.Errorf, so an engine panicking
// on another goroutine fails the case instead of the process. fn must not
// call Fatalf or Skipf.
func workers(t T, n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("worker %d panicked: %v\n%s", i, r, debug.Stack())
				}
			}()
			fn(i)
		}()
	}
	wg.Wait()
}

// keys converts strings to byte-slice keys.
func keys(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}
