package badgerengine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/flaredb/flaredb/core/engine"
)

// Name is the engine's name in its Description and in configuration files.
const Name = "badger"

// MaxKeySize is the largest key, in bytes, in the engine's Limits. Badger
// refuses keys over 65000 bytes; the store adds a one-byte prefix, and the
// rest is kept as headroom.
const MaxKeySize = 64000

// The engine's other limits depend on Options.MemTableSize, because one
// Apply call is one Badger transaction and Badger caps a transaction at
// about 15% of a memtable. Open declares limits under which every call fits
// in one transaction, so that ErrTooLarge only ever means "beyond the
// declared Limits":
//
//   - MaxWrites is maxWritesCap (or fewer, for small memtables);
//   - MaxBatchSize is the transaction's byte budget less Badger's and the
//     store's per-entry overhead for MaxWrites entries;
//   - MaxValueSize is MaxBatchSize less MaxKeySize, at most maxValueSizeCap.
//
// With the default 64 MiB memtable that is 10000 writes, 9856000 bytes per
// call and values of up to 9791488 bytes (about 9.3 MiB); a memtable of
// about 430 MiB reaches the 64 MiB cap on values.
const (
	maxWritesCap    = 10000
	maxValueSizeCap = 64 << 20
	// entryOverhead is what a transaction counts per entry beyond the
	// caller's key and value bytes: the key prefix (1), the adapter's
	// version header (8), Badger's meta bytes (2) and timestamp (10).
	entryOverhead = 1 + 8 + 2 + 10
)

// Defaults used for zero fields of Options.
const (
	DefaultMemTableSize           = 64 << 20
	DefaultBlockCacheSize         = 64 << 20
	DefaultValueThreshold         = 1 << 20
	DefaultValueLogFileSize       = 1<<30 - 1
	DefaultNumCompactors          = 4
	DefaultValueLogGCInterval     = 10 * time.Minute
	DefaultValueLogGCDiscardRatio = 0.5
)

// minValueLogFileSize keeps room in one value log file for the largest
// value, its key and Badger's entry header.
const minValueLogFileSize = 2 * maxValueSizeCap

// minMemTableSize keeps a useful batch budget (about 0.5 MiB).
const minMemTableSize = 4 << 20

// Options configure a Badger store. A nil *Options is valid and means every
// default; a zero field means that field's default. Options are read by
// OpenStore and Open and never retained or modified (the Logger is kept and
// used from Badger's goroutines, so it must be safe for concurrent use, as
// every *slog.Logger is).
type Options struct {
	// ErrorIfNotExists makes OpenStore fail when dir holds no database. By
	// default (false) the directory and database are created when missing.
	ErrorIfNotExists bool

	// Logger receives Badger's log output, at slog's Debug, Info, Warn and
	// Error levels. Nil (the default) discards it.
	Logger *slog.Logger

	// MemTableSize is the size of one memtable, in bytes (default 64 MiB,
	// at least 4 MiB). It also sets the engine's batch and value size
	// limits (see MaxKeySize).
	MemTableSize int64

	// BlockCacheSize is the capacity of the cache of decompressed table
	// blocks, in bytes (default 64 MiB). Badger needs one, since it
	// compresses tables.
	BlockCacheSize int64

	// ValueThreshold is the value size, in bytes, from which a value is
	// kept in the value log instead of the LSM tree (default, and maximum,
	// 1 MiB). It must also be at most 15% of MemTableSize. The size
	// compared includes the adapter's 8-byte version header.
	ValueThreshold int64

	// ValueLogFileSize is the size of one value log file, in bytes (default
	// 1 GiB - 1). It must be at least 128 MiB, room for the largest value,
	// and below 2 GiB.
	ValueLogFileSize int64

	// NumCompactors is the number of compaction goroutines (default 4). It
	// must not be 1, a value Badger rejects.
	NumCompactors int

	// ValueLogGCInterval is how often a background goroutine reclaims value
	// log space held by overwritten and deleted values (default 10
	// minutes). Negative disables it.
	ValueLogGCInterval time.Duration

	// ValueLogGCDiscardRatio is the share of a value log file that must be
	// garbage before the collector rewrites it (default 0.5); it must be
	// above 0 and below 1.
	ValueLogGCDiscardRatio float64
}

