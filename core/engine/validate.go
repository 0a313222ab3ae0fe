package engine

import (
	"bytes"
	"fmt"
)

// WriteSize is w's size as Limits.MaxBatchSize counts it: the key, the
// value of a put and the value of a CondValue condition. Fields the
// contract says are ignored (the Value of a delete or a check, the Value of
// any other condition kind) count for nothing.
func WriteSize(w Write) int {
	n := len(w.Key)
	if w.Kind == OpPut {
		n += len(w.Value)
	}
	if w.Cond.Kind == CondValue {
		n += len(w.Cond.Value)
	}
	return n
}

// ValidateWrites checks writes against the contract's rules and the given
// limits, returning an error wrapping ErrInvalidArgument or ErrTooLarge for
// the first violation, naming the write's index and the limit. Engines call
// it before applying anything, so a call that fails validation applies
// nothing. It does not check versions against stored state. The batch size
// is the sum of WriteSize over writes.
func ValidateWrites(writes []Write, l Limits) error {
	if l.MaxWrites > 0 && len(writes) > l.MaxWrites {
		return fmt.Errorf("%w: %d writes in one call, limit %d", ErrTooLarge, len(writes), l.MaxWrites)
	}
	total := 0
	for i, w := range writes {
		if len(w.Key) == 0 {
			return fmt.Errorf("%w: write %d: empty key", ErrInvalidArgument, i)
		}
		if l.MaxKeySize > 0 && len(w.Key) > l.MaxKeySize {
			return fmt.Errorf("%w: write %d: key of %d bytes, limit %d", ErrTooLarge, i, len(w.Key), l.MaxKeySize)
		}
		switch w.Kind {
		case OpPut:
			if w.Version == 0 {
				return fmt.Errorf("%w: write %d: put with version 0", ErrInvalidArgument, i)
			}
			if l.MaxValueSize > 0 && len(w.Value) > l.MaxValueSize {
				return fmt.Errorf("%w: write %d: value of %d bytes, limit %d", ErrTooLarge, i, len(w.Value), l.MaxValueSize)
			}
		case OpDelete, OpCheck:
		default:
			return fmt.Errorf("%w: write %d: unknown operation kind %d", ErrInvalidArgument, i, w.Kind)
		}
		switch w.Cond.Kind {
		case CondNone, CondVersion, CondAbsent, CondExists:
		case CondValue:
			if l.MaxValueSize > 0 && len(w.Cond.Value) > l.MaxValueSize {
				return fmt.Errorf("%w: write %d: condition value of %d bytes, limit %d", ErrTooLarge, i, len(w.Cond.Value), l.MaxValueSize)
			}
		default:
			return fmt.Errorf("%w: write %d: unknown condition kind %d", ErrInvalidArgument, i, w.Cond.Kind)
		}
		total += WriteSize(w)
	}
	if l.MaxBatchSize > 0 && total > l.MaxBatchSize {
		return fmt.Errorf("%w: %d bytes in one call, limit %d", ErrTooLarge, total, l.MaxBatchSize)
	}
	return nil
}

// ValidateKeys checks the keys of a Read call: each must be non-empty and
// within l.MaxKeySize.
func ValidateKeys(keys [][]byte, l Limits) error {
	for i, k := range keys {
		if len(k) == 0 {
			return fmt.Errorf("%w: key %d: empty key", ErrInvalidArgument, i)
		}
		if l.MaxKeySize > 0 && len(k) > l.MaxKeySize {
			return fmt.Errorf("%w: key %d: key of %d bytes, limit %d", ErrTooLarge, i, len(k), l.MaxKeySize)
		}
	}
	return nil
}

// ValidateScan checks a scan's options: a negative limit or a range whose
// Start is greater than its End is ErrInvalidArgument.
func ValidateScan(o ScanOptions) error {
	if o.Limit < 0 {
		return fmt.Errorf("%w: negative scan limit %d", ErrInvalidArgument, o.Limit)
	}
	if len(o.Start) > 0 && len(o.End) > 0 && bytes.Compare(o.Start, o.End) > 0 {
		return fmt.Errorf("%w: scan start %q is after end %q", ErrInvalidArgument, o.Start, o.End)
	}
	return nil
}

// Clone returns a copy of b that shares no memory with it, preserving the
// difference between nil and empty.
func Clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	c := make([]byte, len(b))
	copy(c, b)
	return c
}
