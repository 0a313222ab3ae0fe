package kvengine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
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
	claimTempName:      true, // a claim cut short by a crash
}

// PluginLockFileName is the name of the lock file the plugin host keeps in
// a plugin's data directory (plugins/host.LockFileName is this constant);
// CheckDir ignores it.
const PluginLockFileName = ".flaredb-plugin.lock"

// ClaimFileName is the file in which an engine's directory records the
// name of the engine it belongs to (see Claim). claimTempName is where
// Claim writes it first.
const (
	ClaimFileName = ".flaredb-engine"
	claimTempName = ClaimFileName + ".tmp"
)

// CheckDir decides whether the engine called name, whose databases always
// hold a file called marker (RocksDB's CURRENT, Badger's MANIFEST), may
// open or create its database in dir. It returns nil when dir does not
// exist, is empty (apart from a plugin lock file or a lost+found), holds
// marker, or carries this engine's claim (see Claim): a database whose
// creation was cut short, before the library wrote marker, is still this
// engine's. Otherwise dir holds something else, such as another engine's
// database, which creating a database there could destroy (RocksDB and
// Badger both delete files they take for their own obsolete ones): CheckDir
// returns an error wrapping engine.ErrInvalidArgument that names the
// directory and the first entries it holds, or the engine its claim names.
//
// ErrInvalidArgument, not ErrCorrupt: nothing stored was read, let alone
// found undecodable. The data there is intact and simply not this engine's;
// the caller pointed the engine at the wrong directory, and the remedy is
// another directory (or the engine that wrote it), never a repair.
//
// CheckDir only reads the directory. Engines call it before anything that
// may create or remove a file, then Claim once the directory exists.
func CheckDir(dir, name, marker string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: open %s: %w", name, dir, err)
	}
	claim, claimed, err := readClaim(dir)
	if err != nil {
		return fmt.Errorf("%s: open %s: %w", name, dir, err)
	}
	if claimed && claim != name {
		return fmt.Errorf("%w: %s: open %s: the directory belongs to the %s engine (its %s file says so), "+
			"so it is left untouched: open it with that engine, or give %s an empty directory",
			engine.ErrInvalidArgument, name, dir, claim, ClaimFileName, name)
	}
	if claimed {
		return nil
	}
	var foreign []string
	for _, e := range entries {
		if e.Name() == marker && e.Type().IsRegular() {
			return nil
		}
		if isData(e.Name()) {
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

// DirHoldsData reports whether the engine directory dir holds data: any
// entry but those CheckDir ignores (the plugin host's lock file, a
// lost+found, a claim cut short by a crash) and the engine's claim file
// (see Claim), which an engine writes before creating anything, so a
// directory holding nothing else holds no database. A directory that does
// not exist holds no data. It follows dir if it is a symbolic link, only
// reads, and returns an error when dir cannot be read (it is a file, say).
//
// This is the one rule for whether an engine directory is in use: the
// server refuses to start an engine selection on an unused directory while
// another engine's directory holds data, by this rule.
func DirHoldsData(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if isData(e.Name()) {
			return true, nil
		}
	}
	return false, nil
}

// isData reports whether an entry called name in an engine's directory
// may belong to a database: it is neither ignored nor the engine's claim.
func isData(name string) bool {
	return !ignoredEntries[name] && name != ClaimFileName
}

// readClaim returns the engine name dir's claim file records, if any.
func readClaim(dir string) (name string, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, ClaimFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read the engine claim: %w", err)
	}
	name = strings.TrimSpace(string(b))
	if name == "" {
		// Claim renames a complete file into place: an empty one was not
		// written by it.
		return "", false, fmt.Errorf("%w: the engine claim %s is empty; it records which engine owns the directory: "+
			"write the engine's name into it, or remove it if you know the directory holds no database",
			engine.ErrCorrupt, filepath.Join(dir, ClaimFileName))
	}
	return name, true, nil
}

// Claim records, in the existing directory dir, that it belongs to the
// engine called name, unless it already says so. The claim is written to a
// temporary file, synced, renamed into place and the directory synced, so
// it is there, whole, before the engine's library creates its first file:
// CheckDir then accepts the directory even when that creation was killed
// before the library wrote its marker file (a server killed during its
// first start could otherwise never open its directory again). Engines
// call it after CheckDir accepted dir and before opening their database.
func Claim(dir, name string) error {
	claim, ok, err := readClaim(dir)
	if err != nil {
		return fmt.Errorf("%s: open %s: %w", name, dir, err)
	}
	if ok {
		if claim != name {
			return fmt.Errorf("%w: %s: open %s: the directory belongs to the %s engine", engine.ErrInvalidArgument, name, dir, claim)
		}
		return nil
	}
	tmp := filepath.Join(dir, claimTempName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("%s: claim %s: %w", name, dir, err)
	}
	_, err = f.WriteString(name + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, ClaimFileName))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%s: claim %s: %w", name, dir, err)
	}
	return nil
}

// syncDir makes the directory's entries durable. Windows cannot open a
// directory for syncing (its renames are durable when they return).
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
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