// withDefaults returns a copy of o (which may be nil) with defaults filled in.
func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.MemTableSize == 0 {
		r.MemTableSize = DefaultMemTableSize
	}
	if r.BlockCacheSize == 0 {
		r.BlockCacheSize = DefaultBlockCacheSize
	}
	if r.ValueThreshold == 0 {
		r.ValueThreshold = min(DefaultValueThreshold, 15*r.MemTableSize/100)
	}
	if r.ValueLogFileSize == 0 {
		r.ValueLogFileSize = DefaultValueLogFileSize
	}
	if r.NumCompactors == 0 {
		r.NumCompactors = DefaultNumCompactors
	}
	if r.ValueLogGCInterval == 0 {
		r.ValueLogGCInterval = DefaultValueLogGCInterval
	}
	if r.ValueLogGCDiscardRatio == 0 {
		r.ValueLogGCDiscardRatio = DefaultValueLogGCDiscardRatio
	}
	return r
}

// Validate reports every invalid field of o, joined into one error that
// wraps engine.ErrInvalidArgument; nil means o is usable. A nil *Options is
// valid. Validate is safe for concurrent use and does not modify o.
func (o *Options) Validate() error {
	if o == nil {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: badgerengine: "+format, append([]any{engine.ErrInvalidArgument}, args...)...))
	}
	if o.MemTableSize != 0 && o.MemTableSize < minMemTableSize {
		bad("MemTableSize %d is below %d (or negative)", o.MemTableSize, minMemTableSize)
	}
	if o.BlockCacheSize < 0 {
		bad("BlockCacheSize %d is negative", o.BlockCacheSize)
	}
	if o.ValueThreshold < 0 || o.ValueThreshold > 1<<20 {
		bad("ValueThreshold %d must be between 0 (default) and 1 MiB", o.ValueThreshold)
	} else if mt := o.withDefaults().MemTableSize; o.ValueThreshold > 15*mt/100 {
		bad("ValueThreshold %d is above 15%% of MemTableSize %d", o.ValueThreshold, mt)
	}
	if o.ValueLogFileSize != 0 && (o.ValueLogFileSize < minValueLogFileSize || o.ValueLogFileSize >= 2<<30) {
		bad("ValueLogFileSize %d must be at least %d and below 2 GiB", o.ValueLogFileSize, int64(minValueLogFileSize))
	}
	if o.NumCompactors < 0 || o.NumCompactors == 1 {
		bad("NumCompactors %d must be 0 (default) or at least 2", o.NumCompactors)
	}
	if o.ValueLogGCDiscardRatio < 0 || o.ValueLogGCDiscardRatio >= 1 {
		bad("ValueLogGCDiscardRatio %g must be above 0 and below 1", o.ValueLogGCDiscardRatio)
	}
	return errors.Join(errs...)
}

// limitsFor returns the engine's limits for a Badger database whose
// transactions hold fewer than maxCount entries and maxSize estimated bytes
// (DB.MaxBatchCount and DB.MaxBatchSize). A transaction starts with one
// entry and txnOverhead bytes of its own, for its commit marker.
func limitsFor(maxSize, maxCount int64) engine.Limits {
	const txnOverhead = len("!badger!txn") + 10
	w := min(int64(maxWritesCap), maxCount-2)
	b := maxSize - 1 - int64(txnOverhead) - entryOverhead*w
	b -= b % 1024
	v := min(b-MaxKeySize, maxValueSizeCap)
	v -= v % 1024
	return engine.Limits{
		MaxKeySize:   MaxKeySize,
		MaxValueSize: int(max(v, 0)),
		MaxWrites:    int(max(w, 1)),
		MaxBatchSize: int(max(b, 1)),
	}
}
