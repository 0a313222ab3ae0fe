package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flaredb/flaredb/core/engine"
)

// expectModel checks that e holds exactly m: every key of m reads as its
// state, and a full scan yields exactly the present keys of m.
func (h *Harness) expectModel(e engine.Engine, what string, m model) {
	h.t.Helper()
	var ks [][]byte
	var want []state
	for k, s := range m {
		ks = append(ks, []byte(k))
		want = append(want, s)
	}
	h.expectStates(e, what, ks, want)
	checkEntries(h.t, what+": full scan", h.MustScan(e, engine.ScanOptions{}), m.scan(engine.ScanOptions{}), false)
}

func durabilityCases() []Case {
	return []Case{
		{Name: "durability/reopen", Run: func(t T, h *Harness) {
			h.SkipUnlessPersistent()
			e := h.Open()
			m := model{}
			putM := func(k, v string, opts engine.ApplyOptions) {
				ver := h.NextVersion()
				h.MustApply(e, opts, put(k, v, ver))
				m[k] = present(v, ver)
			}
			putM("plain", "one", independent)
			putM("empty", "", independent)
			putM("\x00\xff", "binary", independent)
			putM("over", "old", independent)
			putM("over", "new", independent)
			putM("gone", "x", independent)
			h.MustApply(e, independent, del("gone"))
			m["gone"] = absent
			putM("recreated", "first", independent)
			h.MustApply(e, independent, del("recreated"))
			putM("recreated", "second", independent)
			putM("nosync", "ns", engine.ApplyOptions{NoSync: true})
			g1, g2 := h.NextVersion(), h.NextVersion()
			h.MustApply(e, atomicOpts, put("group1", "g1", g1), putIf("group2", "g2", g2, ifAbsent), del("group3"))
			m["group1"], m["group2"], m["group3"] = present("g1", g1), present("g2", g2), absent
			// A failed CAS and a failed group change nothing.
			h.MustApply(e, independent, putIf("plain", "no", h.NextVersion(), ifVersion(1)))
			h.MustApply(e, atomicOpts, put("never", "no", h.NextVersion()), check("plain", ifAbsent))
			m["never"] = absent
			if l := h.Description.Limits; (l.MaxValueSize == 0 || l.MaxValueSize >= 1<<20) && (l.MaxBatchSize == 0 || l.MaxBatchSize > 1<<20+3) {
				big := pattern(1<<20, 7)
				v := h.Put(e, []byte("big"), big)
				m["big"] = state{value: big, version: v}
			}
			var many []engine.Write
			for i := 0; i < 300; i++ {
				k := fmt.Sprintf("many/%03d", i)
				v := h.NextVersion()
				many = append(many, put(k, k, v))
				m[k] = present(k, v)
			}
			h.applyAll(e, independent, many)

			e = h.Reopen(e)
			h.expectModel(e, "after reopening", m)

			// Versions survive too: the stored version still rejects an
			// equal one, and still satisfies a CAS.
			_, err := e.Apply(h.Context(), []engine.Write{put("over", "x", m["over"].version)}, independent)
			checkErr(t, "put at the stored version after reopening", err, engine.ErrInvalidArgument)
			r := h.MustApply(e, independent, check("over", ifVersion(m["over"].version)))
			checkResult(t, "CAS on the stored version after reopening", r[0], true, m["over"])

			// Change some more and reopen again.
			putM("over", "newer", independent)
			h.MustApply(e, independent, del("plain"))
			m["plain"] = absent
			putM("gone", "back", engine.ApplyOptions{NoSync: true})
			e = h.Reopen(e)
			h.expectModel(e, "after reopening twice", m)
		}},

		{Name: "durability/nosync-clean-close", Run: func(t T, h *Harness) {
			h.SkipUnlessPersistent()
			e := h.Open()
			m := model{}
			ns := engine.ApplyOptions{NoSync: true}
			var batch []engine.Write
			for i := 0; i < 50; i++ {
				k := fmt.Sprintf("k%02d", i)
				v := h.NextVersion()
				batch = append(batch, put(k, "v"+k, v))
				m[k] = present("v"+k, v)
			}
			h.applyAll(e, ns, batch)
			for i := 0; i < 50; i += 5 {
				k := fmt.Sprintf("k%02d", i)
				h.MustApply(e, ns, del(k))
				m[k] = absent
			}
			v1, v2 := h.NextVersion(), h.NextVersion()
			h.MustApply(e, engine.ApplyOptions{Atomic: true, NoSync: true}, put("k01", "atomic", v1), put("new", "atomic", v2))
			m["k01"], m["new"] = present("atomic", v1), present("atomic", v2)
			e = h.Reopen(e)
			h.expectModel(e, "NoSync writes after a clean close", m)
		}},
	}
}

