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
			h.SkipUnlessFits(engine.Limits{MaxWrites: 2}) // atomic groups of two
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
			group := []engine.Write{put("group1", "g1", g1), putIf("group2", "g2", g2, ifAbsent), del("group3")}
			if mw := h.Description.Limits.MaxWrites; mw > 0 && mw < len(group) {
				group = group[:mw] // the delete of an absent key changes nothing
			}
			h.MustApply(e, atomicOpts, group...)
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

		{Name: "closed/errors-first", Run: func(t T, h *Harness) {
			// After Close every method but Describe and Close returns
			// ErrClosed, whatever else is wrong with the call: invalid or
			// too large arguments, an empty call, a done context.
			e := h.Open()
			h.Put(e, []byte("k"), []byte("v"))
			h.Close(e)
			l := h.Description.Limits
			canceled, cancel := context.WithCancel(h.Context())
			cancel()
			expired, cancel2 := context.WithDeadline(h.Context(), time.Now().Add(-time.Hour))
			defer cancel2()
			ctxs := []struct {
				name string
				ctx  context.Context
			}{{"", h.Context()}, {", cancelled context", canceled}, {", expired deadline", expired}}

			reads := []struct {
				name string
				keys [][]byte
			}{
				{"a valid key", keys("k")},
				{"no keys (nil)", nil},
				{"no keys (empty)", [][]byte{}},
				{"an empty key", [][]byte{{}}},
				{"a nil key after a valid one", [][]byte{[]byte("k"), nil}},
			}
			if l.MaxKeySize > 0 {
				reads = append(reads, struct {
					name string
					keys [][]byte
				}{"a key beyond MaxKeySize", [][]byte{bytes.Repeat([]byte{'k'}, l.MaxKeySize+1)}})
			}
			v := h.NextVersion()
			applies := []struct {
				name   string
				writes []engine.Write
			}{
				{"a valid put", []engine.Write{put("k", "x", v)}},
				{"no writes (nil)", nil},
				{"no writes (empty)", []engine.Write{}},
				{"an empty key", []engine.Write{put("", "x", v)}},
				{"a put at version 0", []engine.Write{put("k", "x", 0)}},
				{"a put at version 1 over a later version", []engine.Write{put("k", "x", 1)}},
				{"an unknown operation", []engine.Write{{Kind: 0, Key: []byte("k"), Version: v}}},
				{"an unknown condition", []engine.Write{{Kind: engine.OpDelete, Key: []byte("k"), Cond: engine.Condition{Kind: 99}}}},
			}
			if l.MaxKeySize > 0 {
				applies = append(applies, struct {
					name   string
					writes []engine.Write
				}{"a key beyond MaxKeySize", []engine.Write{{Kind: engine.OpDelete, Key: bytes.Repeat([]byte{'k'}, l.MaxKeySize+1)}}})
			}
			if l.MaxValueSize > 0 {
				applies = append(applies, struct {
					name   string
					writes []engine.Write
				}{"a value beyond MaxValueSize", []engine.Write{{Kind: engine.OpPut, Key: []byte("k"), Value: pattern(l.MaxValueSize+1, 3), Version: v}}})
			}
			if l.MaxWrites > 0 {
				var ws []engine.Write
				for i := 0; i <= l.MaxWrites; i++ {
					ws = append(ws, del(fmt.Sprintf("d%d", i)))
				}
				applies = append(applies, struct {
					name   string
					writes []engine.Write
				}{"writes beyond MaxWrites", ws})
			}
			scans := []struct {
				name string
				opts engine.ScanOptions
			}{
				{"a valid scan", engine.ScanOptions{}},
				{"a reversed range", engine.ScanOptions{Start: []byte("z"), End: []byte("a")}},
				{"a negative limit", engine.ScanOptions{Limit: -1}},
				{"an empty range", engine.ScanOptions{Start: []byte("k"), End: []byte("k")}},
			}

			for _, c := range ctxs {
				for _, r := range reads {
					_, err := e.Read(c.ctx, r.keys)
					checkErr(t, fmt.Sprintf("Read of %s after Close%s", r.name, c.name), err, engine.ErrClosed)
				}
				for _, a := range applies {
					for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
						_, err := e.Apply(c.ctx, a.writes, opts)
						checkErr(t, fmt.Sprintf("Apply of %s (%s) after Close%s", a.name, modeName(opts), c.name), err, engine.ErrClosed)
					}
				}
				for _, sc := range scans {
					calls := 0
					err := e.Scan(c.ctx, sc.opts, func(engine.Entry) error { calls++; return nil })
					checkErr(t, fmt.Sprintf("Scan with %s (%s) after Close%s", sc.name, fmtScan(sc.opts), c.name), err, engine.ErrClosed)
					if calls != 0 {
						t.Errorf("Scan with %s after Close%s called the callback %d times", sc.name, c.name, calls)
					}
				}
			}
		}},

		{Name: "closed/waits-for-calls", Run: func(t T, h *Harness) {
			// Close waits for the calls in progress: while a Scan's
			// callback is blocked, Close does not return; once the
			// callback is released, Close returns only after it (and any
			// later callback of that Scan) has returned, and the Scan
			// returns too. Only the order of events is checked; the waits
			// are bounded so that a hang fails the case.
			e := h.Open()
			m := h.fill(e, []string{"a", "b", "c"})
			ctx := h.Context()
			const bound = 20 * time.Second

			inCallback := make(chan struct{})
			release := make(chan struct{})
			var releaseOnce sync.Once
			releaseCallback := func() { releaseOnce.Do(func() { close(release) }) }
			defer releaseCallback()
			var callbackReturned, closeReturned atomic.Bool
			var late atomic.Int32 // callbacks that began after Close returned
			var got []engine.Entry
			scanDone := make(chan error, 1)
			go func() {
				first := true
				err := e.Scan(ctx, engine.ScanOptions{}, func(en engine.Entry) error {
					if closeReturned.Load() {
						late.Add(1)
					}
					got = append(got, en)
					if first {
						first = false
						close(inCallback)
						select {
						case <-release:
						case <-time.After(bound):
						}
						callbackReturned.Store(true)
					}
					return nil
				})
				scanDone <- err
			}()
			select {
			case <-inCallback:
			case err := <-scanDone:
				t.Fatalf("Scan of 3 keys returned %v without calling its callback", err)
			case <-time.After(bound):
				t.Fatalf("Scan of 3 keys did not call its callback within %v", bound)
			}

			closeDone := make(chan struct{})
			var callbackReturnedAtClose bool
			go func() {
				defer close(closeDone)
				h.Close(e)
				callbackReturnedAtClose = callbackReturned.Load()
				closeReturned.Store(true)
			}()
			// Close must not return while the callback is blocked. Give an
			// engine that does not wait the chance to show it; one that
			// waits passes however long this takes.
			early := false
			select {
			case <-closeDone:
				early = true
				t.Errorf("Close returned while a Scan callback was still running: it must wait for calls in progress")
			case <-time.After(100 * time.Millisecond):
			}
			releaseCallback()
			select {
			case <-closeDone:
				if !early && !callbackReturnedAtClose {
					t.Errorf("Close returned before the Scan callback in progress had returned")
				}
			case <-time.After(bound):
				t.Fatalf("Close did not return within %v of the Scan callback being released", bound)
			}
			// Close returned after the Scan call's last callback; the call
			// itself must be over by now, give or take the engine's own
			// bookkeeping between its last step and the return.
			select {
			case err := <-scanDone:
				switch {
				case err == nil:
					checkEntries(t, "Scan in progress when Close was called", got, m.scan(engine.ScanOptions{}), false)
				case errors.Is(err, engine.ErrClosed):
					t.Logf("the Scan in progress when Close was called returned %v after %d entries", err, len(got))
				default:
					t.Errorf("Scan in progress when Close was called: %v (want nil, or ErrClosed)", err)
				}
			case <-time.After(bound):
				t.Fatalf("Close returned, but the Scan call in progress had not returned %v later", bound)
			}
			if n := late.Load(); n > 0 {
				t.Errorf("the Scan called its callback %d times after Close had returned", n)
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
				p := modeTag(opts) + "/"
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

		{Name: "ownership/inputs-unmodified", Run: func(t T, h *Harness) {
			// The engine must not modify what it is passed: not the bytes
			// of keys and values (ownership/apply-inputs reuses them), and
			// not the writes and keys slices themselves: no sorting or
			// rewriting them in place, no appending into their spare
			// capacity. Every input here has spare capacity holding
			// sentinels, and is compared in full (up to its capacity) with
			// a deep copy, right after each call and again at the end.
			e := h.Open()
			type saved struct {
				what string
				cmp  func() string // "" when unchanged, else what changed
			}
			var inputs []saved
			keep := func(what string, cmp func() string) {
				if d := cmp(); d != "" {
					t.Errorf("%s: %s", what, d)
				}
				inputs = append(inputs, saved{what, cmp})
			}
			mw := h.Description.Limits.MaxWrites
			for _, opts := range []engine.ApplyOptions{independent, atomicOpts, {NoSync: true}} {
				p := modeTag(opts) + "/"
				h.Put(e, []byte(p+"w"), []byte("W"))
				h.Put(e, []byte(p+"v"), []byte("V"))
				// Keys in descending order, one of them twice: an engine
				// sorting the writes in place would reorder them.
				proto := []engine.Write{
					put(p+"y", "Y1", h.NextVersion()),
					putIf(p+"x", "X", h.NextVersion(), ifAbsent),
					check(p+"w", ifValue([]byte("W"))),
					delIf(p+"v", ifExists),
					put(p+"y", "Y2", h.NextVersion()),
					check(p+"u", engine.Condition{}),
				}
				ws := make([]engine.Write, len(proto), len(proto)+2)
				for i, w := range proto {
					w.Key = spare(w.Key)
					if w.Value != nil {
						w.Value = spare(w.Value)
					}
					if w.Cond.Value != nil {
						w.Cond.Value = spare(w.Cond.Value)
					}
					ws[i] = w
				}
				full := ws[:cap(ws)]
				full[len(proto)] = put(p+"spare", "s", h.NextVersion())
				full[len(proto)+1] = engine.Write{Kind: engine.OpDelete, Key: spare([]byte(p + "spare"))}
				want := copyWrites(full)
				what := fmt.Sprintf("the writes passed to Apply (%s)", modeName(opts))
				n := len(ws)
				if mw > 0 && n > mw {
					n = mw
				}
				for i := 0; i < len(ws); i += n {
					res := h.MustApply(e, opts, ws[i:min(i+n, len(ws))]...)
					for j, r := range res {
						if !r.Applied {
							t.Errorf("%s: write %d not applied: %s", what, i+j, fmtResult(r))
						}
					}
				}
				keep(what, func() string { return diffWrites(want, full) })
			}

			h.Put(e, []byte("b"), []byte("B"))
			ks := make([][]byte, 0, 6)
			for _, k := range []string{"z", "b", "a", "b", "i/y"} {
				ks = append(ks, spare([]byte(k)))
			}
			fullKeys := ks[:cap(ks)]
			fullKeys[len(ks)] = spare([]byte("spare"))
			wantKeys := copyKeys(fullKeys)
			if _, err := e.Read(h.Context(), ks); err != nil {
				t.Fatalf("Read(%s): %v", fmtKeys(ks), err)
			}
			keep("the keys passed to Read", func() string { return diffKeys(wantKeys, fullKeys) })

			for _, o := range []engine.ScanOptions{
				{Start: []byte("b"), End: []byte("x")},
				{Start: []byte("a"), End: []byte("i/z"), Reverse: true, Limit: 2},
				{Start: []byte("i/"), KeysOnly: true},
				{End: []byte("c"), Reverse: true},
			} {
				opts := o
				if opts.Start != nil {
					opts.Start = spare(opts.Start)
				}
				if opts.End != nil {
					opts.End = spare(opts.End)
				}
				bounds := [][]byte{opts.Start, opts.End}
				want := copyKeys(bounds)
				h.MustScan(e, opts)
				keep("the bounds passed to Scan("+fmtScan(o)+")", func() string { return diffKeys(want, bounds) })
			}

			// Nor afterwards.
			h.Put(e, []byte("later"), []byte("L"))
			h.MustRead(e, keys("later", "z", "a")...)
			h.MustScan(e, engine.ScanOptions{Reverse: true})
			for _, in := range inputs {
				if d := in.cmp(); d != "" {
					t.Errorf("%s, after later calls: %s", in.what, d)
				}
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

// spareFill is what the spare capacity of the suite's inputs holds.
const spareFill = '#'

// spare returns a copy of b with 4 bytes of spare capacity, filled with
// spareFill: an engine appending to b writes there.
func spare(b []byte) []byte {
	s := make([]byte, len(b), len(b)+4)
	copy(s, b)
	for i := len(b); i < cap(s); i++ {
		s[:cap(s)][i] = spareFill
	}
	return s
}

// copyKeys deep-copies ks, each slice up to its capacity.
func copyKeys(ks [][]byte) [][]byte {
	out := make([][]byte, len(ks))
	for i, k := range ks {
		if k != nil {
			out[i] = append(make([]byte, 0, cap(k)), k[:cap(k)]...)[:len(k)]
		}
	}
	return out
}

// copyWrites deep-copies ws, each byte slice up to its capacity.
func copyWrites(ws []engine.Write) []engine.Write {
	out := make([]engine.Write, len(ws))
	for i, w := range ws {
		c := copyKeys([][]byte{w.Key, w.Value, w.Cond.Value})
		w.Key, w.Value, w.Cond.Value = c[0], c[1], c[2]
		out[i] = w
	}
	return out
}

// diffBytes describes how got differs from want, its copy: length,
// capacity, nil-ness or content up to the capacity.
func diffBytes(want, got []byte) string {
	switch {
	case (want == nil) != (got == nil):
		return fmt.Sprintf("%s became %s", fmtBytes(want), fmtBytes(got))
	case len(want) != len(got) || cap(want) != cap(got):
		return fmt.Sprintf("%s (len %d, cap %d) became %s (len %d, cap %d)", fmtBytes(want), len(want), cap(want), fmtBytes(got), len(got), cap(got))
	case !bytes.Equal(want, got):
		return fmt.Sprintf("%s became %s", fmtBytes(want), fmtBytes(got))
	case !bytes.Equal(want[:cap(want)], got[:cap(got)]):
		return fmt.Sprintf("%s: the spare capacity beyond its length was written to (%q became %q)", fmtBytes(want), want[len(want):cap(want)], got[len(got):cap(got)])
	}
	return ""
}

func diffKeys(want, got [][]byte) string {
	for i := range want {
		if d := diffBytes(want[i], got[i]); d != "" {
			return fmt.Sprintf("element %d: %s", i, d)
		}
	}
	return ""
}

func diffWrites(want, got []engine.Write) string {
	for i := range want {
		w, g := want[i], got[i]
		if w.Kind != g.Kind || w.Version != g.Version || w.Cond.Kind != g.Cond.Kind || w.Cond.Version != g.Cond.Version {
			return fmt.Sprintf("write %d: %s became %s", i, fmtWrite(w), fmtWrite(g))
		}
		for _, f := range []struct {
			name      string
			want, got []byte
		}{{"key", w.Key, g.Key}, {"value", w.Value, g.Value}, {"condition value", w.Cond.Value, g.Cond.Value}} {
			if d := diffBytes(f.want, f.got); d != "" {
				return fmt.Sprintf("write %d (%s): its %s %s", i, fmtWrite(w), f.name, d)
			}
		}
	}
	return ""
}
