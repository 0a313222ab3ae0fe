package conformance

import (
	"fmt"

	"github.com/flaredb/flaredb/core/engine"
)

// The condition matrix: every condition kind, holding and failing, against
// four starting states of a key, for each kind of write, as a single write
// in either mode and inside one independent batch.

// condStart is a key's starting state in the matrix.
type condStart int

const (
	startAbsent  condStart = iota // never written
	startValue                    // "v1", written over an earlier "v0"
	startEmpty                    // the empty value, written over "v0"
	startDeleted                  // written, then deleted
	numStarts
)

var startNames = [numStarts]string{"absent", "value", "empty", "deleted"}

// condSetup is a key's state at the start of a row: cur is its state, prev
// the version it had before (0 when it never had one).
type condSetup struct {
	cur  state
	prev uint64
}

// condRow is one condition, given as a function of the key's setup, and
// whether it holds for each starting state.
type condRow struct {
	name  string
	cond  func(s condSetup) engine.Condition
	holds [numStarts]bool
}

func condRows(kind engine.CondKind) []condRow {
	prevOr := func(s condSetup, other uint64) uint64 {
		if s.prev != 0 {
			return s.prev
		}
		return other
	}
	switch kind {
	case engine.CondNone:
		return []condRow{
			{"none", func(condSetup) engine.Condition { return engine.Condition{} }, [numStarts]bool{true, true, true, true}},
			{"none-with-fields", func(condSetup) engine.Condition {
				return engine.Condition{Kind: engine.CondNone, Version: 12345, Value: []byte("ignored")}
			}, [numStarts]bool{true, true, true, true}},
		}
	case engine.CondVersion:
		return []condRow{
			{"current", func(s condSetup) engine.Condition { return ifVersion(s.cur.version) }, [numStarts]bool{true, true, true, true}},
			{"zero", func(condSetup) engine.Condition { return ifVersion(0) }, [numStarts]bool{true, false, false, true}},
			{"previous", func(s condSetup) engine.Condition { return ifVersion(prevOr(s, 7)) }, [numStarts]bool{false, false, false, false}},
			{"next", func(s condSetup) engine.Condition { return ifVersion(s.cur.version + 1) }, [numStarts]bool{false, false, false, false}},
			{"max", func(condSetup) engine.Condition { return ifVersion(^uint64(0)) }, [numStarts]bool{false, false, false, false}},
		}
	case engine.CondAbsent:
		return []condRow{
			{"absent", func(condSetup) engine.Condition { return ifAbsent }, [numStarts]bool{true, false, false, true}},
			{"absent-with-fields", func(s condSetup) engine.Condition {
				return engine.Condition{Kind: engine.CondAbsent, Version: s.cur.version, Value: s.cur.value}
			}, [numStarts]bool{true, false, false, true}},
		}
	case engine.CondExists:
		return []condRow{
			{"exists", func(condSetup) engine.Condition { return ifExists }, [numStarts]bool{false, true, true, false}},
			{"exists-with-fields", func(condSetup) engine.Condition {
				return engine.Condition{Kind: engine.CondExists, Version: 1, Value: []byte("x")}
			}, [numStarts]bool{false, true, true, false}},
		}
	case engine.CondValue:
		return []condRow{
			{"current", func(s condSetup) engine.Condition { return ifValue(s.cur.value) }, [numStarts]bool{false, true, true, false}},
			{"empty", func(condSetup) engine.Condition { return ifValue([]byte{}) }, [numStarts]bool{false, false, true, false}},
			{"nil", func(condSetup) engine.Condition { return ifValue(nil) }, [numStarts]bool{false, false, true, false}},
			{"previous", func(condSetup) engine.Condition { return ifValue([]byte("v0")) }, [numStarts]bool{false, false, false, false}},
			{"prefix", func(condSetup) engine.Condition { return ifValue([]byte("v")) }, [numStarts]bool{false, false, false, false}},
			{"extended", func(s condSetup) engine.Condition { return ifValue(append([]byte(string(s.cur.value)), 0)) }, [numStarts]bool{false, false, false, false}},
			{"other-case", func(condSetup) engine.Condition { return ifValue([]byte("V1")) }, [numStarts]bool{false, false, false, false}},
		}
	}
	return nil
}

