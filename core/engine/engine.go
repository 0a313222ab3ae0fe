// Package engine is FlareDB's storage-engine contract: the interface every
// engine implements, whether compiled into the server or served from a plugin
// process, and the types and sentinel errors that cross it.
//
// It plays the role database/sql/driver plays for database/sql: the core
// server calls it, engines implement it, and the conformance suite
// (package conformance) is the single judge of whether an implementation is
// correct. The package imports nothing of FlareDB's and nothing outside the
// standard library; engines import it, never the server.
//
// # Semantics
//
// Keys are non-empty byte strings; values are byte strings, and an empty value
// is a value, not absence. Byte-wise lexicographic order of keys is the scan
// order; any byte may appear in a key or value, 0x00 and 0xFF included.
//
// Every key that exists has a version, a uint64 chosen by the caller (the core
// takes it from its timestamp oracle) and stored by the engine beside the
// value. Version 0 means "absent". A put must carry a version strictly greater
// than the key's current version; an engine rejects anything else with
// ErrInvalidArgument. Because the core's versions increase across all keys and
// restarts, a key that is deleted and re-created never sees a version again.
//
// A write may carry a Condition. A write whose condition fails changes nothing
// and reports the key's current value and version in its Result: a failed
// compare-and-swap is an answer, not an error. A put's version is checked
// against the key only when its condition holds: a failed condition is
// reported as such, whatever the version.
//
// # Calls and atomicity
//
// Apply takes a list of writes. In independent mode each write is evaluated in
// order, as if alone, each with its own Result; a later write to the same key
// sees the effect of an earlier one in the same call. In atomic mode either
// every condition holds and every write applies, or nothing applies. Either
// way the writes that apply are made durable together, by one engine write.
//
// Errors (as opposed to condition failures) are all or nothing for the whole
// call: an engine validates every write before applying any, and a call that
// returns an error applied nothing, except when the error is ErrUnavailable or
// a context error returned after the write was handed to storage, in which
// case the outcome is unknown (see Apply).
//
// # Byte slices
//
// Slices passed to an engine are owned by the caller; the engine must not keep
// or modify them after the call returns. Slices an engine returns (in Entry and
// Result, and to a scan callback) are owned by the caller from then on: the
// engine never touches them again, and modifying them changes nothing stored.
//
// # Concurrency
//
// Every method of Engine is safe for concurrent use by multiple goroutines,
// including Close, after which every method but Describe and Close returns
// ErrClosed, checked before anything else: before the context, the
// arguments and the limits. A call in progress when Close begins may end
// normally or with ErrClosed; Close waits for it (a Scan's callbacks
// included).
//
// # Contexts
//
// Every method that can block takes a context. An engine checks it before
// starting work and may stop early when it is done, returning ctx.Err()
// (possibly wrapped). Cancellation never leaves a partially applied atomic
// group.
package engine

import (
	"context"
	"errors"
)

// ProtocolVersion is the version of this contract. It changes whenever the
// semantics or the shape of the interface change, and is carried by the
// plugin handshake and the conformance report.
const ProtocolVersion = 1

// Sentinel errors. Engines return these (possibly wrapped with fmt.Errorf and
// %w); callers match them with errors.Is. Each maps to exactly one gRPC status
// code at every process boundary (see the server's and the plugin host's
// error translation).
var (
	// ErrNotFound reports that a key does not exist, from calls that need it to.
	// Read does not return it: an absent key is an Entry with Version 0.
	ErrNotFound = errors.New("engine: not found")
	// ErrClosed reports a call on an engine after Close.
	ErrClosed = errors.New("engine: closed")
	// ErrTooLarge reports a key, value or batch beyond the engine's Limits.
	ErrTooLarge = errors.New("engine: too large")
	// ErrInvalidArgument reports a malformed request: an empty key, an unknown
	// operation or condition kind, a put whose version does not increase, a
	// reversed scan range or a negative scan limit.
	ErrInvalidArgument = errors.New("engine: invalid argument")
	// ErrUnavailable reports that the engine cannot serve the call now but
	// may later (a plugin process restarting, for example). The call may or
	// may not have been applied.
	ErrUnavailable = errors.New("engine: unavailable")
	// ErrUnsupported reports a request for a capability the engine declared
	// it does not have.
	ErrUnsupported = errors.New("engine: unsupported")
	// ErrCorrupt reports stored data the engine cannot decode.
	ErrCorrupt = errors.New("engine: data corrupt")
	// ErrInternal reports any other failure of the engine or its storage
	// (an I/O error, for example).
	ErrInternal = errors.New("engine: internal error")
)

// OpKind is the kind of a Write.
type OpKind uint8

const (
	// OpPut sets the key to Value with version Version.
	OpPut OpKind = iota + 1
	// OpDelete removes the key. Deleting an absent key is not an error; the
	// write applies and changes nothing.
	OpDelete
	// OpCheck writes nothing: it only evaluates its condition. In an atomic
	// group it lets a condition on one key guard writes to others.
	OpCheck
)

// String returns the kind's name.
func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpCheck:
		return "check"
	}
	return "unknown"
}

// CondKind is the kind of a Condition.
type CondKind uint8

const (
	// CondNone always holds.
	CondNone CondKind = iota
	// CondVersion holds when the key's current version equals
	// Condition.Version (0 meaning absent).
	CondVersion
	// CondAbsent holds when the key does not exist.
	CondAbsent
	// CondExists holds when the key exists, whatever its value.
	CondExists
	// CondValue holds when the key exists and its value equals
	// Condition.Value byte for byte (an empty Value matches an existing empty
	// value, never an absent key).
	CondValue
)

