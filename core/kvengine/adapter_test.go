package kvengine_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
	"github.com/flaredb/flaredb/engines/badgerengine"
)

// gatedStore is a real Badger store whose first Write waits for a signal,
// so a test can line up calls behind it.
type gatedStore struct {
	kvengine.Store
	once    sync.Once
	release chan struct{}
	freed   sync.Once
	sizes   chan int
}

// open lets the first Write go on (again: it is safe to call more than
// once).
func (g *gatedStore) open() { g.freed.Do(func() { close(g.release) }) }

func (g *gatedStore) Write(b []kvengine.Mutation, sync bool) error {
	g.once.Do(func() { <-g.release })
	g.sizes <- len(b)
	return g.Store.Write(b, sync)
}

func openAdapter(t *testing.T) (*kvengine.Adapter, *gatedStore) {
	t.Helper()
	s, err := badgerengine.OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedStore{Store: s, release: make(chan struct{}), sizes: make(chan int, 100)}
	a := kvengine.New(g, engine.Description{Name: "gated"})
	// Close waits for calls in progress: let a held write go first, or a
	// failed test would hang here instead of reporting.
	t.Cleanup(func() { g.open(); a.Close() })
	return a, g
}

func put(key string, version uint64) engine.Write {
	return engine.Write{Kind: engine.OpPut, Key: []byte(key), Value: []byte("v"), Version: version}
}

// TestGroupCommit lines ten Apply calls up behind a write in progress and
// checks that they reach the store as one write.
func TestGroupCommit(t *testing.T) {
	a, g := openAdapter(t)
	ctx := context.Background()
	errs := make(chan error, 11)
	go func() { _, err := a.Apply(ctx, []engine.Write{put("first", 1)}, engine.ApplyOptions{}); errs <- err }()
	waitFor(t, "the first call to reach the store", func() bool { return a.Stats().Commits == 1 })
	const n = 10
	// Keys in distinct latch stripes (the stripes are seeded at random), so
	// that no call waits for another's latch instead of queueing.
	used := map[int]bool{a.StripeOf([]byte("first")): true}
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprintf("k%d", i)
		if s := a.StripeOf([]byte(k)); !used[s] {
			used[s] = true
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		go func() {
			_, err := a.Apply(ctx, []engine.Write{put(k, 1)}, engine.ApplyOptions{})
			errs <- err
		}()
	}
	waitFor(t, "the calls to queue", func() bool { return a.Stats().Queued == n })
	g.open()
	for i := 0; i < n+1; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if first, second := <-g.sizes, <-g.sizes; first != 1 || second != n {
		t.Fatalf("store writes of %d and %d mutations, want 1 and %d", first, second, n)
	}
	if st := a.Stats(); st.StoreWrites != 2 || st.Commits != n+1 {
		t.Fatalf("stats %+v, want 2 store writes for %d commits", st, n+1)
	}
	es, err := a.Read(ctx, [][]byte{[]byte("first"), []byte(keys[n-1])})
	if err != nil || es[0].Version != 1 || es[1].Version != 1 {
		t.Fatalf("read after group commit: %+v %v", es, err)
	}
}

// TestCorruptValue writes a value without a version header straight into
// the store: reads and scans report ErrCorrupt instead of garbage.
func TestCorruptValue(t *testing.T) {
	a, g := openAdapter(t)
	g.open()
	go func() {
		for range g.sizes {
		}
	}()
	if err := g.Store.Write([]kvengine.Mutation{{Key: []byte("bad"), Value: []byte("xyz")}}, true); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := a.Read(ctx, [][]byte{[]byte("bad")}); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("read: %v, want ErrCorrupt", err)
	}
	err := a.Scan(ctx, engine.ScanOptions{}, func(engine.Entry) error { return nil })
	if !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("scan: %v, want ErrCorrupt", err)
	}
	if _, err := a.Apply(ctx, []engine.Write{put("bad", 5)}, engine.ApplyOptions{}); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("apply over a corrupt value: %v, want ErrCorrupt", err)
	}
}
