package kvengine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/internal/testfs"
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
			dir := testfs.MakeTree(t, tc.files, func(f string) []byte { return []byte(f) })
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

// TestClaim: a directory whose claim names the engine is its own, whatever
// else it holds (a creation killed before the library wrote its marker);
// a claim naming another engine, or an empty one, is refused; Claim
// writes the claim once, and refuses another engine's directory.
func TestClaim(t *testing.T) {
	cases := []struct {
		name  string
		claim string   // content of the claim file; "-": none
		files []string // other files in the directory
		err   error    // nil: accepted
		want  []string // what the error names
	}{
		{"half created", "Engy\n", []string{"LOCK", "LOG", "000000.dbtmp"}, nil, nil},
		{"claimed, with its database", "Engy\n", []string{"MARK", "000001.sst"}, nil, nil},
		{"claimed, empty otherwise", "Engy", nil, nil, nil},
		{"claim cut short while written", "-", []string{claimTempName}, nil, nil},
		{"another engine's", "Other\n", []string{"MARK"}, engine.ErrInvalidArgument, []string{"Other engine", ClaimFileName}},
		{"another engine's, half created", "Other\n", []string{"LOCK"}, engine.ErrInvalidArgument, []string{"Other engine"}},
		{"empty claim", "", []string{"LOCK"}, engine.ErrCorrupt, []string{"is empty", ClaimFileName}},
		{"no claim, half created", "-", []string{"LOCK", "LOG"}, engine.ErrInvalidArgument, []string{"holds no Engy database"}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			if tc.claim != "-" {
				if err := os.WriteFile(filepath.Join(dir, ClaimFileName), []byte(tc.claim), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := CheckDir(dir, "Engy", "MARK")
			if tc.err == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if err := Claim(dir, "Engy"); err != nil {
					t.Fatalf("Claim: %v", err)
				}
				if b, err := os.ReadFile(filepath.Join(dir, ClaimFileName)); err != nil || strings.TrimSpace(string(b)) != "Engy" {
					t.Fatalf("claim after Claim: %q, %v", b, err)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			for _, w := range append(tc.want, dir) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.claim != "-" && tc.claim != "" {
				if err := Claim(dir, "Engy"); !errors.Is(err, engine.ErrInvalidArgument) {
					t.Errorf("Claim of another engine's directory: %v", err)
				}
			}
		})
	}
	// A fresh directory: CheckDir accepts it, Claim records the engine,
	// leaves no temporary file, and another engine is then refused.
	dir := t.TempDir()
	if err := Claim(dir, "Engy"); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != ClaimFileName {
		t.Fatalf("after Claim: %v, %v", entries, err)
	}
	if err := CheckDir(dir, "Other", "OTHER"); !errors.Is(err, engine.ErrInvalidArgument) || !strings.Contains(err.Error(), "Engy engine") {
		t.Fatalf("another engine on a claimed directory: %v", err)
	}
}

// TestDirHoldsData: a directory holding nothing but the entries CheckDir
// ignores and the engine's claim holds no data; anything else is data. A
// symbolic link to a directory is followed; a file is an error.
func TestDirHoldsData(t *testing.T) {
	cases := []struct {
		name  string
		files []string // nil: the directory does not exist; "x/": a directory
		data  bool
	}{
		{"missing", nil, false},
		{"empty", []string{}, false},
		{"lock file only", []string{PluginLockFileName}, false},
		{"lost+found only", []string{"lost+found/"}, false},
		{"claim only", []string{ClaimFileName}, false},
		{"claim cut short only", []string{claimTempName}, false},
		{"all ignorable at once", []string{PluginLockFileName, "lost+found/", ClaimFileName, claimTempName}, false},
		{"one file", []string{"data.db"}, true},
		{"a subdirectory", []string{"sub/"}, true},
		{"claim and a table", []string{ClaimFileName, "000001.sst"}, true},
		{"lost+found and something", []string{"lost+found/", "x"}, true},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := testfs.MakeTree(t, tc.files, func(string) []byte { return []byte("Engy\n") })
			for _, d := range []string{dir, symlinkTo(t, dir)} {
				if d == "" {
					continue
				}
				got, err := DirHoldsData(d)
				if err != nil || got != tc.data {
					t.Errorf("DirHoldsData(%s) = %v, %v; want %v", d, got, err, tc.data)
				}
			}
		})
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := DirHoldsData(file); err == nil {
		t.Error("DirHoldsData of a file: no error")
	}
}

// symlinkTo returns a symbolic link to target, or "" where none can be
// made (Windows without the privilege).
func symlinkTo(t *testing.T, target string) string {
	t.Helper()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(target, link); err != nil {
		t.Logf("no symbolic link: %v", err)
		return ""
	}
	return link
}
