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

// writeSize is a write's size as limits count it.
func writeSize(w engine.Write) int { return len(w.Key) + len(w.Value) + len(w.Cond.Value) }

// applyAll applies writes in independent mode in as few calls as the
// engine's declared MaxWrites and MaxBatchSize allow, and stops the case
// unless every write applies. It is for setting up state.
func (h *Harness) applyAll(e engine.Engine, opts engine.ApplyOptions, writes []engine.Write) {
	h.t.Helper()
	if opts.Atomic {
		h.t.Fatalf("applyAll: atomic mode cannot be split into calls")
	}
	l := h.Description.Limits
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
		res := h.MustApply(e, opts, writes[:n]...)
		for i, r := range res {
			if !r.Applied {
				h.t.Fatalf("setting up: %s did not apply (%s)", fmtWrite(writes[i]), fmtResult(r))
			}
		}
		writes = writes[n:]
	}
}
