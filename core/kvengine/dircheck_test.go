package kvengine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
)

// TestCheckDir: a directory that is missing, empty (but for a plugin lock
// file or lost+found) or holds the engine's marker file may be opened;
// anything else is refused with ErrInvalidArgument naming what is there.
func TestCheckDir(t *testing.T) {
	cases := []struct {
		name  string
		files []string // nil: the directory does not exist; "x/": a directory
		ok    bool
	}{
		{"missing", nil, true},
		{"empty", []string{}, true},
		{"lock file only", []string{PluginLockFileName}, true},
		{"lost+found only", []string{"lost+found/"}, true},
		{"own database", []string{"MARK", "000001.sst", "LOG"}, true},
		{"own database and lock file", []string{PluginLockFileName, "MARK"}, true},
		{"one file", []string{"data.db"}, false},
		{"a subdirectory", []string{"sub/"}, false},
		{"lock file and a table", []string{PluginLockFileName, "000001.sst"}, false},
		{"marker is a directory", []string{"MARK/"}, false},
		{"many files", []string{"a", "b", "c", "d", "e", "f", "g"}, false},
		{"lost+found and something", []string{"lost+found/", "x"}, false},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			if tc.files != nil {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tc.files {
				p := filepath.Join(dir, strings.TrimSuffix(f, "/"))
				var err error
				if strings.HasSuffix(f, "/") {
					err = os.Mkdir(p, 0o755)
				} else {
					err = os.WriteFile(p, []byte(f), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			err := CheckDir(dir, "Engy", "MARK")
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, engine.ErrInvalidArgument) {
				t.Fatalf("got %v, want ErrInvalidArgument", err)
			}
			for _, w := range []string{dir, "holds no Engy database", "no MARK file", "another engine"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if len(tc.files) > 5 && !strings.Contains(err.Error(), "and 2 more") {
				t.Errorf("error %q does not say how many more entries there are", err)
			}
		})
	}
}