// condCell is one write of the matrix, with what it must do.
type condCell struct {
	label string
	key   string
	setup condSetup
	write engine.Write
	holds bool
	after state // the key's state after the write
}

// runCondMatrix runs the rows of one condition kind.
func runCondMatrix(t T, h *Harness, kind engine.CondKind) {
	e := h.Open()
	rows := condRows(kind)
	type mode struct {
		name  string
		opts  engine.ApplyOptions
		batch bool
	}
	modes := []mode{
		{"single", independent, false},
		{"single-atomic", atomicOpts, false},
		{"batch", independent, true},
	}
	for _, op := range []engine.OpKind{engine.OpPut, engine.OpDelete, engine.OpCheck} {
		for mi, m := range modes {
			// Set up one fresh key per (row, start) in two rounds: the
			// earlier value first, then the starting state.
			var cells []condCell
			var round1, round2 []engine.Write
			for ri, row := range rows {
				for st := condStart(0); st < numStarts; st++ {
					// Short keys (the label says what each is), so that
					// a modest MaxKeySize holds them.
					key := fmt.Sprintf("c%d/%d/%d/%d/%d", kind, ri, st, op, mi)
					c := condCell{label: fmt.Sprintf("cond %s/%s, key %s, %s, %s", kind, row.name, startNames[st], op, m.name), key: key}
					switch st {
					case startValue, startEmpty:
						v0, v1 := h.NextVersion(), h.NextVersion()
						round1 = append(round1, put(key, "v0", v0))
						val := "v1"
						if st == startEmpty {
							val = ""
						}
						round2 = append(round2, put(key, val, v1))
						c.setup = condSetup{cur: present(val, v1), prev: v0}
					case startDeleted:
						v0 := h.NextVersion()
						round1 = append(round1, put(key, "v1", v0))
						round2 = append(round2, del(key))
						c.setup = condSetup{cur: absent, prev: v0}
					}
					cond := row.cond(c.setup)
					c.holds = row.holds[st]
					c.after = c.setup.cur
					switch op {
					case engine.OpPut:
						v := h.NextVersion()
						c.write = putIf(key, "new", v, cond)
						if c.holds {
							c.after = present("new", v)
						}
					case engine.OpDelete:
						c.write = delIf(key, cond)
						if c.holds {
							c.after = absent
						}
					case engine.OpCheck:
						c.write = check(key, cond)
					}
					cells = append(cells, c)
				}
			}
			h.applyAll(e, engine.ApplyOptions{NoSync: true}, round1)
			h.applyAll(e, engine.ApplyOptions{NoSync: true}, round2)

			// Apply: one call per write, or every write in as few
			// independent calls as the limits allow.
			results := make([]engine.Result, 0, len(cells))
			if m.batch {
				var all []engine.Write
				for _, c := range cells {
					all = append(all, c.write)
				}
				for len(all) > 0 {
					n := len(all)
					if l := h.Description.Limits.MaxWrites; l > 0 && n > l {
						n = l
					}
					results = append(results, h.MustApply(e, m.opts, all[:n]...)...)
					all = all[n:]
				}
			} else {
				for _, c := range cells {
					results = append(results, h.MustApply(e, m.opts, c.write)[0])
				}
			}

			var ks [][]byte
			var want []state
			for i, c := range cells {
				checkResult(t, c.label+": "+fmtWrite(c.write), results[i], c.holds, c.setup.cur)
				ks = append(ks, []byte(c.key))
				want = append(want, c.after)
			}
			got := h.MustRead(e, ks...)
			for i, c := range cells {
				checkEntry(t, c.label+": state after "+fmtWrite(c.write), got[i], ks[i], want[i])
			}
		}
	}
}

