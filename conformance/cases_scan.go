package conformance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flaredb/flaredb/core/engine"
)

// model is the expected content of an engine: key to state.
type model map[string]state

// scan returns what a scan with opts must yield over m.
func (m model) scan(opts engine.ScanOptions) []engine.Entry {
	var ks []string
	for k, s := range m {
		if s.version == 0 {
			continue
		}
		if len(opts.Start) > 0 && k < string(opts.Start) {
			continue
		}
		if len(opts.End) > 0 && k >= string(opts.End) {
			continue
		}
		ks = append(ks, k)
	}
	slices.Sort(ks)
	if opts.Reverse {
		slices.Reverse(ks)
	}
	if opts.Limit > 0 && len(ks) > opts.Limit {
		ks = ks[:opts.Limit]
	}
	out := make([]engine.Entry, len(ks))
	for i, k := range ks {
		out[i] = engine.Entry{Key: []byte(k), Version: m[k].version}
		if !opts.KeysOnly {
			out[i].Value = m[k].value
		}
	}
	return out
}

// fill writes the given keys with values "val-<key>" and fresh versions,
// in shuffled order (one call per key) so that version order differs from
// key order, and returns the model.
func (h *Harness) fill(e engine.Engine, ks []string) model {
	h.t.Helper()
	m := model{}
	order := slices.Clone(ks)
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for _, k := range order {
		v := h.Put(e, []byte(k), []byte("val-"+k))
		m[k] = present("val-"+k, v)
	}
	return m
}

// scanTable checks every combination of bounds, direction, limit and
// keys-only over m against e.
func scanTable(t T, h *Harness, e engine.Engine, m model, bounds [][2][]byte) {
	for _, b := range bounds {
		for _, rev := range []bool{false, true} {
			for _, limit := range []int{0, 1, 2, 3, 100} {
				for _, ko := range []bool{false, true} {
					opts := engine.ScanOptions{Start: b[0], End: b[1], Reverse: rev, Limit: limit, KeysOnly: ko}
					got := h.MustScan(e, opts)
					checkEntries(t, "Scan("+fmtScan(opts)+")", got, m.scan(opts), ko)
				}
			}
		}
	}
}

var errStop = errors.New("conformance: callback stops the scan")

