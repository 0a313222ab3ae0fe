//go:build cgo

package rocksdbengine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/badgerengine"
)

// dirState is a directory's contents: every path under it (relative) with
// its type, permissions and, for files, the SHA-256 of its bytes.
type dirState map[string]string

func snapshotDir(t *testing.T, dir string) dirState {
	t.Helper()
	st := dirState{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			st[rel] = info.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		st[rel] = fmt.Sprintf("%v %d bytes sha256 %x", info.Mode(), len(b), sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// sameDir fails t unless dir still holds exactly what before recorded.
func sameDir(t *testing.T, dir string, before dirState) {
	t.Helper()
	after := snapshotDir(t, dir)
	for p, b := range before {
		if a, ok := after[p]; !ok {
			t.Errorf("%s was deleted", p)
		} else if a != b {
			t.Errorf("%s changed: was %s, now %s", p, b, a)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was created", p)
		}
	}
}

var ctx = context.Background()

func put(t *testing.T, e engine.Engine, key, value string, version uint64) {
	t.Helper()
	if _, err := e.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: []byte(key), Value: []byte(value), Version: version}}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, e engine.Engine, key, want string) {
	t.Helper()
	got, err := e.Read(ctx, [][]byte{[]byte(key)})
	if err != nil || got[0].Version == 0 || string(got[0].Value) != want {
		t.Fatalf("read %q = %+v, %v; want %q", key, got, err, want)
	}
}

// refused checks that Open and OpenStore, with and without
// ErrorIfNotExists, refuse dir as a foreign directory.
func refused(t *testing.T, dir string) {
	t.Helper()
	for name, open := range map[string]func() (func() error, error){
		"Open": func() (func() error, error) {
			e, err := Open(dir, nil)
			if err != nil {
				return nil, err
			}
			return e.Close, nil
		},
		"OpenStore": func() (func() error, error) {
			s, err := OpenStore(dir, nil)
			if err != nil {
				return nil, err
			}
			return s.Close, nil
		},
		"OpenStore with ErrorIfNotExists": func() (func() error, error) {
			s, err := OpenStore(dir, &Options{ErrorIfNotExists: true})
			if err != nil {
				return nil, err
			}
			return s.Close, nil
		},
	} {
		closeFn, err := open()
		if err == nil {
			closeFn()
			t.Fatalf("%s(%s) opened a foreign directory", name, dir)
		}
		if !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("%s: error %v does not wrap engine.ErrInvalidArgument", name, err)
		}
		for _, w := range []string{dir, "holds no RocksDB database", "another engine"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", name, err, w)
			}
		}
	}
}

// TestRefusesBadgerDirectory is the engine switch that used to destroy
// data: RocksDB opened over a Badger database deleted its tables. Now it
// refuses, every file is left as it was, and Badger reopens its data.
func TestRefusesBadgerDirectory(t *testing.T) {
	dir := t.TempDir()
	b, err := badgerengine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, "k", "badger's value", 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The plugin host's lock file is there too when the server runs a
	// plugin in the directory; it changes nothing.
	if err := os.WriteFile(filepath.Join(dir, ".flaredb-plugin.lock"), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dir)
	refused(t, dir)
	sameDir(t, dir, before)

	b, err = badgerengine.Open(dir, nil)
	if err != nil {
		t.Fatalf("Badger cannot reopen its directory after RocksDB was refused: %v", err)
	}
	defer b.Close()
	mustRead(t, b, "k", "badger's value")
}

// TestRefusesOtherDirectories refuses directories holding anything but a
// RocksDB database, including a CURRENT that is not a file.
func TestRefusesOtherDirectories(t *testing.T) {
	for name, files := range map[string][]string{
		"one file":                 {"flaredb.bolt"},
		"a subdirectory":           {"sub/"},
		"lock file and a file":     {".flaredb-plugin.lock", "000001.sst"},
		"CURRENT is a directory":   {"CURRENT/"},
		"many files":               {"a", "b", "c", "d", "e", "f", "g"},
		"rocksdb without CURRENT":  {"IDENTITY", "LOCK", "MANIFEST-000001"},
		"lost+found and something": {"lost+found/", "x"},
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range files {
				if d, ok := strings.CutSuffix(f, "/"); ok {
					if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, f), []byte("not rocksdb: "+f), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshotDir(t, dir)
			refused(t, dir)
			sameDir(t, dir, before)
		})
	}
}

// TestOpensFreshAndOwnDirectories: a missing or empty directory (empty but
// for the plugin host's lock file and lost+found) gets a new database, and a
// database reopens with its data.
func TestOpensFreshAndOwnDirectories(t *testing.T) {
	for name, files := range map[string][]string{
		"missing":         nil,
		"empty":           {},
		"lock file only":  {".flaredb-plugin.lock"},
		"lost+found only": {"lost+found/"},
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			if files != nil {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range files {
				if d, ok := strings.CutSuffix(f, "/"); ok {
					if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, f), []byte("12345\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			e, err := Open(dir, nil)
			if err != nil {
				t.Fatalf("Open(%s): %v", name, err)
			}
			put(t, e, "k", "v1", 1)
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if _, err := os.Stat(filepath.Join(dir, strings.TrimSuffix(f, "/"))); err != nil {
					t.Errorf("%s is gone: %v", f, err)
				}
			}
			e, err = Open(dir, &Options{ErrorIfNotExists: true})
			if err != nil {
				t.Fatalf("reopening its own directory: %v", err)
			}
			defer e.Close()
			mustRead(t, e, "k", "v1")
		})
	}
}
