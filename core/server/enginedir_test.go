package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flaredb/flaredb/core/engine"
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

// TestOtherEngineDirWarning starts an in-process engine on a data directory
// that holds the plugin engine's data: it starts, warning that the data
// there is not served.
func TestOtherEngineDirWarning(t *testing.T) {
	data := t.TempDir()
	writeAndStop(t, badgerAsPlugin(data), "k", "v")
	var log logBuffer
	srv, err := startTest(t, testServer{dataDir: data, name: "memory", log: &log, open: func(string) (engine.Engine, error) {
		return memengine.New(), nil
	}})
	if err != nil {
		t.Fatal(err)
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
