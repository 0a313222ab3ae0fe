package badgerengine

import (
	"testing"

	"github.com/flaredb/flaredb/core/kvengine/storetest"
)

// TestCrashRecovery kills a child process writing synced batches with
// SIGKILL and checks the store after reopening it; storetest.Crash runs
// this test again in the child.
func TestCrashRecovery(t *testing.T) { storetest.Crash(t, testOpener) }
