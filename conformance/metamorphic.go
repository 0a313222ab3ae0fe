package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/flaredb/flaredb/core/engine"
)

// Metamorphic runs a random sequence of steps operations, generated from
// seed, against the reference engine and against every engine of engines
// (by name), and reports through t every outcome that differs from the
// reference's. The operations: puts, deletes and checks under every kind
// of condition, holding and failing, in independent calls (several writes,
// the same key more than once) and atomic groups; a few calls that are
// invalid and must fail whole; reads of several keys; scans forward and
// reverse, bounded or not, with limits, keys only, or stopped by the
// callback; and, for engines that declare Capabilities.Persistent,
// close-and-reopen. The reference is never reopened.
//
// Outcomes are compared exactly (results, entries, versions) except that
// errors are compared by their sentinel (errors.Is) and a nil value equals
// an empty one. After a difference, that engine is dropped from the rest of
// the run (its state has diverged); each report names the seed, the step
// and the steps leading to it, so a failure can be replayed. The same seed
// always yields the same operations. At the end every surviving engine's
// full content is compared with the reference's.
//
// Like a case, Metamorphic calls Fatalf only from the calling goroutine.
// Engines are opened on directories from t.TempDir and closed through
// t.Cleanup.
func Metamorphic(t T, seed int64, steps int, reference Factory, engines map[string]Factory) {
	t.Helper()
	t.Logf("metamorphic: seed %d, %d steps, engines %v", seed, steps, sortedNames(engines))
	ctx := context.Background()

	open := func(name string, f Factory, dir string) engine.Engine {
		t.Helper()
		e, err := f(dir)
		if err != nil {
			t.Fatalf("metamorphic (seed %d): open %s: %v", seed, name, err)
		}
		if e == nil {
			t.Fatalf("metamorphic (seed %d): open %s: nil engine", seed, name)
		}
		return e
	}
	closeLater := func(p *engine.Engine) {
		t.Cleanup(func() { _ = (*p).Close() }) // Close twice is fine
	}

	ref := open("reference", reference, t.TempDir())
	closeLater(&ref)
	limits := ref.Describe().Limits

	type subject struct {
		name       string
		f          Factory
		dir        string
		e          engine.Engine
		persistent bool
		dead       bool
	}
	var subs []*subject
	for _, name := range sortedNames(engines) {
		s := &subject{name: name, f: engines[name], dir: t.TempDir()}
		s.e = open(name, s.f, s.dir)
		closeLater(&s.e)
		d := s.e.Describe()
		s.persistent = d.Capabilities.Persistent
		limits = minLimits(limits, d.Limits)
		subs = append(subs, s)
	}

	g := &metaGen{
		r:     rand.New(rand.NewPCG(uint64(seed), 0x5eed)),
		ref:   ref,
		ctx:   ctx,
		batch: 5,
	}
	if limits.MaxWrites > 0 {
		g.batch = min(g.batch, limits.MaxWrites)
	}
	g.makeKeys()

	var history []string
	for step := 0; step < steps; step++ {
		op := g.next()
		history = append(history, fmt.Sprintf("step %d: %s", step, op.desc))
		if len(history) > 25 {
			history = history[1:]
		}
		if op.reopen {
			for _, s := range subs {
				if s.dead || !s.persistent {
					continue
				}
				if err := s.e.Close(); err != nil {
					t.Errorf("metamorphic seed %d step %d: %s: Close before reopening: %v", seed, step, s.name, err)
					s.dead = true
					continue
				}
				e, err := s.f(s.dir)
				if err != nil {
					t.Errorf("metamorphic seed %d step %d: %s: reopen: %v", seed, step, s.name, err)
					s.dead = true
					continue
				}
				s.e = e
			}
			continue
		}
		want := op.run(ctx, ref)
		for _, s := range subs {
			if s.dead {
				continue
			}
			if got := op.run(ctx, s.e); got != want {
				t.Errorf("metamorphic seed %d step %d: %s differs from the reference\n  op:        %s\n  reference: %s\n  %s: %s\n  recent steps:\n    %s",
					seed, step, s.name, op.desc, want, s.name, got, strings.Join(history, "\n    "))
				s.dead = true
			}
		}
	}

	all := metaOp{desc: "final full scan", run: func(ctx context.Context, e engine.Engine) string {
		return scanOutcome(ctx, e, engine.ScanOptions{}, -1)
	}}
	want := all.run(ctx, ref)
	for _, s := range subs {
		if s.dead {
			continue
		}
		if got := all.run(ctx, s.e); got != want {
			t.Errorf("metamorphic seed %d: %s's final content differs from the reference\n  reference: %s\n  %s: %s", seed, s.name, want, s.name, got)
		}
	}
}

