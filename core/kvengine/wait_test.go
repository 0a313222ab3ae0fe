package kvengine_test

import (
	"runtime"
	"testing"
	"time"
)

// waitFor polls cond, letting other goroutines run, and fails the test if
// it does not hold within a minute (a hang, not a slow machine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		runtime.Gosched()
	}
}
