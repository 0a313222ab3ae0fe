//go:build cgo

package rocksdbengine

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
)

func TestEngineDescribeAndLimits(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d := e.Describe()
	if d.Name != "rocksdb" || d.Protocol != engine.ProtocolVersion || !d.Capabilities.Persistent || d.Limits != Limits() {
		t.Fatalf("Describe = %+v", d)
	}
	if !strings.HasPrefix(d.Version, "RocksDB ") || strings.Contains(d.Version, "unknown") || !strings.Contains(d.Version, "grocksdb v") {
		t.Fatalf("Version %q should name the RocksDB and grocksdb versions", d.Version)
	}
	ctx := context.Background()
	cases := []struct {
		name    string
		key     []byte
		value   []byte
		wantErr error
	}{
		{"key at the limit", bytes.Repeat([]byte{0xff}, MaxKeySize), []byte("v"), nil},
		{"key over the limit", bytes.Repeat([]byte{0x00}, MaxKeySize+1), []byte("v"), engine.ErrTooLarge},
		{"value beyond 4 MiB", []byte("big"), bytes.Repeat([]byte{7}, 6<<20), nil},
		{"value over the limit", []byte("huge"), make([]byte, MaxValueSize+1), engine.ErrTooLarge},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: c.key, Value: c.value, Version: uint64(i + 1)}}, engine.ApplyOptions{})
			if !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
				t.Fatalf("Apply = %v, want %v", err, c.wantErr)
			}
			got, err := e.Read(ctx, [][]byte{c.key})
			if c.wantErr != nil {
				if err == nil && got[0].Version != 0 {
					t.Fatalf("a rejected write was stored")
				}
				return
			}
			if err != nil || got[0].Version != uint64(i+1) || !bytes.Equal(got[0].Value, c.value) {
				t.Fatalf("Read: version %d, %d bytes, err %v", got[0].Version, len(got[0].Value), err)
			}
		})
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Read(ctx, [][]byte{[]byte("big")})
	if err != nil || got[0].Version != 3 || len(got[0].Value) != 6<<20 {
		t.Fatalf("after reopen: %+v, %v", got[0].Version, err)
	}
}