func condCases() []Case {
	var cs []Case
	for _, kind := range []engine.CondKind{engine.CondNone, engine.CondVersion, engine.CondAbsent, engine.CondExists, engine.CondValue} {
		cs = append(cs, Case{Name: "cond/" + kind.String(), Run: func(t T, h *Harness) { runCondMatrix(t, h, kind) }})
	}
	return cs
}

func batchCases() []Case {
	return []Case{
		{Name: "batch/independent-results", Run: func(t T, h *Harness) {
			e := h.Open()
			va := h.Put(e, []byte("a"), []byte("A"))
			vc := h.Put(e, []byte("c"), []byte("C"))
			ve := h.Put(e, []byte("e"), []byte("E"))
			n1, n2, n3 := h.NextVersion(), h.NextVersion(), h.NextVersion()
			writes := []engine.Write{
				putIf("a", "A2", n1, ifVersion(va+1000)), // fails
				putIf("b", "B", n2, ifAbsent),            // applies
				delIf("c", ifExists),                     // applies
				check("a", ifValue([]byte("A"))),         // holds
				putIf("d", "D", n3, ifExists),            // fails
				delIf("e", ifValue([]byte("nope"))),      // fails
				del("f"),                                 // applies (absent)
			}
			res := h.applySplit(e, independent, writes)
			checkResult(t, "failing put", res[0], false, present("A", va))
			checkResult(t, "put if absent", res[1], true, absent)
			checkResult(t, "delete if exists", res[2], true, present("C", vc))
			checkResult(t, "check", res[3], true, present("A", va))
			checkResult(t, "failing put if exists", res[4], false, absent)
			checkResult(t, "failing delete", res[5], false, present("E", ve))
			checkResult(t, "delete of absent key", res[6], true, absent)
			h.expectStates(e, "after batch", keys("a", "b", "c", "d", "e", "f"),
				[]state{present("A", va), present("B", n2), absent, absent, present("E", ve), absent})
		}},

		{Name: "batch/same-key", Run: func(t T, h *Harness) {
			e := h.Open()
			v0 := h.Put(e, []byte("k"), []byte("v0"))
			v1, v2, v3, v4 := h.NextVersion(), h.NextVersion(), h.NextVersion(), h.NextVersion()
			steps := []struct {
				w       engine.Write
				applied bool
				report  state
			}{
				{putIf("k", "v1", v1, ifVersion(v0)), true, present("v0", v0)},
				{putIf("k", "v2", v2, ifVersion(v1)), true, present("v1", v1)}, // sees the first write
				{putIf("k", "x", v3, ifVersion(v0)), false, present("v2", v2)}, // stale: reports the state within the call
				{check("k", ifValue([]byte("v2"))), true, present("v2", v2)},
				{delIf("k", ifValue([]byte("v2"))), true, present("v2", v2)},
				{check("k", ifAbsent), true, absent},
				{delIf("k", ifExists), false, absent},
				{putIf("k", "v3", v4, ifAbsent), true, absent},
				{delIf("k", ifVersion(v2)), false, present("v3", v4)},
			}
			var writes []engine.Write
			for _, s := range steps {
				writes = append(writes, s.w)
			}
			// One call, or as few as the limits allow: each call still
			// has writes that must see the earlier ones.
			h.SkipUnlessFits(engine.Limits{MaxWrites: 2})
			res := h.applySplit(e, independent, writes)
			for i, s := range steps {
				checkResult(t, fmt.Sprintf("write %d: %s", i, fmtWrite(s.w)), res[i], s.applied, s.report)
			}
			h.expectStates(e, "after the call", keys("k"), []state{present("v3", v4)})
		}},

		{Name: "batch/many-keys", Run: func(t T, h *Harness) {
			e := h.Open()
			// 200 writes in one call, or as many as the engine's limits
			// allow (a put is 11 bytes).
			h.SkipUnlessFits(engine.Limits{MaxWrites: 2, MaxBatchSize: 2 * 11})
			n := 200
			if l := h.Description.Limits; l.MaxWrites > 0 || l.MaxBatchSize > 0 {
				if l.MaxWrites > 0 {
					n = min(n, l.MaxWrites)
				}
				if l.MaxBatchSize > 0 {
					n = min(n, l.MaxBatchSize/11)
				}
				if n < 200 {
					t.Logf("engine declares %+v: calls of %d writes", l, n)
				}
			}
			var writes []engine.Write
			var ks [][]byte
			var want []state
			for i := 0; i < n; i++ {
				k := fmt.Sprintf("k%04d", i)
				v := h.NextVersion()
				writes = append(writes, put(k, "v"+k, v))
				ks = append(ks, []byte(k))
				want = append(want, present("v"+k, v))
			}
			res := h.MustApply(e, independent, writes...)
			for i := range res {
				checkResult(t, fmt.Sprintf("write %d", i), res[i], true, absent)
			}
			h.expectStates(e, "after one call of many writes", ks, want)
			// Every other one conditionally deleted, every other one failing.
			var dels []engine.Write
			for i := 0; i < n; i++ {
				c := ifVersion(want[i].version)
				if i%2 == 1 {
					c = ifVersion(want[i].version + 1)
				}
				dels = append(dels, delIf(string(ks[i]), c))
			}
			res = h.MustApply(e, independent, dels...)
			for i := range res {
				checkResult(t, fmt.Sprintf("delete %d", i), res[i], i%2 == 0, want[i])
				if i%2 == 0 {
					want[i] = absent
				}
			}
			h.expectStates(e, "after conditional deletes", ks, want)
		}},
	}
}

