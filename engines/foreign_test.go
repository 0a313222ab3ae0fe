//go:build cgo

package engines_test

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
	"github.com/flaredb/flaredb/core/kvengine"
	"github.com/flaredb/flaredb/engines/badgerengine"
	"github.com/flaredb/flaredb/engines/rocksdbengine"
	"github.com/flaredb/flaredb/internal/testfs"
)

// persistent is a stock engine that keeps its database in a directory,
// opened in each of the ways it can be.
type persistent struct {
	name  string // as its errors name it
	open  func(dir string) (engine.Engine, error)
	opens map[string]func(dir string) (interface{ Close() error }, error)
}

func stockEngines() []persistent {
	return []persistent{
		{
			name: "RocksDB",
			open: func(dir string) (engine.Engine, error) { return rocksdbengine.Open(dir, nil) },
			opens: map[string]func(string) (interface{ Close() error }, error){
				"Open":      func(d string) (interface{ Close() error }, error) { return rocksdbengine.Open(d, nil) },
				"OpenStore": func(d string) (interface{ Close() error }, error) { return rocksdbengine.OpenStore(d, nil) },
				"OpenStore with ErrorIfNotExists": func(d string) (interface{ Close() error }, error) {
					return rocksdbengine.OpenStore(d, &rocksdbengine.Options{ErrorIfNotExists: true})
				},
			},
		},
		{
			name: "Badger",
			open: func(dir string) (engine.Engine, error) { return badgerengine.Open(dir, nil) },
			opens: map[string]func(string) (interface{ Close() error }, error){
				"Open":      func(d string) (interface{ Close() error }, error) { return badgerengine.Open(d, nil) },
				"OpenStore": func(d string) (interface{ Close() error }, error) { return badgerengine.OpenStore(d, nil) },
				"OpenStore with ErrorIfNotExists": func(d string) (interface{ Close() error }, error) {
					return badgerengine.OpenStore(d, &badgerengine.Options{ErrorIfNotExists: true})
				},
			},
		},
	}
}

// snapshotDir records every path under dir (relative) with its type,
// permissions and, for files, the SHA-256 of its bytes.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := map[string]string{}
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

func putOne(t *testing.T, e engine.Engine, key, value string, version uint64) {
	t.Helper()
	if _, err := e.Apply(context.Background(), []engine.Write{{Kind: engine.OpPut, Key: []byte(key), Value: []byte(value), Version: version}}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func readOne(t *testing.T, e engine.Engine, key, want string) {
	t.Helper()
	got, err := e.Read(context.Background(), [][]byte{[]byte(key)})
	if err != nil || got[0].Version == 0 || string(got[0].Value) != want {
		t.Fatalf("read %q = %+v, %v; want %q", key, got, err, want)
	}
}

// TestEngineRefusesAnotherEnginesDirectory is the engine switch that used
// to destroy data (RocksDB opened over a Badger database deleted its
// tables, and Badger over RocksDB would too): each stock engine, opened in
// every way it can be, refuses the other's database; every file is left as
// it was, and the owner reopens its data. The refusal names the owner
// from the directory's claim; a database without a claim (created before
// engines claimed their directories) is refused for its files.
func TestEngineRefusesAnotherEnginesDirectory(t *testing.T) {
	engines := stockEngines()
	for i, owner := range engines {
		intruder := engines[1-i]
		for _, claimed := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s_over_%s/claimed=%v", intruder.name, owner.name, claimed), func(t *testing.T) {
				refusal := "belongs to the " + owner.name + " engine"
				if !claimed {
					refusal = "holds no " + intruder.name + " database"
				}
				refusedByEngine(t, owner, intruder, claimed, refusal)
			})
		}
	}
}

func refusedByEngine(t *testing.T, owner, intruder persistent, claimed bool, refusal string) {
	dir := t.TempDir()
	e, err := owner.open(dir)
	if err != nil {
		t.Fatal(err)
	}
	putOne(t, e, "k", "the owner's value", 1)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if !claimed {
		if err := os.Remove(filepath.Join(dir, kvengine.ClaimFileName)); err != nil {
			t.Fatal(err)
		}
	}
	// The plugin host's lock file is there when the server runs a
	// plugin in the directory; it changes nothing.
	if err := os.WriteFile(filepath.Join(dir, kvengine.PluginLockFileName), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dir)
	for how, open := range intruder.opens {
		c, err := open(dir)
		if err == nil {
			c.Close()
			t.Fatalf("%s %s opened %s's directory", intruder.name, how, owner.name)
		}
		if !errors.Is(err, engine.ErrInvalidArgument) || !strings.Contains(err.Error(), refusal) {
			t.Errorf("%s %s: %v", intruder.name, how, err)
		}
	}
	after := snapshotDir(t, dir)
	for p, b := range before {
		if a, ok := after[p]; !ok || a != b {
			t.Errorf("%s: was %q, now %q", p, b, a)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was created", p)
		}
	}
	e, err = owner.open(dir)
	if err != nil {
		t.Fatalf("%s cannot reopen its directory: %v", owner.name, err)
	}
	defer e.Close()
	readOne(t, e, "k", "the owner's value")
}

// TestEngineOpensFreshDirectories: a missing or empty directory (empty but
// for the plugin host's lock file or lost+found) gets a new database, which
// reopens with its data, the lock file and lost+found left in place.
func TestEngineOpensFreshDirectories(t *testing.T) {
	for _, eng := range stockEngines() {
		for name, files := range map[string][]string{
			"missing":         nil,
			"empty":           {},
			"lock file only":  {kvengine.PluginLockFileName},
			"lost+found only": {"lost+found/"},
		} {
			t.Run(eng.name+"/"+strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
				dir := testfs.MakeTree(t, files, func(string) []byte { return []byte("12345\n") })
				e, err := eng.open(dir)
				if err != nil {
					t.Fatal(err)
				}
				putOne(t, e, "k", "v1", 1)
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
				for _, f := range files {
					if _, err := os.Stat(filepath.Join(dir, strings.TrimSuffix(f, "/"))); err != nil {
						t.Errorf("%s is gone: %v", f, err)
					}
				}
				e, err = eng.open(dir)
				if err != nil {
					t.Fatalf("reopening its own directory: %v", err)
				}
				defer e.Close()
				readOne(t, e, "k", "v1")
			})
		}
	}
}
