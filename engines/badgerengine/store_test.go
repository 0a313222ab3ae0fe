package badgerengine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
	"github.com/flaredb/flaredb/core/kvengine/storetest"
)

// testOpener is the storetest.Opener for the Badger store: a store that
// must exist is opened with ErrorIfNotExists.
func testOpener(_ *testing.T, dir string, existing bool) (kvengine.Store, error) {
	return OpenStore(dir, &Options{ErrorIfNotExists: existing})
}

// TestStore runs the engine-independent cases of the kvengine.Store
// contract; the cases below are the Badger-specific ones.
func TestStore(t *testing.T) { storetest.Run(t, testOpener) }

// openTest opens a store in dir and closes it when the test ends.
func openTest(t testing.TB, dir string) kvengine.Store {
	t.Helper()
	s, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatalf("OpenStore(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenErrors(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		dir     string
		opts    *Options
		is      error // the sentinel the error must wrap, if any
		mention string
	}{
		{"dir is a file", file, nil, nil, file},
		{"dir under a file", filepath.Join(file, "db"), nil, nil, file},
		{"missing database with ErrorIfNotExists", empty, &Options{ErrorIfNotExists: true}, nil, empty},
		{"empty dir name", "", nil, engine.ErrInvalidArgument, "empty directory"},
		{"bad option", filepath.Join(base, "x"), &Options{NumCompactors: 1}, engine.ErrInvalidArgument, "NumCompactors"},
		{"bad value log", filepath.Join(base, "y"), &Options{ValueLogFileSize: 1 << 20}, engine.ErrInvalidArgument, "ValueLogFileSize"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := OpenStore(c.dir, c.opts)
			if err == nil {
				s.Close()
				t.Fatalf("OpenStore(%q) succeeded", c.dir)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v does not wrap %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %q", err, c.mention)
			}
			if e, err := Open(c.dir, c.opts); err == nil {
				e.Close()
				t.Fatalf("Open(%q) succeeded", c.dir)
			}
		})
	}
}
