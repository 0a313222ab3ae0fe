package badgerengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
)

// libraryModule is Badger's module path; libraryVersion is the version this
// package is written for, reported when the build carries no module
// information.
const (
	libraryModule  = "github.com/dgraph-io/badger/v4"
	libraryVersion = "v4.9.6"
)

// dataPrefix precedes every stored key (see the package documentation).
const dataPrefix = 'k'

// badgerMaxKey is Badger's own key size limit.
const badgerMaxKey = 65000

// markerFile is the file every Badger database directory holds: Badger
// creates its MANIFEST first thing when it creates a database.
const markerFile = "MANIFEST"

// Open opens (creating it unless opts.ErrorIfNotExists) the Badger database
// in dir and returns the full engine contract built on it by the kvengine
// adapter. A nil opts means every default. The engine owns the database and
// closes it in Close; it is safe for concurrent use, and follows the byte
// slice ownership rules of package engine. Errors are those of OpenStore.
func Open(dir string, opts *Options) (engine.Engine, error) {
	s, err := openStore(dir, opts)
	if err != nil {
		return nil, err
	}
	return kvengine.New(s, s.description()), nil
}

// OpenStore opens (creating it unless opts.ErrorIfNotExists) the Badger
// database in dir as a kvengine.Store. A nil opts means every default.
//
// It returns an error wrapping engine.ErrInvalidArgument for invalid options,
// an empty dir, or a directory that is not empty but holds no Badger database
// (no MANIFEST file; the plugin host's lock file and lost+found do not
// count), which is left untouched: it may be another engine's, whose files
// Badger would otherwise delete. Otherwise it returns an error naming dir
// when the database cannot be opened: the directory is unusable, the
// database is missing and ErrorIfNotExists is set, or it is locked by another
// process or by another open store in this process.
//
// The store is safe for concurrent use. Values and keys it returns are copies
// owned by the caller; slices passed to it are not kept after a call
// returns. Close it to release the database and its files.
func OpenStore(dir string, opts *Options) (kvengine.Store, error) {
	s, err := openStore(dir, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// store is the kvengine.Store over one Badger database.
//
// mu guards the database's lifetime: every call holds it shared while it uses
// the database or a transaction, and Close holds it exclusively while it
// releases them, so no call ever uses a closed one. liveMu guards live, the
// open snapshots that Close must release.
type store struct {
	dir      string
	cfg      Options
	db       *badger.DB
	maxCount int64 // Badger's entry limit for one transaction
	maxSize  int64 // Badger's estimated-bytes limit for one transaction

	mu     sync.RWMutex
	closed bool

	liveMu sync.Mutex
	live   map[*snapshot]struct{}

	gcStop chan struct{}
	gcDone chan struct{}
	gcOnce sync.Once
}

var _ kvengine.Store = (*store)(nil)

func openStore(dir string, o *Options) (*store, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: badgerengine: empty directory", engine.ErrInvalidArgument)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	// Before anything is created or written: refuse a directory that holds
	// something other than a Badger database.
	if err := kvengine.CheckDir(dir, "Badger", markerFile); err != nil {
		return nil, err
	}
	cfg := o.withDefaults()
	if cfg.ErrorIfNotExists {
		matches, _ := filepath.Glob(filepath.Join(dir, markerFile))
		if len(matches) == 0 {
			return nil, fmt.Errorf("badgerengine: open %s: no database there (ErrorIfNotExists is set)", dir)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("badgerengine: open %s: %w", dir, err)
	}
	// Before the library creates anything: a creation killed half-way
	// must leave a directory CheckDir still takes for this engine's.
	if err := kvengine.Claim(dir, "Badger"); err != nil {
		return nil, err
	}
	bo := badger.DefaultOptions(dir).
		WithSyncWrites(true). // see "Writes and durability" in the package doc
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false). // the adapter's latches order writers
		WithMetricsEnabled(false).  // Badger's metrics are process-global expvars
		WithMemTableSize(cfg.MemTableSize).
		WithBlockCacheSize(cfg.BlockCacheSize).
		WithValueThreshold(cfg.ValueThreshold).
		WithValueLogFileSize(cfg.ValueLogFileSize).
		WithNumCompactors(cfg.NumCompactors).
		WithLogger(newLogger(cfg.Logger))
	if err := withDirLock(dir, func() error { return removeEmptyLogs(dir, cfg.Logger) }); err != nil {
		return nil, fmt.Errorf("badgerengine: open %s: %w", dir, err)
	}
	db, err := openBadger(bo)
	if err != nil {
		return nil, fmt.Errorf("badgerengine: open %s: %w", dir, err)
	}
	s := &store{
		dir:      dir,
		cfg:      cfg,
		db:       db,
		maxCount: db.MaxBatchCount(),
		maxSize:  db.MaxBatchSize(),
		live:     make(map[*snapshot]struct{}),
		gcStop:   make(chan struct{}),
		gcDone:   make(chan struct{}),
	}
	if cfg.ValueLogGCInterval > 0 {
		go s.gcLoop(cfg.ValueLogGCInterval)
	} else {
		close(s.gcDone)
	}
	return s, nil
}

// removeEmptyLogs removes the empty (0-byte) memtable logs (*.mem) and
// value logs (*.vlog) in dir, whose lock the caller holds (a live Badger
// has such a file empty for a moment). Badger creates such a file, then
// sizes it and writes its header; a process killed in between leaves it empty, and
// Badger's Open then fails on it ("Create a new file", upstream issue
// dgraph-io/badger#2207) although it holds nothing. Removing it loses
// nothing: every record Badger writes to these files follows their header.
func removeEmptyLogs(dir string, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || (!strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog")) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if fi.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return err
		}
		if log != nil {
			log.Warn("removed an empty Badger log file left by a crash", "file", filepath.Join(dir, name))
		}
	}
	return nil
}

// openBadger opens the database, turning a panic inside Badger (which it
// uses for some option and file problems) into an error.
func openBadger(bo badger.Options) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("badger panicked while opening: %v", r)
		}
	}()
	return badger.Open(bo)
}

