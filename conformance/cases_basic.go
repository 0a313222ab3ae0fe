package conformance

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	"github.com/flaredb/flaredb/core/engine"
)

func describeCases() []Case {
	return []Case{
		{Name: "describe/self", Run: func(t T, h *Harness) {
			e := h.Open()
			d := e.Describe()
			if d.Name == "" {
				t.Errorf("Describe().Name is empty")
			}
			if d.Protocol != engine.ProtocolVersion {
				t.Errorf("Describe().Protocol = %d, want engine.ProtocolVersion = %d", d.Protocol, engine.ProtocolVersion)
			}
			l := d.Limits
			if l.MaxKeySize < 0 || l.MaxValueSize < 0 || l.MaxWrites < 0 || l.MaxBatchSize < 0 {
				t.Errorf("Describe().Limits has a negative field: %+v", l)
			}
			if d2 := e.Describe(); d2 != d {
				t.Errorf("Describe() changed between two calls: %+v, then %+v", d, d2)
			}
			if d != h.Description {
				t.Errorf("Describe() of a second engine from the same factory = %+v, the first said %+v", d, h.Description)
			}
		}},
	}
}

func basicCases() []Case {
	return []Case{
		{Name: "basic/put-get-delete", Run: func(t T, h *Harness) {
			e := h.Open()
			k := []byte("key")
			checkEntry(t, "read before any put", h.MustGet(e, k), k, absent)

			v1 := h.NextVersion()
			r := h.MustApply(e, independent, put("key", "one", v1))
			checkResult(t, "first put", r[0], true, absent)
			checkEntry(t, "read after first put", h.MustGet(e, k), k, present("one", v1))

			prev := present("one", v1)
			for i := 0; i < 5; i++ {
				v := h.NextVersion()
				val := fmt.Sprintf("value-%d", i)
				r = h.MustApply(e, independent, put("key", val, v))
				checkResult(t, fmt.Sprintf("overwrite %d", i), r[0], true, prev)
				prev = present(val, v)
				checkEntry(t, fmt.Sprintf("read after overwrite %d", i), h.MustGet(e, k), k, prev)
			}

			r = h.MustApply(e, independent, del("key"))
			checkResult(t, "delete", r[0], true, prev)
			checkEntry(t, "read after delete", h.MustGet(e, k), k, absent)
			if got := h.MustScan(e, engine.ScanOptions{}); len(got) != 0 {
				t.Errorf("scan after delete: %d entries, want none (first %s)", len(got), fmtEntry(got[0]))
			}
		}},

		{Name: "basic/absent-keys", Run: func(t T, h *Harness) {
			e := h.Open()
			h.Put(e, []byte("other"), []byte("x"))
			k := []byte("never-written")
			checkEntry(t, "read of a key never written", h.MustGet(e, k), k, absent)

			r := h.MustApply(e, independent, del("never-written"))
			checkResult(t, "delete of an absent key", r[0], true, absent)
			r = h.MustApply(e, atomicOpts, del("never-written"))
			checkResult(t, "delete of an absent key (atomic)", r[0], true, absent)
			r = h.MustApply(e, independent, check("never-written", engine.Condition{}))
			checkResult(t, "unconditional check of an absent key", r[0], true, absent)
			checkEntry(t, "read after deletes and checks of an absent key", h.MustGet(e, k), k, absent)
			if got := h.MustScan(e, engine.ScanOptions{}); len(got) != 1 {
				t.Errorf("scan: %d entries, want 1 (only %q)", len(got), "other")
			}
		}},

		{Name: "basic/read-many", Run: func(t T, h *Harness) {
			e := h.Open()
			va := h.Put(e, []byte("a"), []byte("A"))
			vc := h.Put(e, []byte("c"), []byte("C"))
			vd := h.Put(e, []byte("d"), []byte(""))
			ks := keys("c", "a", "b", "a", "zz", "c", "d", "c")
			want := []state{present("C", vc), present("A", va), absent, present("A", va), absent, present("C", vc), present("", vd), present("C", vc)}
			got := h.MustRead(e, ks...)
			for i := range ks {
				checkEntry(t, fmt.Sprintf("Read entry %d", i), got[i], ks[i], want[i])
			}

			for _, in := range [][][]byte{nil, {}} {
				got, err := e.Read(h.Context(), in)
				if err != nil {
					t.Errorf("Read of %d keys (nil=%v): %v", len(in), in == nil, err)
				} else if len(got) != 0 {
					t.Errorf("Read of no keys returned %d entries", len(got))
				}
			}
		}},

		{Name: "basic/apply-empty", Run: func(t T, h *Harness) {
			e := h.Open()
			for _, opts := range []engine.ApplyOptions{independent, atomicOpts, {NoSync: true}} {
				for _, in := range [][]engine.Write{nil, {}} {
					res, err := e.Apply(h.Context(), in, opts)
					if err != nil {
						t.Errorf("Apply of no writes (%s, nil=%v): %v; the contract makes it a no-op", modeName(opts), in == nil, err)
					} else if len(res) != 0 {
						t.Errorf("Apply of no writes (%s): %d results, want none", modeName(opts), len(res))
					}
				}
			}
		}},

		{Name: "basic/empty-key", Run: func(t T, h *Harness) {
			e := h.Open()
			h.Put(e, []byte("a"), []byte("A"))
			before := h.MustRead(e, keys("a", "b")...)
			for _, in := range [][][]byte{{nil}, {{}}, {[]byte("a"), nil}, {nil, []byte("a")}} {
				_, err := e.Read(h.Context(), in)
				checkErr(t, fmt.Sprintf("Read(%s)", fmtKeys(in)), err, engine.ErrInvalidArgument)
			}
			bad := []engine.Write{
				{Kind: engine.OpPut, Key: nil, Value: []byte("v"), Version: h.NextVersion()},
				{Kind: engine.OpPut, Key: []byte{}, Value: []byte("v"), Version: h.NextVersion()},
				{Kind: engine.OpDelete, Key: nil},
				{Kind: engine.OpCheck, Key: nil},
				{Kind: engine.OpCheck, Key: []byte{}, Cond: ifAbsent},
				{Kind: engine.OpCheck, Key: nil, Cond: ifVersion(0)},
			}
			for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
				for _, w := range bad {
					for _, call := range [][]engine.Write{
						{w},
						{put("b", "B", h.NextVersion()), w},
						{w, del("a")},
					} {
						_, err := e.Apply(h.Context(), call, opts)
						checkErr(t, fmt.Sprintf("Apply(%s, %s)", fmtWrites(call), modeName(opts)), err, engine.ErrInvalidArgument)
					}
				}
			}
			h.expectUnchanged(e, "after calls with empty keys", keys("a", "b"), before)
		}},

		{Name: "basic/unknown-kinds", Run: func(t T, h *Harness) {
			e := h.Open()
			h.Put(e, []byte("a"), []byte("A"))
			before := h.MustRead(e, keys("a", "b")...)
			bad := []engine.Write{
				{Kind: 0, Key: []byte("a"), Value: []byte("v"), Version: h.NextVersion()},
				{Kind: engine.OpCheck + 1, Key: []byte("a"), Value: []byte("v"), Version: h.NextVersion()},
				{Kind: 255, Key: []byte("b")},
				{Kind: engine.OpPut, Key: []byte("a"), Value: []byte("v"), Version: h.NextVersion(), Cond: engine.Condition{Kind: engine.CondValue + 1}},
				{Kind: engine.OpDelete, Key: []byte("a"), Cond: engine.Condition{Kind: 255}},
				{Kind: engine.OpCheck, Key: []byte("b"), Cond: engine.Condition{Kind: 200, Version: 1}},
			}
			for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
				for _, w := range bad {
					for _, call := range [][]engine.Write{
						{w},
						{put("b", "B", h.NextVersion()), w},
						{w, del("a")},
					} {
						_, err := e.Apply(h.Context(), call, opts)
						checkErr(t, fmt.Sprintf("Apply(%s, %s)", fmtWrites(call), modeName(opts)), err, engine.ErrInvalidArgument)
					}
				}
			}
			h.expectUnchanged(e, "after calls with unknown kinds", keys("a", "b"), before)
		}},

		{Name: "basic/check", Run: func(t T, h *Harness) {
			e := h.Open()
			va := h.Put(e, []byte("a"), []byte("A"))
			for _, w := range []engine.Write{
				check("a", engine.Condition{}),
				{Kind: engine.OpCheck, Key: []byte("a"), Version: 1},           // Version is ignored by checks
				{Kind: engine.OpCheck, Key: []byte("a"), Value: []byte("zzz")}, // so is Value
				check("a", ifVersion(va)),
			} {
				for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
					r := h.MustApply(e, opts, w)
					checkResult(t, fmt.Sprintf("%s (%s)", fmtWrite(w), modeName(opts)), r[0], true, present("A", va))
				}
			}
			r := h.MustApply(e, independent, check("b", engine.Condition{}))
			checkResult(t, "check of an absent key", r[0], true, absent)
			h.expectStates(e, "checks write nothing", keys("a", "b"), []state{present("A", va), absent})
		}},
	}
}

