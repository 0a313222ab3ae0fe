package kvengine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/flaredb/flaredb/core/engine"
)

// ignoredEntries may sit in an engine's directory without belonging to any
// database, so they do not make it foreign: the lock file the plugin host
// keeps in a plugin's data directory and the lost+found of a file system
// mounted on the directory.
var ignoredEntries = map[string]bool{
	PluginLockFileName: true,
	"lost+found":       true,
}

// PluginLockFileName is the name of the lock file the plugin host keeps in
// a plugin's data directory (plugins/host.LockFileName is this constant);
// CheckDir ignores it.
const PluginLockFileName = ".flaredb-plugin.lock"

// CheckDir decides whether the engine called name, whose databases always
// hold a file called marker (RocksDB's CURRENT, Badger's MANIFEST), may
// open or create its database in dir. It returns nil when dir does not
// exist, is empty (apart from a plugin lock file or a lost+found), or holds
// marker. Otherwise dir holds something else, such as another engine's
// database, which creating a database there could destroy (RocksDB and
// Badger both delete files they take for their own obsolete ones): CheckDir
// returns an error wrapping engine.ErrInvalidArgument that names the
// directory and the first entries it holds.
//
// ErrInvalidArgument, not ErrCorrupt: nothing stored was read, let alone
// found undecodable. The data there is intact and simply not this engine's;
// the caller pointed the engine at the wrong directory, and the remedy is
// another directory (or the engine that wrote it), never a repair.
//
// CheckDir only reads the directory. Engines call it before anything that
// may create or remove a file.
func CheckDir(dir, name, marker string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: open %s: %w", name, dir, err)
	}
	var foreign []string
	for _, e := range entries {
		if e.Name() == marker && e.Type().IsRegular() {
			return nil
		}
		if !ignoredEntries[e.Name()] {
			foreign = append(foreign, e.Name())
		}
	}
	if len(foreign) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: open %s: the directory is not empty but holds no %s database "+
		"(no %s file; it holds %s): it may belong to another engine, whose files %s could delete, "+
		"so it is left untouched: open an empty directory, or this one with the engine that wrote it",
		engine.ErrInvalidArgument, name, dir, name, marker, listNames(foreign), name)
}

// listNames quotes the first few names, saying how many more there are.
func listNames(names []string) string {
	const shown = 5
	q := make([]string, 0, shown)
	for i, n := range names {
		if i == shown {
			break
		}
		q = append(q, fmt.Sprintf("%q", n))
	}
	s := strings.Join(q, ", ")
	if len(names) > shown {
		s += fmt.Sprintf(" and %d more", len(names)-shown)
	}
	return s
}