// description returns the engine's self-description.
func (s *store) description() engine.Description {
	return engine.Description{
		Name:         Name,
		Version:      "Badger " + libVersion(),
		Protocol:     engine.ProtocolVersion,
		Limits:       limitsFor(s.maxSize, s.maxCount),
		Capabilities: engine.Capabilities{Persistent: true},
	}
}

func libVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == libraryModule {
				if d.Replace != nil && d.Replace.Version != "" {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return libraryVersion
}

// dataKey returns the stored form of key: a new slice, dataPrefix then key.
func dataKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = dataPrefix
	copy(k[1:], key)
	return k
}

func (s *store) errClosed() error {
	return fmt.Errorf("%w: badgerengine store %s", engine.ErrClosed, s.dir)
}

// get reads key in txn and returns a copy of its value, never nil when
// present.
func get(txn *badger.Txn, key []byte) ([]byte, bool, error) {
	item, err := txn.Get(dataKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("badgerengine: get: %w", err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, false, fmt.Errorf("badgerengine: get value: %w", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// Get implements kvengine.Store, in a read-only transaction. The returned
// value is a copy owned by the caller. It is safe for concurrent use; after
// Close it returns an error wrapping engine.ErrClosed.
func (s *store) Get(key []byte) ([]byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, false, s.errClosed()
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	return get(txn, key)
}

// Write implements kvengine.Store: the batch is one read-write transaction,
// applied atomically, and on stable storage when Write returns whatever sync
// says (see the package documentation). A batch too large for one
// transaction, or a key or value beyond Badger's limits, fails with an error
// wrapping engine.ErrTooLarge and applies nothing. It is safe for concurrent
// use.
func (s *store) Write(batch []kvengine.Mutation, _ bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return s.errClosed()
	}
	for i, m := range batch {
		if len(m.Key)+1 > badgerMaxKey {
			return fmt.Errorf("%w: badgerengine: mutation %d: key of %d bytes, Badger's limit is %d", engine.ErrTooLarge, i, len(m.Key), badgerMaxKey-1)
		}
		if !m.Delete && int64(len(m.Value)) > s.cfg.ValueLogFileSize/2 {
			return fmt.Errorf("%w: badgerengine: mutation %d: value of %d bytes, limit %d (half of ValueLogFileSize)", engine.ErrTooLarge, i, len(m.Value), s.cfg.ValueLogFileSize/2)
		}
	}
	if len(batch) == 0 {
		return nil // every write already returned synced
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	for _, m := range batch {
		var err error
		if m.Delete {
			err = txn.Delete(dataKey(m.Key))
		} else {
			// Badger keeps the value slice until the commit below returns.
			err = txn.Set(dataKey(m.Key), m.Value)
		}
		if errors.Is(err, badger.ErrTxnTooBig) {
			return fmt.Errorf("%w: badgerengine: a batch of %d mutations does not fit in one Badger transaction "+
				"(fewer than %d entries and about %d bytes, values of %d bytes or more counting as pointers; raise MemTableSize): %w",
				engine.ErrTooLarge, len(batch), s.maxCount-1, s.maxSize, s.cfg.ValueThreshold, err)
		}
		if err != nil {
			return fmt.Errorf("badgerengine: write: %w", err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("badgerengine: commit batch of %d: %w", len(batch), err)
	}
	return nil
}

// NewSnapshot implements kvengine.Store with a read-only transaction. It is
// safe for concurrent use; the snapshot itself is for one goroutine at a
// time.
func (s *store) NewSnapshot() (kvengine.Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, s.errClosed()
	}
	sn := &snapshot{s: s, txn: s.db.NewTransaction(false), iters: make(map[*iterator]struct{})}
	s.liveMu.Lock()
	s.live[sn] = struct{}{}
	s.liveMu.Unlock()
	return sn, nil
}

// Close implements kvengine.Store. It stops the value log collector, waits
// for calls in progress, releases every snapshot and iterator still open
// (their later calls return errors wrapping engine.ErrClosed) and closes the
// database. Calling it again returns nil.
func (s *store) Close() error {
	s.gcOnce.Do(func() {
		close(s.gcStop)
		<-s.gcDone
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.liveMu.Lock()
	for sn := range s.live {
		sn.release()
	}
	s.live = nil
	s.liveMu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("badgerengine: close %s: %w", s.dir, err)
	}
	return nil
}

// gcLoop runs a value log collection every interval until Close.
func (s *store) gcLoop(interval time.Duration) {
	defer close(s.gcDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.gcStop:
			return
		case <-t.C:
			if err := s.collect(); err != nil {
				s.logError("value log collection failed", err)
			}
		}
	}
}

// collect rewrites value log files while they are at least the discard
// ratio garbage, one at a time, stopping early when the store is closing.
func (s *store) collect() error {
	for {
		select {
		case <-s.gcStop:
			return nil
		default:
		}
		rewrote, err := s.collectOne()
		if err != nil || !rewrote {
			return err
		}
	}
}

// collectOne runs one Badger value log collection. Its rewrites are synced
// (SyncWrites) before it deletes the file they came from.
func (s *store) collectOne() (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false, nil
	}
	err := s.db.RunValueLogGC(s.cfg.ValueLogGCDiscardRatio)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
		return false, nil
	}
	return false, err
}

func (s *store) logError(msg string, err error) {
	if s.cfg.Logger != nil {
		s.cfg.Logger.Error(msg, "engine", Name, "dir", s.dir, "err", err)
	}
}

// snapshot is a kvengine.Snapshot over a read-only Badger transaction. Its
// fields other than s are guarded by s.mu (shared by its own calls, which
// come from one goroutine at a time, and exclusive in store.Close).
type snapshot struct {
	s        *store
	txn      *badger.Txn
	iters    map[*iterator]struct{}
	released bool
}

var _ kvengine.Snapshot = (*snapshot)(nil)

// release closes the snapshot's iterators, then discards its transaction
// (Badger requires that order). The caller holds s.mu.
func (sn *snapshot) release() {
	if sn.released {
		return
	}
	sn.released = true
	for it := range sn.iters {
		it.release()
	}
	sn.iters = nil
	sn.txn.Discard()
}

func (sn *snapshot) errClosed() error {
	return fmt.Errorf("%w: badgerengine snapshot of %s", engine.ErrClosed, sn.s.dir)
}

// Get implements kvengine.Snapshot: Store.Get as of the snapshot. The value
// is a copy owned by the caller.
func (sn *snapshot) Get(key []byte) ([]byte, bool, error) {
	sn.s.mu.RLock()
	defer sn.s.mu.RUnlock()
	if sn.released {
		return nil, false, sn.errClosed()
	}
	return get(sn.txn, key)
}

// NewIterator implements kvengine.Snapshot. lower and upper are copied.
// Forward, it seeks to lower and stops at upper; reverse, it seeks to the
// largest key not above upper (Badger's reverse Seek), skips upper itself,
// and stops below lower.
func (sn *snapshot) NewIterator(lower, upper []byte, reverse bool) (kvengine.Iterator, error) {
	sn.s.mu.RLock()
	defer sn.s.mu.RUnlock()
	if sn.released {
		return nil, sn.errClosed()
	}
	it := &iterator{sn: sn, reverse: reverse}
	if lower != nil {
		it.lower = dataKey(lower)
	}
	if upper != nil {
		it.upper = dataKey(upper)
	}
	it.it = sn.txn.NewIterator(badger.IteratorOptions{
		// Values are copied one at a time in Next; prefetching would hold
		// up to PrefetchSize values (64 MiB each, at most) in memory.
		PrefetchValues: false,
		Reverse:        reverse,
		Prefix:         []byte{dataPrefix},
	})
	sn.iters[it] = struct{}{}
	return it, nil
}

// Close implements kvengine.Snapshot. It closes any of its iterators still
// open, then discards the transaction. Calling it again, or after the
// store's Close, returns nil.
func (sn *snapshot) Close() error {
	sn.s.mu.RLock()
	defer sn.s.mu.RUnlock()
	if sn.released {
		return nil
	}
	sn.release()
	sn.s.liveMu.Lock()
	delete(sn.s.live, sn)
	sn.s.liveMu.Unlock()
	return nil
}

// iterator is a kvengine.Iterator over a Badger iterator. lower and upper
// are the bounds in stored form (with dataPrefix); key and val are Go copies
// of the current entry, reused from one entry to the next. Its fields are
// guarded like snapshot's.
type iterator struct {
	sn           *snapshot
	it           *badger.Iterator
	lower, upper []byte
	reverse      bool
	started      bool
	done         bool
	released     bool
	key, val     []byte
	err          error
}

var _ kvengine.Iterator = (*iterator)(nil)

// release closes the Badger iterator. The caller holds s.mu.
func (it *iterator) release() {
	if it.released {
		return
	}
	it.released = true
	it.it.Close()
}

// seek positions the iterator on the first entry of the range.
func (it *iterator) seek() {
	if !it.reverse {
		if it.lower != nil {
			it.it.Seek(it.lower)
		} else {
			it.it.Rewind() // to the first key with dataPrefix
		}
		return
	}
	// Badger's reverse Seek finds the largest key <= its argument. With no
	// upper bound, seek to the key just past every prefixed key.
	target := it.upper
	if target == nil {
		target = []byte{dataPrefix + 1}
	}
	it.it.Seek(target)
	if it.it.Valid() && bytes.Equal(it.it.Item().Key(), target) {
		it.it.Next() // the upper bound is exclusive
	}
}

// Next implements kvengine.Iterator.
func (it *iterator) Next() bool {
	it.sn.s.mu.RLock()
	defer it.sn.s.mu.RUnlock()
	if it.done {
		return false
	}
	if it.released {
		it.done = true
		it.err = fmt.Errorf("%w: badgerengine iterator of %s", engine.ErrClosed, it.sn.s.dir)
		return false
	}
	if it.started {
		it.it.Next()
	} else {
		it.started = true
		it.seek()
	}
	if !it.it.Valid() { // Valid also checks dataPrefix
		it.done = true
		return false
	}
	item := it.it.Item()
	k := item.Key()
	if (!it.reverse && it.upper != nil && bytes.Compare(k, it.upper) >= 0) ||
		(it.reverse && it.lower != nil && bytes.Compare(k, it.lower) < 0) {
		it.done = true
		return false
	}
	it.key = append(it.key[:0], k[1:]...)
	v, err := item.ValueCopy(it.val[:0])
	if err != nil {
		it.done = true
		it.err = fmt.Errorf("badgerengine: iterate: value of %q: %w", it.key, err)
		return false
	}
	it.val = v
	return true
}

// Key implements kvengine.Iterator. The slice is valid until the next call
// to Next or Close.
func (it *iterator) Key() []byte { return it.key }

// Value implements kvengine.Iterator. The slice is valid until the next call
// to Next or Close; it is never nil for an entry, even an empty value.
func (it *iterator) Value() []byte {
	if it.val == nil {
		return []byte{}
	}
	return it.val
}

// Err implements kvengine.Iterator.
func (it *iterator) Err() error { return it.err }

// Close implements kvengine.Iterator. Calling it again, or after the
// snapshot or the store was closed, returns nil.
func (it *iterator) Close() error {
	it.sn.s.mu.RLock()
	defer it.sn.s.mu.RUnlock()
	it.done = true
	if it.released {
		return nil
	}
	it.release()
	if it.sn.iters != nil {
		delete(it.sn.iters, it)
	}
	return nil
}

// logger routes Badger's log calls to a *slog.Logger; a nil one discards
// them. It is safe for concurrent use.
type logger struct{ l *slog.Logger }

func newLogger(l *slog.Logger) badger.Logger {
	if l == nil {
		return nil // Badger then logs nothing
	}
	return logger{l.With("engine", Name)}
}

func (g logger) log(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !g.l.Enabled(ctx, level) {
		return
	}
	g.l.Log(ctx, level, strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

func (g logger) Errorf(format string, args ...any)   { g.log(slog.LevelError, format, args...) }
func (g logger) Warningf(format string, args ...any) { g.log(slog.LevelWarn, format, args...) }
func (g logger) Infof(format string, args ...any)    { g.log(slog.LevelInfo, format, args...) }
func (g logger) Debugf(format string, args ...any)   { g.log(slog.LevelDebug, format, args...) }