func binaryCases() []Case {
	all256 := make([]byte, 256)
	for i := range all256 {
		all256[i] = byte(i)
	}
	return []Case{
		{Name: "binary/keys", Run: func(t T, h *Harness) {
			e := h.Open()
			ks := [][]byte{
				{0x00}, {0x00, 0x00}, {0x00, 0x01}, {0x00, 0xFF}, {0x01}, {0x7F}, {0x80}, {0xFE},
				{0xFF}, {0xFF, 0x00}, {0xFF, 0xFF}, {0xFF, 0xFF, 0xFF},
				[]byte("a"), []byte("a\x00"), []byte("a\x00b"), []byte("a\x00\x00"), []byte("a\xff"),
				[]byte("\x00a\x00"), []byte("a b"), []byte("\xc3\x28"), all256,
			}
			// Keys the engine's limits rule out are left out; a value
			// too large for them is cut short.
			want := map[string]state{}
			var writes []engine.Write
			var kept [][]byte
			for i, k := range ks {
				v := h.NextVersion()
				val := append([]byte(fmt.Sprintf("v%d:", i)), k...)
				w := engine.Write{Kind: engine.OpPut, Key: k, Value: val, Version: v}
				for len(w.Value) > 0 && !h.fits(w) {
					w.Value = w.Value[:len(w.Value)-1]
				}
				if !h.fits(w) {
					t.Logf("key %s left out: engine declares %+v", fmtKey(k), h.Description.Limits)
					continue
				}
				writes = append(writes, w)
				kept = append(kept, k)
				want[string(k)] = state{value: w.Value, version: v}
			}
			ks = kept
			// Half through one batch, half one by one.
			h.applyAll(e, independent, writes[:len(writes)/2])
			for _, w := range writes[len(writes)/2:] {
				h.PutVersion(e, w.Key, w.Value, w.Version)
			}
			got := h.MustRead(e, ks...)
			for i, k := range ks {
				checkEntry(t, "Read", got[i], k, want[string(k)])
				checkEntry(t, "single-key Read", h.MustGet(e, k), k, want[string(k)])
			}
			sorted := slices.Clone(ks)
			slices.SortFunc(sorted, bytes.Compare)
			var wantScan []engine.Entry
			for _, k := range sorted {
				wantScan = append(wantScan, engine.Entry{Key: k, Value: want[string(k)].value, Version: want[string(k)].version})
			}
			checkEntries(t, "forward scan of binary keys", h.MustScan(e, engine.ScanOptions{}), wantScan, false)
			rev := slices.Clone(wantScan)
			slices.Reverse(rev)
			checkEntries(t, "reverse scan of binary keys", h.MustScan(e, engine.ScanOptions{Reverse: true}), rev, false)

			// Deleting the boundary keys leaves their neighbours alone.
			for _, k := range [][]byte{{0x00}, {0xFF}, []byte("a\x00")} {
				if _, ok := want[string(k)]; ok {
					h.Delete(e, k)
					delete(want, string(k))
				}
			}
			for _, k := range ks {
				w, ok := want[string(k)]
				if !ok {
					w = absent
				}
				checkEntry(t, "Read after deleting boundary keys", h.MustGet(e, k), k, w)
			}
		}},

		{Name: "binary/values", Run: func(t T, h *Harness) {
			e := h.Open()
			long := bytes.Repeat([]byte("\x00\xff\x01"), 700)
			// The long value is cut to what the engine's limits allow;
			// another value they rule out is left out.
			for len(long) > 0 && !h.fits(engine.Write{Kind: engine.OpPut, Key: []byte("k06"), Value: long, Version: 1}) {
				long = long[:len(long)-1]
			}
			if len(long) < 2100 {
				t.Logf("long value cut to %d bytes: engine declares %+v", len(long), h.Description.Limits)
			}
			vals := [][]byte{{0x00}, {0xFF}, {0x00, 0x00, 0x00}, []byte("a\x00b"), []byte("\x00a"), all256, long, []byte("\xc3\x28")}
			var ks [][]byte
			var want []state
			for i, v := range vals {
				k := []byte(fmt.Sprintf("k%02d", i))
				if len(v) == 0 || !h.fits(engine.Write{Kind: engine.OpPut, Key: k, Value: v, Version: 1}) {
					t.Logf("value %d (%d bytes) left out: engine declares %+v", i, len(v), h.Description.Limits)
					continue
				}
				ver := h.Put(e, k, v)
				ks = append(ks, k)
				want = append(want, state{value: v, version: ver})
			}
			h.expectStates(e, "binary values", ks, want)
			got := h.MustScan(e, engine.ScanOptions{})
			var wantScan []engine.Entry
			for i := range ks {
				wantScan = append(wantScan, engine.Entry{Key: ks[i], Value: want[i].value, Version: want[i].version})
			}
			checkEntries(t, "scan of binary values", got, wantScan, false)

			// CondValue compares byte for byte: zero bytes count, and a
			// prefix or an extension is a different value.
			for _, c := range []struct {
				key   string
				value []byte
				holds bool
			}{
				{"k00", []byte{0x00}, true},
				{"k00", []byte{0x00, 0x00}, false},
				{"k00", []byte{}, false},
				{"k02", []byte{0x00, 0x00, 0x00}, true},
				{"k02", []byte{0x00, 0x00}, false},
				{"k03", []byte("a\x00b"), true},
				{"k03", []byte("a"), false},
				{"k03", []byte("a\x00c"), false},
				{"k05", all256, true},
				{"k05", all256[:255], false},
				{"k06", long, true},
			} {
				w := engine.Write{Kind: engine.OpCheck, Key: []byte(c.key), Cond: ifValue(c.value)}
				if !slices.ContainsFunc(ks, func(k []byte) bool { return string(k) == c.key }) || !h.fits(w) {
					continue
				}
				r := h.MustApply(e, independent, w)
				if r[0].Applied != c.holds {
					t.Errorf("%s: Applied=%v, want %v", fmtWrite(w), r[0].Applied, c.holds)
				}
			}
		}},

		{Name: "binary/long-keys", Run: func(t T, h *Harness) {
			e := h.Open()
			max := h.Description.Limits.MaxKeySize
			sizes := []int{1024, 4096}
			if max > 0 {
				sizes = []int{min(1024, max), max - 1, max}
			}
			for _, n := range sizes {
				if n < 2 {
					continue
				}
				base := bytes.Repeat([]byte{'k'}, n)
				k1 := slices.Clone(base)
				k2 := slices.Clone(base)
				k2[n-1] = 'l' // differs in the last byte
				k0 := slices.Clone(base)
				k0[0] = 'j' // sorts first, differs in the first byte
				kz := slices.Clone(base)
				kz[n-1] = 0x00
				v1 := h.Put(e, k1, []byte("one"))
				v2 := h.Put(e, k2, []byte("two"))
				v0 := h.Put(e, k0, []byte("zero"))
				vz := h.Put(e, kz, []byte("nul"))
				what := fmt.Sprintf("keys of %d bytes", n)
				h.expectStates(e, what, [][]byte{k1, k2, k0, kz}, []state{present("one", v1), present("two", v2), present("zero", v0), present("nul", vz)})
				checkEntries(t, what+": scan", h.MustScan(e, engine.ScanOptions{Start: k0, End: append(slices.Clone(k2), 0)}), []engine.Entry{
					{Key: k0, Value: []byte("zero"), Version: v0},
					{Key: kz, Value: []byte("nul"), Version: vz},
					{Key: k1, Value: []byte("one"), Version: v1},
					{Key: k2, Value: []byte("two"), Version: v2},
				}, false)
				checkEntries(t, what+": scan [k1, k2)", h.MustScan(e, engine.ScanOptions{Start: k1, End: k2}), []engine.Entry{
					{Key: k1, Value: []byte("one"), Version: v1},
				}, false)
				for _, k := range [][]byte{k0, kz, k1, k2} {
					h.Delete(e, k)
				}
				h.expectStates(e, what+": after delete", [][]byte{k1, k2, k0, kz}, []state{absent, absent, absent, absent})
			}
		}},

		{Name: "binary/empty-value", Run: func(t T, h *Harness) {
			e := h.Open()
			vn := h.NextVersion()
			ve := h.NextVersion()
			h.MustApply(e, independent,
				engine.Write{Kind: engine.OpPut, Key: []byte("nil"), Value: nil, Version: vn},
				engine.Write{Kind: engine.OpPut, Key: []byte("empty"), Value: []byte{}, Version: ve},
			)
			h.expectStates(e, "empty values exist", keys("nil", "empty", "absent"), []state{present("", vn), present("", ve), absent})
			checkEntries(t, "scan shows empty values", h.MustScan(e, engine.ScanOptions{}), []engine.Entry{
				{Key: []byte("empty"), Value: []byte{}, Version: ve},
				{Key: []byte("nil"), Value: []byte{}, Version: vn},
			}, false)
			checkEntries(t, "keys-only scan shows empty values", h.MustScan(e, engine.ScanOptions{KeysOnly: true}), []engine.Entry{
				{Key: []byte("empty"), Version: ve},
				{Key: []byte("nil"), Version: vn},
			}, true)

			for _, c := range []struct {
				w     engine.Write
				holds bool
			}{
				{check("nil", ifExists), true},
				{check("nil", ifAbsent), false},
				{check("nil", ifValue([]byte{})), true},
				{check("nil", ifValue(nil)), true},
				{check("nil", ifValue([]byte{0})), false},
				{check("nil", ifVersion(vn)), true},
				{check("nil", ifVersion(0)), false},
				{check("absent", ifValue([]byte{})), false},
				{check("absent", ifValue(nil)), false},
				{check("absent", ifExists), false},
				{check("absent", ifAbsent), true},
			} {
				r := h.MustApply(e, independent, c.w)
				want := present("", vn)
				if string(c.w.Key) == "absent" {
					want = absent
				}
				checkResult(t, fmtWrite(c.w), r[0], c.holds, want)
			}

			v := h.NextVersion()
			r := h.MustApply(e, independent, put("nil", "x", v))
			checkResult(t, "overwriting an empty value", r[0], true, present("", vn))
			r = h.MustApply(e, independent, del("empty"))
			checkResult(t, "deleting an empty value", r[0], true, present("", ve))
			h.expectStates(e, "after overwrite and delete", keys("nil", "empty"), []state{present("x", v), absent})
		}},
	}
}