func closedCases() []Case {
	return []Case{
		{Name: "closed/errors", Run: func(t T, h *Harness) {
			e := h.Open()
			h.Put(e, []byte("k"), []byte("v"))
			h.Close(e)
			ctx := h.Context()
			_, err := e.Read(ctx, keys("k"))
			checkErr(t, "Read after Close", err, engine.ErrClosed)
			_, err = e.Read(ctx, keys("k", "other"))
			checkErr(t, "Read of two keys after Close", err, engine.ErrClosed)
			for _, opts := range []engine.ApplyOptions{independent, atomicOpts, {NoSync: true}} {
				for _, w := range []engine.Write{put("k", "x", h.NextVersion()), del("k"), check("k", ifExists)} {
					_, err = e.Apply(ctx, []engine.Write{w}, opts)
					checkErr(t, fmt.Sprintf("Apply(%s, %s) after Close", fmtWrite(w), modeName(opts)), err, engine.ErrClosed)
				}
			}
			for _, opts := range []engine.ScanOptions{{}, {Reverse: true}, {Start: []byte("a"), End: []byte("z"), Limit: 1}} {
				calls := 0
				err = e.Scan(ctx, opts, func(engine.Entry) error { calls++; return nil })
				checkErr(t, "Scan("+fmtScan(opts)+") after Close", err, engine.ErrClosed)
				if calls != 0 {
					t.Errorf("Scan after Close called the callback %d times", calls)
				}
			}
		}},

		{Name: "closed/close-twice", Run: func(t T, h *Harness) {
			e := h.Open()
			h.Put(e, []byte("k"), []byte("v"))
			for i := 1; i <= 3; i++ {
				if err := e.Close(); err != nil {
					t.Errorf("Close call %d: %v, want nil", i, err)
				}
			}
		}},

		{Name: "closed/describe", Run: func(t T, h *Harness) {
			e := h.Open()
			before := e.Describe()
			h.Close(e)
			if after := e.Describe(); after != before {
				t.Errorf("Describe after Close = %+v, before Close it was %+v", after, before)
			}
		}},

		{Name: "closed/during-use", Run: func(t T, h *Harness) {
			e := h.Open()
			const (
				goroutines = 4
				maxOps     = 100000
				warmup     = 10 // successful ops per goroutine before Close
			)
			type ack struct {
				value   string
				version uint64
			}
			var mu sync.Mutex
			acked := map[string]ack{} // last acknowledged put per key
			var closeReturned atomic.Bool
			var started sync.WaitGroup
			started.Add(goroutines)
			ctx := h.Context()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				workers(t, goroutines, func(g int) {
					signalled := false
					signal := func() {
						if !signalled {
							signalled = true
							started.Done()
						}
					}
					defer signal()
					for i := 0; i < maxOps; i++ {
						if i == warmup {
							signal()
						}
						after := closeReturned.Load()
						k := fmt.Sprintf("g%d/%d", g, i%5)
						var err error
						switch i % 3 {
						case 0:
							v := h.NextVersion()
							val := fmt.Sprintf("%d", i)
							var res []engine.Result
							res, err = e.Apply(ctx, []engine.Write{put(k, val, v)}, engine.ApplyOptions{NoSync: g%2 == 0})
							if err == nil {
								if len(res) != 1 || !res[0].Applied {
									t.Errorf("goroutine %d: put not applied: %v", g, res)
									return
								}
								mu.Lock()
								acked[k] = ack{val, v}
								mu.Unlock()
							}
						case 1:
							_, err = e.Read(ctx, keys(k, "other"))
						case 2:
							err = e.Scan(ctx, engine.ScanOptions{Limit: 10}, func(engine.Entry) error { return nil })
						}
						switch {
						case err == nil && after:
							t.Errorf("goroutine %d: a call that started after Close returned succeeded", g)
							return
						case errors.Is(err, engine.ErrClosed):
							return
						case err != nil:
							t.Errorf("goroutine %d: %v (want nil, or ErrClosed once Close has begun)", g, err)
							return
						}
					}
					t.Errorf("goroutine %d: %d calls and no ErrClosed", g, maxOps)
				})
			}()
			started.Wait()
			if err := e.Close(); err != nil {
				t.Errorf("Close while calls are in progress: %v", err)
			}
			closeReturned.Store(true)
			wg.Wait()
			if t.Failed() || !h.Description.Capabilities.Persistent {
				return
			}
			// Every write acknowledged before Close survives it.
			e = h.Reopen(e)
			m := model{}
			for k, a := range acked {
				m[k] = present(a.value, a.version)
			}
			h.expectModel(e, "writes acknowledged while Close was called", m)
		}},
	}
}

