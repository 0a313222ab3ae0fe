//go:build cgo

package badgerengine

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flaredb/flaredb/engines/rocksdbengine"
)

// TestRefusesRocksDBDirectory opens Badger over a real RocksDB database:
// it refuses, every file is left as it was, and RocksDB reopens its data.
func TestRefusesRocksDBDirectory(t *testing.T) {
	dir := t.TempDir()
	r, err := rocksdbengine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	put(t, r, "k", "rocksdb's value", 1)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".flaredb-plugin.lock"), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dir)
	refused(t, dir)
	sameDir(t, dir, before)

	r, err = rocksdbengine.Open(dir, &rocksdbengine.Options{ErrorIfNotExists: true})
	if err != nil {
		t.Fatalf("RocksDB cannot reopen its directory after Badger was refused: %v", err)
	}
	defer r.Close()
	mustRead(t, r, "k", "rocksdb's value")
}
