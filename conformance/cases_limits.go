package conformance

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/flaredb/flaredb/core/engine"
)

// largeValueSize is the size of the large values the suite round-trips:
// beyond gRPC's 4 MiB default message limit, so that a plugin transport
// that did not raise its limits fails.
const largeValueSize = 5 << 20

// pattern returns n bytes that differ from position to position (so that a
// truncated or shifted copy does not compare equal), seeded by seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n+8)
	x := uint64(seed) + 1
	for i := 0; i < n; i += 8 {
		x = x*6364136223846793005 + 1442695040888963407
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return b[:n:n]
}

// expectTooLarge applies writes in each mode and checks that the call fails
// with ErrTooLarge and applies nothing to keys.
func (h *Harness) expectTooLarge(e engine.Engine, what string, writes []engine.Write, ks [][]byte) {
	h.t.Helper()
	before := h.MustRead(e, ks...)
	for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
		_, err := e.Apply(h.Context(), writes, opts)
		checkErr(h.t, fmt.Sprintf("%s (%s)", what, modeName(opts)), err, engine.ErrTooLarge)
	}
	h.expectUnchanged(e, what, ks, before)
}

func limitCases() []Case {
	return []Case{
		{Name: "limits/key-size", Run: func(t T, h *Harness) {
			max := h.Description.Limits.MaxKeySize
			if max == 0 {
				t.Skipf("engine declares no MaxKeySize: no key-size limit to exceed")
			}
			e := h.Open()
			ok := bytes.Repeat([]byte{'k'}, max)
			tooLong := bytes.Repeat([]byte{'k'}, max+1)
			v := h.Put(e, ok, []byte("fits"))
			h.expectStates(e, "key of exactly MaxKeySize", [][]byte{ok}, []state{present("fits", v)})

			_, err := e.Read(h.Context(), [][]byte{tooLong})
			checkErr(t, fmt.Sprintf("Read of a key of %d bytes (MaxKeySize %d)", max+1, max), err, engine.ErrTooLarge)
			_, err = e.Read(h.Context(), [][]byte{[]byte("a"), tooLong})
			checkErr(t, "Read of a valid key and a key beyond MaxKeySize", err, engine.ErrTooLarge)

			ks := [][]byte{ok, tooLong, []byte("other")}
			for _, w := range []engine.Write{
				{Kind: engine.OpPut, Key: tooLong, Value: []byte("x"), Version: h.NextVersion()},
				{Kind: engine.OpDelete, Key: tooLong},
				{Kind: engine.OpCheck, Key: tooLong, Cond: ifAbsent},
			} {
				what := fmt.Sprintf("%s with a key of %d bytes (MaxKeySize %d)", w.Kind, max+1, max)
				h.expectTooLarge(e, what, []engine.Write{w}, ks[:1])
				h.expectTooLarge(e, what+" after a valid write", []engine.Write{put("other", "o", h.NextVersion()), w}, [][]byte{ok, []byte("other")})
			}
		}},

		{Name: "limits/value-size", Run: func(t T, h *Harness) {
			l := h.Description.Limits
			max := l.MaxValueSize
			if max == 0 {
				t.Skipf("engine declares no MaxValueSize: no value-size limit to exceed")
			}
			e := h.Open()
			if l.MaxBatchSize == 0 || l.MaxBatchSize >= max+1 {
				v := h.Put(e, []byte("fits"), pattern(max, 1))
				got := h.MustGet(e, []byte("fits"))
				if got.Version != v || !bytes.Equal(got.Value, pattern(max, 1)) {
					t.Errorf("value of exactly MaxValueSize (%d bytes): read back %d bytes at version %d, want %d bytes at version %d", max, len(got.Value), got.Version, max, v)
				}
				h.Delete(e, []byte("fits"))
			} else {
				t.Logf("MaxBatchSize %d leaves no room for a value of MaxValueSize %d; only exceeding it is checked", l.MaxBatchSize, max)
			}
			tooBig := pattern(max+1, 2)
			h.Put(e, []byte("k"), []byte("small"))
			ks := keys("k", "other")
			what := fmt.Sprintf("put of a value of %d bytes (MaxValueSize %d)", max+1, max)
			w := engine.Write{Kind: engine.OpPut, Key: []byte("k"), Value: tooBig, Version: h.NextVersion()}
			h.expectTooLarge(e, what, []engine.Write{w}, ks)
			h.expectTooLarge(e, what+" after a valid write", []engine.Write{put("other", "o", h.NextVersion()), w}, ks)
			c := engine.Write{Kind: engine.OpCheck, Key: []byte("k"), Cond: ifValue(tooBig)}
			h.expectTooLarge(e, fmt.Sprintf("check of a condition value of %d bytes (MaxValueSize %d)", max+1, max), []engine.Write{put("other", "o", h.NextVersion()), c}, ks)
		}},

		{Name: "limits/writes", Run: func(t T, h *Harness) {
			l := h.Description.Limits
			max := l.MaxWrites
			if max == 0 {
				t.Skipf("engine declares no MaxWrites: no writes-per-call limit to exceed")
			}
			e := h.Open()
			mk := func(n int, prefix string) ([]engine.Write, [][]byte) {
				ws := make([]engine.Write, n)
				ks := make([][]byte, n)
				for i := range ws {
					ks[i] = []byte(fmt.Sprintf("%s%08d", prefix, i))
					ws[i] = engine.Write{Kind: engine.OpPut, Key: ks[i], Value: []byte("v"), Version: h.NextVersion()}
				}
				return ws, ks
			}
			ws, ks := mk(max, "fit")
			if size := max * (len(ks[0]) + 1); l.MaxBatchSize == 0 || size <= l.MaxBatchSize {
				h.MustApply(e, independent, ws...)
				if got := h.MustScan(e, engine.ScanOptions{KeysOnly: true}); len(got) != max {
					t.Errorf("after a call of exactly MaxWrites (%d) writes: %d keys, want %d", max, len(got), max)
				}
			} else {
				t.Logf("MaxBatchSize %d leaves no room for %d writes; only exceeding MaxWrites is checked", l.MaxBatchSize, max)
			}
			ws, _ = mk(max+1, "over")
			for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
				_, err := e.Apply(h.Context(), ws, opts)
				checkErr(t, fmt.Sprintf("Apply of %d writes (MaxWrites %d, %s)", max+1, max, modeName(opts)), err, engine.ErrTooLarge)
			}
			if got := h.MustScan(e, engine.ScanOptions{Start: []byte("over"), End: []byte("overz")}); len(got) != 0 {
				t.Errorf("a call beyond MaxWrites applied %d writes, want none (first %s)", len(got), fmtEntry(got[0]))
			}
		}},

		{Name: "limits/batch-size", Run: func(t T, h *Harness) {
			l := h.Description.Limits
			max := l.MaxBatchSize
			if max == 0 {
				t.Skipf("engine declares no MaxBatchSize: no bytes-per-call limit to exceed")
			}
			// Writes of keys "b%08d" (9 bytes) and values as large as
			// MaxValueSize allows, adding up to exactly max+1 bytes.
			const keyLen = 9
			per := max + 1
			if l.MaxValueSize > 0 {
				per = min(per, keyLen+l.MaxValueSize)
			}
			if per <= keyLen {
				t.Skipf("engine declares MaxValueSize=%d with MaxBatchSize=%d: no call of %d-byte keys can exceed it", l.MaxValueSize, max, keyLen)
			}
			n := (max + 1 + per - 1) / per
			if l.MaxWrites > 0 && n > l.MaxWrites {
				t.Skipf("engine declares MaxWrites=%d, MaxValueSize=%d and MaxBatchSize=%d: a call within the first two cannot exceed the third", l.MaxWrites, l.MaxValueSize, max)
			}
			e := h.Open()
			build := func(total int, prefix string) []engine.Write {
				// n writes of total/n bytes, the first total%n one byte
				// larger.
				n := (total + per - 1) / per
				if total < n*keyLen {
					t.Fatalf("internal: %d bytes cannot hold %d keys", total, n)
				}
				ws := make([]engine.Write, n)
				for i := range ws {
					size := total / n
					if i < total%n {
						size++
					}
					ws[i] = engine.Write{Kind: engine.OpPut, Key: []byte(fmt.Sprintf("%s%08d", prefix, i)),
						Value: pattern(size-keyLen, byte(i)), Version: h.NextVersion()}
				}
				return ws
			}
			over := build(max+1, "o")
			if sz := sizeOf(over); sz != max+1 {
				t.Fatalf("internal: built a call of %d bytes, want %d", sz, max+1)
			}
			for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
				_, err := e.Apply(h.Context(), over, opts)
				checkErr(t, fmt.Sprintf("Apply of %d writes totalling %d bytes (MaxBatchSize %d, %s)", len(over), max+1, max, modeName(opts)), err, engine.ErrTooLarge)
			}
			if got := h.MustScan(e, engine.ScanOptions{KeysOnly: true}); len(got) != 0 {
				t.Errorf("a call beyond MaxBatchSize applied %d writes, want none", len(got))
			}
			fits := build(max, "f")
			if l.MaxWrites == 0 || len(fits) <= l.MaxWrites {
				h.MustApply(e, independent, fits...)
				if got := h.MustScan(e, engine.ScanOptions{KeysOnly: true}); len(got) != len(fits) {
					t.Errorf("a call of exactly MaxBatchSize bytes: %d keys stored, want %d", len(got), len(fits))
				}
			}
		}},

		{Name: "limits/large-value", Run: func(t T, h *Harness) {
			h.SkipUnlessFits(engine.Limits{MaxValueSize: largeValueSize, MaxBatchSize: largeValueSize + 16})
			e := h.Open()
			big1, big2 := pattern(largeValueSize, 1), pattern(largeValueSize, 2)
			v1 := h.Put(e, []byte("big"), big1)
			h.Put(e, []byte("small"), []byte("s"))
			got := h.MustGet(e, []byte("big"))
			if got.Version != v1 || !bytes.Equal(got.Value, big1) {
				t.Errorf("Read of a %d-byte value: got %d bytes at version %d (equal=%v)", largeValueSize, len(got.Value), got.Version, bytes.Equal(got.Value, big1))
			}
			scanned := h.MustScan(e, engine.ScanOptions{})
			if len(scanned) != 2 || !bytes.Equal(scanned[0].Value, big1) || scanned[0].Version != v1 {
				t.Errorf("Scan over a %d-byte value: %d entries, first of %d bytes", largeValueSize, len(scanned), len(scanned[0].Value))
			}
			r := h.MustApply(e, independent, engine.Write{Kind: engine.OpCheck, Key: []byte("big"), Cond: ifValue(big1)})
			if !r[0].Applied || !bytes.Equal(r[0].Value, big1) {
				t.Errorf("CondValue with a %d-byte value: Applied=%v, result value of %d bytes", largeValueSize, r[0].Applied, len(r[0].Value))
			}
			v2 := h.NextVersion()
			r = h.MustApply(e, independent, engine.Write{Kind: engine.OpPut, Key: []byte("big"), Value: big2, Version: v2})
			if !r[0].Applied || r[0].Version != v1 || !bytes.Equal(r[0].Value, big1) {
				t.Errorf("overwriting a %d-byte value: result %v at version %d with %d bytes, want the previous value", largeValueSize, r[0].Applied, r[0].Version, len(r[0].Value))
			}
			r = h.MustApply(e, independent, del("big"))
			if !r[0].Applied || r[0].Version != v2 || !bytes.Equal(r[0].Value, big2) {
				t.Errorf("deleting a %d-byte value: result %v at version %d with %d bytes, want the previous value", largeValueSize, r[0].Applied, r[0].Version, len(r[0].Value))
			}
		}},

		{Name: "limits/large-batch", Run: func(t T, h *Harness) {
			// 64 values of 80 KiB: 5 MiB in one call, one Read and one
			// Scan.
			const n, size = 64, 80 << 10
			h.SkipUnlessFits(engine.Limits{MaxValueSize: size, MaxWrites: n, MaxBatchSize: n * (size + 8)})
			e := h.Open()
			for _, opts := range []engine.ApplyOptions{independent, atomicOpts} {
				var ws []engine.Write
				var ks [][]byte
				var want []engine.Entry
				for i := 0; i < n; i++ {
					k := []byte(fmt.Sprintf("%v-%03d", opts.Atomic, i))
					v := h.NextVersion()
					val := pattern(size, byte(i))
					ws = append(ws, engine.Write{Kind: engine.OpPut, Key: k, Value: val, Version: v})
					ks = append(ks, k)
					want = append(want, engine.Entry{Key: k, Value: val, Version: v})
				}
				res := h.MustApply(e, opts, ws...)
				for i := range res {
					if !res[i].Applied {
						t.Errorf("%s: write %d not applied", modeName(opts), i)
					}
				}
				got := h.MustRead(e, ks...)
				checkEntries(t, fmt.Sprintf("Read of %d large values (%s)", n, modeName(opts)), got, want, false)
				scanned := h.MustScan(e, engine.ScanOptions{Start: ks[0], End: append(ks[n-1], 0)})
				checkEntries(t, fmt.Sprintf("Scan of %d large values (%s)", n, modeName(opts)), scanned, want, false)
			}
		}},
	}
}

func sizeOf(ws []engine.Write) int {
	s := 0
	for _, w := range ws {
		s += writeSize(w)
	}
	return s
}
