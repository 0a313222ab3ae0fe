//go:build cgo

package rocksdbengine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
	"github.com/flaredb/flaredb/core/kvengine/storetest"
)

// testOpener is the storetest.Opener for the RocksDB store: a store that
// must exist is opened with ErrorIfNotExists.
func testOpener(_ *testing.T, dir string, existing bool) (kvengine.Store, error) {
	return OpenStore(dir, &Options{ErrorIfNotExists: existing})
}

// TestStore runs the engine-independent cases of the kvengine.Store
// contract; the cases below are the RocksDB-specific ones.
func TestStore(t *testing.T) { storetest.Run(t, testOpener) }

func TestOpenErrors(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		dir     string
		opts    *Options
		is      error // the sentinel the error must wrap, if any
		mention string
	}{
		{"dir is a file", file, nil, nil, file},
		{"dir under a file", filepath.Join(file, "db"), nil, nil, file},
		{"missing database with ErrorIfNotExists", empty, &Options{ErrorIfNotExists: true}, nil, empty},
		{"empty dir name", "", nil, engine.ErrInvalidArgument, "empty directory"},
		{"bad option", filepath.Join(base, "x"), &Options{MaxOpenFiles: -5}, engine.ErrInvalidArgument, "MaxOpenFiles"},
		{"bad compression", filepath.Join(base, "y"), &Options{Compression: "brotli"}, engine.ErrInvalidArgument, "brotli"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := OpenStore(c.dir, c.opts)
			if err == nil {
				s.Close()
				t.Fatalf("OpenStore(%q) succeeded", c.dir)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v does not wrap %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %q", err, c.mention)
			}
			if e, err := Open(c.dir, c.opts); err == nil {
				e.Close()
				t.Fatalf("Open(%q) succeeded", c.dir)
			}
		})
	}
}

func TestOptionsApplied(t *testing.T) {
	for _, o := range []*Options{
		{Compression: "none", BlockCacheSize: -1, BloomBitsPerKey: -1},
		{Compression: "snappy", MaxOpenFiles: -1},
		{Compression: "zstd", WriteBufferSize: 1 << 20, MaxBackgroundJobs: 2, KeepLogFileNum: 2},
		{Compression: "zlib", BlockCacheSize: 1 << 20, BloomBitsPerKey: 5},
	} {
		t.Run(o.Compression, func(t *testing.T) {
			dir := t.TempDir()
			s, err := OpenStore(dir, o)
			if err != nil {
				t.Fatalf("OpenStore(%+v): %v", o, err)
			}
			defer s.Close()
			var batch []kvengine.Mutation
			for i := range 2000 {
				batch = append(batch, storetest.Put(fmt.Sprintf("key%05d", i), strings.Repeat("compressible ", 20)))
			}
			storetest.MustWrite(t, s, true, batch...)
			storetest.WantGet(t, s, "key01999", []byte(strings.Repeat("compressible ", 20)))
		})
	}
}