func sortedNames(m map[string]Factory) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// minLimits returns the tighter of two limits, field by field (0 is no
// limit).
func minLimits(a, b engine.Limits) engine.Limits {
	m := func(x, y int) int {
		switch {
		case x == 0:
			return y
		case y == 0:
			return x
		}
		return min(x, y)
	}
	return engine.Limits{
		MaxKeySize:   m(a.MaxKeySize, b.MaxKeySize),
		MaxValueSize: m(a.MaxValueSize, b.MaxValueSize),
		MaxWrites:    m(a.MaxWrites, b.MaxWrites),
		MaxBatchSize: m(a.MaxBatchSize, b.MaxBatchSize),
	}
}

// metaOp is one generated operation: a description, and a function that
// performs it on an engine and returns its outcome in canonical form.
type metaOp struct {
	desc   string
	run    func(ctx context.Context, e engine.Engine) string
	reopen bool
}

// metaGen generates operations. It reads the reference engine's current
// state to make conditions that hold as often as ones that fail.
type metaGen struct {
	r       *rand.Rand
	ref     engine.Engine
	ctx     context.Context
	keys    [][]byte
	version uint64
	batch   int // most writes in one call
}

func (g *metaGen) makeKeys() {
	seen := map[string]bool{}
	for _, k := range []string{"\x00", "\x00\x00", "\x00\xff", "\x01", "a", "a\x00", "a\xff", "ab", "b", "\xfe", "\xff", "\xff\xff"} {
		seen[k] = true
	}
	alphabet := []byte{0x00, 0x01, 'a', 'b', 0x7F, 0xFE, 0xFF}
	for len(seen) < 24 {
		k := make([]byte, 1+g.r.IntN(3))
		for i := range k {
			k[i] = alphabet[g.r.IntN(len(alphabet))]
		}
		seen[string(k)] = true
	}
	for k := range seen {
		g.keys = append(g.keys, []byte(k))
	}
	slices.SortFunc(g.keys, bytes.Compare)
	g.r.Shuffle(len(g.keys), func(i, j int) { g.keys[i], g.keys[j] = g.keys[j], g.keys[i] })
}

func (g *metaGen) key() []byte { return g.keys[g.r.IntN(len(g.keys))] }

func (g *metaGen) nextVersion() uint64 {
	g.version++
	return g.version
}

func (g *metaGen) value() []byte {
	if g.r.IntN(8) == 0 {
		return nil
	}
	alphabet := []byte{0x00, 0xFF, 'x', 'y', 'z'}
	v := make([]byte, g.r.IntN(5))
	for i := range v {
		v[i] = alphabet[g.r.IntN(len(alphabet))]
	}
	return v
}

// current reads key's state from the reference.
func (g *metaGen) current(key []byte) engine.Entry {
	got, err := g.ref.Read(g.ctx, [][]byte{key})
	if err != nil || len(got) != 1 {
		return engine.Entry{}
	}
	return got[0]
}

func (g *metaGen) cond(key []byte) engine.Condition {
	cur := g.current(key)
	switch n := g.r.IntN(20); {
	case n < 7:
		return engine.Condition{}
	case n < 12:
		v := cur.Version
		switch g.r.IntN(5) {
		case 0:
			v = 0
		case 1:
			if g.version > 0 {
				v = 1 + g.r.Uint64N(g.version) // some version used before
			}
		}
		return ifVersion(v)
	case n < 14:
		return ifAbsent
	case n < 16:
		return ifExists
	default:
		switch g.r.IntN(4) {
		case 0, 1:
			return ifValue(engine.Clone(cur.Value))
		case 2:
			return ifValue([]byte{})
		}
		return ifValue(g.value())
	}
}

