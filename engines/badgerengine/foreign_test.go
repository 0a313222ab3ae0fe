package badgerengine

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
		for _, w := range []string{dir, "holds no Badger database", "another engine"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", name, err, w)
			}
		}
	}
}

// TestRefusesOtherDirectories refuses directories holding anything but a
// Badger database: a RocksDB database's files as RocksDB names them, and
// others, including a MANIFEST that is not a file.
func TestRefusesOtherDirectories(t *testing.T) {
	for name, files := range map[string][]string{
		"one file":                 {"flaredb.bolt"},
		"a subdirectory":           {"sub/"},
		"lock file and a file":     {".flaredb-plugin.lock", "000001.sst"},
		"MANIFEST is a directory":  {"MANIFEST/"},
		"many files":               {"a", "b", "c", "d", "e", "f", "g"},
		"rocksdb's files":          {"CURRENT", "IDENTITY", "LOCK", "LOG", "MANIFEST-000005", "OPTIONS-000007", "000004.log", "000008.sst"},
		"badger without MANIFEST":  {"KEYREGISTRY", "000001.vlog"},
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
				if err := os.WriteFile(filepath.Join(dir, f), []byte("not badger: "+f), 0o644); err != nil {
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
