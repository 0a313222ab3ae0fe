package badgerengine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/flaredb/flaredb/core/engine"
)

// markerFile is the file every Badger database directory holds: Badger
// creates its MANIFEST first thing when it creates a database.
const markerFile = "MANIFEST"

// ignoredEntries are the names that may sit in an engine directory without
// belonging to any database, so they do not make it foreign: the lock file
// the FlareDB plugin host keeps in a plugin's data directory
// (plugins/host.LockFileName; this package imports only the contract, so the
// name is repeated here) and the lost+found of a file system mounted on the
// directory.
var ignoredEntries = map[string]bool{
	".flaredb-plugin.lock": true,
	"lost+found":           true,
}

// checkDir decides whether Badger may open dir. It returns nil when dir does
// not exist, is empty (apart from ignoredEntries) or holds a Badger database
// (a MANIFEST file). Otherwise the directory holds something else, such as
// another engine's database, and opening it would let Badger create a
// database over it and delete the table files its new MANIFEST does not
// list (a RocksDB database's NNNNNN.sst tables, for example): checkDir
// returns an error wrapping engine.ErrInvalidArgument that names the
// directory and what it holds.
//
// ErrInvalidArgument, not ErrCorrupt: nothing stored was read, let alone
// found undecodable. The data there is intact and simply not Badger's; the
// caller pointed the engine at the wrong directory, and the remedy is to
// choose another one (or the engine that wrote it), never to repair it.
//
// It only reads the directory, and creates or removes nothing.
func checkDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("badgerengine: open %s: %w", dir, err)
	}
	var foreign []string
	for _, e := range entries {
		if e.Name() == markerFile && e.Type().IsRegular() {
			return nil
		}
		if !ignoredEntries[e.Name()] {
			foreign = append(foreign, e.Name())
		}
	}
	if len(foreign) == 0 {
		return nil
	}
	return fmt.Errorf("%w: badgerengine: open %s: the directory is not empty but holds no Badger database "+
		"(no %s file; it holds %s): it may belong to another engine, whose files Badger could delete, "+
		"so it is left untouched: open an empty directory, or this one with the engine that wrote it",
		engine.ErrInvalidArgument, dir, markerFile, listNames(foreign))
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
