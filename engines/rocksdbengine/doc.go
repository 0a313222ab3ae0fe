// Package rocksdbengine is FlareDB's default storage engine: RocksDB, through
// the github.com/linxGnu/grocksdb v1.7.15 binding, linked against the system's
// librocksdb (Debian 12's librocksdb-dev, RocksDB 7.8.3).
//
// OpenStore opens a RocksDB database as a kvengine.Store, the minimal ordered
// key-value interface; Open wraps that store in the generic adapter
// (kvengine.New), which adds versions, conditions and group commit, and
// returns the full engine contract (engine.Engine). Everything a caller needs
// to know about the contract is in package engine; this package only decides
// how RocksDB is configured and how its C memory, snapshots and iterators are
// managed.
//
// The package imports only the contract (core/engine, core/kvengine) and its
// storage library, never the server, so that the rocksdb plugin binary stays
// small.
//
// # Building
//
// RocksDB is C++, reached through cgo. The real implementation is built only
// when cgo is enabled (CGO_ENABLED=1, the default with a C toolchain) and
// librocksdb-dev is installed. Without cgo the package still compiles and
// offers the same API, but OpenStore and Open return an error wrapping
// engine.ErrUnsupported that says rocksdb is not compiled in; use the rocksdb
// plugin binary, or build with CGO_ENABLED=1 and librocksdb-dev.
//
// # Directories
//
// Open and OpenStore create a database in a directory that is missing or
// empty, and open the one a directory holds (it has a CURRENT file). They
// refuse, with an error wrapping engine.ErrInvalidArgument and before
// creating or writing anything, a directory that is not empty but holds no
// RocksDB database: another engine's directory, for example, whose files
// RocksDB would take for obsolete ones of its own and delete. The FlareDB
// plugin host's lock file (.flaredb-plugin.lock) and a lost+found directory
// do not count as contents.
//
// # Durability
//
// A Store.Write with sync set is written with RocksDB's WriteOptions.sync, so
// the write-ahead log is fsynced before Write returns; such a write, and every
// write acknowledged before it, survives a crash of the process or the
// machine. A Write without sync reaches the operating system before it
// returns, so it survives a crash of the process but perhaps not of the
// machine.
//
// # Byte slices and C memory
//
// Every slice this package returns lives in Go memory: values and keys read
// from RocksDB are copied out of C memory, and the C buffers are freed before
// the call returns. Slices passed in (keys, values, iterator bounds) are
// never kept after the call returns; bounds are copied.
package rocksdbengine
