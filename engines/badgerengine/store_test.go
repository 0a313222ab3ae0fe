package badgerengine

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
)

// openTest opens a store in dir and closes it when the test ends.
func openTest(t testing.TB, dir string) kvengine.Store {
	t.Helper()
	s, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatalf("OpenStore(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustWrite(t testing.TB, s kvengine.Store, sync bool, muts ...kvengine.Mutation) {
	t.Helper()
	if err := s.Write(muts, sync); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func put(k, v string) kvengine.Mutation {
	return kvengine.Mutation{Key: []byte(k), Value: []byte(v)}
}

func del(k string) kvengine.Mutation { return kvengine.Mutation{Key: []byte(k), Delete: true} }

type getter interface {
	Get([]byte) ([]byte, bool, error)
}

// wantGet checks that g holds key with value want (absent when want is nil).
func wantGet(t testing.TB, g getter, key string, want []byte) {
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

type kv struct{ k, v string }

// collect walks a fresh iterator of sn over [lower, upper) and returns the
// entries, copied.
func collect(t testing.TB, sn kvengine.Snapshot, lower, upper []byte, reverse bool) []kv {
	t.Helper()
	it, err := sn.NewIterator(lower, upper, reverse)
	if err != nil {
		t.Fatalf("NewIterator: %v", err)
	}
	defer it.Close()
	var out []kv
	for it.Next() {
		out = append(out, kv{string(it.Key()), string(it.Value())})
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterator: %v", err)
	}
	return out
}

func scanAll(t testing.TB, s kvengine.Store, lower, upper []byte, reverse bool) []kv {
	t.Helper()
	sn, err := s.NewSnapshot()
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	defer sn.Close()
	return collect(t, sn, lower, upper, reverse)
}

func TestStoreGetWriteDelete(t *testing.T) {
	steps := []struct {
		name  string
		batch []kvengine.Mutation
		sync  bool
		want  map[string][]byte // nil value: absent
	}{
		{"put", []kvengine.Mutation{put("a", "1")}, true, map[string][]byte{"a": []byte("1"), "b": nil}},
		{"overwrite", []kvengine.Mutation{put("a", "2")}, false, map[string][]byte{"a": []byte("2")}},
		{"empty value is a value", []kvengine.Mutation{put("e", "")}, true, map[string][]byte{"e": {}}},
		{"delete", []kvengine.Mutation{del("a")}, true, map[string][]byte{"a": nil, "e": {}}},
		{"delete absent", []kvengine.Mutation{del("nope")}, false, map[string][]byte{"nope": nil}},
		{"binary keys", []kvengine.Mutation{put("\x00", "zero"), put("\xff", "ff"), put("\x00\xff\x00", "mixed")}, true,
			map[string][]byte{"\x00": []byte("zero"), "\xff": []byte("ff"), "\x00\xff\x00": []byte("mixed"), "\x00\xff": nil}},
		{"batch in order: put then delete", []kvengine.Mutation{put("p", "1"), del("p")}, true, map[string][]byte{"p": nil}},
		{"batch in order: delete then put", []kvengine.Mutation{del("q"), put("q", "2")}, true, map[string][]byte{"q": []byte("2")}},
		{"batch of many", func() []kvengine.Mutation {
			var m []kvengine.Mutation
			for i := range 500 {
				m = append(m, put(fmt.Sprintf("many/%03d", i), strings.Repeat("v", i)))
			}
			return m
		}(), true, map[string][]byte{"many/000": {}, "many/499": []byte(strings.Repeat("v", 499))}},
		{"empty batch with sync", nil, true, map[string][]byte{"q": []byte("2")}},
	}
	s := openTest(t, t.TempDir())
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			mustWrite(t, s, st.sync, st.batch...)
			for k, v := range st.want {
				wantGet(t, s, k, v)
			}
		})
	}
}