func scanCases() []Case {
	base := []string{"a", "aa", "ab", "b", "b\x00", "ba", "c", "d", "e", "f"}
	bs := func(s string) []byte { return []byte(s) }
	return []Case{
		{Name: "scan/order", Run: func(t T, h *Harness) {
			e := h.Open()
			checkEntries(t, "scan of an empty engine", h.MustScan(e, engine.ScanOptions{}), nil, false)
			checkEntries(t, "reverse scan of an empty engine", h.MustScan(e, engine.ScanOptions{Reverse: true}), nil, false)
			var ks []string
			for i := 0; i < 100; i++ {
				ks = append(ks, fmt.Sprintf("k%03d", (i*37)%100))
			}
			m := h.fill(e, ks)
			fwd := m.scan(engine.ScanOptions{})
			checkEntries(t, "forward scan", h.MustScan(e, engine.ScanOptions{}), fwd, false)
			checkEntries(t, "reverse scan", h.MustScan(e, engine.ScanOptions{Reverse: true}), m.scan(engine.ScanOptions{Reverse: true}), false)
			// Deletes and overwrites keep the order.
			for i := 0; i < 100; i += 3 {
				k := fmt.Sprintf("k%03d", i)
				h.Delete(e, bs(k))
				delete(m, k)
			}
			for i := 1; i < 100; i += 5 {
				k := fmt.Sprintf("k%03d", i)
				if _, ok := m[k]; ok {
					v := h.Put(e, bs(k), bs("new"))
					m[k] = present("new", v)
				}
			}
			checkEntries(t, "forward scan after deletes", h.MustScan(e, engine.ScanOptions{}), m.scan(engine.ScanOptions{}), false)
			checkEntries(t, "reverse scan after deletes", h.MustScan(e, engine.ScanOptions{Reverse: true}), m.scan(engine.ScanOptions{Reverse: true}), false)
		}},

		{Name: "scan/bounds", Run: func(t T, h *Harness) {
			e := h.Open()
			m := h.fill(e, base)
			scanTable(t, h, e, m, [][2][]byte{
				{nil, nil},
				{{}, {}},
				{bs("b"), nil},
				{nil, bs("b")},
				{bs("b"), bs("c")},
				{bs("aa"), bs("ba")},
				{bs("a0"), bs("b\x00")},
				{bs("a0"), bs("b\x00\x00")},
				{bs("ab"), bs("ab\x00")},
				{bs("0"), bs("z")},
				{bs("z"), nil},
				{nil, bs("0")},
				{{}, bs("c")},
				{bs("c"), {}},
				{bs("f"), bs("g")},
				{bs("ea"), bs("f")},
			})
		}},

		{Name: "scan/binary-bounds", Run: func(t T, h *Harness) {
			e := h.Open()
			m := h.fill(e, []string{"\x00", "\x00\x00", "\x00\xff", "\x01", "a", "a\x00", "a\xff", "\xfe", "\xff", "\xff\x00", "\xff\xff"})
			scanTable(t, h, e, m, [][2][]byte{
				{nil, nil},
				{{0x00}, nil},
				{{0x00, 0x00}, nil},
				{{0x00}, {0x00, 0x00}},
				{{0x00}, {0x00, 0x01}},
				{nil, {0x00}},
				{nil, {0x00, 0x00}},
				{nil, {0xFF}},
				{nil, {0xFF, 0xFF}},
				{{0xFF}, nil},
				{{0xFF}, {0xFF, 0xFF}},
				{{0xFF, 0xFF}, nil},
				{{0xFF, 0xFF, 0xFF}, nil},
				{bs("a\x00"), bs("a\xff")},
				{bs("a"), bs("a\x00")},
				{{0x01}, {0xFE}},
			})
		}},

		{Name: "scan/empty-range", Run: func(t T, h *Harness) {
			e := h.Open()
			h.fill(e, base)
			for _, k := range []string{"b", "bz", "\x00", "\xff"} {
				for _, rev := range []bool{false, true} {
					opts := engine.ScanOptions{Start: bs(k), End: bs(k), Reverse: rev}
					calls := 0
					err := e.Scan(h.Context(), opts, func(engine.Entry) error { calls++; return nil })
					if err != nil {
						t.Errorf("Scan(%s): %v; an equal pair is an empty range", fmtScan(opts), err)
					}
					if calls != 0 {
						t.Errorf("Scan(%s): %d entries, want none", fmtScan(opts), calls)
					}
				}
			}
		}},

		{Name: "scan/invalid", Run: func(t T, h *Harness) {
			e := h.Open()
			h.fill(e, base)
			for _, opts := range []engine.ScanOptions{
				{Start: bs("c"), End: bs("b")},
				{Start: bs("b\x00"), End: bs("b")},
				{Start: []byte{0xFF}, End: []byte{0x00}},
				{Start: bs("c"), End: bs("b"), Reverse: true},
				{Limit: -1},
				{Start: bs("a"), End: bs("b"), Limit: -5, Reverse: true},
			} {
				calls := 0
				err := e.Scan(h.Context(), opts, func(engine.Entry) error { calls++; return nil })
				checkErr(t, "Scan("+fmtScan(opts)+")", err, engine.ErrInvalidArgument)
				if calls != 0 {
					t.Errorf("Scan(%s): callback called %d times for an invalid scan", fmtScan(opts), calls)
				}
			}
		}},

		{Name: "scan/callback-error", Run: func(t T, h *Harness) {
			e := h.Open()
			m := h.fill(e, base)
			for _, rev := range []bool{false, true} {
				for _, stopAt := range []int{1, 3, len(base)} {
					opts := engine.ScanOptions{Reverse: rev}
					var got []engine.Entry
					err := e.Scan(h.Context(), opts, func(en engine.Entry) error {
						got = append(got, en)
						if len(got) == stopAt {
							return errStop
						}
						return nil
					})
					what := fmt.Sprintf("Scan(%s) with the callback failing at entry %d", fmtScan(opts), stopAt)
					if !errors.Is(err, errStop) {
						t.Errorf("%s: returned %v, want the callback's error", what, err)
					} else if err != errStop {
						t.Errorf("%s: returned %q, want the callback's error unwrapped", what, err)
					}
					want := m.scan(opts)[:stopAt]
					checkEntries(t, what, got, want, false)
				}
			}
		}},

		{Name: "scan/snapshot-isolation", Run: func(t T, h *Harness) {
			e := h.Open()
			var ks []string
			for i := 0; i < 20; i++ {
				ks = append(ks, fmt.Sprintf("k%02d", i))
			}
			for _, rev := range []bool{false, true} {
				m := h.fill(e, ks)
				want := m.scan(engine.ScanOptions{Reverse: rev})
				// Once the scan has started, another goroutine changes
				// keys on both sides of the scan's position; the scan
				// must not see any of it.
				newM := model{}
				for k, s := range m {
					newM[k] = s
				}
				var writes []engine.Write
				for i, k := range []string{"k00", "k05", "k10", "k19"} {
					if i%2 == 0 {
						writes = append(writes, del(k))
						delete(newM, k)
					} else {
						v := h.NextVersion()
						writes = append(writes, put(k, "changed", v))
						newM[k] = present("changed", v)
					}
				}
				for _, k := range []string{"k00a", "k09a", "k19a", "a", "z"} {
					v := h.NextVersion()
					writes = append(writes, put(k, "inserted", v))
					newM[k] = present("inserted", v)
				}
				var got []engine.Entry
				var once sync.Once
				started := false
				done := make(chan error, 1)
				err := e.Scan(h.Context(), engine.ScanOptions{Reverse: rev}, func(en engine.Entry) error {
					got = append(got, en)
					once.Do(func() {
						started = true
						go func() {
							var err error
							for _, w := range writes { // one call each, so each is its own commit
								if _, err = e.Apply(h.Context(), []engine.Write{w}, independent); err != nil {
									break
								}
							}
							done <- err
						}()
						// Give the writes a chance to land while the scan is
						// open; an engine may also make them wait for it.
						select {
						case err := <-done:
							done <- err
						case <-time.After(time.Second):
						}
					})
					return nil
				})
				if err != nil {
					t.Fatalf("Scan: %v", err)
				}
				if !started {
					t.Fatalf("Scan of %d keys returned no entry", len(ks))
				}
				if werr := <-done; werr != nil {
					t.Fatalf("writes during the scan: %v", werr)
				}
				checkEntries(t, fmt.Sprintf("scan (reverse=%v) while writes happen", rev), got, want, false)
				checkEntries(t, fmt.Sprintf("scan (reverse=%v) after the writes", rev), h.MustScan(e, engine.ScanOptions{Reverse: rev}), newM.scan(engine.ScanOptions{Reverse: rev}), false)
				// Clear for the next round.
				var clear []engine.Write
				for k := range newM {
					clear = append(clear, del(k))
				}
				h.applyAll(e, independent, clear)
			}
		}},

		{Name: "scan/snapshot-under-writes", Run: func(t T, h *Harness) {
			runTotalInvariant(t, h)
		}},
	}
}

