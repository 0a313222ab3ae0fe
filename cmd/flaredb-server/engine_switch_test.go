package main_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// switchLockFile is the plugin host's lock file in the plugin's directory;
// the host rewrites it (with its pid) at every start.
const switchLockFile = ".flaredb-plugin.lock"

// engineDirFiles returns every file under dir (the host's lock file aside)
// with the SHA-256 of its bytes.
func engineDirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == switchLockFile {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[rel] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestEngineSwitchRefused runs the Badger plugin on a data directory, then
// other plugins on the same directory, which all share its engine-plugin
// directory: RocksDB (which used to delete Badger's tables there) refuses
// the directory before touching it, and so does the bbolt example; an
// engine that never looks at its directory opens, and the server refuses to
// serve it because the directory is recorded as Badger's. Badger's files are intact and its data
// readable afterwards, and an in-process engine on the same data directory
// is refused, unless started with --start-empty-engine, and then warns that
// the plugin's data is not served.
func TestEngineSwitchRefused(t *testing.T) {
	dir := t.TempDir()
	engDir := filepath.Join(dir, "engine-plugin")
	s := startServer(t, dir, engineArgs("badger-plugin")...)
	c := s.dial()
	for i := 0; i < 100; i++ {
		if _, err := c.Put(ctx(t), &kvpb.PutRequest{Key: []byte(fmt.Sprintf("k%03d", i)), Value: []byte("badger's value")}); err != nil {
			t.Fatal(err)
		}
	}
	s.stop()
	if b, err := os.ReadFile(filepath.Join(dir, "engine-plugin.identity")); err != nil || !strings.Contains(string(b), `"badger"`) {
		t.Fatalf("identity of the plugin's directory: %s %v", b, err)
	}
	badger := engineDirFiles(t, engDir)

	// RocksDB refuses the directory: nothing there changes.
	_, err := tryStartServer(t, dir, engineArgs("rocksdb-plugin")...)
	if err == nil {
		t.Fatal("the RocksDB plugin started on the Badger plugin's directory")
	}
	if !strings.Contains(err.Error(), "belongs to the Badger engine") || !strings.Contains(err.Error(), engDir) {
		t.Fatalf("refusal does not say why:\n%v", err)
	}
	after := engineDirFiles(t, engDir)
	if fmt.Sprint(after) != fmt.Sprint(badger) {
		t.Fatalf("the refused RocksDB start changed the directory:\nbefore %v\nafter  %v", badger, after)
	}

	// The bbolt example refuses it too (it checks with kvengine.CheckDir,
	// which reads Badger's claim on the directory).
	_, err = tryStartServer(t, dir, "--engine", "plugin", "--plugin-path", bin("flaredb-bbolt-plugin"))
	if err == nil {
		t.Fatal("the bbolt plugin was served on the Badger plugin's directory")
	}
	if !strings.Contains(err.Error(), "belongs to the Badger engine") {
		t.Fatalf("refusal does not say why:\n%v", err)
	}
	// An engine that does not look at its directory (the forgetful test
	// plugin keeps everything in memory) opens, and the server refuses it:
	// the directory is recorded as Badger's.
	_, err = tryStartServer(t, dir, "--engine", "plugin", "--plugin-path", bin("forgetful"))
	if err == nil {
		t.Fatal("the forgetful plugin was served on the Badger plugin's directory")
	}
	for _, w := range []string{`engine "badger"`, `as "memory"`, engDir} {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("refusal does not mention %s:\n%v", w, err)
		}
	}
	after = engineDirFiles(t, engDir)
	if fmt.Sprint(after) != fmt.Sprint(badger) {
		t.Fatalf("the refused starts changed the directory:\nbefore %v\nafter  %v", badger, after)
	}

	// An in-process engine is refused: it would serve an empty store in
	// place of the plugin's data. Asked for that explicitly, it starts,
	// warning about the plugin's data.
	_, err = tryStartServer(t, dir, "--engine", "memory")
	if err == nil || !strings.Contains(err.Error(), "--start-empty-engine") || !strings.Contains(err.Error(), engDir) {
		t.Fatalf("an in-process engine on the plugin's data directory: %v", err)
	}
	s = startServer(t, dir, "--engine", "memory", "--start-empty-engine")
	s.stop()
	var warned bool
	for _, line := range strings.Split(s.stderr.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, engDir) && strings.Contains(line, "owner=badger") {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no warning about the plugin's data:\n%s", s.stderr.String())
	}

	// Badger still serves its data.
	s = startServer(t, dir, engineArgs("badger-plugin")...)
	c = s.dial()
	for i := 0; i < 100; i++ {
		g, err := c.Get(ctx(t), &kvpb.GetRequest{Key: []byte(fmt.Sprintf("k%03d", i))})
		if err != nil || !g.Found || string(g.Value) != "badger's value" {
			t.Fatalf("k%03d after the refused switches: %v %v", i, g, err)
		}
	}
	s.stop()
}
