//go:build !cgo

package rocksdbengine

import (
	"fmt"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
)

// errNotCompiledIn explains why this build cannot open a RocksDB database.
var errNotCompiledIn = fmt.Errorf("%w: rocksdb is not compiled into this binary (it was built without cgo): "+
	"build with CGO_ENABLED=1 and librocksdb-dev installed, or use the rocksdb plugin binary", engine.ErrUnsupported)

// Open would open the RocksDB database in dir as the full engine contract,
// but this build has no cgo: it validates opts, then always returns an error
// wrapping engine.ErrUnsupported that says how to get rocksdb. It is safe for
// concurrent use and keeps no slices.
func Open(dir string, opts *Options) (engine.Engine, error) {
	if _, err := OpenStore(dir, opts); err != nil {
		return nil, err
	}
	return nil, errNotCompiledIn
}

// OpenStore would open the RocksDB database in dir as a kvengine.Store, but
// this build has no cgo: it returns an error wrapping
// engine.ErrInvalidArgument for invalid options or an empty dir, and
// otherwise an error wrapping engine.ErrUnsupported that says rocksdb is not
// compiled in. It is safe for concurrent use and keeps no slices.
func OpenStore(dir string, opts *Options) (kvengine.Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: rocksdbengine: empty directory", engine.ErrInvalidArgument)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("rocksdbengine: open %s: %w", dir, errNotCompiledIn)
}