// runTotalInvariant runs writers that move amounts between accounts with
// atomic groups, so the total never changes, while scanners and readers
// check that every scan and every multi-key Read sees that total.
func runTotalInvariant(t T, h *Harness) {
	e := h.Open()
	const (
		numWriters  = 4
		perWriter   = 4 // accounts owned by each writer
		moves       = 60
		initial     = 100
		numScanners = 2
		maxScans    = 100000
	)
	numAccounts := numWriters * perWriter
	total := numAccounts * initial
	acct := func(i int) []byte { return []byte(fmt.Sprintf("acct/%03d", i)) }
	var setup []engine.Write
	var all [][]byte
	for i := 0; i < numAccounts; i++ {
		setup = append(setup, engine.Write{Kind: engine.OpPut, Key: acct(i), Value: []byte(strconv.Itoa(initial)), Version: h.NextVersion()})
		all = append(all, acct(i))
	}
	// The writers' groups are of two writes; the setup goes in as few
	// calls as the limits allow.
	h.SkipUnlessFits(engine.Limits{MaxWrites: 2})
	h.applyAll(e, independent, setup)

	sum := func(entries []engine.Entry) (int, error) {
		s := 0
		for _, en := range entries {
			if en.Version == 0 {
				continue
			}
			n, err := strconv.Atoi(string(en.Value))
			if err != nil {
				return 0, fmt.Errorf("key %s holds %s, not a number", fmtKey(en.Key), fmtBytes(en.Value))
			}
			s += n
		}
		return s, nil
	}

	ctx := h.Context()
	var writersDone atomic.Bool
	var scans atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer writersDone.Store(true)
		workers(t, numWriters, func(w int) {
			// Writer w owns accounts w, w+numWriters, ...; nobody else
			// writes them, so its view of their state is exact.
			r := rand.New(rand.NewPCG(uint64(w), 99))
			bal := make([]int, perWriter)
			ver := make([]uint64, perWriter)
			cur, err := e.Read(ctx, func() [][]byte {
				var ks [][]byte
				for j := 0; j < perWriter; j++ {
					ks = append(ks, acct(w+j*numWriters))
				}
				return ks
			}())
			if err != nil {
				t.Errorf("writer %d: Read: %v", w, err)
				return
			}
			for j := range bal {
				bal[j] = initial
				ver[j] = cur[j].Version
			}
			opts := engine.ApplyOptions{Atomic: true, NoSync: w%2 == 1}
			for m := 0; m < moves; m++ {
				a, b := r.IntN(perWriter), r.IntN(perWriter-1)
				if b >= a {
					b++ // so b != a
				}
				ka, kb := acct(w+a*numWriters), acct(w+b*numWriters)
				amount := r.IntN(50)
				condA := ifVersion(ver[a])
				condB := ifVersion(ver[b])
				var writes []engine.Write
				va, vb := h.NextVersion(), h.NextVersion()
				if m%7 == 3 {
					// Move everything and delete the emptied account.
					amount = bal[a]
					writes = []engine.Write{
						{Kind: engine.OpDelete, Key: ka, Cond: condA},
						{Kind: engine.OpPut, Key: kb, Value: []byte(strconv.Itoa(bal[b] + amount)), Version: vb, Cond: condB},
					}
					va = 0
				} else {
					writes = []engine.Write{
						{Kind: engine.OpPut, Key: ka, Value: []byte(strconv.Itoa(bal[a] - amount)), Version: va, Cond: condA},
						{Kind: engine.OpPut, Key: kb, Value: []byte(strconv.Itoa(bal[b] + amount)), Version: vb, Cond: condB},
					}
				}
				res, err := e.Apply(ctx, writes, opts)
				if err != nil {
					t.Errorf("writer %d: Apply(%s): %v", w, fmtWrites(writes), err)
					return
				}
				if len(res) != 2 || !res[0].Applied || !res[1].Applied {
					t.Errorf("writer %d: Apply(%s): results %v, want both applied (only this writer writes these keys)", w, fmtWrites(writes), res)
					return
				}
				bal[a] -= amount
				bal[b] += amount
				ver[a], ver[b] = va, vb
			}
		})
	}()

	workers(t, numScanners+1, func(s int) {
		for i := 0; i < maxScans; i++ {
			last := writersDone.Load() // one more pass after the writers finish
			var entries []engine.Entry
			var err error
			what := ""
			switch {
			case s == numScanners:
				what = "Read of every account"
				entries, err = e.Read(ctx, all)
			default:
				opts := engine.ScanOptions{Start: []byte("acct/"), End: []byte("acct0"), Reverse: (i+s)%2 == 1}
				what = "Scan(" + fmtScan(opts) + ")"
				err = e.Scan(ctx, opts, func(en engine.Entry) error {
					entries = append(entries, en)
					return nil
				})
			}
			if err != nil {
				t.Errorf("%s: %v", what, err)
				return
			}
			got, err := sum(entries)
			if err != nil {
				t.Errorf("%s: %v", what, err)
				return
			}
			scans.Add(1)
			if got != total {
				t.Errorf("%s saw a total of %d, want %d: not one consistent point in time", what, got, total)
				return
			}
			if last {
				return
			}
		}
	})
	wg.Wait()
	t.Logf("%d scans and reads checked the total", scans.Load())
	// The final state still adds up.
	final := h.MustScan(e, engine.ScanOptions{})
	if got, err := sum(final); err != nil || got != total {
		t.Errorf("final total %d (%v), want %d", got, err, total)
	}
}