func TestStoreOwnership(t *testing.T) {
	s := openTest(t, t.TempDir())
	key, val := []byte("own"), []byte("value")
	mustWrite(t, s, true, kvengine.Mutation{Key: key, Value: val})
	// The store keeps no reference to the slices passed in ...
	key[0], val[0] = 'X', 'X'
	wantGet(t, s, "own", []byte("value"))
	// ... and what it returns is the caller's to modify.
	v, _, _ := s.Get([]byte("own"))
	v[0] = 'Y'
	wantGet(t, s, "own", []byte("value"))
	sn, err := s.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	v, _, _ = sn.Get([]byte("own"))
	v[0] = 'Z'
	wantGet(t, sn, "own", []byte("value"))
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

func TestIteratorBounds(t *testing.T) {
	s := openTest(t, t.TempDir())
	var batch []kvengine.Mutation
	for i, k := range boundKeys {
		batch = append(batch, put(k, fmt.Sprintf("v%d", i)))
	}
	mustWrite(t, s, true, batch...)
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
		var want []kv
		for i, k := range boundKeys {
			if (c.lower == nil || k >= string(c.lower)) && (c.upper == nil || k < string(c.upper)) {
				want = append(want, kv{k, fmt.Sprintf("v%d", i)})
			}
		}
		for _, reverse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reverse=%v", c.name, reverse), func(t *testing.T) {
				w := slices.Clone(want)
				if reverse {
					slices.Reverse(w)
				}
				got := scanAll(t, s, c.lower, c.upper, reverse)
				if !slices.Equal(got, w) {
					t.Fatalf("[%q, %q) reverse=%v:\n got %q\nwant %q", c.lower, c.upper, reverse, got, w)
				}
			})
		}
	}
}

func TestIteratorSkipsDeletedAndEmptyValues(t *testing.T) {
	s := openTest(t, t.TempDir())
	mustWrite(t, s, true, put("a", "1"), put("b", ""), put("c", "3"), put("d", "4"))
	mustWrite(t, s, true, del("c"))
	want := []kv{{"a", "1"}, {"b", ""}, {"d", "4"}}
	if got := scanAll(t, s, nil, nil, false); !slices.Equal(got, want) {
		t.Fatalf("forward = %q, want %q", got, want)
	}
	slices.Reverse(want)
	if got := scanAll(t, s, nil, nil, true); !slices.Equal(got, want) {
		t.Fatalf("reverse = %q, want %q", got, want)
	}
}

func TestSnapshotIsolation(t *testing.T) {
	s := openTest(t, t.TempDir())
	const n = 200
	var batch []kvengine.Mutation
	for i := range n {
		batch = append(batch, put(fmt.Sprintf("k%04d", i), "old"))
	}
	mustWrite(t, s, true, batch...)
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
				put(fmt.Sprintf("k%04d", i), fmt.Sprintf("new%d", round)),
				del(fmt.Sprintf("k%04d", (i+1)%n)),
				put(fmt.Sprintf("k%04d.new%d", i, round), "added"),
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
			if e.k != fmt.Sprintf("k%04d", i) || e.v != "old" {
				t.Fatalf("snapshot scan entry %d = %q, want k%04d=old", i, e, i)
			}
		}
		rev := collect(t, sn, []byte("k0100"), []byte("k0150"), true)
		if len(rev) != 50 || rev[0].k != "k0149" || rev[49].k != "k0100" {
			t.Fatalf("snapshot reverse scan = %d entries (%q...)", len(rev), rev)
		}
		wantGet(t, sn, fmt.Sprintf("k%04d", rand.IntN(n)), []byte("old"))
	}
	close(stop)
	wg.Wait()
	if writeErr != nil {
		t.Fatalf("writer: %v", writeErr)
	}
	// The store itself sees the new state.
	if got := scanAll(t, s, nil, nil, false); len(got) == n && got[0].v == "old" && got[1].v == "old" {
		t.Fatalf("the store did not see the writer's changes")
	}
}

