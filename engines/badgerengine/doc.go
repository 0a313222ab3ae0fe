// Package badgerengine is FlareDB's second stock storage engine: Badger
// (github.com/dgraph-io/badger/v4), a pure-Go LSM tree with a value log, so it
// builds without cgo.
//
// OpenStore opens a Badger database as a kvengine.Store, the minimal ordered
// key-value interface; Open wraps that store in the generic adapter
// (kvengine.New), which adds versions, conditions and group commit, and
// returns the full engine contract (engine.Engine). Everything a caller needs
// to know about the contract is in package engine; this package only decides
// how Badger is configured and how its transactions map onto the Store.
//
// The package imports only the contract (core/engine, core/kvengine) and its
// storage library, never the server.
//
// # Layout on disk
//
// Every key is stored behind a one-byte prefix ('k'), so that no user
// key can collide with Badger's own "!badger!" keys, which Badger refuses to
// write: any byte string is a valid key, as the contract requires. The prefix
// is not part of the keys this package returns.
//
// # Directories
//
// Open and OpenStore create a database in a directory that is missing or
// empty, and open the one a directory holds (it has a MANIFEST file). They
// refuse, with an error wrapping engine.ErrInvalidArgument and before
// creating or writing anything, a directory that is not empty but holds no
// Badger database: another engine's directory, for example, whose table
// files Badger would delete as unknown to its new MANIFEST. The FlareDB
// plugin host's lock file (.flaredb-plugin.lock) and a lost+found directory
// do not count as contents.
//
// # Writes and durability
//
// A Store.Write is one read-write Badger transaction, so a batch is applied
// atomically. The database is opened with Badger's SyncWrites on, so every
// write, whatever its sync flag, is msynced to stable storage (the memtable's
// write-ahead log and, for large values, the value log) by Badger's writer
// goroutine before Write returns, and survives a crash of the process or the
// machine. Badger's writer merges concurrent transactions, so concurrent
// writes share syncs.
//
// The obvious alternative, SyncWrites off and DB.Sync after each synced
// write, is not safe with Badger v4: DB.Sync reaches only the newest value
// log file and the current memtable's log, so a synced value written just
// before a value log file rotation (which the write itself can trigger), or
// a write whose memtable was rotated away before the Sync, could be lost in a
// machine crash; and value log collection deletes a file once it has
// rewritten its live values, which without SyncWrites are not yet synced.
// The price of SyncWrites is that unsynced writes (ApplyOptions.NoSync) are
// synced too: durable, but no faster than synced ones.
//
// One transaction can hold only so much: fewer than a bounded number of
// entries and about 15% of Options.MemTableSize in estimated bytes (a value
// of at least ValueThreshold bytes counts as a small pointer, since it goes
// to the value log). The engine's Limits are derived from those numbers so
// that every call within them fits (see MaxKeySize); a Store.Write beyond
// them fails as a whole, with an error wrapping engine.ErrTooLarge.
//
// # Byte slices
//
// Keys and values returned by Get and by iterators are copies in Go memory;
// slices passed in are not kept after the call returns (Badger holds on to a
// batch's keys and values only until its transaction commits, inside Write).
//
// # Logging
//
// Badger's log output goes to the *slog.Logger given in Options.Logger (at
// the matching slog levels), or nowhere when it is nil. No global logger is
// touched, and Badger's global expvar metrics are switched off.
package badgerengine
