package conformance

import (
	"github.com/flaredb/flaredb/core/engine"
)

// Cases returns every conformance case, in the order Run and Check run
// them. The slice is new on every call; callers may filter or reorder it.
func Cases() []Case {
	var all []Case
	for _, group := range [][]Case{
		describeCases(),
		basicCases(),
		binaryCases(),
		versionCases(),
		condCases(),
		batchCases(),
		atomicCases(),
		errorCases(),
		scanCases(),
		limitCases(),
		concurrencyCases(),
		durabilityCases(),
		closedCases(),
		contextCases(),
		ownershipCases(),
	} {
		all = append(all, group...)
	}
	return all
}

// Write and condition constructors, to keep the case tables short.

func put(key, value string, version uint64) engine.Write {
	return engine.Write{Kind: engine.OpPut, Key: []byte(key), Value: []byte(value), Version: version}
}

func putIf(key, value string, version uint64, c engine.Condition) engine.Write {
	w := put(key, value, version)
	w.Cond = c
	return w
}

func del(key string) engine.Write {
	return engine.Write{Kind: engine.OpDelete, Key: []byte(key)}
}

func delIf(key string, c engine.Condition) engine.Write {
	w := del(key)
	w.Cond = c
	return w
}

func check(key string, c engine.Condition) engine.Write {
	return engine.Write{Kind: engine.OpCheck, Key: []byte(key), Cond: c}
}

func ifVersion(v uint64) engine.Condition {
	return engine.Condition{Kind: engine.CondVersion, Version: v}
}

func ifValue(v []byte) engine.Condition {
	return engine.Condition{Kind: engine.CondValue, Value: v}
}

var (
	ifAbsent = engine.Condition{Kind: engine.CondAbsent}
	ifExists = engine.Condition{Kind: engine.CondExists}
)

var (
	independent = engine.ApplyOptions{}
	atomicOpts  = engine.ApplyOptions{Atomic: true}
)

// modeTag is a short name of an ApplyOptions, for key prefixes.
func modeTag(o engine.ApplyOptions) string {
	s := "i"
	if o.Atomic {
		s = "a"
	}
	if o.NoSync {
		s += "n"
	}
	return s
}

// modeName names an ApplyOptions for messages.
func modeName(o engine.ApplyOptions) string {
	s := "independent"
	if o.Atomic {
		s = "atomic"
	}
	if o.NoSync {
		s += ",nosync"
	}
	return s
}

// writeSize is a write's size as MaxBatchSize counts it.
func writeSize(w engine.Write) int { return engine.WriteSize(w) }

// fits reports whether w, alone in a call, is within the limits the
// engine declares: cases use it to leave out what the engine may refuse.
func (h *Harness) fits(w engine.Write) bool {
	l := h.Description.Limits
	switch {
	case l.MaxKeySize > 0 && len(w.Key) > l.MaxKeySize:
		return false
	case w.Kind == engine.OpPut && l.MaxValueSize > 0 && len(w.Value) > l.MaxValueSize:
		return false
	case w.Cond.Kind == engine.CondValue && l.MaxValueSize > 0 && len(w.Cond.Value) > l.MaxValueSize:
		return false
	case l.MaxBatchSize > 0 && writeSize(w) > l.MaxBatchSize:
		return false
	}
	return true
}

// applyAll applies writes in independent mode in as few calls as the
// engine's declared MaxWrites and MaxBatchSize allow, and stops the case
// unless every write applies. It is for setting up state.
func (h *Harness) applyAll(e engine.Engine, opts engine.ApplyOptions, writes []engine.Write) {
	h.t.Helper()
	for i, r := range h.applySplit(e, opts, writes) {
		if !r.Applied {
			h.t.Fatalf("setting up: %s did not apply (%s)", fmtWrite(writes[i]), fmtResult(r))
		}
	}
}

// applySplit applies writes in independent mode in as few calls as the
// engine's declared MaxWrites and MaxBatchSize allow (MustApply), and
// returns the results of every call, in order. Independent writes give the
// same results whether they go in one call or several.
func (h *Harness) applySplit(e engine.Engine, opts engine.ApplyOptions, writes []engine.Write) []engine.Result {
	h.t.Helper()
	if opts.Atomic {
		h.t.Fatalf("applySplit: atomic mode cannot be split into calls")
	}
	l := h.Description.Limits
	var out []engine.Result
	for len(writes) > 0 {
		n, size := 0, 0
		for n < len(writes) {
			if l.MaxWrites > 0 && n == l.MaxWrites {
				break
			}
			s := writeSize(writes[n])
			if l.MaxBatchSize > 0 && n > 0 && size+s > l.MaxBatchSize {
				break
			}
			size += s
			n++
		}
		out = append(out, h.MustApply(e, opts, writes[:n]...)...)
		writes = writes[n:]
	}
	return out
}
