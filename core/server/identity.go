package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/flaredb/flaredb/core/kvengine"
)

// ErrEngineMismatch reports that the engine directory belongs to another
// engine than the one the server opened: its identity file records another
// name. Start returns it wrapped, after closing the engine.
var ErrEngineMismatch = errors.New("server: engine directory belongs to another engine")

// identitySuffix ends the name of the identity file that sits beside an
// engine directory: DATA_DIR/engine-plugin.identity records which engine
// owns DATA_DIR/engine-plugin. It lives beside the directory, not inside
// it, because engines refuse directories holding files they do not know.
const identitySuffix = ".identity"

// engineDirPrefix begins the name of every engine directory in the data
// directory (engine-rocksdb, engine-plugin, ...).
const engineDirPrefix = "engine-"

// identity is the content of an identity file.
type identity struct {
	// Engine is the name the engine gave in its Description when the
	// server first opened the directory.
	Engine string `json:"engine"`
	// Dir is the engine directory's name, for whoever reads the file.
	Dir string `json:"dir"`
}

// identityPath returns the identity file of engine directory engDir.
func identityPath(engDir string) string { return filepath.Clean(engDir) + identitySuffix }

// readIdentity returns the identity recorded for engDir, or ok false when
// none is.
func readIdentity(engDir string) (id identity, ok bool, err error) {
	path := identityPath(engDir)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return identity{}, false, nil
	}
	if err != nil {
		return identity{}, false, fmt.Errorf("read engine identity %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &id); err != nil || id.Engine == "" {
		if err == nil {
			err = errors.New(`no "engine" field`)
		}
		return identity{}, false, fmt.Errorf("engine identity %s is unreadable (%v): it records which engine owns %s; "+
			"restore it, or remove it only if you know which engine wrote that directory", path, err, engDir)
	}
	return id, true, nil
}

// claimEngineDir checks that engDir belongs to the engine named name and
// records that it does. When no identity is recorded yet, it writes one
// (atomically: a temporary file, synced, renamed over, then the directory
// synced). When one is, and it names another engine, it returns an error
// wrapping ErrEngineMismatch that names both engines and the directory.
func claimEngineDir(engDir, name string) error {
	id, ok, err := readIdentity(engDir)
	if err != nil {
		return err
	}
	if !ok {
		return writeIdentity(engDir, identity{Engine: name, Dir: filepath.Base(engDir)})
	}
	if id.Engine != name {
		return fmt.Errorf("%w: %s holds the data of engine %q (recorded in %s), but the configured engine describes itself as %q: "+
			"refusing to start so that %q does not serve or touch %q's data; configure the %q engine again, or use another data_dir",
			ErrEngineMismatch, engDir, id.Engine, identityPath(engDir), name, name, id.Engine, id.Engine)
	}
	return nil
}

// writeIdentity replaces engDir's identity file with id, atomically and
// durably.
func writeIdentity(engDir string, id identity) (err error) {
	path := identityPath(engDir)
	parent := filepath.Dir(path)
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("write engine identity %s: %w", path, err)
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(parent, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write engine identity %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write engine identity %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write engine identity %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write engine identity %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o640); err != nil {
		return fmt.Errorf("write engine identity %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write engine identity %s: %w", path, err)
	}
	if err := syncDir(parent); err != nil {
		return fmt.Errorf("write engine identity %s: sync %s: %w", path, parent, err)
	}
	return nil
}

// removeStaleIdentityTemps removes the temporary files writeIdentity left
// when its process died before renaming one into place; they hold nothing
// needed. The caller holds the data directory's lock.
func removeStaleIdentityTemps(dataDir string) {
	names, _ := filepath.Glob(filepath.Join(dataDir, "."+engineDirPrefix+"*"+identitySuffix+".tmp-*"))
	for _, n := range names {
		_ = os.Remove(n)
	}
}

// syncDir fsyncs a directory, so that a rename in it survives a crash.
func syncDir(dir string) error {
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

// strayEngineDir is an engine directory the configured engine does not use.
type strayEngineDir struct {
	Path   string
	Engine string // as recorded in its identity file, or "" when none is
}

// otherEngineDirs returns the engine directories in dataDir other than
// engDir that hold data (kvengine.DirHoldsData: anything but the plugin
// host's lock file, a lost+found and an engine's claim), which the
// configured engine does not serve.
func otherEngineDirs(dataDir, engDir string) ([]strayEngineDir, error) {
	names, err := engineDirNames(dataDir)
	if err != nil {
		return nil, err
	}
	var out []strayEngineDir
	for _, name := range names {
		if name == filepath.Base(engDir) {
			continue
		}
		p := filepath.Join(dataDir, name)
		if held, err := kvengine.DirHoldsData(p); err != nil {
			return nil, err
		} else if !held {
			continue
		}
		s := strayEngineDir{Path: p}
		if id, ok, err := readIdentity(p); err == nil && ok {
			s.Engine = id.Engine
		}
		out = append(out, s)
	}
	return out, nil
}

// engineDirNames returns the names of the engine directories in dataDir,
// sorted: its entries named engine-* that are directories or symbolic
// links to directories (an engine's data kept on another disk, say). A
// link that cannot be followed is an error: what it points at may hold
// data, and the callers decide what the data directory holds.
func engineDirNames(dataDir string) ([]string, error) {
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), engineDirPrefix) {
			continue
		}
		if !e.IsDir() {
			if e.Type()&fs.ModeSymlink == 0 {
				continue // engine-NAME.identity, say
			}
			fi, err := os.Stat(filepath.Join(dataDir, e.Name()))
			if err != nil {
				return nil, fmt.Errorf("engine directory %s is a symbolic link that cannot be followed: %w", filepath.Join(dataDir, e.Name()), err)
			}
			if !fi.IsDir() {
				continue
			}
		}
		names = append(names, e.Name())
	}
	return names, nil
}

