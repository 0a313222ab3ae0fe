package rocksdbengine

import (
	"errors"
	"fmt"

	"github.com/flaredb/flaredb/core/engine"
)

// Name is the engine's name in its Description and in configuration files.
const Name = "rocksdb"

// The engine's Limits, as reported by Describe. RocksDB itself allows much
// larger keys and values; these caps keep one request's memory bounded.
const (
	// MaxKeySize is the largest key, in bytes (64 KiB).
	MaxKeySize = 64 << 10
	// MaxValueSize is the largest value, in bytes (64 MiB): well beyond
	// gRPC's 4 MiB default message size.
	MaxValueSize = 64 << 20
	// MaxBatchSize is the largest total of key and value bytes in one Apply
	// call (256 MiB).
	MaxBatchSize = 256 << 20
	// MaxWrites is the largest number of writes in one Apply call (10000),
	// which bounds the adapter's per-call bookkeeping.
	MaxWrites = 10000
)

// Limits returns the engine's size limits (see MaxKeySize, MaxValueSize,
// MaxBatchSize and MaxWrites). It is safe for concurrent use.
func Limits() engine.Limits {
	return engine.Limits{
		MaxKeySize:   MaxKeySize,
		MaxValueSize: MaxValueSize,
		MaxWrites:    MaxWrites,
		MaxBatchSize: MaxBatchSize,
	}
}

// Defaults used for zero fields of Options.
const (
	DefaultBlockCacheSize    = 64 << 20
	DefaultWriteBufferSize   = 64 << 20
	DefaultMaxOpenFiles      = 1000
	DefaultMaxBackgroundJobs = 4
	DefaultCompression       = "lz4"
	DefaultBloomBitsPerKey   = 10
	DefaultKeepLogFileNum    = 10
)

// compressions lists the accepted values of Options.Compression. Whether a
// kind is usable also depends on how librocksdb was built (Debian's supports
// all of them); opening with an unsupported one fails with a clear error.
var compressions = []string{"none", "snappy", "lz4", "zstd", "zlib"}

// Options configure a RocksDB store. A nil *Options is valid and means every
// default; a zero field means that field's default. Options are read by
// OpenStore and Open and never retained or modified, so one value may be
// shared by concurrent calls.
type Options struct {
	// ErrorIfNotExists makes OpenStore fail when dir holds no database. By
	// default (false) the directory and database are created when missing
	// (RocksDB's create_if_missing).
	ErrorIfNotExists bool

	// BlockCacheSize is the capacity of the LRU cache of uncompressed data
	// blocks, in bytes (default 64 MiB). Negative disables the block cache.
	BlockCacheSize int64

	// WriteBufferSize is the size of one memtable, in bytes, before it is
	// flushed to a table file (default 64 MiB). It must be at least 64 KiB.
	WriteBufferSize int64

	// MaxOpenFiles caps the table files RocksDB keeps open (default 1000);
	// -1 means no cap. Any other value must be at least 10.
	MaxOpenFiles int

	// MaxBackgroundJobs caps concurrent flushes and compactions (default 4).
	MaxBackgroundJobs int

	// Compression is the block compression: "none", "snappy", "lz4" (the
	// default), "zstd" or "zlib".
	Compression string

	// BloomBitsPerKey sizes the bloom filter that lets point reads skip
	// table files (default 10 bits per key); negative disables it.
	BloomBitsPerKey int

	// KeepLogFileNum is how many of RocksDB's informational LOG files are
	// kept in the directory (default 10).
	KeepLogFileNum int
}

// withDefaults returns a copy of o (which may be nil) with defaults filled in.
func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.BlockCacheSize == 0 {
		r.BlockCacheSize = DefaultBlockCacheSize
	}
	if r.WriteBufferSize == 0 {
		r.WriteBufferSize = DefaultWriteBufferSize
	}
	if r.MaxOpenFiles == 0 {
		r.MaxOpenFiles = DefaultMaxOpenFiles
	}
	if r.MaxBackgroundJobs == 0 {
		r.MaxBackgroundJobs = DefaultMaxBackgroundJobs
	}
	if r.Compression == "" {
		r.Compression = DefaultCompression
	}
	if r.BloomBitsPerKey == 0 {
		r.BloomBitsPerKey = DefaultBloomBitsPerKey
	}
	if r.KeepLogFileNum == 0 {
		r.KeepLogFileNum = DefaultKeepLogFileNum
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
		errs = append(errs, fmt.Errorf("%w: rocksdbengine: "+format, append([]any{engine.ErrInvalidArgument}, args...)...))
	}
	if o.WriteBufferSize != 0 && o.WriteBufferSize < 64<<10 {
		bad("WriteBufferSize %d is below 64 KiB (or negative)", o.WriteBufferSize)
	}
	if o.MaxOpenFiles < -1 || (o.MaxOpenFiles > 0 && o.MaxOpenFiles < 10) {
		bad("MaxOpenFiles %d must be -1 (no cap), 0 (default) or at least 10", o.MaxOpenFiles)
	}
	if o.MaxBackgroundJobs < 0 || o.MaxBackgroundJobs > 256 {
		bad("MaxBackgroundJobs %d must be between 0 (default) and 256", o.MaxBackgroundJobs)
	}
	if o.Compression != "" {
		ok := false
		for _, c := range compressions {
			ok = ok || o.Compression == c
		}
		if !ok {
			bad("unknown Compression %q (want one of %q)", o.Compression, compressions)
		}
	}
	if o.BloomBitsPerKey > 64 {
		bad("BloomBitsPerKey %d is above 64", o.BloomBitsPerKey)
	}
	if o.KeepLogFileNum < 0 {
		bad("KeepLogFileNum %d is negative", o.KeepLogFileNum)
	}
	return errors.Join(errs...)
}