// write generates a valid write to key.
func (g *metaGen) write(key []byte, conditional bool) engine.Write {
	w := engine.Write{Key: key}
	switch n := g.r.IntN(20); {
	case n < 11:
		w.Kind, w.Value, w.Version = engine.OpPut, g.value(), g.nextVersion()
	case n < 16:
		w.Kind = engine.OpDelete
	default:
		w.Kind = engine.OpCheck
	}
	if conditional {
		w.Cond = g.cond(key)
	}
	return w
}

func (g *metaGen) next() metaOp {
	switch n := g.r.IntN(100); {
	case n < 30:
		// Independent writes, the same key possibly more than once.
		ws := make([]engine.Write, 1+g.r.IntN(g.batch))
		for i := range ws {
			ws[i] = g.write(g.key(), true)
		}
		return applyOp(ws, engine.ApplyOptions{NoSync: g.r.IntN(2) == 0})
	case n < 45:
		// An atomic group over distinct keys.
		n := 1 + g.r.IntN(g.batch)
		seen := map[string]bool{}
		var ws []engine.Write
		for len(ws) < n {
			k := g.key()
			if seen[string(k)] {
				if len(seen) == len(g.keys) {
					break
				}
				continue
			}
			seen[string(k)] = true
			ws = append(ws, g.write(k, g.r.IntN(3) > 0))
		}
		return applyOp(ws, engine.ApplyOptions{Atomic: true, NoSync: g.r.IntN(2) == 0})
	case n < 50:
		return g.invalid()
	case n < 65:
		ks := make([][]byte, 1+g.r.IntN(5))
		for i := range ks {
			ks[i] = g.key()
		}
		return readOp(ks)
	case n < 97:
		return g.scan()
	default:
		return metaOp{desc: "close and reopen the persistent engines", reopen: true}
	}
}

// invalid generates a call with one invalid write among unconditional
// valid ones on other keys: it must fail whole with ErrInvalidArgument.
func (g *metaGen) invalid() metaOp {
	var bad engine.Write
	switch g.r.IntN(5) {
	case 0:
		bad = engine.Write{Kind: engine.OpPut, Key: nil, Value: g.value(), Version: g.nextVersion()}
	case 1:
		bad = engine.Write{Kind: engine.OpPut, Key: g.key(), Value: g.value(), Version: 0}
	case 2:
		bad = engine.Write{Kind: 0, Key: g.key(), Version: g.nextVersion()}
	case 3:
		bad = engine.Write{Kind: engine.OpDelete, Key: g.key(), Cond: engine.Condition{Kind: 42}}
	default:
		// A version that does not exceed a present key's.
		bad = engine.Write{Kind: engine.OpPut, Key: g.key(), Value: g.value()}
		cur := g.current(bad.Key)
		if cur.Version == 0 {
			bad.Version = 0
		} else {
			bad.Version = cur.Version - g.r.Uint64N(min(cur.Version, 3))
		}
	}
	ws := []engine.Write{bad}
	for i := 1 + g.r.IntN(g.batch); i > 1; i-- {
		k := g.key()
		if bytes.Equal(k, bad.Key) {
			continue
		}
		ws = append(ws, g.write(k, false))
	}
	g.r.Shuffle(len(ws), func(i, j int) { ws[i], ws[j] = ws[j], ws[i] })
	return applyOp(ws, engine.ApplyOptions{Atomic: g.r.IntN(2) == 0})
}

func (g *metaGen) bound() []byte {
	switch g.r.IntN(10) {
	case 0, 1, 2, 3:
		return nil
	case 4:
		return []byte{}
	case 5, 6:
		k := make([]byte, 1+g.r.IntN(2))
		for i := range k {
			k[i] = byte(g.r.IntN(256))
		}
		return k
	}
	return g.key()
}