func versionCases() []Case {
	return []Case{
		{Name: "versions/stored-as-given", Run: func(t T, h *Harness) {
			e := h.Open()
			vers := []uint64{1, 2, 255, 256, 1 << 32, 1<<32 + 1, 1 << 63, math.MaxUint64 - 1, math.MaxUint64}
			var ks [][]byte
			var want []state
			var wantScan []engine.Entry
			for i, v := range vers {
				k := []byte(fmt.Sprintf("k%02d", i))
				val := fmt.Sprintf("v%d", i)
				h.PutVersion(e, k, []byte(val), v)
				ks = append(ks, k)
				want = append(want, present(val, v))
				wantScan = append(wantScan, engine.Entry{Key: k, Value: []byte(val), Version: v})
			}
			h.expectStates(e, "versions as given", ks, want)
			checkEntries(t, "scan reports versions as given", h.MustScan(e, engine.ScanOptions{}), wantScan, false)
			// A put whose version follows exactly is fine.
			h.PutVersion(e, []byte("k00"), []byte("next"), 2)
			// Nothing exceeds MaxUint64.
			_, err := e.Apply(h.Context(), []engine.Write{put("k08", "again", math.MaxUint64)}, independent)
			checkErr(t, "put at version MaxUint64 over version MaxUint64", err, engine.ErrInvalidArgument)
			// Results report the stored versions.
			for i, k := range ks[1:] {
				r := h.MustApply(e, independent, engine.Write{Kind: engine.OpDelete, Key: k})
				checkResult(t, fmt.Sprintf("delete of %s", k), r[0], true, want[i+1])
			}
		}},

		{Name: "versions/must-increase", Run: func(t T, h *Harness) {
			e := h.Open()
			vOld := h.NextVersion()
			h.PutVersion(e, []byte("k"), []byte("old"), vOld)
			vCur := h.NextVersion()
			h.PutVersion(e, []byte("k"), []byte("cur"), vCur)
			h.Put(e, []byte("other"), []byte("o"))
			before := h.MustRead(e, keys("k", "absent", "other")...)
			for _, c := range []struct {
				name string
				w    engine.Write
			}{
				{"equal version", put("k", "x", vCur)},
				{"lower version", put("k", "x", vCur-1)},
				{"the previous version", put("k", "x", vOld)},
				{"version 1", put("k", "x", 1)},
				{"version 0", put("k", "x", 0)},
				{"version 0 on an absent key", put("absent", "x", 0)},
				{"equal version, condition holding", putIf("k", "x", vCur, ifVersion(vCur))},
				{"version 0, condition holding", putIf("absent", "x", 0, ifAbsent)},
			} {
				for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
					_, err := e.Apply(h.Context(), []engine.Write{c.w}, opts)
					checkErr(t, fmt.Sprintf("%s: %s (%s)", c.name, fmtWrite(c.w), modeName(opts)), err, engine.ErrInvalidArgument)
					call := []engine.Write{put("other", "changed", h.NextVersion()), c.w}
					_, err = e.Apply(h.Context(), call, opts)
					checkErr(t, fmt.Sprintf("%s after a valid write: %s (%s)", c.name, fmtWrites(call), modeName(opts)), err, engine.ErrInvalidArgument)
				}
			}
			h.expectUnchanged(e, "after rejected versions", keys("k", "absent", "other"), before)
		}},

		{Name: "versions/must-increase-within-call", Run: func(t T, h *Harness) {
			e := h.Open()
			v0 := h.Put(e, []byte("k"), []byte("v0"))
			before := h.MustRead(e, []byte("k"))
			v1 := h.NextVersion()
			v2 := h.NextVersion()
			for _, call := range [][]engine.Write{
				{put("k", "a", v2), put("k", "b", v1)},
				{put("k", "a", v1), put("k", "b", v1)},
			} {
				_, err := e.Apply(h.Context(), call, independent)
				checkErr(t, fmt.Sprintf("Apply(%s): the second put does not exceed the first", fmtWrites(call)), err, engine.ErrInvalidArgument)
			}
			h.expectUnchanged(e, "after rejected calls", [][]byte{[]byte("k")}, before)
			r := h.MustApply(e, independent, put("k", "a", v1), put("k", "b", v2))
			checkResult(t, "first of two increasing puts", r[0], true, present("v0", v0))
			checkResult(t, "second of two increasing puts", r[1], true, present("a", v1))
			h.expectStates(e, "after two increasing puts", keys("k"), []state{present("b", v2)})
		}},

		{Name: "versions/recreate", Run: func(t T, h *Harness) {
			e := h.Open()
			v1 := h.Put(e, []byte("k"), []byte("first"))
			h.Delete(e, []byte("k"))
			h.expectStates(e, "after delete", keys("k"), []state{absent})
			// The old version no longer matches; absence does.
			r := h.MustApply(e, independent, check("k", ifVersion(v1)))
			checkResult(t, "condition on the deleted version", r[0], false, absent)
			r = h.MustApply(e, independent, check("k", ifVersion(0)))
			checkResult(t, "condition on version 0 after delete", r[0], true, absent)
			v2 := h.NextVersion()
			r = h.MustApply(e, independent, putIf("k", "second", v2, ifAbsent))
			checkResult(t, "re-create", r[0], true, absent)
			h.expectStates(e, "after re-create", keys("k"), []state{present("second", v2)})
			// No ABA: a CAS expecting the first incarnation fails.
			v3 := h.NextVersion()
			r = h.MustApply(e, independent, putIf("k", "third", v3, ifVersion(v1)))
			checkResult(t, "CAS on the first incarnation's version", r[0], false, present("second", v2))
			r = h.MustApply(e, independent, putIf("k", "third", v3, ifVersion(v2)))
			checkResult(t, "CAS on the current version", r[0], true, present("second", v2))
			h.expectStates(e, "final", keys("k"), []state{present("third", v3)})
		}},

		{Name: "versions/recreate-within-call", Run: func(t T, h *Harness) {
			// A key deleted and put back within one call, at the version it
			// had (allowed: after the delete its version is 0), holds the
			// new value: the engine must not take "same version as before
			// the call" for "unchanged".
			e := h.Open()
			for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
				v := h.Put(e, []byte("k"), []byte("old"))
				r := h.MustApply(e, opts, del("k"), put("k", "new", v))
				checkResult(t, fmt.Sprintf("delete (%s)", modeName(opts)), r[0], true, present("old", v))
				checkResult(t, fmt.Sprintf("put back at version %d (%s)", v, modeName(opts)), r[1], true, absent)
				h.expectStates(e, fmt.Sprintf("after delete and put back (%s)", modeName(opts)), keys("k"), []state{present("new", v)})
				h.Delete(e, []byte("k"))
			}
		}},

		{Name: "versions/results", Run: func(t T, h *Harness) {
			e := h.Open()
			type step struct {
				w       engine.Write
				applied bool
				report  state // the state the result must report
			}
			v1, v2, v3, v4, v5 := h.NextVersion(), h.NextVersion(), h.NextVersion(), h.NextVersion(), h.NextVersion()
			steps := []step{
				{check("k", ifExists), false, absent},
				{putIf("k", "one", v1, ifVersion(7)), false, absent},
				{putIf("k", "one", v1, ifAbsent), true, absent},
				{putIf("k", "two", v2, ifVersion(v2)), false, present("one", v1)},
				{putIf("k", "two", v3, ifVersion(v1)), true, present("one", v1)},
				{check("k", ifVersion(v3)), true, present("two", v3)},
				{delIf("k", ifVersion(v1)), false, present("two", v3)},
				{delIf("k", ifValue([]byte("two"))), true, present("two", v3)},
				{delIf("k", engine.Condition{}), true, absent},
				{putIf("k", "three", v4, ifExists), false, absent},
				{put("k", "three", v5), true, absent},
			}
			for i, s := range steps {
				r := h.MustApply(e, independent, s.w)
				checkResult(t, fmt.Sprintf("step %d: %s", i, fmtWrite(s.w)), r[0], s.applied, s.report)
			}
			h.expectStates(e, "final", keys("k"), []state{present("three", v5)})
		}},

		{Name: "versions/failed-condition-any-version", Run: func(t T, h *Harness) {
			// A put's version is checked against the key only when its
			// condition holds: a put whose condition fails is an answer
			// (Applied=false, the key's current state), not
			// ErrInvalidArgument, even when its version does not exceed
			// the key's.
			e := h.Open()
			ctx := h.Context()
			for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
				p := modeTag(opts) + "/"
				k, other := p+"k", p+"other"
				h.PutVersion(e, []byte(k), []byte("ten"), 10)
				cur := present("ten", 10)
				for _, c := range []struct {
					name string
					w    engine.Write
				}{
					{"lower version, stale version condition", putIf(k, "x", 5, ifVersion(3))},
					{"equal version, stale version condition", putIf(k, "x", 10, ifVersion(3))},
					{"version 1, stale version condition", putIf(k, "x", 1, ifVersion(9))},
					{"lower version, absence condition", putIf(k, "x", 5, ifAbsent)},
					{"lower version, value condition", putIf(k, "x", 5, ifValue([]byte("nine")))},
				} {
					what := fmt.Sprintf("%s: Apply(%s, %s) over %s", c.name, fmtWrite(c.w), modeName(opts), cur)
					res, err := e.Apply(ctx, []engine.Write{c.w}, opts)
					if err != nil {
						t.Errorf("%s: %v; a failed condition is an answer, whatever the version", what, err)
						continue
					}
					if len(res) != 1 {
						t.Errorf("%s: %d results for one write", what, len(res))
						continue
					}
					checkResult(t, what, res[0], false, cur)
				}

				// Beside a valid write in the same call.
				vo := h.NextVersion()
				call := []engine.Write{put(other, "o", vo), putIf(k, "x", 5, ifVersion(3))}
				what := fmt.Sprintf("Apply(%s, %s) over %s", fmtWrites(call), modeName(opts), cur)
				res, err := e.Apply(ctx, call, opts)
				switch {
				case err != nil:
					t.Errorf("%s: %v; a failed condition is an answer, whatever the version", what, err)
				case len(res) != 2:
					t.Errorf("%s: %d results for 2 writes", what, len(res))
				default:
					// In atomic mode the failed condition fails the group.
					checkResult(t, what+": the valid put", res[0], !opts.Atomic, absent)
					checkResult(t, what+": the put whose condition fails", res[1], false, cur)
				}
				wantOther := absent
				if !opts.Atomic {
					wantOther = present("o", vo)
				}
				h.expectStates(e, what, keys(k, other), []state{cur, wantOther})

				// The condition fails because of an earlier write of the
				// same call, whose version the later put does not exceed.
				vLow, vHigh := h.NextVersion(), h.NextVersion()
				call = []engine.Write{put(k, "high", vHigh), putIf(k, "low", vLow, ifVersion(10))}
				what = fmt.Sprintf("Apply(%s, %s) over %s", fmtWrites(call), modeName(opts), cur)
				res, err = e.Apply(ctx, call, opts)
				switch {
				case err != nil:
					t.Errorf("%s: %v; a failed condition is an answer, whatever the version", what, err)
				case len(res) != 2:
					t.Errorf("%s: %d results for 2 writes", what, len(res))
				case opts.Atomic:
					// The group fails; results describe the state before
					// the call.
					checkResult(t, what+": the first put", res[0], false, cur)
					checkResult(t, what+": the put whose condition fails", res[1], false, cur)
					h.expectStates(e, what, keys(k), []state{cur})
				default:
					checkResult(t, what+": the first put", res[0], true, cur)
					checkResult(t, what+": the put whose condition fails", res[1], false, present("high", vHigh))
					h.expectStates(e, what, keys(k), []state{present("high", vHigh)})
				}
			}
		}},

		{Name: "versions/ignored-by-delete-and-check", Run: func(t T, h *Harness) {
			e := h.Open()
			va := h.Put(e, []byte("a"), []byte("A"))
			vb := h.Put(e, []byte("b"), []byte("B"))
			r := h.MustApply(e, independent, engine.Write{Kind: engine.OpCheck, Key: []byte("a"), Version: 1})
			checkResult(t, "check carrying a low Version", r[0], true, present("A", va))
			r = h.MustApply(e, independent, engine.Write{Kind: engine.OpDelete, Key: []byte("a"), Version: 1})
			checkResult(t, "delete carrying a low Version", r[0], true, present("A", va))
			r = h.MustApply(e, atomicOpts, engine.Write{Kind: engine.OpDelete, Key: []byte("b"), Version: vb})
			checkResult(t, "delete carrying the current Version (atomic)", r[0], true, present("B", vb))
			h.expectStates(e, "after deletes", keys("a", "b"), []state{absent, absent})
		}},
	}
}
