//go:build cgo

package rocksdbengine

import (
	"testing"

	"github.com/flaredb/flaredb/core/kvengine/storetest"
)

// TestCrashRecovery kills a child process writing synced batches with
// SIGKILL and checks the store after reopening it; storetest.Crash runs
// this test again in the child.
func TestCrashRecovery(t *testing.T) { storetest.Crash(t, testOpener) }

// TestCrashDuringCreate kills child processes while they create the store
// in fresh directories; every directory must open afterwards.
func TestCrashDuringCreate(t *testing.T) { storetest.CrashDuringCreate(t, testOpener) }