func atomicCases() []Case {
	// setupGroup writes the starting state of the atomic cases under prefix
	// p: a="A", c="C", d="D" (b, e absent), and returns their versions.
	setupGroup := func(h *Harness, e engine.Engine, p string) map[string]uint64 {
		vs := map[string]uint64{}
		for _, k := range []string{"a", "c", "d"} {
			vs[k] = h.Put(e, []byte(p+k), []byte(k+k))
		}
		return vs
	}
	return []Case{
		{Name: "atomic/all-applied", Run: func(t T, h *Harness) {
			h.SkipUnlessFits(engine.Limits{MaxWrites: 5})
			e := h.Open()
			vs := setupGroup(h, e, "")
			n1, n2, n3 := h.NextVersion(), h.NextVersion(), h.NextVersion()
			res := h.MustApply(e, atomicOpts,
				putIf("a", "A2", n1, ifVersion(vs["a"])),
				putIf("b", "B", n2, ifAbsent),
				delIf("c", ifExists),
				check("d", ifValue([]byte("dd"))),
				put("e", "E", n3),
			)
			checkResult(t, "put if version", res[0], true, present("aa", vs["a"]))
			checkResult(t, "put if absent", res[1], true, absent)
			checkResult(t, "delete if exists", res[2], true, present("cc", vs["c"]))
			checkResult(t, "check", res[3], true, present("dd", vs["d"]))
			checkResult(t, "unconditional put", res[4], true, absent)
			h.expectStates(e, "after the group", keys("a", "b", "c", "d", "e"),
				[]state{present("A2", n1), present("B", n2), absent, present("dd", vs["d"]), present("E", n3)})
		}},

		{Name: "atomic/all-or-nothing", Run: func(t T, h *Harness) {
			h.SkipUnlessFits(engine.Limits{MaxWrites: 5})
			e := h.Open()
			// The group of atomic/all-applied, with the write at position
			// i given a condition that fails.
			for i := 0; i < 5; i++ {
				for _, opts := range []engine.ApplyOptions{atomicOpts, {Atomic: true, NoSync: true}} {
					p := fmt.Sprintf("%d/%v/", i, opts.NoSync)
					vs := setupGroup(h, e, p)
					n1, n2, n3 := h.NextVersion(), h.NextVersion(), h.NextVersion()
					writes := []engine.Write{
						putIf(p+"a", "A2", n1, ifVersion(vs["a"])),
						putIf(p+"b", "B", n2, ifAbsent),
						delIf(p+"c", ifExists),
						check(p+"d", ifValue([]byte("dd"))),
						put(p+"e", "E", n3),
					}
					failing := []engine.Condition{ifVersion(vs["a"] + 1), ifExists, ifAbsent, ifValue([]byte("d")), ifExists}
					writes[i].Cond = failing[i]
					start := []state{present("aa", vs["a"]), absent, present("cc", vs["c"]), present("dd", vs["d"]), absent}
					res := h.MustApply(e, opts, writes...)
					for j := range writes {
						checkResult(t, fmt.Sprintf("group failing at write %d (%s): result %d, %s", i, modeName(opts), j, fmtWrite(writes[j])), res[j], false, start[j])
					}
					h.expectStates(e, fmt.Sprintf("group failing at write %d (%s): nothing applied", i, modeName(opts)),
						keys(p+"a", p+"b", p+"c", p+"d", p+"e"), start)
				}
			}
		}},

		{Name: "atomic/check-guards", Run: func(t T, h *Harness) {
			h.SkipUnlessFits(engine.Limits{MaxWrites: 4})
			e := h.Open()
			vg := h.Put(e, []byte("guard"), []byte("g1"))
			h.Put(e, []byte("z"), []byte("Z"))
			n1, n2 := h.NextVersion(), h.NextVersion()
			res := h.MustApply(e, atomicOpts,
				check("guard", ifVersion(vg)),
				put("x", "X", n1),
				put("y", "Y", n2),
				del("z"),
			)
			checkResult(t, "guard holding", res[0], true, present("g1", vg))
			for i := 1; i < 4; i++ {
				if !res[i].Applied {
					t.Errorf("guarded write %d not applied although the guard held: %s", i, fmtResult(res[i]))
				}
			}
			h.expectStates(e, "after the guarded group", keys("guard", "x", "y", "z"),
				[]state{present("g1", vg), present("X", n1), present("Y", n2), absent})

			vg2 := h.Put(e, []byte("guard"), []byte("g2"))
			n3, n4 := h.NextVersion(), h.NextVersion()
			res = h.MustApply(e, atomicOpts,
				put("x", "X2", n3),
				check("guard", ifVersion(vg)), // stale
				put("z", "Z2", n4),
			)
			checkResult(t, "write guarded by a stale check", res[0], false, present("X", n1))
			checkResult(t, "stale guard", res[1], false, present("g2", vg2))
			checkResult(t, "write guarded by a stale check", res[2], false, absent)
			h.expectStates(e, "after the failed guard", keys("guard", "x", "z"),
				[]state{present("g2", vg2), present("X", n1), absent})

			// A guard on absence.
			n5 := h.NextVersion()
			res = h.MustApply(e, atomicOpts, check("lock", ifAbsent), put("w", "W", n5))
			checkResult(t, "guard on an absent key", res[0], true, absent)
			checkResult(t, "write guarded by absence", res[1], true, absent)
		}},

		{Name: "atomic/mixed-writes", Run: func(t T, h *Harness) {
			e := h.Open()
			// A group of 50 writes, or as many as the engine's limits
			// allow (a write is at most 6 bytes); 4 cover every kind.
			h.SkipUnlessFits(engine.Limits{MaxWrites: 4, MaxBatchSize: 4 * 6})
			n := 50
			if l := h.Description.Limits; l.MaxWrites > 0 || l.MaxBatchSize > 0 {
				if l.MaxWrites > 0 {
					n = min(n, l.MaxWrites)
				}
				if l.MaxBatchSize > 0 {
					n = min(n, l.MaxBatchSize/6)
				}
				if n < 50 {
					t.Logf("engine declares %+v: a group of %d writes", l, n)
				}
			}
			var setup []engine.Write
			for i := 0; i < n; i += 2 {
				setup = append(setup, put(fmt.Sprintf("k%02d", i), "old", h.NextVersion()))
			}
			h.applyAll(e, independent, setup)
			before := h.MustScan(e, engine.ScanOptions{})
			// Puts over present and absent keys, deletes of present and
			// absent keys, all unconditional, in one group.
			var writes []engine.Write
			var ks [][]byte
			var want []state
			for i := 0; i < n; i++ {
				k := fmt.Sprintf("k%02d", i)
				ks = append(ks, []byte(k))
				if i%3 == 0 {
					writes = append(writes, del(k))
					want = append(want, absent)
				} else {
					v := h.NextVersion()
					writes = append(writes, put(k, "new", v))
					want = append(want, present("new", v))
				}
			}
			res := h.MustApply(e, atomicOpts, writes...)
			for i := range res {
				prev := absent
				for _, b := range before {
					if string(b.Key) == string(ks[i]) {
						prev = stateOf(b)
					}
				}
				checkResult(t, fmt.Sprintf("write %d: %s", i, fmtWrite(writes[i])), res[i], true, prev)
			}
			h.expectStates(e, "after the group", ks, want)
		}},
	}
}

