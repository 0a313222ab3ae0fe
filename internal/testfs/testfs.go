// Package testfs makes directory trees for tests of code that inspects a
// data directory (what an engine may open, what it leaves in place).
//
// It is test support only: production code must not import it. It imports
// nothing of the project.
package testfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// MakeTree makes a directory "db" in a new temporary directory of t and
// returns its path. Each name in files becomes an entry of it: a name
// ending in "/" a subdirectory, any other a file holding content(name)
// (mode 0644). With files nil the directory itself is not made, so the
// path names a missing directory; with files empty it is made empty.
// Names may hold "/" to place entries in subdirectories listed before
// them. Any failure ends the test.
func MakeTree(t testing.TB, files []string, content func(name string) []byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	if files != nil {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, strings.TrimSuffix(f, "/"))
		var err error
		if strings.HasSuffix(f, "/") {
			err = os.Mkdir(p, 0o755)
		} else {
			err = os.WriteFile(p, content(f), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
