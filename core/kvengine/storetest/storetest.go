// Package storetest checks that an implementation of kvengine.Store keeps
// the Store contract, like gocloud's blob/drivertest does for blob drivers.
// It is a test-helper package: it imports package testing and is meant to be
// imported only from an engine's _test.go files.
//
// An engine's tests call Run with an Opener for the engine's Store, and
// Crash from a test of its own to check crash recovery in a child process:
//
//	func TestStore(t *testing.T) { storetest.Run(t, open) }
//	func TestCrashRecovery(t *testing.T) { storetest.Crash(t, open) }
//
// Besides the contract of package kvengine, the cases check what every
// persistent engine of this repository provides: data survives a reopen, a
// second open of a directory in use fails naming the directory and its
// lock, and Close releases snapshots and iterators still open, whose later
// calls (and the store's) fail with errors wrapping engine.ErrClosed.
// Engine-specific checks (options, limits, reserved keys) stay in the
// engine's own tests, which may use the helpers exported here.
//
// storetest imports only core/engine, core/kvengine and the standard
// library; it must never import an engine.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
)

// Opener opens the engine's store in dir, creating it when it is missing.
// When existing is true the store was created in dir before (and closed, or
// its process killed): an engine with an option to refuse a missing
// database (such as ErrorIfNotExists) sets it, so that the tests also check
// that the database was found. t is the test or subtest that opens the
// store.
type Opener func(t *testing.T, dir string, existing bool) (kvengine.Store, error)

// Run runs every case of the Store contract against the stores open
// returns, each as a subtest of t named after the case.
func Run(t *testing.T, open Opener) {
	cases := []struct {
		name string
		run  func(*testing.T, Opener)
	}{
		{"StoreGetWriteDelete", testStoreGetWriteDelete},
		{"StoreOwnership", testStoreOwnership},
		{"IteratorBounds", testIteratorBounds},
		{"IteratorSkipsDeletedAndEmptyValues", testIteratorSkipsDeletedAndEmptyValues},
		{"SnapshotIsolation", testSnapshotIsolation},
		{"LargeValues", testLargeValues},
		{"ReopenKeepsData", testReopenKeepsData},
		{"OpenTwiceFails", testOpenTwiceFails},
		{"CloseReleasesEverything", testCloseReleasesEverything},
		{"SnapshotCloseReleasesIterators", testSnapshotCloseReleasesIterators},
		{"ConcurrentUse", testConcurrentUse},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, open) })
	}
}

