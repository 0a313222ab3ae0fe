package client

import (
	"fmt"
	"strconv"
	"time"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// Condition is what a conditional write requires of its key's current
// state. The zero value always holds. Build one with IfVersion, IfAbsent,
// IfExists or IfValue. A Condition is an immutable value; IfValue keeps the
// slice it is given (see IfValue).
type Condition struct {
	kind    kvpb.ConditionKind
	version uint64
	value   []byte
}

// Always returns the condition that always holds (the zero Condition).
func Always() Condition { return Condition{} }

// IfVersion holds when the key's version equals v. IfVersion(0) holds when
// the key is absent.
func IfVersion(v uint64) Condition {
	return Condition{kind: kvpb.ConditionKind_CONDITION_VERSION, version: v}
}

// IfAbsent holds when the key does not exist.
func IfAbsent() Condition { return Condition{kind: kvpb.ConditionKind_CONDITION_ABSENT} }

// IfExists holds when the key exists.
func IfExists() Condition { return Condition{kind: kvpb.ConditionKind_CONDITION_EXISTS} }

// IfValue holds when the key exists and its value equals b (an empty b
// matches an existing empty value). The condition refers to b without
// copying it: do not modify b while the condition is in use.
func IfValue(b []byte) Condition {
	if b == nil {
		b = []byte{}
	}
	return Condition{kind: kvpb.ConditionKind_CONDITION_VALUE, value: b}
}

// String describes the condition, for logs and messages.
func (c Condition) String() string {
	switch c.kind {
	case kvpb.ConditionKind_CONDITION_NONE:
		return "always"
	case kvpb.ConditionKind_CONDITION_VERSION:
		return "version=" + strconv.FormatUint(c.version, 10)
	case kvpb.ConditionKind_CONDITION_ABSENT:
		return "absent"
	case kvpb.ConditionKind_CONDITION_EXISTS:
		return "exists"
	case kvpb.ConditionKind_CONDITION_VALUE:
		return fmt.Sprintf("value=%q", c.value)
	}
	return c.kind.String()
}

func (c Condition) proto() *kvpb.Condition {
	if c.kind == kvpb.ConditionKind_CONDITION_NONE {
		return nil
	}
	return &kvpb.Condition{Kind: c.kind, Version: c.version, Value: c.value}
}

// KeyValue is one entry: a key, its value and its version. Version 0 means
// the key is absent (in BatchGet results). Its slices belong to the caller.
type KeyValue struct {
	Key     []byte
	Value   []byte
	Version uint64
}

// Exists reports whether the entry is present (Version != 0).
func (kv KeyValue) Exists() bool { return kv.Version != 0 }

// PutResult is the answer to Put.
type PutResult struct {
	// Version is the version the key now has.
	Version uint64
	// PreviousValue and PreviousVersion are the key's state before the
	// put, when WithPrevious was given (PreviousVersion 0: it was absent).
	PreviousValue   []byte
	PreviousVersion uint64
}

// DeleteResult is the answer to Delete.
type DeleteResult struct {
	// Deleted reports whether the key existed.
	Deleted bool
	// PreviousValue and PreviousVersion are the key's state before the
	// delete, when WithPrevious was given.
	PreviousValue   []byte
	PreviousVersion uint64
}

// CASResult is the answer to CompareAndSwap and CompareAndDelete. A failed
// condition is a result (Succeeded false), not an error.
type CASResult struct {
	// Succeeded reports whether the condition held and the write applied.
	Succeeded bool
	// Version is the key's new version when Succeeded (0 after a delete).
	Version uint64
	// CurrentValue and CurrentVersion are, when Succeeded, the key's state
	// before the write; otherwise its current state, which made the
	// condition fail (CurrentVersion 0: absent).
	CurrentValue   []byte
	CurrentVersion uint64
}

// OpKind is the kind of one operation in a Batch.
type OpKind int

// Operation kinds.
const (
	// OpPut writes Value to Key.
	OpPut OpKind = iota
	// OpDelete removes Key.
	OpDelete
	// OpCheck writes nothing; only its condition counts.
	OpCheck
)

// String returns "put", "delete" or "check".
func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpCheck:
		return "check"
	}
	return "OpKind(" + strconv.Itoa(int(k)) + ")"
}

// Op is one operation of a Batch: a put, delete or check of Key, guarded by
// Cond. The batch keeps references to Key and Value until it returns.
type Op struct {
	Kind  OpKind
	Key   []byte
	Value []byte // for OpPut only
	Cond  Condition
}

// PutOp returns an operation writing value to key when cond holds.
func PutOp(key, value []byte, cond Condition) Op {
	return Op{Kind: OpPut, Key: key, Value: value, Cond: cond}
}

// DeleteOp returns an operation deleting key when cond holds.
func DeleteOp(key []byte, cond Condition) Op {
	return Op{Kind: OpDelete, Key: key, Cond: cond}
}

// CheckOp returns an operation that writes nothing and makes the batch fail
// unless cond holds for key.
func CheckOp(key []byte, cond Condition) Op {
	return Op{Kind: OpCheck, Key: key, Cond: cond}
}

// OpResult is the outcome of one operation of a Batch.
type OpResult struct {
	// ConditionHeld reports whether this operation's condition held against
	// the state before the batch.
	ConditionHeld bool
	// Value and Version are the key's state before the batch (Version 0:
	// absent).
	Value   []byte
	Version uint64
}

// BatchResult is the answer to Batch. A failed condition is a result
// (Succeeded false), not an error.
type BatchResult struct {
	// Succeeded is true when every condition held and every write applied;
	// when false nothing was written.
	Succeeded bool
	// Version is the version given to every key written, when Succeeded.
	Version uint64
	// Results has one entry per operation, in order.
	Results []OpResult
}

// ScanOptions shapes a Scan. The zero value scans forward without limit,
// with values.
type ScanOptions struct {
	// Limit is the maximum number of entries; 0 means no limit. A server
	// with a scan limit (Limits.MaxScanLimit) returns at most that many
	// entries whatever Limit asks: to read further, scan again from after
	// the last key.
	Limit int
	// Reverse scans from the end of the range towards its start.
	Reverse bool
	// KeysOnly omits values (entries carry keys and versions).
	KeysOnly bool
}

// Limits are the server's limits on requests; 0 means the server reported
// no limit. Requests beyond them fail with ErrTooLarge, except scans, which
// MaxScanLimit cuts short.
type Limits struct {
	MaxKeySize     uint64 // bytes per key
	MaxValueSize   uint64 // bytes per value
	MaxBatchOps    uint64 // operations per Batch (and keys per BatchGet)
	MaxMessageSize uint64 // bytes per gRPC message the server receives
	MaxScanLimit   uint64 // most entries one scan returns, whatever ScanOptions.Limit asks
}

// ServerStatus describes a server, its engine and its limits.
type ServerStatus struct {
	ServerVersion  string
	Engine         string
	EngineVersion  string
	EngineMode     string // "in-process" or "plugin"
	EngineProtocol uint32
	Limits         Limits
	// SyncDefault reports whether writes are synced by default.
	SyncDefault bool
	// LastVersion is the newest version the server's timestamp oracle has
	// issued since the server started; 0 when it has issued none.
	LastVersion uint64
	Uptime      time.Duration
}

func durability(w writeOptions) kvpb.Durability {
	if w.async {
		return kvpb.Durability_DURABILITY_ASYNC
	}
	return kvpb.Durability_DURABILITY_SYNC
}
