// Command flaredb-rocksdb-plugin serves the stock RocksDB engine
// (engines/rocksdbengine) as a FlareDB engine plugin: flaredb-server
// launches it (engine "plugin" with this binary as its path) and talks to it
// over the engine wire protocol. It is not meant to be run by hand.
//
// The data directory comes from the host; the plugin takes no arguments.
// Engine options, set in the host's configuration, are (all optional,
// defaults as in rocksdbengine.Options):
//
//	error_if_not_exists   bool   fail if the directory holds no database
//	block_cache_size      bytes  LRU block cache (negative disables it)
//	write_buffer_size     bytes  one memtable
//	max_open_files        int    -1 for no cap
//	max_background_jobs   int
//	compression           none | snappy | lz4 | zstd | zlib
//	bloom_bits_per_key    int    negative disables the bloom filter
//	keep_log_file_num     int
//
// Built without cgo (CGO_ENABLED=0) it still compiles, and then fails at
// start with an error saying RocksDB is not compiled in.
package main

import (
	"fmt"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/rocksdbengine"
	"github.com/flaredb/flaredb/plugins/sdk"
)

func main() { sdk.ServeFactory(open) }

func open(p sdk.Params) (engine.Engine, error) {
	if !cgoEnabled {
		return nil, fmt.Errorf("%w: this flaredb-rocksdb-plugin binary was built without cgo, so without RocksDB: "+
			"rebuild it with CGO_ENABLED=1 and librocksdb-dev installed", engine.ErrUnsupported)
	}
	if p.DataDir == "" {
		return nil, fmt.Errorf("%w: rocksdb plugin: no data directory given by the host", engine.ErrInvalidArgument)
	}
	if len(p.Args) > 0 {
		return nil, fmt.Errorf("%w: rocksdb plugin: takes no arguments, got %q: set its options in [engine.plugin.options]",
			engine.ErrInvalidArgument, p.Args)
	}
	var o rocksdbengine.Options
	op := p.OptionParser()
	op.Bool("error_if_not_exists", &o.ErrorIfNotExists)
	op.Int64("block_cache_size", &o.BlockCacheSize)
	op.Int64("write_buffer_size", &o.WriteBufferSize)
	op.Int("max_open_files", &o.MaxOpenFiles)
	op.Int("max_background_jobs", &o.MaxBackgroundJobs)
	op.String("compression", &o.Compression)
	op.Int("bloom_bits_per_key", &o.BloomBitsPerKey)
	op.Int("keep_log_file_num", &o.KeepLogFileNum)
	if err := op.Err(); err != nil {
		return nil, err
	}
	return rocksdbengine.Open(p.DataDir, &o)
}
