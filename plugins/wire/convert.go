package wire

import (
	"fmt"

	"github.com/flaredb/flaredb/core/engine"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// The protocol's enums are numbered like the contract's kinds, so the
// conversions are casts; the server checks the range, because a proto enum
// is open and a cast to uint8 could turn an unknown value into a known one.

func opKindToPB(k engine.OpKind) enginepb.OpKind       { return enginepb.OpKind(k) }
func condKindToPB(k engine.CondKind) enginepb.CondKind { return enginepb.CondKind(k) }

func opKindFromPB(i int, k enginepb.OpKind) (engine.OpKind, error) {
	switch k {
	case enginepb.OpKind_OP_KIND_PUT, enginepb.OpKind_OP_KIND_DELETE, enginepb.OpKind_OP_KIND_CHECK:
		return engine.OpKind(k), nil
	}
	return 0, fmt.Errorf("%w: write %d: unknown operation kind %d", engine.ErrInvalidArgument, i, int32(k))
}

func condKindFromPB(i int, k enginepb.CondKind) (engine.CondKind, error) {
	switch k {
	case enginepb.CondKind_COND_KIND_NONE, enginepb.CondKind_COND_KIND_VERSION, enginepb.CondKind_COND_KIND_ABSENT,
		enginepb.CondKind_COND_KIND_EXISTS, enginepb.CondKind_COND_KIND_VALUE:
		return engine.CondKind(k), nil
	}
	return 0, fmt.Errorf("%w: write %d: unknown condition kind %d", engine.ErrInvalidArgument, i, int32(k))
}

func writesToPB(ws []engine.Write) []*enginepb.Write {
	out := make([]*enginepb.Write, len(ws))
	for i, w := range ws {
		pw := &enginepb.Write{
			Kind:    opKindToPB(w.Kind),
			Key:     w.Key,
			Value:   w.Value,
			Version: w.Version,
		}
		if w.Cond.Kind != engine.CondNone || w.Cond.Version != 0 || w.Cond.Value != nil {
			pw.Cond = &enginepb.Condition{
				Kind:    condKindToPB(w.Cond.Kind),
				Version: w.Cond.Version,
				Value:   w.Cond.Value,
			}
		}
		out[i] = pw
	}
	return out
}

func writesFromPB(ws []*enginepb.Write) ([]engine.Write, error) {
	out := make([]engine.Write, len(ws))
	for i, pw := range ws {
		k, err := opKindFromPB(i, pw.GetKind())
		if err != nil {
			return nil, err
		}
		ck, err := condKindFromPB(i, pw.GetCond().GetKind())
		if err != nil {
			return nil, err
		}
		out[i] = engine.Write{
			Kind:    k,
			Key:     pw.GetKey(),
			Value:   pw.GetValue(),
			Version: pw.GetVersion(),
			Cond: engine.Condition{
				Kind:    ck,
				Version: pw.GetCond().GetVersion(),
				Value:   pw.GetCond().GetValue(),
			},
		}
	}
	return out, nil
}

// present returns the value of an existing key (version != 0) as a non-nil
// slice, and nil for an absent key, restoring what proto3 does not keep.
func present(v []byte, version uint64) []byte {
	if version == 0 {
		return nil
	}
	if v == nil {
		return []byte{}
	}
	return v
}

func resultsToPB(rs []engine.Result) []*enginepb.Result {
	out := make([]*enginepb.Result, len(rs))
	for i, r := range rs {
		out[i] = &enginepb.Result{Applied: r.Applied, Value: r.Value, Version: r.Version}
	}
	return out
}

func resultsFromPB(rs []*enginepb.Result) []engine.Result {
	out := make([]engine.Result, len(rs))
	for i, r := range rs {
		out[i] = engine.Result{
			Applied: r.GetApplied(),
			Value:   present(r.GetValue(), r.GetVersion()),
			Version: r.GetVersion(),
		}
	}
	return out
}

func entryToPB(e engine.Entry) *enginepb.Entry {
	return &enginepb.Entry{Key: e.Key, Value: e.Value, Version: e.Version}
}

func entryFromPB(e *enginepb.Entry, keysOnly bool) engine.Entry {
	out := engine.Entry{Key: e.GetKey(), Version: e.GetVersion()}
	if out.Key == nil {
		out.Key = []byte{}
	}
	if !keysOnly {
		out.Value = present(e.GetValue(), e.GetVersion())
	}
	return out
}

func descriptionToPB(d engine.Description) *enginepb.Description {
	return &enginepb.Description{
		Name:     d.Name,
		Version:  d.Version,
		Protocol: uint32(d.Protocol),
		Limits: &enginepb.Limits{
			MaxKeySize:   int64(d.Limits.MaxKeySize),
			MaxValueSize: int64(d.Limits.MaxValueSize),
			MaxWrites:    int64(d.Limits.MaxWrites),
			MaxBatchSize: int64(d.Limits.MaxBatchSize),
		},
		Capabilities: &enginepb.Capabilities{Persistent: d.Capabilities.Persistent},
	}
}

func descriptionFromPB(d *enginepb.Description) engine.Description {
	l := d.GetLimits()
	return engine.Description{
		Name:     d.GetName(),
		Version:  d.GetVersion(),
		Protocol: int(d.GetProtocol()),
		Limits: engine.Limits{
			MaxKeySize:   clampInt(l.GetMaxKeySize()),
			MaxValueSize: clampInt(l.GetMaxValueSize()),
			MaxWrites:    clampInt(l.GetMaxWrites()),
			MaxBatchSize: clampInt(l.GetMaxBatchSize()),
		},
		Capabilities: engine.Capabilities{Persistent: d.GetCapabilities().GetPersistent()},
	}
}

// clampInt converts a limit received over the wire; a negative one (which
// no correct peer sends) is treated as "no limit".
func clampInt(v int64) int {
	if v <= 0 {
		return 0
	}
	if uint64(v) > uint64(maxInt) {
		return maxInt
	}
	return int(v)
}

const maxInt = int(^uint(0) >> 1)
