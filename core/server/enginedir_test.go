package server_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
	"github.com/flaredb/flaredb/core/server"
	"github.com/flaredb/flaredb/engines/badgerengine"
	"github.com/flaredb/flaredb/engines/memengine"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// kvClient dials srv and closes the connection when the test ends.
func kvClient(t *testing.T, srv *server.Server) kvpb.KVClient {
	t.Helper()
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kvpb.NewKVClient(conn)
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// badgerAsPlugin is a server on Badger in the plugin engine's directory, as
// the Badger plugin would run it.
func badgerAsPlugin(dataDir string) testServer {
	return testServer{dataDir: dataDir, name: "plugin", mode: "plugin", open: func(dir string) (engine.Engine, error) {
		return badgerengine.Open(dir, nil)
	}}
}

// writeAndStop starts ts, writes key=value through the API and stops it.
func writeAndStop(t *testing.T, ts testServer, key, value string) {
	t.Helper()
	srv, err := startTest(t, ts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kvClient(t, srv).Put(callCtx(t), &kvpb.PutRequest{Key: []byte(key), Value: []byte(value)}); err != nil {
		t.Fatal(err)
	}
	stopTest(t, srv)
}

// readAndStop starts ts and checks that key holds value.
func readAndStop(t *testing.T, ts testServer, key, value string) {
	t.Helper()
	srv, err := startTest(t, ts)
	if err != nil {
		t.Fatalf("the first engine no longer starts on its directory: %v", err)
	}
	g, err := kvClient(t, srv).Get(callCtx(t), &kvpb.GetRequest{Key: []byte(key)})
	if err != nil || !g.Found || string(g.Value) != value {
		t.Fatalf("get %q after the refused switch = %v, %v; want %q", key, g, err, value)
	}
	stopTest(t, srv)
}

// TestEngineSwitchRefusedByIdentity switches the plugin engine's directory
// from Badger to an engine that would open it (it has no check of its
// own): the server records that the directory is Badger's, closes the
// other engine and refuses to start; Badger's data is still there.
func TestEngineSwitchRefusedByIdentity(t *testing.T) {
	data := t.TempDir()
	writeAndStop(t, badgerAsPlugin(data), "k", "badger's value")

	other := &testEngine{Engine: memengine.New(), name: "bbolt"}
	_, err := startTest(t, testServer{dataDir: data, name: "plugin", mode: "plugin", open: func(string) (engine.Engine, error) {
		return other, nil
	}})
	if !errors.Is(err, server.ErrEngineMismatch) {
		t.Fatalf("start on another engine's directory = %v, want ErrEngineMismatch", err)
	}
	for _, w := range []string{`"badger"`, `"bbolt"`, filepath.Join(data, "engine-plugin")} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
	if !other.closed.Load() {
		t.Error("the refused engine was not closed")
	}
	readAndStop(t, badgerAsPlugin(data), "k", "badger's value")
}

// TestEngineSwitchNeedsConsent starts an in-process engine on a data
// directory that holds the plugin engine's data: the start is refused
// before the engine opens, unless the operator asks for an empty store
// (config.StartEmptyEngine); then it starts, warning that the plugin's data
// is not served, and later starts need no consent, as the directory is the
// memory engine's now.
func TestEngineSwitchNeedsConsent(t *testing.T) {
	data := t.TempDir()
	writeAndStop(t, badgerAsPlugin(data), "k", "v")
	memDir := filepath.Join(data, "engine-memory")
	opened := false
	memory := func(consent bool, log *logBuffer) testServer {
		return testServer{dataDir: data, name: "memory", log: log,
			config: func(c *config.Config) { c.StartEmptyEngine = consent },
			open: func(string) (engine.Engine, error) {
				opened = true
				return memengine.New(), nil
			}}
	}

	_, err := startTest(t, memory(false, nil))
	if !errors.Is(err, server.ErrEngineSwitch) {
		t.Fatalf("switch without consent = %v, want ErrEngineSwitch", err)
	}
	for _, w := range []string{filepath.Join(data, "engine-plugin"), `engine "badger"`, memDir, "--start-empty-engine"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal %q does not mention %s", err, w)
		}
	}
	if opened {
		t.Error("the refused engine was opened")
	}
	for _, p := range []string{memDir, memDir + ".consent"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the refused start created %s: %v", p, err)
		}
	}

	for _, consent := range []bool{true, false} {
		var log logBuffer
		srv, err := startTest(t, memory(consent, &log))
		if err != nil {
			t.Fatalf("start (consent %v): %v", consent, err)
		}
		stopTest(t, srv)
		var warning string
		for _, line := range strings.Split(log.String(), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "engine-plugin") {
				warning = line
			}
		}
		if warning == "" || !strings.Contains(warning, "not serve") || !strings.Contains(warning, "owner=badger") {
			t.Fatalf("no warning about the plugin engine's data in the log:\n%s", log.String())
		}
		// The engine's own (empty) directory is not warned about.
		if strings.Contains(log.String(), "engine-memory dir=") {
			t.Fatalf("warned about the served directory:\n%s", log.String())
		}
	}
	// The plugin's data is still there for the engine that wrote it.
	readAndStop(t, badgerAsPlugin(data), "k", "v")
}