// pluginLockFile is the lock file the plugin host keeps in a plugin's data
// directory (plugins/host.LockFileName is the same constant).
const pluginLockFile = kvengine.PluginLockFileName

// consentSuffix ends the name of the consent file that sits beside an
// engine directory: DATA_DIR/engine-memory.consent records that the
// operator chose to start the engine selection memory on its empty
// directory although another engine directory held data
// (--start-empty-engine). checkEngineSwitch writes it before the engine
// opens, so that the choice outlives a start that fails afterwards; the
// server removes it once the engine has opened and its identity is
// recorded, which stands for the choice from then on.
const consentSuffix = ".consent"

// consentPath returns the consent file of engine directory engDir.
func consentPath(engDir string) string { return filepath.Clean(engDir) + consentSuffix }

// checkEngineSwitch refuses, with an error wrapping ErrEngineSwitch, to
// start the engine selection configured on engDir when engDir was never
// used while another engine directory in dataDir holds data: the
// configured engine selection differs from the one that wrote the data
// (another engine, or the same engine moved into or out of a plugin), and
// serving an empty store in its place would look like lost data to every
// client. engDir was used when its identity or consent file exists, or it
// holds data (kvengine.DirHoldsData, the rule for the other directories
// too). When allow (the operator's consent, --start-empty-engine) overrides
// the refusal, it records the consent in engDir's consent file, durably,
// before returning nil; otherwise it only reads.
func checkEngineSwitch(dataDir, engDir, configured string, allow bool) error {
	for _, f := range []string{identityPath(engDir), consentPath(engDir)} {
		if _, err := os.Stat(f); err == nil {
			return nil // a server opened it, or was told to, before: the operator chose it then
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cannot read %s: %w", f, err)
		}
	}
	if used, err := kvengine.DirHoldsData(engDir); err != nil {
		return fmt.Errorf("cannot read engine directory: %w", err)
	} else if used {
		return nil // used before: the operator chose it then
	}
	others, err := otherEngineDirs(dataDir, engDir)
	if err != nil {
		return fmt.Errorf("cannot list the engine directories of %s: %w", dataDir, err)
	}
	if len(others) == 0 {
		return nil
	}
	if allow {
		if err := writeConsent(engDir, configured, others); err != nil {
			return fmt.Errorf("record the consent to start on an empty engine directory: %w", err)
		}
		return nil
	}
	var held []string
	for _, o := range others {
		owner := o.Engine
		if owner == "" {
			owner = "an unrecorded engine"
		} else {
			owner = fmt.Sprintf("engine %q", owner)
		}
		held = append(held, fmt.Sprintf("%s (%s)", o.Path, owner))
	}
	return fmt.Errorf("%w: the configured engine selection %q would use the new, empty directory %s, but %s holds data "+
		"in %s, which %q does not serve: configure the engine that wrote that data again (a plugin's data is in engine-plugin/, "+
		"an in-process engine's in engine-NAME/); or, to start %q on an empty store deliberately, start once with "+
		"--start-empty-engine (the other data stays on disk, unserved)",
		ErrEngineSwitch, configured, engDir, dataDir, strings.Join(held, ", "), configured, configured)
}

// writeConsent writes engDir's consent file and syncs it and its
// directory. Its content is for whoever reads it; only its presence counts.
func writeConsent(engDir, configured string, others []strayEngineDir) error {
	path := consentPath(engDir)
	var held []string
	for _, o := range others {
		held = append(held, o.Path)
	}
	text := fmt.Sprintf("flaredb-server --start-empty-engine: the engine selection %q was started on the empty directory %s "+
		"although %s held data; the server removes this file once the engine has opened there\n",
		configured, engDir, strings.Join(held, ", "))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	return err
}

// ErrEngineSwitch reports that the configured engine selection would
// start on an empty store while another engine's data sits in the data
// directory. Start returns it wrapped.
var ErrEngineSwitch = errors.New("server: refusing to switch engines on a data directory that holds another engine's data")

// refuseEngineDirAsDataDir returns an error when dataDir is, or lies
// inside, an engine directory (one holding an engine's claim file or the
// plugin host's lock, or an engine-NAME directory beside a data
// directory's LOCK or tso): a server there would write into another
// server's engine files. It only reads; dataDir need not exist.
func refuseEngineDirAsDataDir(dataDir string) error {
	for p := filepath.Clean(dataDir); ; p = filepath.Dir(p) {
		for _, f := range []string{kvengine.ClaimFileName, pluginLockFile} {
			if _, err := os.Stat(filepath.Join(p, f)); err == nil {
				return engineDirAsDataDir(dataDir, p, filepath.Join(p, f))
			}
		}
		if parent := filepath.Dir(p); strings.HasPrefix(filepath.Base(p), engineDirPrefix) && parent != p {
			for _, f := range []string{"LOCK", "tso", filepath.Base(p) + identitySuffix} {
				if _, err := os.Stat(filepath.Join(parent, f)); err == nil {
					return engineDirAsDataDir(dataDir, p, filepath.Join(parent, f))
				}
			}
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

func engineDirAsDataDir(dataDir, engDir, evidence string) error {
	if filepath.Clean(dataDir) == engDir {
		return fmt.Errorf("data directory %s is an engine's own directory (%s is there), not a FlareDB data directory: "+
			"set data_dir to the directory that holds it", dataDir, evidence)
	}
	return fmt.Errorf("data directory %s lies inside the engine directory %s (%s is there): "+
		"a server there would write into another server's engine files; choose a data_dir outside it", dataDir, engDir, evidence)
}