func TestLargeValues(t *testing.T) {
	s := openTest(t, t.TempDir())
	sizes := []int{4<<20 + 1, 9 << 20, 20 << 20}
	vals := make(map[string][]byte)
	for _, size := range sizes {
		v := make([]byte, size)
		for i := range v {
			v[i] = byte(i*7 + size)
		}
		k := fmt.Sprintf("big/%d", size)
		vals[k] = v
		mustWrite(t, s, true, kvengine.Mutation{Key: []byte(k), Value: v})
	}
	for k, v := range vals {
		wantGet(t, s, k, v)
	}
	for _, reverse := range []bool{false, true} {
		got := scanAll(t, s, []byte("big/"), []byte("big0"), reverse)
		if len(got) != len(sizes) {
			t.Fatalf("scan found %d large values, want %d", len(got), len(sizes))
		}
		for _, e := range got {
			if e.v != string(vals[e.k]) {
				t.Fatalf("scan value of %q differs (%d bytes, want %d)", e.k, len(e.v), len(vals[e.k]))
			}
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, true, put("synced", "1"), put("\x00\xff", "binary"), put("empty", ""))
	mustWrite(t, s, false, put("unsynced", "2"))
	mustWrite(t, s, true, del("empty"), put("gone", "x"))
	mustWrite(t, s, false, del("gone"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for round := range 2 {
		s, err = OpenStore(dir, &Options{ErrorIfNotExists: true})
		if err != nil {
			t.Fatalf("reopen %d: %v", round, err)
		}
		wantGet(t, s, "synced", []byte("1"))
		wantGet(t, s, "\x00\xff", []byte("binary"))
		wantGet(t, s, "unsynced", []byte("2"))
		wantGet(t, s, "empty", nil)
		wantGet(t, s, "gone", nil)
		want := []kv{{"\x00\xff", "binary"}, {"synced", "1"}, {"unsynced", "2"}}
		if got := scanAll(t, s, nil, nil, false); !slices.Equal(got, want) {
			t.Fatalf("after reopen: %q, want %q", got, want)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

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
		{"bad option", filepath.Join(base, "x"), &Options{NumCompactors: 1}, engine.ErrInvalidArgument, "NumCompactors"},
		{"bad value log", filepath.Join(base, "y"), &Options{ValueLogFileSize: 1 << 20}, engine.ErrInvalidArgument, "ValueLogFileSize"},
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

func TestOpenTwiceFails(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := OpenStore(dir, nil)
	if err == nil {
		s2.Close()
		s.Close()
		t.Fatal("a second OpenStore of one directory succeeded")
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(strings.ToLower(err.Error()), "lock") {
		t.Errorf("second open error %q should name the directory and its lock", err)
	}
	// The failed open must not disturb the first store.
	mustWrite(t, s, true, put("still", "works"))
	wantGet(t, s, "still", []byte("works"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenStore(dir, nil)
	if err != nil {
		t.Fatalf("open after the first store closed: %v", err)
	}
	wantGet(t, s, "still", []byte("works"))
	s.Close()
}

func TestCloseReleasesEverything(t *testing.T) {
	s, err := OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, true, put("a", "1"), put("b", "2"))
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
	if err := s.Write([]kvengine.Mutation{put("c", "3")}, true); !errors.Is(err, engine.ErrClosed) {
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

func TestSnapshotCloseReleasesIterators(t *testing.T) {
	s := openTest(t, t.TempDir())
	mustWrite(t, s, true, put("a", "1"))
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

func TestConcurrentUse(t *testing.T) {
	s := openTest(t, t.TempDir())
	const workers, per = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				k := fmt.Sprintf("w%d/%03d", w, i)
				if err := s.Write([]kvengine.Mutation{put(k, k)}, i%4 == 0); err != nil {
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
	if got := scanAll(t, s, nil, nil, false); len(got) != workers*per {
		t.Fatalf("found %d keys, want %d", len(got), workers*per)
	}
}