// openTest opens a store in dir and closes it when the test ends.
func openTest(t *testing.T, open Opener, dir string) kvengine.Store {
	t.Helper()
	s, err := open(t, dir, false)
	if err != nil {
		t.Fatalf("open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// MustWrite writes muts as one batch and fails the test if Write fails.
func MustWrite(t testing.TB, s kvengine.Store, sync bool, muts ...kvengine.Mutation) {
	t.Helper()
	if err := s.Write(muts, sync); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// Put is the mutation that sets k to v.
func Put(k, v string) kvengine.Mutation {
	return kvengine.Mutation{Key: []byte(k), Value: []byte(v)}
}

// Del is the mutation that deletes k.
func Del(k string) kvengine.Mutation { return kvengine.Mutation{Key: []byte(k), Delete: true} }

// Getter is what WantGet reads: a kvengine.Store or a kvengine.Snapshot.
type Getter interface {
	Get([]byte) ([]byte, bool, error)
}

// WantGet checks that g holds key with value want (absent when want is nil).
func WantGet(t testing.TB, g Getter, key string, want []byte) {
	t.Helper()
	v, ok, err := g.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	switch {
	case want == nil && ok:
		t.Fatalf("Get(%q) = %q, want absent", key, v)
	case want != nil && !ok:
		t.Fatalf("Get(%q) absent, want %q", key, want)
	case want != nil && !bytes.Equal(v, want):
		t.Fatalf("Get(%q) = %q, want %q", key, v, want)
	case want != nil && v == nil:
		t.Fatalf("Get(%q) returned a nil slice for a present key", key)
	}
}

// KV is one entry found by Scan.
type KV struct{ K, V string }

// collect walks a fresh iterator of sn over [lower, upper) and returns the
// entries, copied.
func collect(t testing.TB, sn kvengine.Snapshot, lower, upper []byte, reverse bool) []KV {
	t.Helper()
	it, err := sn.NewIterator(lower, upper, reverse)
	if err != nil {
		t.Fatalf("NewIterator: %v", err)
	}
	defer it.Close()
	var out []KV
	for it.Next() {
		out = append(out, KV{string(it.Key()), string(it.Value())})
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterator: %v", err)
	}
	return out
}

// Scan returns the entries of s in [lower, upper), in descending order when
// reverse is true, read from a fresh snapshot.
func Scan(t testing.TB, s kvengine.Store, lower, upper []byte, reverse bool) []KV {
	t.Helper()
	sn, err := s.NewSnapshot()
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	defer sn.Close()
	return collect(t, sn, lower, upper, reverse)
}

func testStoreGetWriteDelete(t *testing.T, open Opener) {
	steps := []struct {
		name  string
		batch []kvengine.Mutation
		sync  bool
		want  map[string][]byte // nil value: absent
	}{
		{"put", []kvengine.Mutation{Put("a", "1")}, true, map[string][]byte{"a": []byte("1"), "b": nil}},
		{"overwrite", []kvengine.Mutation{Put("a", "2")}, false, map[string][]byte{"a": []byte("2")}},
		{"empty value is a value", []kvengine.Mutation{Put("e", "")}, true, map[string][]byte{"e": {}}},
		{"delete", []kvengine.Mutation{Del("a")}, true, map[string][]byte{"a": nil, "e": {}}},
		{"delete absent", []kvengine.Mutation{Del("nope")}, false, map[string][]byte{"nope": nil}},
		{"binary keys", []kvengine.Mutation{Put("\x00", "zero"), Put("\xff", "ff"), Put("\x00\xff\x00", "mixed")}, true,
			map[string][]byte{"\x00": []byte("zero"), "\xff": []byte("ff"), "\x00\xff\x00": []byte("mixed"), "\x00\xff": nil}},
		{"batch in order: put then delete", []kvengine.Mutation{Put("p", "1"), Del("p")}, true, map[string][]byte{"p": nil}},
		{"batch in order: delete then put", []kvengine.Mutation{Del("q"), Put("q", "2")}, true, map[string][]byte{"q": []byte("2")}},
		{"batch of many", func() []kvengine.Mutation {
			var m []kvengine.Mutation
			for i := range 500 {
				m = append(m, Put(fmt.Sprintf("many/%03d", i), strings.Repeat("v", i)))
			}
			return m
		}(), true, map[string][]byte{"many/000": {}, "many/499": []byte(strings.Repeat("v", 499))}},
		{"empty batch with sync", nil, true, map[string][]byte{"q": []byte("2")}},
	}
	s := openTest(t, open, t.TempDir())
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			MustWrite(t, s, st.sync, st.batch...)
			for k, v := range st.want {
				WantGet(t, s, k, v)
			}
		})
	}
}

func testStoreOwnership(t *testing.T, open Opener) {
	s := openTest(t, open, t.TempDir())
	key, val := []byte("own"), []byte("value")
	MustWrite(t, s, true, kvengine.Mutation{Key: key, Value: val})
	// The store keeps no reference to the slices passed in ...
	key[0], val[0] = 'X', 'X'
	WantGet(t, s, "own", []byte("value"))
	// ... and what it returns is the caller's to modify.
	v, _, _ := s.Get([]byte("own"))
	v[0] = 'Y'
	WantGet(t, s, "own", []byte("value"))
	sn, err := s.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	v, _, _ = sn.Get([]byte("own"))
	v[0] = 'Z'
	WantGet(t, sn, "own", []byte("value"))
	lower := []byte("o")
	it, err := sn.NewIterator(lower, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	lower[0] = 'z' // the bound was copied: the iterator must still see "own"
	if !it.Next() || string(it.Key()) != "own" {
		t.Fatalf("iterator after bound mutation: key %q, err %v", it.Key(), it.Err())
	}
	it.Close()
}

// boundKeys are sorted (byte-wise) and contain 0x00 and 0xFF everywhere.
var boundKeys = []string{
	"\x00", "\x00\x00", "\x00\xff", "\x01", "a", "a\x00", "ab", "a\xff", "b", "\xfe\xff", "\xff", "\xff\x00", "\xff\xff", "\xff\xff\xff",
}

func testIteratorBounds(t *testing.T, open Opener) {
	s := openTest(t, open, t.TempDir())
	var batch []kvengine.Mutation
	for i, k := range boundKeys {
		batch = append(batch, Put(k, fmt.Sprintf("v%d", i)))
	}
	MustWrite(t, s, true, batch...)
	if !slices.IsSorted(boundKeys) {
		t.Fatal("boundKeys must be sorted")
	}
	b := func(s string) []byte { return []byte(s) }
	cases := []struct {
		name         string
		lower, upper []byte
	}{
		{"all", nil, nil},
		{"lower only, existing", b("a"), nil},
		{"lower only, between", b("a\x01"), nil},
		{"lower 0x00", b("\x00"), nil},
		{"lower 0x00 0x00", b("\x00\x00"), nil},
		{"lower above all", b("\xff\xff\xff\xff"), nil},
		{"upper only, existing", nil, b("ab")},
		{"upper only, between", nil, b("a\x01")},
		{"upper 0xff", nil, b("\xff")},
		{"upper 0xff 0xff", nil, b("\xff\xff")},
		{"upper below all", nil, b("\x00")},
		{"both existing", b("\x00\xff"), b("\xff\x00")},
		{"both between", b("\x00\x01"), b("a\x01")},
		{"single key", b("a\x00"), b("a\x00\x00")},
		{"empty range", b("a"), b("a")},
		{"nothing inside", b("ab\x00"), b("a\xff")},
		{"0xff tail", b("\xff"), b("\xff\xff\xff\xff")},
	}
	for _, c := range cases {
		// The model: filter the sorted keys.
		var want []KV
		for i, k := range boundKeys {
			if (c.lower == nil || k >= string(c.lower)) && (c.upper == nil || k < string(c.upper)) {
				want = append(want, KV{k, fmt.Sprintf("v%d", i)})
			}
		}
		for _, reverse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reverse=%v", c.name, reverse), func(t *testing.T) {
				w := slices.Clone(want)
				if reverse {
					slices.Reverse(w)
				}
				got := Scan(t, s, c.lower, c.upper, reverse)
				if !slices.Equal(got, w) {
					t.Fatalf("[%q, %q) reverse=%v:\n got %q\nwant %q", c.lower, c.upper, reverse, got, w)
				}
			})
		}
	}
}