func contextCases() []Case {
	return []Case{
		{Name: "context/done-before-call", Run: func(t T, h *Harness) {
			e := h.Open()
			h.Put(e, []byte("a"), []byte("A"))
			h.Put(e, []byte("b"), []byte("B"))
			before := h.MustRead(e, keys("a", "b", "c")...)
			canceled, cancel := context.WithCancel(h.Context())
			cancel()
			expired, cancel2 := context.WithDeadline(h.Context(), time.Now().Add(-time.Hour))
			defer cancel2()
			for _, c := range []struct {
				name string
				ctx  context.Context
				want error
			}{
				{"cancelled context", canceled, context.Canceled},
				{"expired deadline", expired, context.DeadlineExceeded},
			} {
				_, err := e.Read(c.ctx, keys("a"))
				checkErr(t, "Read with a "+c.name, err, c.want)
				_, err = e.Read(c.ctx, keys("a", "b"))
				checkErr(t, "Read of two keys with a "+c.name, err, c.want)
				for _, opts := range []engine.ApplyOptions{independent, atomicOpts, {NoSync: true}} {
					ws := []engine.Write{put("a", "x", h.NextVersion()), del("b"), put("c", "C", h.NextVersion())}
					_, err = e.Apply(c.ctx, ws, opts)
					checkErr(t, fmt.Sprintf("Apply (%s) with a %s", modeName(opts), c.name), err, c.want)
				}
				calls := 0
				err = e.Scan(c.ctx, engine.ScanOptions{}, func(engine.Entry) error { calls++; return nil })
				checkErr(t, "Scan with a "+c.name, err, c.want)
				if calls != 0 {
					t.Errorf("Scan with a %s called the callback %d times", c.name, calls)
				}
			}
			h.expectUnchanged(e, "after calls with a done context", keys("a", "b", "c"), before)
		}},

		{Name: "context/cancel-during-scan", Run: func(t T, h *Harness) {
			e := h.Open()
			const n = 1000
			var ws []engine.Write
			for i := 0; i < n; i++ {
				ws = append(ws, put(fmt.Sprintf("k%04d", i), "v", h.NextVersion()))
			}
			h.applyAll(e, engine.ApplyOptions{NoSync: true}, ws)
			for _, rev := range []bool{false, true} {
				ctx, cancel := context.WithCancel(h.Context())
				calls := 0
				err := e.Scan(ctx, engine.ScanOptions{Reverse: rev}, func(engine.Entry) error {
					calls++
					if calls == 1 {
						cancel()
					}
					return nil
				})
				cancel()
				checkErr(t, fmt.Sprintf("Scan of %d keys (reverse=%v) cancelled at the first entry", n, rev), err, context.Canceled)
				if calls >= n {
					t.Errorf("Scan (reverse=%v) cancelled at the first entry went on to visit all %d entries", rev, calls)
				}
			}
		}},
	}
}