func errorCases() []Case {
	return []Case{
		{Name: "errors/all-or-nothing", Run: func(t T, h *Harness) {
			// The invalid write goes before, between and after three
			// valid ones, in one call.
			h.SkipUnlessFits(engine.Limits{MaxWrites: 4})
			e := h.Open()
			type badWrite struct {
				name string
				w    func(p string, vd uint64) engine.Write
			}
			bads := []badWrite{
				{"empty key", func(string, uint64) engine.Write { return put("", "x", h.NextVersion()) }},
				{"empty check key", func(string, uint64) engine.Write { return check("", ifAbsent) }},
				{"version 0", func(p string, _ uint64) engine.Write { return put(p+"z", "x", 0) }},
				{"unknown op", func(p string, _ uint64) engine.Write {
					return engine.Write{Kind: 0, Key: []byte(p + "z"), Value: []byte("x"), Version: h.NextVersion()}
				}},
				{"unknown cond", func(p string, _ uint64) engine.Write {
					return engine.Write{Kind: engine.OpDelete, Key: []byte(p + "z"), Cond: engine.Condition{Kind: 99}}
				}},
				{"non-increasing version", func(p string, vd uint64) engine.Write { return put(p+"d", "x", vd) }},
			}
			row := 0
			for _, b := range bads {
				for pos := 0; pos <= 3; pos++ { // before each valid write, and last
					for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
						p := fmt.Sprintf("r%03d/", row)
						row++
						h.Put(e, []byte(p+"a"), []byte("A"))
						h.Put(e, []byte(p+"b"), []byte("B"))
						vd := h.Put(e, []byte(p+"d"), []byte("D"))
						ks := keys(p+"a", p+"b", p+"c", p+"d", p+"z")
						before := h.MustRead(e, ks...)
						valid := []engine.Write{
							put(p+"a", "A2", h.NextVersion()),
							del(p + "b"),
							putIf(p+"c", "C", h.NextVersion(), ifAbsent),
						}
						call := append(append(append([]engine.Write{}, valid[:pos]...), b.w(p, vd)), valid[pos:]...)
						_, err := e.Apply(h.Context(), call, opts)
						what := fmt.Sprintf("%s at position %d (%s): Apply(%s)", b.name, pos, modeName(opts), fmtWrites(call))
						checkErr(t, what, err, engine.ErrInvalidArgument)
						h.expectUnchanged(e, what, ks, before)
					}
				}
			}
		}},
	}
}