// TestEngineSwitchOnFreshDirectory: engine directories without data (an
// engine killed before it wrote anything, or one that keeps nothing on
// disk) do not hold a start back.
func TestEngineSwitchOnFreshDirectory(t *testing.T) {
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "engine-plugin"), 0o750); err != nil {
		t.Fatal(err)
	}
	srv, err := startTest(t, testServer{dataDir: data, name: "memory", open: func(string) (engine.Engine, error) {
		return memengine.New(), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	stopTest(t, srv)
}

// TestEngineDirAsDataDir refuses data directories that are, or lie in,
// another server's engine directory, before anything is written there.
func TestEngineDirAsDataDir(t *testing.T) {
	data := t.TempDir()
	writeAndStop(t, badgerAsPlugin(data), "k", "v")
	engDir := filepath.Join(data, "engine-plugin")
	// An engine directory never claimed by an engine, beside a data
	// directory's files.
	bare := filepath.Join(data, "engine-bare")
	if err := os.Mkdir(bare, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir, want string
	}{
		{engDir, "is an engine's own directory"},
		{filepath.Join(engDir, "sub"), "lies inside the engine directory " + engDir},
		{filepath.Join(engDir, "a", "b"), "lies inside the engine directory " + engDir},
		{bare, "is an engine's own directory"},
	} {
		before := dirNames(t, engDir)
		_, err := startTest(t, testServer{dataDir: tc.dir, name: "memory", open: func(string) (engine.Engine, error) {
			return memengine.New(), nil
		}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("data_dir %s: start = %v, want an error saying %q", tc.dir, err, tc.want)
		}
		if after := dirNames(t, engDir); after != before {
			t.Errorf("data_dir %s: the refused start changed %s:\nbefore %s\nafter  %s", tc.dir, engDir, before, after)
		}
	}
	readAndStop(t, badgerAsPlugin(data), "k", "v")
}

// dirNames lists dir's entries, recursively, as one string.
func dirNames(t *testing.T, dir string) string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		names = append(names, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(names, " ")
}

// TestStaleIdentityTempsRemoved: temporary identity files left by a server
// killed while writing one are removed at the next start; the identity
// itself stays.
func TestStaleIdentityTempsRemoved(t *testing.T) {
	data := t.TempDir()
	stale := filepath.Join(data, ".engine-memory.identity.tmp-12345")
	if err := os.WriteFile(stale, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := startTest(t, testServer{dataDir: data, name: "memory", open: func(string) (engine.Engine, error) {
		return memengine.New(), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	stopTest(t, srv)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temporary identity file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "engine-memory.identity")); err != nil {
		t.Fatalf("identity: %v", err)
	}
}

// TestListenFailsFirst: with the listen address taken, the start fails
// before it creates or locks the data directory or opens the engine.
func TestListenFailsFirst(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, field := range []string{"listen", "metrics_listen"} {
		data := filepath.Join(t.TempDir(), "data")
		opened := false
		_, err := startTest(t, testServer{dataDir: data, name: "memory",
			config: func(c *config.Config) {
				if field == "listen" {
					c.Listen = taken.Addr().String()
				} else {
					c.MetricsListen = taken.Addr().String()
				}
			},
			open: func(string) (engine.Engine, error) {
				opened = true
				return memengine.New(), nil
			}})
		if err == nil || !strings.Contains(err.Error(), "cannot listen on "+taken.Addr().String()+" ("+field+")") {
			t.Fatalf("%s taken: start = %v", field, err)
		}
		if opened {
			t.Errorf("%s taken: the engine was opened", field)
		}
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s taken: the data directory was created: %v", field, err)
		}
	}
}

// TestEngineSwitchSymlinkedEngineDir: an engine directory that is a
// symbolic link to a directory (its data kept on another disk, say) is an
// engine directory like any other: a switch to an empty engine directory
// beside it is refused, and with consent the oracle's file is still
// required, as the linked directory holds engine data.
func TestEngineSwitchSymlinkedEngineDir(t *testing.T) {
	elsewhere := t.TempDir()
	writeAndStop(t, badgerAsPlugin(elsewhere), "k", "v")
	data := t.TempDir()
	if err := os.Symlink(filepath.Join(elsewhere, "engine-plugin"), filepath.Join(data, "engine-plugin")); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	memory := func(consent bool) testServer {
		return testServer{dataDir: data, name: "memory",
			config: func(c *config.Config) { c.StartEmptyEngine = consent },
			open: func(string) (engine.Engine, error) {
				return memengine.New(), nil
			}}
	}
	_, err := startTest(t, memory(false))
	if !errors.Is(err, server.ErrEngineSwitch) || !strings.Contains(err.Error(), filepath.Join(data, "engine-plugin")) {
		t.Fatalf("switch beside a linked engine directory holding data = %v, want ErrEngineSwitch naming it", err)
	}
	// No tso file in data: with the linked directory's data, it is needed.
	_, err = startTest(t, memory(true))
	if err == nil || !strings.Contains(err.Error(), "is missing") || !strings.Contains(err.Error(), "engine-plugin") {
		t.Fatalf("start without the oracle's file beside a linked engine directory holding data = %v, want the missing-oracle refusal", err)
	}
}

// TestEngineSwitchIgnorableEntries: whether another engine directory holds
// data is decided by kvengine.DirHoldsData, the rule the engines use: one
// holding only a lost+found, an engine's claim, a claim cut short or the
// plugin host's lock holds none, so neither the switch refusal nor the
// oracle file's requirement holds the start back; a real file is data.
func TestEngineSwitchIgnorableEntries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry string // in engine-plugin; "x/": a directory
		data  bool
	}{
		{"lost+found only", "lost+found/", false},
		{"claim only", kvengine.ClaimFileName, false},
		{"claim cut short only", kvengine.ClaimFileName + ".tmp", false},
		{"plugin lock only", kvengine.PluginLockFileName, false},
		{"a real file", "MANIFEST", true},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			data := t.TempDir()
			p := filepath.Join(data, "engine-plugin", strings.TrimSuffix(tc.entry, "/"))
			if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
				t.Fatal(err)
			}
			var err error
			if strings.HasSuffix(tc.entry, "/") {
				err = os.Mkdir(p, 0o700)
			} else {
				err = os.WriteFile(p, []byte("badger\n"), 0o640)
			}
			if err != nil {
				t.Fatal(err)
			}
			srv, err := startTest(t, testServer{dataDir: data, name: "memory", open: func(string) (engine.Engine, error) {
				return memengine.New(), nil
			}})
			if tc.data {
				if !errors.Is(err, server.ErrEngineSwitch) {
					t.Fatalf("start beside engine-plugin holding %s = %v, want ErrEngineSwitch", tc.entry, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("start beside engine-plugin holding only %s: %v", tc.entry, err)
			}
			stopTest(t, srv)
		})
	}
}

// TestEngineSwitchConsentOutlivesFailedStart: consent to start on an empty
// engine directory (config.StartEmptyEngine) is recorded before the engine
// opens, so a start that then fails (the engine does not open, whether or
// not it wrote its claim first) does not need the flag again; once the
// engine has opened, its identity stands for the consent.
func TestEngineSwitchConsentOutlivesFailedStart(t *testing.T) {
	for _, claimFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "nothing_written", true: "claim_written"}[claimFirst], func(t *testing.T) {
			data := t.TempDir()
			writeAndStop(t, badgerAsPlugin(data), "k", "v")
			memory := func(consent bool, open func(dir string) (engine.Engine, error)) testServer {
				return testServer{dataDir: data, name: "memory", open: open,
					config: func(c *config.Config) { c.StartEmptyEngine = consent }}
			}
			broken := errors.New("the engine does not open")
			_, err := startTest(t, memory(true, func(dir string) (engine.Engine, error) {
				if claimFirst {
					if err := kvengine.Claim(dir, "memory"); err != nil {
						t.Fatal(err)
					}
				}
				return nil, broken
			}))
			if !errors.Is(err, broken) {
				t.Fatalf("start with a failing engine = %v, want %v", err, broken)
			}
			consent := filepath.Join(data, "engine-memory.consent")
			if _, err := os.Stat(consent); err != nil {
				t.Fatalf("the consent was not recorded: %v", err)
			}
			works := func(string) (engine.Engine, error) { return memengine.New(), nil }
			srv, err := startTest(t, memory(false, works))
			if err != nil {
				t.Fatalf("start without the flag after a consented start failed: %v", err)
			}
			stopTest(t, srv)
			if _, err := os.Stat(filepath.Join(data, "engine-memory.identity")); err != nil {
				t.Fatalf("no identity after the engine opened: %v", err)
			}
			if _, err := os.Stat(consent); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the consent file outlived the identity's recording: %v", err)
			}
			srv, err = startTest(t, memory(false, works))
			if err != nil {
				t.Fatalf("start after the engine opened once: %v", err)
			}
			stopTest(t, srv)
			readAndStop(t, badgerAsPlugin(data), "k", "v")
		})
	}
}

// TestEngineSwitchOwnDirIgnorableEntries: the configured engine's own
// directory counts as used by the same rule: one holding only a lost+found
// (a file system just mounted there) or a claim is still unused, so the
// switch beside another engine's data is refused.
func TestEngineSwitchOwnDirIgnorableEntries(t *testing.T) {
	for _, entry := range []string{"lost+found/", kvengine.ClaimFileName} {
		data := t.TempDir()
		writeAndStop(t, badgerAsPlugin(data), "k", "v")
		p := filepath.Join(data, "engine-memory", strings.TrimSuffix(entry, "/"))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		var err error
		if strings.HasSuffix(entry, "/") {
			err = os.Mkdir(p, 0o700)
		} else {
			err = os.WriteFile(p, []byte("memory\n"), 0o640)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err = startTest(t, testServer{dataDir: data, name: "memory", open: func(string) (engine.Engine, error) {
			return memengine.New(), nil
		}})
		if !errors.Is(err, server.ErrEngineSwitch) {
			t.Errorf("switch onto an engine directory holding only %s = %v, want ErrEngineSwitch", entry, err)
		}
	}
}
