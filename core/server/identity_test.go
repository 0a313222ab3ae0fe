package server

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/kvengine"
)

func TestClaimEngineDir(t *testing.T) {
	data := t.TempDir()
	engDir := filepath.Join(data, "engine-plugin")
	if err := os.Mkdir(engDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := claimEngineDir(engDir, "badger"); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(data, "engine-plugin.identity"))
	if err != nil {
		t.Fatalf("no identity file beside the engine directory: %v", err)
	}
	if !strings.Contains(string(b), `"engine": "badger"`) {
		t.Fatalf("identity file = %s", b)
	}
	// The engine directory itself is untouched, and no temporary file is
	// left behind.
	if inner, _ := os.ReadDir(engDir); len(inner) != 0 {
		t.Fatalf("the engine directory got %v", inner)
	}
	entries, _ := os.ReadDir(data)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"engine-plugin", "engine-plugin.identity"}) {
		t.Fatalf("data directory holds %v", names)
	}

	// The same engine again: fine, and the file is unchanged.
	if err := claimEngineDir(engDir, "badger"); err != nil {
		t.Fatalf("second claim by the same engine: %v", err)
	}
	if b2, _ := os.ReadFile(identityPath(engDir)); string(b2) != string(b) {
		t.Fatalf("identity rewritten: %s", b2)
	}

	// Another engine: refused, naming both engines and the directory.
	err = claimEngineDir(engDir, "rocksdb")
	if !errors.Is(err, ErrEngineMismatch) {
		t.Fatalf("claim by another engine = %v, want ErrEngineMismatch", err)
	}
	for _, w := range []string{`"badger"`, `"rocksdb"`, engDir} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
	if b2, _ := os.ReadFile(identityPath(engDir)); string(b2) != string(b) {
		t.Fatalf("a refused claim rewrote the identity: %s", b2)
	}
}

func TestClaimEngineDirUnreadableIdentity(t *testing.T) {
	for name, content := range map[string]string{
		"not json":     "badger\n",
		"no engine":    `{"dir": "engine-plugin"}`,
		"empty engine": `{"engine": ""}`,
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			engDir := filepath.Join(t.TempDir(), "engine-plugin")
			if err := os.WriteFile(identityPath(engDir), []byte(content), 0o640); err != nil {
				t.Fatal(err)
			}
			err := claimEngineDir(engDir, "badger")
			if err == nil || !strings.Contains(err.Error(), "unreadable") || !strings.Contains(err.Error(), engDir) {
				t.Fatalf("claim with an unreadable identity = %v", err)
			}
			if b, _ := os.ReadFile(identityPath(engDir)); string(b) != content {
				t.Fatalf("the unreadable identity was overwritten: %s", b)
			}
		})
	}
}

func TestOtherEngineDirs(t *testing.T) {
	data := t.TempDir()
	mk := func(rel string, files ...string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(data, rel), 0o750); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(data, rel, f), []byte("x"), 0o640); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("engine-plugin", "MANIFEST")         // the one being opened
	mk("engine-rocksdb", "CURRENT")         // data, with a recorded owner
	mk("engine-badger", "MANIFEST")         // data, owner not recorded
	mk("engine-memory")                     // empty
	mk("engine-old-plugin", pluginLockFile) // only the host's lock file
	mk("engine-claimed", kvengine.ClaimFileName, kvengine.ClaimFileName+".tmp")
	mk("engine-mount/lost+found") // a file system's mount point
	mk("tso", "state")            // not an engine directory
	if err := writeIdentity(filepath.Join(data, "engine-rocksdb"), identity{Engine: "rocksdb", Dir: "engine-rocksdb"}); err != nil {
		t.Fatal(err)
	}
	got, err := otherEngineDirs(data, filepath.Join(data, "engine-plugin"))
	if err != nil {
		t.Fatal(err)
	}
	want := []strayEngineDir{
		{Path: filepath.Join(data, "engine-badger")},
		{Path: filepath.Join(data, "engine-rocksdb"), Engine: "rocksdb"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("otherEngineDirs = %+v, want %+v", got, want)
	}
}

// TestEngineDirNamesLinks: a link to a directory is an engine directory, a
// link to a file is not, and a link that cannot be followed is an error
// (what it points at may hold data).
func TestEngineDirNamesLinks(t *testing.T) {
	data, elsewhere := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(elsewhere, "dir"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(elsewhere, "file"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(data, "engine-real"), 0o750); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"engine-linked": "dir", "engine-file": "file"} {
		if err := os.Symlink(filepath.Join(elsewhere, target), filepath.Join(data, link)); err != nil {
			t.Skipf("no symbolic links here: %v", err)
		}
	}
	got, err := engineDirNames(data)
	if err != nil || !slices.Equal(got, []string{"engine-linked", "engine-real"}) {
		t.Fatalf("engineDirNames = %v, %v; want [engine-linked engine-real]", got, err)
	}
	dangling := filepath.Join(data, "engine-gone")
	if err := os.Symlink(filepath.Join(elsewhere, "gone"), dangling); err != nil {
		t.Fatal(err)
	}
	if _, err := engineDirNames(data); err == nil || !strings.Contains(err.Error(), dangling) {
		t.Fatalf("engineDirNames with a dangling link = %v, want an error naming it", err)
	}
}

// TestNewestFileTimeFollowsLinks: --recover-tso starts the oracle above the
// newest file time in the engine directories, those linked in included.
func TestNewestFileTimeFollowsLinks(t *testing.T) {
	data, elsewhere := t.TempDir(), t.TempDir()
	f := filepath.Join(elsewhere, "000001.sst")
	if err := os.WriteFile(f, []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	if err := os.Chtimes(f, future, future); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(data, "engine-badger")); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	got, err := newestFileTime(data)
	if err != nil || !got.Equal(future) {
		t.Fatalf("newestFileTime = %v, %v; want %v (the linked directory's file)", got, err, future)
	}
}