// String returns the kind's name.
func (k CondKind) String() string {
	switch k {
	case CondNone:
		return "none"
	case CondVersion:
		return "version"
	case CondAbsent:
		return "absent"
	case CondExists:
		return "exists"
	case CondValue:
		return "value"
	}
	return "unknown"
}

// Condition guards a Write. The zero Condition always holds.
type Condition struct {
	Kind    CondKind
	Version uint64 // for CondVersion
	Value   []byte // for CondValue
}

// Holds reports whether c holds for a key whose current state is (value,
// version); version 0 means absent. It is the one definition of condition
// semantics, shared by every engine in this repository.
func (c Condition) Holds(value []byte, version uint64) bool {
	switch c.Kind {
	case CondNone:
		return true
	case CondVersion:
		return version == c.Version
	case CondAbsent:
		return version == 0
	case CondExists:
		return version != 0
	case CondValue:
		return version != 0 && string(value) == string(c.Value)
	}
	return false
}

// Write is one operation of an Apply call.
type Write struct {
	Kind  OpKind
	Key   []byte
	Value []byte // for OpPut; nil and empty are the same, an empty value
	// Version is the key's new version for OpPut and must be greater than
	// the key's current version. It is ignored for OpDelete and OpCheck.
	Version uint64
	Cond    Condition
}

// Result is the outcome of one Write.
type Result struct {
	// Applied is true when the condition held (and, in atomic mode, every
	// other condition of the group held too) and the write took effect.
	Applied bool
	// Value and Version describe the key as it was just before this write:
	// the previous value and version when Applied, the current ones when
	// not. Version 0 means the key was absent (and Value is nil).
	Value   []byte
	Version uint64
}

// ApplyOptions modify an Apply call. The zero value means independent
// writes, synced to stable storage before Apply returns.
type ApplyOptions struct {
	// Atomic makes the writes one all-or-nothing group.
	Atomic bool
	// NoSync lets Apply return before the writes reach stable storage: they
	// survive a crash of the process but perhaps not of the machine. The
	// default (false) is durable.
	NoSync bool
}

// Entry is a key with its value and version, as returned by Read and Scan.
// For an absent key, Version is 0 and Value is nil.
type Entry struct {
	Key     []byte
	Value   []byte
	Version uint64
}

// ScanOptions select the entries a Scan visits.
type ScanOptions struct {
	// Start is the inclusive lower bound; nil or empty means the first key.
	Start []byte
	// End is the exclusive upper bound; nil or empty means past the last key.
	// When both are set, Start must be less than End (an equal pair is an
	// empty range and yields nothing; a reversed pair is ErrInvalidArgument).
	End []byte
	// Reverse visits keys in descending order, from just below End down to
	// Start.
	Reverse bool
	// Limit caps the number of entries visited; 0 means no limit.
	Limit int
	// KeysOnly leaves Entry.Value nil (versions are still reported).
	KeysOnly bool
}

// Limits are an engine's size limits. A zero field means "no limit of its
// own" (the core's limits still apply).
type Limits struct {
	MaxKeySize   int // bytes
	MaxValueSize int // bytes
	MaxWrites    int // writes in one Apply call
	MaxBatchSize int // total bytes in one Apply call, as WriteSize counts them (keys, put values, CondValue values)
}

// Capabilities declare optional behaviour. The conformance suite skips the
// cases for a capability an engine declares it lacks, printing the reason;
// otherwise it skips a case only when the declared Limits forbid it or
// leave nothing to test.
type Capabilities struct {
	// Persistent means data survives Close and reopening on the same
	// directory, and sync writes survive a crash. The in-memory reference
	// engine is not persistent.
	Persistent bool
}

// Description is an engine's account of itself.
type Description struct {
	Name         string // short name, e.g. "rocksdb"
	Version      string // the engine's own version, free-form
	Protocol     int    // the ProtocolVersion it implements
	Limits       Limits
	Capabilities Capabilities
}

// Engine is the storage-engine contract. See the package documentation for
// the semantics shared by every method.
type Engine interface {
	// Read returns one Entry for each key, in the order of keys. An absent
	// key yields an Entry with Version 0 and a nil Value; Read never
	// returns ErrNotFound. Every entry is read from one consistent point in
	// time. An empty key is ErrInvalidArgument.
	Read(ctx context.Context, keys [][]byte) ([]Entry, error)

	// Apply applies writes as described in the package documentation and
	// returns one Result per write, in order. It returns an error (and
	// applies nothing) for a malformed write (ErrInvalidArgument), a write
	// beyond the Limits (ErrTooLarge), a closed engine (ErrClosed), or a
	// context that is done before the writes were handed to storage. If
	// storage fails, or the context ends, after that point, the error says
	// so and the outcome is unknown for that call only; it is never
	// partially applied in atomic mode. A nil or empty writes list is a
	// no-op returning no results.
	Apply(ctx context.Context, writes []Write, opts ApplyOptions) ([]Result, error)

	// Scan calls fn for each entry in the range, in key order (or reverse
	// order), stopping after opts.Limit entries, when fn returns an error
	// (which Scan returns, unwrapped), or when ctx is done. All entries come
	// from one consistent snapshot taken when Scan starts, whatever writes
	// happen meanwhile. fn must not call back into the engine on the same
	// goroutine in a way that waits for the scan to end. The Entry passed to
	// fn is owned by fn.
	Scan(ctx context.Context, opts ScanOptions, fn func(Entry) error) error

	// Describe returns the engine's self-description. It never blocks and
	// works after Close.
	Describe() Description

	// Close releases the engine's resources, after waiting for calls in
	// progress to finish. Writes acknowledged before Close survive it.
	// Calling Close more than once returns nil after the first.
	Close() error
}
