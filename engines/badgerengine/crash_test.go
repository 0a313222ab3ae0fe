package badgerengine

import (
	"os"
	"path/filepath"
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

// TestEmptyLogsLeftByCrash: a process killed after Badger created a log
// file but before it wrote the file's header leaves it empty, and Badger's
// own Open fails on it; the store opens, with its data.
func TestEmptyLogsLeftByCrash(t *testing.T) {
	for _, name := range []string{"00009.mem", "000009.vlog"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := testOpener(t, dir, false)
			if err != nil {
				t.Fatal(err)
			}
			storetest.MustWrite(t, s, true, storetest.Put("k", "v"))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err = testOpener(t, dir, true)
			if err != nil {
				t.Fatalf("open with an empty %s: %v", name, err)
			}
			defer s.Close()
			storetest.WantGet(t, s, "k", []byte("v"))
			storetest.MustWrite(t, s, true, storetest.Put("k2", "v2"))
			storetest.WantGet(t, s, "k2", []byte("v2"))
		})
	}
}

// TestEmptyLogsOfAnOpenStoreKept: a second open of a directory that a
// store has open fails on Badger's lock, and leaves the live store's empty
// log files alone (a live Badger has one for a moment, between creating
// and sizing it).
func TestEmptyLogsOfAnOpenStoreKept(t *testing.T) {
	dir := t.TempDir()
	s, err := testOpener(t, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	empty := filepath.Join(dir, "00099.mem")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if s2, err := testOpener(t, dir, true); err == nil {
		s2.Close()
		t.Fatal("opened a directory another store has open")
	}
	if _, err := os.Stat(empty); err != nil {
		t.Fatalf("the second open removed the live store's file: %v", err)
	}
}
