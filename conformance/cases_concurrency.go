package conformance

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/flaredb/flaredb/core/engine"
)

// A note on racing versions. Versions come from one counter (NextVersion),
// taken after the read that a CAS is based on, so whenever a CAS condition
// holds its version exceeds the key's: the put is valid. When a racing
// writer got in first with a higher version, the condition fails and the
// version may also be too low. The contract settles that for the write
// itself: its version is checked only when its condition holds, so a single
// CAS that loses a race is a failed condition (an answer), never an error.
// What it leaves open is an atomic group in which one write's condition
// fails while another, unconditional, write carries a version the key has
// passed: an engine may report the failed group (an answer) or reject the
// stale version (ErrInvalidArgument, which applies nothing). The atomic
// groups case accepts either, and checks that an ErrInvalidArgument was
// deserved: the key's version, read afterwards, is at least the rejected
// one.

func lostRace(t T, h *Harness, e engine.Engine, key []byte, v uint64, err error) bool {
	if !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("racing write of %s at version %d: %v", fmtKey(key), v, err)
		return false
	}
	got, rerr := e.Read(h.Context(), [][]byte{key})
	if rerr != nil {
		t.Errorf("Read after a rejected write: %v", rerr)
		return false
	}
	if len(got) != 1 || got[0].Version < v {
		t.Errorf("put of %s at version %d rejected with %q, but the key's version is only %v", fmtKey(key), v, err, got)
		return false
	}
	return true
}