func testIteratorSkipsDeletedAndEmptyValues(t *testing.T, open Opener) {
	s := openTest(t, open, t.TempDir())
	MustWrite(t, s, true, Put("a", "1"), Put("b", ""), Put("c", "3"), Put("d", "4"))
	MustWrite(t, s, true, Del("c"))
	want := []KV{{"a", "1"}, {"b", ""}, {"d", "4"}}
	if got := Scan(t, s, nil, nil, false); !slices.Equal(got, want) {
		t.Fatalf("forward = %q, want %q", got, want)
	}
	slices.Reverse(want)
	if got := Scan(t, s, nil, nil, true); !slices.Equal(got, want) {
		t.Fatalf("reverse = %q, want %q", got, want)
	}
}

func testSnapshotIsolation(t *testing.T, open Opener) {
	s := openTest(t, open, t.TempDir())
	const n = 200
	var batch []kvengine.Mutation
	for i := range n {
		batch = append(batch, Put(fmt.Sprintf("k%04d", i), "old"))
	}
	MustWrite(t, s, true, batch...)
	sn, err := s.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()

	// A writer overwrites, deletes and adds keys while the snapshot is read.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for round := 0; ; round++ {
			select {
			case <-stop:
				return
			default:
			}
			i := round % n
			err := s.Write([]kvengine.Mutation{
				Put(fmt.Sprintf("k%04d", i), fmt.Sprintf("new%d", round)),
				Del(fmt.Sprintf("k%04d", (i+1)%n)),
				Put(fmt.Sprintf("k%04d.new%d", i, round), "added"),
			}, round%10 == 0)
			if err != nil {
				writeErr = err
				return
			}
		}
	}()
	for range 20 {
		got := collect(t, sn, nil, nil, false)
		if len(got) != n {
			t.Errorf("snapshot scan saw %d keys, want %d", len(got), n)
			break
		}
		for i, e := range got {
			if e.K != fmt.Sprintf("k%04d", i) || e.V != "old" {
				t.Fatalf("snapshot scan entry %d = %q, want k%04d=old", i, e, i)
			}
		}
		rev := collect(t, sn, []byte("k0100"), []byte("k0150"), true)
		if len(rev) != 50 || rev[0].K != "k0149" || rev[49].K != "k0100" {
			t.Fatalf("snapshot reverse scan = %d entries (%q...)", len(rev), rev)
		}
		WantGet(t, sn, fmt.Sprintf("k%04d", rand.IntN(n)), []byte("old"))
	}
	close(stop)
	wg.Wait()
	if writeErr != nil {
		t.Fatalf("writer: %v", writeErr)
	}
	// The store itself sees the new state.
	if got := Scan(t, s, nil, nil, false); len(got) == n && got[0].V == "old" && got[1].V == "old" {
		t.Fatalf("the store did not see the writer's changes")
	}
}

