package badgerengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
	"github.com/flaredb/flaredb/core/kvengine/storetest"
)

func TestValidateListsEveryViolation(t *testing.T) {
	if err := (*Options)(nil).Validate(); err != nil {
		t.Fatalf("nil options: %v", err)
	}
	if err := (&Options{}).Validate(); err != nil {
		t.Fatalf("zero options: %v", err)
	}
	err := (&Options{MemTableSize: 10, BlockCacheSize: -1, ValueThreshold: 2 << 20, ValueLogFileSize: 3 << 30, NumCompactors: 1, ValueLogGCDiscardRatio: 1}).Validate()
	if !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("Validate = %v, want ErrInvalidArgument", err)
	}
	for _, field := range []string{"MemTableSize", "BlockCacheSize", "ValueThreshold", "ValueLogFileSize", "NumCompactors", "ValueLogGCDiscardRatio"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate error does not mention %s: %v", field, err)
		}
	}
	// A threshold above 15% of a small memtable is rejected too.
	if err := (&Options{MemTableSize: 4 << 20, ValueThreshold: 1 << 20}).Validate(); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("threshold above 15%% of the memtable: %v", err)
	}
}

func TestOptionsApplied(t *testing.T) {
	for i, o := range []*Options{
		{MemTableSize: 4 << 20, NumCompactors: 2, ValueLogGCInterval: -1},
		{BlockCacheSize: 1 << 20, ValueThreshold: 1024, ValueLogFileSize: 128 << 20, ValueLogGCDiscardRatio: 0.7},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			s, err := OpenStore(t.TempDir(), o)
			if err != nil {
				t.Fatalf("OpenStore(%+v): %v", o, err)
			}
			defer s.Close()
			var batch []kvengine.Mutation
			for i := range 2000 {
				batch = append(batch, storetest.Put(fmt.Sprintf("key%05d", i), strings.Repeat("v", i)))
			}
			for len(batch) > 0 { // small memtables take small batches
				n := min(len(batch), 50)
				storetest.MustWrite(t, s, true, batch[:n]...)
				batch = batch[n:]
			}
			storetest.WantGet(t, s, "key01999", []byte(strings.Repeat("v", 1999)))
			if got := storetest.Scan(t, s, nil, nil, true); len(got) != 2000 || got[0].K != "key01999" {
				t.Fatalf("scan: %d entries", len(got))
			}
		})
	}
}

func TestBatchTooLargeIsErrTooLarge(t *testing.T) {
	s := openTest(t, t.TempDir())
	// Values below the value threshold are held in the LSM tree, and count
	// in full against Badger's transaction size (about 9.6 MB by default).
	v := bytes.Repeat([]byte{1}, 900<<10)
	var batch []kvengine.Mutation
	for i := range 16 {
		batch = append(batch, kvengine.Mutation{Key: []byte(fmt.Sprintf("big%02d", i)), Value: v})
	}
	err := s.Write(batch, true)
	if !errors.Is(err, engine.ErrTooLarge) || !strings.Contains(err.Error(), "transaction") {
		t.Fatalf("Write of a %d-byte batch = %v, want ErrTooLarge", 16*len(v), err)
	}
	// Nothing of the batch was applied.
	for _, m := range batch {
		storetest.WantGet(t, s, string(m.Key), nil)
	}
	// Halves fit.
	storetest.MustWrite(t, s, true, batch[:8]...)
	storetest.MustWrite(t, s, true, batch[8:]...)
	storetest.WantGet(t, s, "big15", v)
	// Keys beyond Badger's own limit are refused clearly, not by a panic.
	err = s.Write([]kvengine.Mutation{{Key: make([]byte, 70000), Value: []byte("v")}}, false)
	if !errors.Is(err, engine.ErrTooLarge) {
		t.Fatalf("Write of a 70000-byte key = %v, want ErrTooLarge", err)
	}
	// Through the engine, a key at the declared limit works.
	e, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	key := bytes.Repeat([]byte{0xff}, MaxKeySize)
	if _, err := e.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: key, Value: []byte("v"), Version: 1}}, engine.ApplyOptions{}); err != nil {
		t.Fatalf("put of a key of MaxKeySize bytes: %v", err)
	}
	_, err = e.Apply(ctx, []engine.Write{{Kind: engine.OpPut, Key: append(key, 0), Value: []byte("v"), Version: 2}}, engine.ApplyOptions{})
	if !errors.Is(err, engine.ErrTooLarge) {
		t.Fatalf("put of a key over MaxKeySize = %v, want ErrTooLarge", err)
	}
}

func TestBadgerReservedPrefixIsAnOrdinaryKey(t *testing.T) {
	s := openTest(t, t.TempDir())
	storetest.MustWrite(t, s, true, storetest.Put("!badger!head", "mine"), storetest.Put("!badger!", "too"), storetest.Put("!", "bang"))
	storetest.WantGet(t, s, "!badger!head", []byte("mine"))
	want := []storetest.KV{{K: "!", V: "bang"}, {K: "!badger!", V: "too"}, {K: "!badger!head", V: "mine"}}
	if got := storetest.Scan(t, s, nil, nil, false); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("scan = %q, want %q", got, want)
	}
}

// recordHandler is a slog.Handler that keeps every record's level and
// message.
type recordHandler struct {
	mu   *sync.Mutex
	recs *[]string
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, r.Level.String()+" "+r.Message)
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

func TestLoggerReceivesBadgerLogs(t *testing.T) {
	var mu sync.Mutex
	var recs []string
	l := slog.New(recordHandler{&mu, &recs})
	dir := t.TempDir()
	s, err := OpenStore(dir, &Options{Logger: l})
	if err != nil {
		t.Fatal(err)
	}
	storetest.MustWrite(t, s, true, storetest.Put("a", "1"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(recs) == 0 {
		t.Fatal("the logger received nothing from Badger")
	}
	for _, r := range recs {
		if strings.HasSuffix(r, "\n") {
			t.Errorf("record %q keeps Badger's trailing newline", r)
		}
	}
	t.Logf("%d records, first %q", len(recs), recs[0])
}

func TestValueLogCollection(t *testing.T) {
	s, err := openStore(t.TempDir(), &Options{ValueThreshold: 1024, ValueLogFileSize: 128 << 20, ValueLogGCInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v := bytes.Repeat([]byte{9}, 64<<10)
	for range 20 {
		storetest.MustWrite(t, s, false, kvengine.Mutation{Key: []byte("overwritten"), Value: v})
	}
	// Whether a file is rewritten depends on Badger's statistics; what
	// matters is that a collection runs without error and loses nothing.
	if err := s.collect(); err != nil {
		t.Fatalf("value log collection: %v", err)
	}
	storetest.WantGet(t, s, "overwritten", v)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.collectOne(); err != nil {
		t.Fatalf("collection after Close: %v", err)
	}
}

// Every write must reach stable storage before Write returns: the store
// relies on Badger's SyncWrites for that (see the package documentation).
func TestOpensWithSyncWrites(t *testing.T) {
	s, err := openStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if o := s.db.Opts(); !o.SyncWrites || o.NumVersionsToKeep != 1 || o.DetectConflicts || o.MetricsEnabled {
		t.Fatalf("Badger options: SyncWrites %v, NumVersionsToKeep %d, DetectConflicts %v, MetricsEnabled %v",
			o.SyncWrites, o.NumVersionsToKeep, o.DetectConflicts, o.MetricsEnabled)
	}
}
