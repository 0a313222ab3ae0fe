package badgerengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
)

func TestEngineDescribe(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d := e.Describe()
	if d.Name != "badger" || d.Protocol != engine.ProtocolVersion || !d.Capabilities.Persistent {
		t.Fatalf("Describe = %+v", d)
	}
	if !strings.HasPrefix(d.Version, "Badger v4.") {
		t.Fatalf("Version %q should name Badger's version", d.Version)
	}
	l := d.Limits
	if l.MaxKeySize != MaxKeySize || l.MaxWrites != maxWritesCap || l.MaxValueSize < 9<<20 || l.MaxBatchSize < l.MaxValueSize+MaxKeySize {
		t.Fatalf("default Limits = %+v", l)
	}
	// A large value survives reopening.
	big := bytes.Repeat([]byte{7}, 6<<20)
	ctx := context.Background()
	if _, err := e.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: []byte("big"), Value: big, Version: 1}}, engine.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if e, err = Open(dir, nil); err != nil {
		t.Fatal(err)
	}
	got, err := e.Read(ctx, [][]byte{[]byte("big")})
	if err != nil || got[0].Version != 1 || !bytes.Equal(got[0].Value, big) {
		t.Fatalf("after reopen: version %d, %d bytes, %v", got[0].Version, len(got[0].Value), err)
	}
}

// puts returns n puts with keys prefix+"%06d" (padded up to keyLen bytes)
// whose key and value bytes add up to exactly total.
func puts(prefix string, n, keyLen, total int, version uint64) []engine.Write {
	ws := make([]engine.Write, n)
	for i := range ws {
		k := []byte(fmt.Sprintf("%s%06d", prefix, i))
		k = append(k, bytes.Repeat([]byte{0xff}, keyLen-len(k))...)
		size := total/n - keyLen
		if i < total%n {
			size++
		}
		ws[i] = engine.Write{Kind: engine.OpPut, Key: k, Value: bytes.Repeat([]byte{byte(i)}, size), Version: version}
	}
	return ws
}

// TestDeclaredLimitsAlwaysFit checks the promise behind the engine's
// Limits: every call within them fits in one Badger transaction, including
// the worst cases (values held in the LSM tree, where they count in full),
// and a call beyond them is ErrTooLarge.
func TestDeclaredLimitsAlwaysFit(t *testing.T) {
	for _, mt := range []int64{0, minMemTableSize, 16 << 20} {
		t.Run(fmt.Sprintf("MemTableSize=%d", mt), func(t *testing.T) {
			e, err := Open(t.TempDir(), &Options{MemTableSize: mt})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			l := e.Describe().Limits
			t.Logf("Limits %+v", l)
			ctx := context.Background()
			version := uint64(0)
			apply := func(ws []engine.Write, atomic bool) error {
				version++
				for i := range ws {
					ws[i].Version = version
				}
				_, err := e.Apply(ctx, ws, engine.ApplyOptions{Atomic: atomic})
				return err
			}
			// The largest value kept in the LSM tree, where it counts in
			// full: below the value threshold with the 8-byte header.
			eff := mt
			if eff == 0 {
				eff = DefaultMemTableSize
			}
			inline := min(int(min(DefaultValueThreshold, 15*eff/100))-9, l.MaxValueSize)
			fits := []struct {
				name string
				ws   []engine.Write
			}{
				{"MaxWrites small writes filling MaxBatchSize", puts("a", l.MaxWrites, 16, min(l.MaxBatchSize, l.MaxWrites*(16+inline)), 0)},
				{"MaxBatchSize of values just below the value threshold", puts("b", (l.MaxBatchSize+inline-1)/inline, 16, l.MaxBatchSize, 0)},
				{"MaxBatchSize of values of MaxKeySize keys", puts("c", l.MaxBatchSize/(MaxKeySize+100), MaxKeySize, l.MaxBatchSize, 0)},
				{"one value of MaxValueSize with a key of MaxKeySize", puts("d", 1, MaxKeySize, MaxKeySize+l.MaxValueSize, 0)},
			}
			for _, c := range fits {
				for _, atomic := range []bool{false, true} {
					if err := apply(c.ws, atomic); err != nil {
						t.Fatalf("%s (%d writes, atomic %v): %v", c.name, len(c.ws), atomic, err)
					}
				}
			}
			over := []struct {
				name string
				ws   []engine.Write
			}{
				{"MaxWrites+1 writes", puts("e", l.MaxWrites+1, 16, (l.MaxWrites+1)*17, 0)},
				{"MaxBatchSize+1 bytes", puts("f", (l.MaxBatchSize+inline)/inline, 16, l.MaxBatchSize+1, 0)},
				{"a value of MaxValueSize+1", puts("g", 1, 16, 16+l.MaxValueSize+1, 0)},
			}
			for _, c := range over {
				if err := apply(c.ws, true); !errors.Is(err, engine.ErrTooLarge) {
					t.Fatalf("%s: %v, want ErrTooLarge", c.name, err)
				}
			}
		})
	}
}

func TestLimitsFor(t *testing.T) {
	// Badger's figures for the default 64 MiB memtable.
	l := limitsFor(10066329, 104857)
	if l.MaxWrites != 10000 || l.MaxKeySize != MaxKeySize {
		t.Fatalf("limitsFor(default) = %+v", l)
	}
	if fixed := 1 + 21 + 21*int64(l.MaxWrites) + int64(l.MaxBatchSize); fixed > 10066329 {
		t.Fatalf("limitsFor(default) = %+v: a full call needs %d bytes of a 10066329-byte transaction", l, fixed)
	}
	if l.MaxValueSize+MaxKeySize > l.MaxBatchSize {
		t.Fatalf("limitsFor(default) = %+v: the largest value does not fit in a call", l)
	}
	// A large memtable reaches the value cap; a tiny one keeps every field
	// positive.
	if l := limitsFor(15*(512<<20)/100, 15*(512<<20)/100/96); l.MaxValueSize != maxValueSizeCap {
		t.Fatalf("limitsFor(512 MiB memtable) = %+v", l)
	}
	if l := limitsFor(1000, 10); l.MaxWrites < 1 || l.MaxBatchSize < 1 || l.MaxValueSize < 0 {
		t.Fatalf("limitsFor(tiny) = %+v", l)
	}
}