func testLargeValues(t *testing.T, open Opener) {
	s := openTest(t, open, t.TempDir())
	sizes := []int{4<<20 + 1, 9 << 20, 20 << 20}
	vals := make(map[string][]byte)
	for _, size := range sizes {
		v := make([]byte, size)
		for i := range v {
			v[i] = byte(i*7 + size)
		}
		k := fmt.Sprintf("big/%d", size)
		vals[k] = v
		MustWrite(t, s, true, kvengine.Mutation{Key: []byte(k), Value: v})
	}
	for k, v := range vals {
		WantGet(t, s, k, v)
	}
	for _, reverse := range []bool{false, true} {
		got := Scan(t, s, []byte("big/"), []byte("big0"), reverse)
		if len(got) != len(sizes) {
			t.Fatalf("scan found %d large values, want %d", len(got), len(sizes))
		}
		for _, e := range got {
			if e.V != string(vals[e.K]) {
				t.Fatalf("scan value of %q differs (%d bytes, want %d)", e.K, len(e.V), len(vals[e.K]))
			}
		}
	}
}

func testReopenKeepsData(t *testing.T, open Opener) {
	dir := t.TempDir()
	s, err := open(t, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	MustWrite(t, s, true, Put("synced", "1"), Put("\x00\xff", "binary"), Put("empty", ""))
	MustWrite(t, s, false, Put("unsynced", "2"))
	MustWrite(t, s, true, Del("empty"), Put("gone", "x"))
	MustWrite(t, s, false, Del("gone"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for round := range 2 {
		s, err = open(t, dir, true)
		if err != nil {
			t.Fatalf("reopen %d: %v", round, err)
		}
		WantGet(t, s, "synced", []byte("1"))
		WantGet(t, s, "\x00\xff", []byte("binary"))
		WantGet(t, s, "unsynced", []byte("2"))
		WantGet(t, s, "empty", nil)
		WantGet(t, s, "gone", nil)
		want := []KV{{"\x00\xff", "binary"}, {"synced", "1"}, {"unsynced", "2"}}
		if got := Scan(t, s, nil, nil, false); !slices.Equal(got, want) {
			t.Fatalf("after reopen: %q, want %q", got, want)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}
func testOpenTwiceFails(t *testing.T, open Opener) {
	dir := t.TempDir()
	s, err := open(t, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := open(t, dir, false)
	if err == nil {
		s2.Close()
		s.Close()
		t.Fatal("a second open of one directory succeeded")
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(strings.ToLower(err.Error()), "lock") {
		t.Errorf("second open error %q should name the directory and its lock", err)
	}
	// The failed open must not disturb the first store.
	MustWrite(t, s, true, Put("still", "works"))
	WantGet(t, s, "still", []byte("works"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = open(t, dir, false)
	if err != nil {
		t.Fatalf("open after the first store closed: %v", err)
	}
	WantGet(t, s, "still", []byte("works"))
	s.Close()
}

func testCloseReleasesEverything(t *testing.T, open Opener) {
	s, err := open(t, t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	MustWrite(t, s, true, Put("a", "1"), Put("b", "2"))
	sn, err := s.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	it, err := sn.NewIterator(nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if !it.Next() {
		t.Fatal("iterator found nothing")
	}
	// Close with a snapshot and an iterator still open: both are released.
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if it.Next() {
		t.Fatal("iterator moved after Close")
	}
	if !errors.Is(it.Err(), engine.ErrClosed) {
		t.Errorf("iterator Err after Close = %v, want ErrClosed", it.Err())
	}
	if _, _, err := sn.Get([]byte("a")); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("snapshot Get after Close = %v, want ErrClosed", err)
	}
	if _, err := sn.NewIterator(nil, nil, true); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("snapshot NewIterator after Close = %v, want ErrClosed", err)
	}
	if _, _, err := s.Get([]byte("a")); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	if err := s.Write([]kvengine.Mutation{Put("c", "3")}, true); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	if _, err := s.NewSnapshot(); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("NewSnapshot after Close = %v, want ErrClosed", err)
	}
	if err := it.Close(); err != nil {
		t.Errorf("iterator Close after store Close: %v", err)
	}
	if err := sn.Close(); err != nil {
		t.Errorf("snapshot Close after store Close: %v", err)
	}
}

func testSnapshotCloseReleasesIterators(t *testing.T, open Opener) {
	s := openTest(t, open, t.TempDir())
	MustWrite(t, s, true, Put("a", "1"))
	sn, err := s.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	it, err := sn.NewIterator(nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if it.Next() {
		t.Fatal("iterator moved after its snapshot closed")
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sn.Close(); err != nil {
		t.Fatalf("second snapshot Close: %v", err)
	}
}

func testConcurrentUse(t *testing.T, open Opener) {
	s := openTest(t, open, t.TempDir())
	const workers, per = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				k := fmt.Sprintf("w%d/%03d", w, i)
				if err := s.Write([]kvengine.Mutation{Put(k, k)}, i%4 == 0); err != nil {
					errs <- err
					return
				}
				v, ok, err := s.Get([]byte(k))
				if err != nil || !ok || string(v) != k {
					errs <- fmt.Errorf("read back %q: %q %v %v", k, v, ok, err)
					return
				}
				if i%20 == 0 {
					sn, err := s.NewSnapshot()
					if err != nil {
						errs <- err
						return
					}
					it, err := sn.NewIterator([]byte(fmt.Sprintf("w%d/", w)), []byte(fmt.Sprintf("w%d0", w)), i%40 == 0)
					if err != nil {
						errs <- err
						return
					}
					n := 0
					for it.Next() {
						n++
					}
					it.Close()
					sn.Close()
					if n != i+1 {
						errs <- fmt.Errorf("worker %d saw %d of its keys, want %d", w, n, i+1)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := Scan(t, s, nil, nil, false); len(got) != workers*per {
		t.Fatalf("found %d keys, want %d", len(got), workers*per)
	}
}
