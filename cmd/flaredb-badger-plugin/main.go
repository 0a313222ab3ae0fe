// Command flaredb-badger-plugin serves the stock Badger engine
// (engines/badgerengine) as a FlareDB engine plugin: flaredb-server
// launches it (engine "plugin" with this binary as its path) and talks to it
// over the engine wire protocol. It is not meant to be run by hand.
//
// The data directory comes from the host; the plugin takes no arguments.
// Engine options, set in the host's configuration, are (all optional,
// defaults as in badgerengine.Options):
//
//	error_if_not_exists           bool      fail if the directory holds no database
//	memtable_size                 bytes
//	block_cache_size              bytes
//	value_threshold               bytes
//	value_log_file_size           bytes
//	num_compactors                int
//	value_log_gc_interval         duration  e.g. 10m; negative disables it
//	value_log_gc_discard_ratio    number    between 0 and 1
//
// Badger's own log goes to the plugin's log (and so to the host's).
package main

import (
	"fmt"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/badgerengine"
	"github.com/flaredb/flaredb/plugins/sdk"
)

func main() { sdk.ServeFactory(open) }

func open(p sdk.Params) (engine.Engine, error) {
	if p.DataDir == "" {
		return nil, fmt.Errorf("%w: badger plugin: no data directory given by the host", engine.ErrInvalidArgument)
	}
	if len(p.Args) > 0 {
		return nil, fmt.Errorf("%w: badger plugin: takes no arguments, got %q: set its options in [engine.plugin.options]",
			engine.ErrInvalidArgument, p.Args)
	}
	o := badgerengine.Options{Logger: p.Logger.With("component", "badger")}
	op := p.OptionParser()
	op.Bool("error_if_not_exists", &o.ErrorIfNotExists)
	op.Int64("memtable_size", &o.MemTableSize)
	op.Int64("block_cache_size", &o.BlockCacheSize)
	op.Int64("value_threshold", &o.ValueThreshold)
	op.Int64("value_log_file_size", &o.ValueLogFileSize)
	op.Int("num_compactors", &o.NumCompactors)
	op.Duration("value_log_gc_interval", &o.ValueLogGCInterval)
	op.Float64("value_log_gc_discard_ratio", &o.ValueLogGCDiscardRatio)
	if err := op.Err(); err != nil {
		return nil, err
	}
	return badgerengine.Open(p.DataDir, &o)
}