func (g *metaGen) scan() metaOp {
	opts := engine.ScanOptions{Start: g.bound(), End: g.bound(), Reverse: g.r.IntN(2) == 0, KeysOnly: g.r.IntN(5) == 0}
	if g.r.IntN(2) == 0 {
		opts.Limit = 1 + g.r.IntN(6)
	}
	if len(opts.Start) > 0 && len(opts.End) > 0 && bytes.Compare(opts.Start, opts.End) > 0 && g.r.IntN(4) > 0 {
		opts.Start, opts.End = opts.End, opts.Start // mostly valid ranges
	}
	stopAt := -1
	if g.r.IntN(8) == 0 {
		stopAt = 1 + g.r.IntN(4)
	}
	desc := "scan " + fmtScan(opts)
	if stopAt > 0 {
		desc += fmt.Sprintf(" stopping at entry %d", stopAt)
	}
	return metaOp{desc: desc, run: func(ctx context.Context, e engine.Engine) string {
		return scanOutcome(ctx, e, opts, stopAt)
	}}
}

func applyOp(ws []engine.Write, opts engine.ApplyOptions) metaOp {
	return metaOp{desc: fmt.Sprintf("apply %s %s", modeName(opts), fmtWrites(ws)), run: func(ctx context.Context, e engine.Engine) string {
		// Each engine gets its own copy: none may see another's changes
		// to the slices.
		in := make([]engine.Write, len(ws))
		for i, w := range ws {
			in[i] = w
			in[i].Key, in[i].Value, in[i].Cond.Value = engine.Clone(w.Key), engine.Clone(w.Value), engine.Clone(w.Cond.Value)
		}
		res, err := e.Apply(ctx, in, opts)
		if err != nil {
			return "error " + errClass(err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d results:", len(res))
		for _, r := range res {
			fmt.Fprintf(&b, " {%v %q@%d}", r.Applied, r.Value, r.Version)
		}
		return b.String()
	}}
}

func readOp(ks [][]byte) metaOp {
	return metaOp{desc: "read " + fmtKeys(ks), run: func(ctx context.Context, e engine.Engine) string {
		got, err := e.Read(ctx, slices.Clone(ks))
		if err != nil {
			return "error " + errClass(err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d entries:", len(got))
		for _, en := range got {
			fmt.Fprintf(&b, " %q=%q@%d", en.Key, en.Value, en.Version)
		}
		return b.String()
	}}
}

// scanOutcome runs a scan and renders what it saw; with stopAt > 0 the
// callback fails at that entry.
func scanOutcome(ctx context.Context, e engine.Engine, opts engine.ScanOptions, stopAt int) string {
	var b strings.Builder
	n := 0
	err := e.Scan(ctx, opts, func(en engine.Entry) error {
		n++
		fmt.Fprintf(&b, " %q=%q@%d", en.Key, en.Value, en.Version)
		if n == stopAt {
			return errStop
		}
		return nil
	})
	switch {
	case err == nil:
	case err == errStop:
		b.WriteString(" (stopped by the callback)")
	default:
		return "error " + errClass(err) + " after" + b.String()
	}
	return fmt.Sprintf("%d entries:%s", n, b.String())
}

// errClass names the sentinel an error matches.
func errClass(err error) string {
	for _, s := range []struct {
		name string
		err  error
	}{
		{"context.Canceled", context.Canceled},
		{"context.DeadlineExceeded", context.DeadlineExceeded},
		{"ErrInvalidArgument", engine.ErrInvalidArgument},
		{"ErrTooLarge", engine.ErrTooLarge},
		{"ErrClosed", engine.ErrClosed},
		{"ErrNotFound", engine.ErrNotFound},
		{"ErrUnavailable", engine.ErrUnavailable},
		{"ErrUnsupported", engine.ErrUnsupported},
		{"ErrCorrupt", engine.ErrCorrupt},
		{"ErrInternal", engine.ErrInternal},
		{"callback error", errStop},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return fmt.Sprintf("untyped error %q", err)
}