func concurrencyCases() []Case {
	return []Case{
		{Name: "concurrency/cas-counters", Run: func(t T, h *Harness) {
			e := h.Open()
			const (
				goroutines  = 8
				counters    = 3
				increments  = 25 // successful increments per goroutine
				maxAttempts = 10000
			)
			counter := func(c int) []byte { return []byte(fmt.Sprintf("counter-%d", c)) }
			var successes [counters]atomic.Int64
			var attempts atomic.Int64
			ctx := h.Context()

			// First, one interleaving played out deterministically: two
			// clients read the same version, both CAS on it, the second
			// must fail.
			k0 := counter(0)
			base := h.MustGet(e, k0)
			va, vb := h.NextVersion(), h.NextVersion()
			r := h.MustApply(e, independent, putIf(string(k0), "1", va, ifVersion(base.Version)))
			checkResult(t, "first of two CAS on one version", r[0], true, absent)
			r = h.MustApply(e, independent, putIf(string(k0), "1", vb, ifVersion(base.Version)))
			checkResult(t, "second of two CAS on one version (a lost update if applied)", r[0], false, present("1", va))
			successes[0].Add(1)
			// Then the same with the versions the other way round: the
			// client that took the higher version lands first, so the
			// losing CAS also carries a version the key has passed. It is
			// still a failed condition, an answer, not an error.
			vc, vd := h.NextVersion(), h.NextVersion()
			r = h.MustApply(e, independent, putIf(string(k0), "2", vd, ifVersion(va)))
			checkResult(t, "first of two CAS on one version, with the higher version", r[0], true, present("1", va))
			w := putIf(string(k0), "2", vc, ifVersion(va))
			res, err := e.Apply(ctx, []engine.Write{w}, independent)
			if err != nil {
				t.Fatalf("Apply(%s) over version %d: %v; a CAS that lost its race fails its condition, whatever its version: an answer, not an error", fmtWrite(w), vd, err)
			}
			if len(res) != 1 {
				t.Fatalf("Apply(%s): %d results for one write", fmtWrite(w), len(res))
			}
			checkResult(t, "second of two CAS on one version, with a version the key has passed", res[0], false, present("2", vd))
			successes[0].Add(1)
			if t.Failed() {
				return
			}

			workers(t, goroutines, func(g int) {
				opts := engine.ApplyOptions{NoSync: g%2 == 1}
				for i := 0; i < increments; i++ {
					c := (g + i) % counters
					k := counter(c)
					done := false
					for a := 0; a < maxAttempts && !done; a++ {
						attempts.Add(1)
						cur, err := e.Read(ctx, [][]byte{k})
						if err != nil {
							t.Errorf("goroutine %d: Read: %v", g, err)
							return
						}
						n := 0
						if cur[0].Version != 0 {
							if n, err = strconv.Atoi(string(cur[0].Value)); err != nil {
								t.Errorf("goroutine %d: counter %d holds %s", g, c, fmtBytes(cur[0].Value))
								return
							}
						}
						if a%2 == 1 {
							runtime.Gosched() // widen the window between read and CAS
						}
						v := h.NextVersion()
						w := engine.Write{Kind: engine.OpPut, Key: k, Value: []byte(strconv.Itoa(n + 1)), Version: v, Cond: ifVersion(cur[0].Version)}
						res, err := e.Apply(ctx, []engine.Write{w}, opts)
						if err != nil {
							// A CAS that lost a race fails its condition:
							// an answer, whatever its version.
							t.Errorf("goroutine %d: Apply(%s): %v; a failed condition is an answer, never an error", g, fmtWrite(w), err)
							return
						}
						if len(res) != 1 {
							t.Errorf("goroutine %d: %d results for one write", g, len(res))
							return
						}
						if res[0].Applied {
							if res[0].Version != cur[0].Version {
								t.Errorf("goroutine %d: CAS applied on version %d but reports previous version %d", g, cur[0].Version, res[0].Version)
							}
							successes[c].Add(1)
							done = true
						} else if res[0].Version == cur[0].Version {
							t.Errorf("goroutine %d: CAS on version %d failed, yet reports that version as current", g, cur[0].Version)
							return
						}
					}
					if !done {
						t.Errorf("goroutine %d: no CAS succeeded in %d attempts", g, maxAttempts)
						return
					}
				}
			})
			if t.Failed() {
				return
			}
			var ks [][]byte
			for c := 0; c < counters; c++ {
				ks = append(ks, counter(c))
			}
			got := h.MustRead(e, ks...)
			sum := 0
			for c := range got {
				n, err := strconv.Atoi(string(got[c].Value))
				if err != nil {
					t.Errorf("counter %d holds %s", c, fmtBytes(got[c].Value))
					continue
				}
				if int64(n) != successes[c].Load() {
					t.Errorf("counter %d is %d, but %d CAS increments succeeded: lost or phantom updates", c, n, successes[c].Load())
				}
				sum += n
			}
			if sum != goroutines*increments+2 {
				t.Errorf("counters add up to %d, want %d", sum, goroutines*increments+2)
			}
			t.Logf("%d successful increments in %d attempts", goroutines*increments, attempts.Load())
		}},

		{Name: "concurrency/puts", Run: func(t T, h *Harness) {
			e := h.Open()
			const (
				goroutines = 8
				rounds     = 30
				shared     = 4
			)
			h.SkipUnlessFits(engine.Limits{MaxWrites: 2})
			type rec struct {
				value   string
				version uint64
			}
			var mu sync.Mutex
			applied := map[string][]rec{}  // shared key -> applied puts
			rejected := map[string][]rec{} // shared key -> rejected puts
			private := map[string]rec{}    // private key -> last put
			ctx := h.Context()
			workers(t, goroutines, func(g int) {
				for r := 0; r < rounds; r++ {
					opts := engine.ApplyOptions{NoSync: (g+r)%2 == 1}
					// Two private keys in one call: always applied.
					pa, pb := fmt.Sprintf("p/%d/a", g), fmt.Sprintf("p/%d/b", g)
					va, vb := h.NextVersion(), h.NextVersion()
					val := fmt.Sprintf("g%d-r%d", g, r)
					res, err := e.Apply(ctx, []engine.Write{put(pa, val, va), put(pb, val, vb)}, opts)
					if err != nil || len(res) != 2 || !res[0].Applied || !res[1].Applied {
						t.Errorf("goroutine %d: private puts: %v %v", g, res, err)
						return
					}
					mu.Lock()
					private[pa] = rec{val, va}
					private[pb] = rec{val, vb}
					mu.Unlock()
					// One shared key: racing writers; a lower version
					// than the stored one is rejected.
					sk := fmt.Sprintf("s/%d", (g+r)%shared)
					v := h.NextVersion()
					res, err = e.Apply(ctx, []engine.Write{put(sk, val, v)}, opts)
					mu.Lock()
					switch {
					case err == nil && len(res) == 1 && res[0].Applied:
						applied[sk] = append(applied[sk], rec{val, v})
					case errors.Is(err, engine.ErrInvalidArgument):
						rejected[sk] = append(rejected[sk], rec{val, v})
					default:
						t.Errorf("goroutine %d: shared put of %s at version %d: %v %v", g, sk, v, res, err)
					}
					mu.Unlock()
				}
			})
			for k, p := range private {
				h.expectStates(e, "private key after concurrent puts", keys(k), []state{present(p.value, p.version)})
			}
			for s := 0; s < shared; s++ {
				sk := fmt.Sprintf("s/%d", s)
				var last rec
				for _, p := range applied[sk] {
					if p.version > last.version {
						last = p
					}
				}
				if last.version == 0 {
					t.Errorf("no put of %s applied", sk)
					continue
				}
				got := h.MustGet(e, []byte(sk))
				checkEntry(t, fmt.Sprintf("shared key %s: the applied put of highest version", sk), got, []byte(sk), present(last.value, last.version))
				for _, p := range rejected[sk] {
					if p.version > got.Version {
						t.Errorf("shared key %s: put at version %d was rejected, yet the key's final version is only %d", sk, p.version, got.Version)
					}
				}
			}
		}},

		{Name: "concurrency/atomic-groups", Run: func(t T, h *Harness) {
			e := h.Open()
			const (
				writers  = 6
				groups   = 25
				readers  = 2
				maxReads = 100000
			)
			h.SkipUnlessFits(engine.Limits{MaxWrites: 3})
			ks := keys("g/a", "g/b", "g/c")
			ctx := h.Context()
			var writersDone atomic.Bool
			var reads atomic.Int64
			// consistent reports entries of the group keys that disagree:
			// every applied group writes one value at one version to all
			// three.
			consistent := func(what string, entries []engine.Entry) bool {
				if len(entries) == 0 {
					return true
				}
				for _, en := range entries[1:] {
					if en.Version != entries[0].Version || string(en.Value) != string(entries[0].Value) {
						t.Errorf("%s saw a partly applied atomic group: %s and %s", what, fmtEntry(entries[0]), fmtEntry(en))
						return false
					}
				}
				return true
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer writersDone.Store(true)
				workers(t, writers, func(w int) {
					for i := 0; i < groups; i++ {
						v := h.NextVersion()
						val := fmt.Sprintf("w%d-%d", w, i)
						var ws []engine.Write
						for _, k := range ks {
							ws = append(ws, engine.Write{Kind: engine.OpPut, Key: k, Value: []byte(val), Version: v})
						}
						opts := engine.ApplyOptions{Atomic: true, NoSync: i%2 == 1}
						if i%5 == 4 {
							// A guarded group: only if g/a is still
							// what this writer read.
							cur, err := e.Read(ctx, ks[:1])
							if err != nil {
								t.Errorf("writer %d: Read: %v", w, err)
								return
							}
							v = h.NextVersion()
							for j := range ws {
								ws[j].Version = v
							}
							ws[0].Cond = ifVersion(cur[0].Version)
						}
						res, err := e.Apply(ctx, ws, opts)
						if err != nil {
							// Legitimate only for a guarded group whose
							// guard failed while a later, unconditional
							// put's version had been passed, or for an
							// unguarded group overtaken by a higher one.
							if !lostRace(t, h, e, ks[0], v, err) {
								return
							}
							continue
						}
						for j := 1; j < len(res); j++ {
							if res[j].Applied != res[0].Applied {
								t.Errorf("writer %d: atomic group partly applied: results %v", w, res)
								return
							}
						}
					}
				})
			}()
			workers(t, readers, func(r int) {
				for i := 0; i < maxReads; i++ {
					last := writersDone.Load()
					if i%2 == 0 {
						got, err := e.Read(ctx, ks)
						if err != nil {
							t.Errorf("reader %d: Read: %v", r, err)
							return
						}
						if got[0].Version == 0 && got[1].Version == 0 && got[2].Version == 0 {
							got = nil
						}
						if !consistent("Read of the group's keys", got) {
							return
						}
					} else {
						var got []engine.Entry
						err := e.Scan(ctx, engine.ScanOptions{Start: []byte("g/"), End: []byte("g0"), Reverse: r == 1}, func(en engine.Entry) error {
							got = append(got, en)
							return nil
						})
						if err != nil {
							t.Errorf("reader %d: Scan: %v", r, err)
							return
						}
						if len(got) != 0 && len(got) != 3 {
							t.Errorf("reader %d: Scan saw %d of the group's 3 keys", r, len(got))
							return
						}
						if !consistent("Scan of the group's keys", got) {
							return
						}
					}
					reads.Add(1)
					if last {
						return
					}
				}
			})
			wg.Wait()
			t.Logf("%d reads and scans checked", reads.Load())
			got := h.MustRead(e, ks...)
			if got[0].Version == 0 {
				t.Errorf("no atomic group applied")
			}
			consistent("final Read", got)
		}},
	}
}