func ownershipCases() []Case {
	scribble := func(b []byte) {
		for i := range b {
			b[i] = 'X'
		}
	}
	return []Case{
		{Name: "ownership/apply-inputs", Run: func(t T, h *Harness) {
			e := h.Open()
			for _, opts := range []engine.ApplyOptions{independent, atomicOpts, {NoSync: true}} {
				p := modeName(opts) + "/"
				// One buffer, reused for two puts to different keys.
				key := []byte(p + "key-1")
				val := []byte("value-1")
				cv := []byte("value-1")
				v1 := h.NextVersion()
				h.MustApply(e, opts, engine.Write{Kind: engine.OpPut, Key: key, Value: val, Version: v1})
				copy(key[len(key)-1:], "2")
				copy(val[len(val)-1:], "2")
				v2 := h.NextVersion()
				h.MustApply(e, opts, engine.Write{Kind: engine.OpPut, Key: key, Value: val, Version: v2})
				scribble(key)
				scribble(val)
				// A condition's value too.
				r := h.MustApply(e, opts, engine.Write{Kind: engine.OpCheck, Key: []byte(p + "key-1"), Cond: ifValue(cv)})
				scribble(cv)
				if !r[0].Applied {
					t.Errorf("%s: check of the value just written failed: %s", p, fmtResult(r[0]))
				}
				h.expectStates(e, p+"after the caller reused its buffers", keys(p+"key-1", p+"key-2", string(key)),
					[]state{present("value-1", v1), present("value-2", v2), absent})
			}
		}},

		{Name: "ownership/read-results", Run: func(t T, h *Harness) {
			e := h.Open()
			v := h.Put(e, []byte("k"), []byte("original"))
			h.Put(e, []byte("j"), []byte("other"))
			got := h.MustRead(e, keys("k", "j", "k")...)
			for _, en := range got {
				scribble(en.Key)
				scribble(en.Value)
			}
			h.expectStates(e, "after modifying slices Read returned", keys("k", "j"), []state{present("original", v), present("other", got[1].Version)})
			// A returned slice is not a window on storage: later writes do
			// not change it either.
			held := h.MustGet(e, []byte("k"))
			h.Put(e, []byte("k"), []byte("replaced"))
			h.Delete(e, []byte("j"))
			if string(held.Value) != "original" || string(held.Key) != "k" {
				t.Errorf("an entry Read returned changed after later writes: %s", fmtEntry(held))
			}
		}},

		{Name: "ownership/scan-results", Run: func(t T, h *Harness) {
			e := h.Open()
			m := h.fill(e, []string{"a", "b", "c", "d", "e", "f", "g", "h"})
			for _, opts := range []engine.ScanOptions{{}, {Reverse: true}, {Start: []byte("b"), End: []byte("g")}} {
				// The callback keeps every entry and scribbles over it; the
				// scan must go on in order regardless, and what the
				// callback kept must not change afterwards.
				var kept []engine.Entry
				var copies []engine.Entry
				err := e.Scan(h.Context(), opts, func(en engine.Entry) error {
					copies = append(copies, engine.Entry{Key: bytes.Clone(en.Key), Value: bytes.Clone(en.Value), Version: en.Version})
					scribble(en.Key)
					scribble(en.Value)
					kept = append(kept, en)
					return nil
				})
				if err != nil {
					t.Fatalf("Scan: %v", err)
				}
				checkEntries(t, "Scan("+fmtScan(opts)+") whose callback modifies its entries", copies, m.scan(opts), false)
				for i, en := range kept {
					if bytes.IndexFunc(en.Key, func(r rune) bool { return r != 'X' }) >= 0 || bytes.IndexFunc(en.Value, func(r rune) bool { return r != 'X' }) >= 0 {
						t.Errorf("Scan(%s): entry %d changed after the callback returned: %s (the engine reused a slice it handed over)", fmtScan(opts), i, fmtEntry(en))
						break
					}
				}
			}
			checkEntries(t, "scan after callbacks modified entries", h.MustScan(e, engine.ScanOptions{}), m.scan(engine.ScanOptions{}), false)
			// Entries collected from one scan are not changed by another.
			first := h.MustScan(e, engine.ScanOptions{})
			h.MustScan(e, engine.ScanOptions{Reverse: true})
			h.Put(e, []byte("a"), []byte("changed"))
			checkEntries(t, "entries of an earlier scan after another scan and a write", first, m.scan(engine.ScanOptions{}), false)
		}},

		{Name: "ownership/apply-results", Run: func(t T, h *Harness) {
			e := h.Open()
			v1 := h.Put(e, []byte("k"), []byte("first"))
			v2 := h.NextVersion()
			r := h.MustApply(e, independent, put("k", "second", v2))
			scribble(r[0].Value)
			r = h.MustApply(e, independent, putIf("k", "third", h.NextVersion(), ifVersion(v1)))
			if r[0].Applied {
				t.Fatalf("CAS on an old version applied")
			}
			scribble(r[0].Value)
			r = h.MustApply(e, atomicOpts, check("k", ifExists))
			scribble(r[0].Value)
			h.expectStates(e, "after modifying slices Results returned", keys("k"), []state{present("second", v2)})
			r = h.MustApply(e, independent, del("k"))
			if string(r[0].Value) != "second" {
				t.Errorf("delete reports previous value %s, want %q", fmtBytes(r[0].Value), "second")
			}
		}},
	}
}
