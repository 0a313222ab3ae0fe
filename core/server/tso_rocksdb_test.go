//go:build cgo

package server_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/tso"
	"github.com/flaredb/flaredb/engines/rocksdbengine"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// plantMark writes the oracle's file in data as an oracle whose clock read
// at would leave it.
func plantMark(t *testing.T, data string, at time.Time) {
	t.Helper()
	o, err := tso.Open(filepath.Join(data, "tso"), &tso.Options{Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Next(1); err != nil {
		t.Fatal(err)
	}
}

// TestOracleFileKeepsVersionsAhead: versions come from the oracle's file,
// not only the clock. A mark planted an hour ahead (as a clock that was
// ahead would leave) is honoured; once data exists, a server whose file is
// missing refuses to start, saying how to recover; --recover-tso starts
// it above every stored version and every file time, so a key deleted
// before the file was lost and written again does not go back in version.
func TestOracleFileKeepsVersionsAhead(t *testing.T) {
	data := t.TempDir()
	ahead := time.Now().Add(time.Hour)
	plantMark(t, data, ahead)
	ts := testServer{dataDir: data, name: "rocksdb", open: func(dir string) (engine.Engine, error) {
		return rocksdbengine.Open(dir, nil)
	}}
	srv, err := startTest(t, ts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := kvClient(t, srv).Put(callCtx(t), &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	if got := time.UnixMilli(tso.Physical(p.Version)); got.Before(ahead) {
		t.Fatalf("put at version time %v, before the file's mark %v: the file was ignored", got, ahead)
	}
	stopTest(t, srv)

	// Later, with the clock two hours ahead: d is written, then deleted.
	further := time.Now().Add(2 * time.Hour)
	plantMark(t, data, further)
	srv, err = startTest(t, ts)
	if err != nil {
		t.Fatal(err)
	}
	c := kvClient(t, srv)
	pd, err := c.Put(callCtx(t), &kvpb.PutRequest{Key: []byte("d"), Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(callCtx(t), &kvpb.DeleteRequest{Key: []byte("d")}); err != nil {
		t.Fatal(err)
	}
	stopTest(t, srv)
	// That clock stamped the engine's files too.
	err = filepath.WalkDir(filepath.Join(data, "engine-rocksdb"), func(p string, e os.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		return os.Chtimes(p, further, further)
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(filepath.Join(data, "tso")); err != nil {
		t.Fatal(err)
	}
	_, err = startTest(t, ts)
	if err == nil || !strings.Contains(err.Error(), "tso is missing") || !strings.Contains(err.Error(), "--recover-tso") ||
		!strings.Contains(err.Error(), "engine-rocksdb") {
		t.Fatalf("start without the oracle's file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "tso")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused start wrote the oracle's file: %v", err)
	}

	rec := ts
	rec.config = func(c *config.Config) { c.RecoverTSO = true }
	srv, err = startTest(t, rec)
	if err != nil {
		t.Fatalf("start with --recover-tso: %v", err)
	}
	again, err := kvClient(t, srv).Put(callCtx(t), &kvpb.PutRequest{Key: []byte("d"), Value: []byte("again")})
	if err != nil || again.Version <= pd.Version {
		t.Fatalf("d written again at version %d (%v), not above its version %d before the delete", again.Version, err, pd.Version)
	}
	stopTest(t, srv)
	// The rebuilt file serves the next start.
	srv, err = startTest(t, ts)
	if err != nil {
		t.Fatalf("start after the recovery: %v", err)
	}
	stopTest(t, srv)
}

// TestCorruptOracleFile: a corrupt oracle file stops the start with a
// clear error and is left as it was; --recover-tso moves it aside and
// starts above the stored versions.
func TestCorruptOracleFile(t *testing.T) {
	data := t.TempDir()
	ts := testServer{dataDir: data, name: "rocksdb", open: func(dir string) (engine.Engine, error) {
		return rocksdbengine.Open(dir, nil)
	}}
	srv, err := startTest(t, ts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := kvClient(t, srv).Put(callCtx(t), &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	stopTest(t, srv)
	path := filepath.Join(data, "tso")
	garbage := []byte("not a mark")
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = startTest(t, ts)
	if !errors.Is(err, tso.ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "--recover-tso") {
		t.Fatalf("start with a corrupt oracle file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != string(garbage) {
		t.Fatalf("the refused start changed the file: %q", b)
	}
	rec := ts
	rec.config = func(c *config.Config) { c.RecoverTSO = true }
	srv, err = startTest(t, rec)
	if err != nil {
		t.Fatalf("start with --recover-tso: %v", err)
	}
	p2, err := kvClient(t, srv).Put(callCtx(t), &kvpb.PutRequest{Key: []byte("k"), Value: []byte("w")})
	if err != nil || p2.Version <= p.Version {
		t.Fatalf("put after recovery: %v, %v (earlier version %d)", p2, err, p.Version)
	}
	stopTest(t, srv)
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("corrupt file kept aside: %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); string(b) != string(garbage) {
		t.Fatalf("the file kept aside holds %q", b)
	}
}
