//go:build cgo

package rocksdbengine

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/linxGnu/grocksdb"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
)

// bindingModule is the Go binding's module path; bindingVersion is the
// version this package is written for, reported when the build carries no
// module information.
const (
	bindingModule  = "github.com/linxGnu/grocksdb"
	bindingVersion = "v1.7.15"
)

// markerFile is the file every RocksDB database directory holds: it names
// the current MANIFEST. RocksDB writes it when it creates a database.
const markerFile = "CURRENT"

// Open opens (creating it unless opts.ErrorIfNotExists) the RocksDB database
// in dir and returns the full engine contract built on it by the kvengine
// adapter. A nil opts means every default. The engine owns the database and
// closes it in Close; it is safe for concurrent use, and follows the byte
// slice ownership rules of package engine. Errors are those of OpenStore.
func Open(dir string, opts *Options) (engine.Engine, error) {
	s, err := openStore(dir, opts)
	if err != nil {
		return nil, err
	}
	return kvengine.New(s, description(s.version())), nil
}

// OpenStore opens (creating it unless opts.ErrorIfNotExists) the RocksDB
// database in dir as a kvengine.Store. A nil opts means every default.
//
// It returns an error wrapping engine.ErrInvalidArgument for invalid options,
// an empty dir, or a directory that is not empty but holds no RocksDB
// database (no CURRENT file; the plugin host's lock file and lost+found do
// not count), which is left untouched: it may be another engine's, whose
// files RocksDB would otherwise delete. Otherwise it returns an error naming
// dir when the database cannot be opened: the directory is unusable, the
// database is missing and ErrorIfNotExists is set, or its LOCK is held by
// another process or by another open store in this process.
//
// The store is safe for concurrent use. Values it returns are copied out of
// RocksDB's C memory and owned by the caller; slices passed to it are never
// kept. Close it to release the database, its files and its C memory.
func OpenStore(dir string, opts *Options) (kvengine.Store, error) {
	s, err := openStore(dir, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// store is the kvengine.Store over one RocksDB database.
//
// mu guards the C handles: every call holds it shared while it touches
// them, and Close holds it exclusively while it releases them, so no call
// ever sees a freed handle. liveMu guards live, the open snapshots that Close
// must release.
type store struct {
	dir string

	mu     sync.RWMutex
	closed bool
	db     *grocksdb.DB
	opts   *grocksdb.Options
	bbto   *grocksdb.BlockBasedTableOptions
	cache  *grocksdb.Cache // nil when the block cache is disabled
	ro     *grocksdb.ReadOptions
	wo     *grocksdb.WriteOptions // sync unset
	woSync *grocksdb.WriteOptions // sync set

	liveMu sync.Mutex
	live   map[*snapshot]struct{}
}

var _ kvengine.Store = (*store)(nil)

func openStore(dir string, o *Options) (*store, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: rocksdbengine: empty directory", engine.ErrInvalidArgument)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	// Before anything is created or written: refuse a directory that holds
	// something other than a RocksDB database.
	if err := kvengine.CheckDir(dir, "RocksDB", markerFile); err != nil {
		return nil, err
	}
	cfg := o.withDefaults()
	if cfg.ErrorIfNotExists {
		if _, err := os.Stat(filepath.Join(dir, markerFile)); err != nil {
			return nil, fmt.Errorf("rocksdbengine: open %s: no database there (ErrorIfNotExists is set): %w", dir, err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("rocksdbengine: open %s: %w", dir, err)
	}
	// Before the library creates anything: a creation killed half-way
	// must leave a directory CheckDir still takes for this engine's.
	if err := kvengine.Claim(dir, "RocksDB"); err != nil {
		return nil, err
	}

	s := &store{dir: dir, live: make(map[*snapshot]struct{})}
	s.opts = grocksdb.NewDefaultOptions()
	s.opts.SetCreateIfMissing(!cfg.ErrorIfNotExists)
	s.opts.SetWriteBufferSize(uint64(cfg.WriteBufferSize))
	s.opts.SetMaxOpenFiles(cfg.MaxOpenFiles)
	s.opts.SetMaxBackgroundJobs(cfg.MaxBackgroundJobs)
	s.opts.SetKeepLogFileNum(uint(cfg.KeepLogFileNum))
	s.opts.SetLevelCompactionDynamicLevelBytes(true)
	s.opts.SetCompression(compressionType(cfg.Compression))

	s.bbto = grocksdb.NewDefaultBlockBasedTableOptions()
	if cfg.BlockCacheSize > 0 {
		s.cache = grocksdb.NewLRUCache(uint64(cfg.BlockCacheSize))
		s.bbto.SetBlockCache(s.cache)
	} else {
		s.bbto.SetNoBlockCache(true)
	}
	if cfg.BloomBitsPerKey > 0 {
		// The table options take ownership of the policy.
		s.bbto.SetFilterPolicy(grocksdb.NewBloomFilterFull(float64(cfg.BloomBitsPerKey)))
	}
	s.opts.SetBlockBasedTableFactory(s.bbto)

	db, err := grocksdb.OpenDb(s.opts, dir)
	if err != nil {
		s.destroyOptions()
		return nil, fmt.Errorf("rocksdbengine: open %s: %w", dir, err)
	}
	s.db = db
	s.ro = grocksdb.NewDefaultReadOptions()
	s.wo = grocksdb.NewDefaultWriteOptions()
	s.wo.SetSync(false)
	s.woSync = grocksdb.NewDefaultWriteOptions()
	s.woSync.SetSync(true)
	return s, nil
}

func compressionType(name string) grocksdb.CompressionType {
	switch name {
	case "none":
		return grocksdb.NoCompression
	case "snappy":
		return grocksdb.SnappyCompression
	case "zstd":
		return grocksdb.ZSTDCompression
	case "zlib":
		return grocksdb.ZLibCompression
	}
	return grocksdb.LZ4Compression
}

// destroyOptions frees the option objects (after the database is closed, or
// when it never opened).
func (s *store) destroyOptions() {
	s.opts.Destroy()
	s.bbto.Destroy()
	if s.cache != nil {
		s.cache.Destroy()
	}
}

// version returns "RocksDB X.Y.Z, grocksdb vA.B.C". RocksDB's C API has no
// version call, so the library's version is read from the OPTIONS file the
// running library wrote into the directory when it opened the database.
func (s *store) version() string {
	rv := "unknown"
	if v := optionsFileVersion(s.dir); v != "" {
		rv = v
	}
	bv := bindingVersion
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == bindingModule {
				bv = d.Version
				if d.Replace != nil && d.Replace.Version != "" {
					bv = d.Replace.Version
				}
			}
		}
	}
	return "RocksDB " + rv + ", grocksdb " + bv
}

// optionsFileVersion returns the rocksdb_version recorded in the newest
// OPTIONS-NNNNNN file of dir, or "" when there is none.
func optionsFileVersion(dir string) string {
	names, err := filepath.Glob(filepath.Join(dir, "OPTIONS-*"))
	if err != nil || len(names) == 0 {
		return ""
	}
	num := func(p string) int {
		n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(p), "OPTIONS-"))
		return n
	}
	sort.Slice(names, func(i, j int) bool { return num(names[i]) < num(names[j]) })
	f, err := os.Open(names[len(names)-1])
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "rocksdb_version="); ok {
			return v
		}
	}
	return ""
}

func (s *store) errClosed() error {
	return fmt.Errorf("%w: rocksdbengine store %s", engine.ErrClosed, s.dir)
}

// get reads key with ro and returns a Go copy of its value.
func (s *store) get(ro *grocksdb.ReadOptions, key []byte) ([]byte, bool, error) {
	h, err := s.db.GetPinned(ro, key)
	if err != nil {
		return nil, false, fmt.Errorf("rocksdbengine: get: %w", err)
	}
	if !h.Exists() {
		return nil, false, nil
	}
	defer h.Destroy()
	data := h.Data()
	v := make([]byte, len(data))
	copy(v, data)
	return v, true, nil
}

// Get implements kvengine.Store. The returned value is a copy owned by the
// caller. It is safe for concurrent use; after Close it returns an error
// wrapping engine.ErrClosed.
func (s *store) Get(key []byte) ([]byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, false, s.errClosed()
	}
	return s.get(s.ro, key)
}

// Write implements kvengine.Store: the batch is one RocksDB WriteBatch,
// applied atomically; with sync the write-ahead log is fsynced before Write
// returns (an empty batch with sync only syncs the log). The batch's slices
// are copied into the WriteBatch and not kept. It is safe for concurrent use.
func (s *store) Write(batch []kvengine.Mutation, sync bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return s.errClosed()
	}
	if len(batch) == 0 {
		if sync {
			if err := s.db.FlushWAL(true); err != nil {
				return fmt.Errorf("rocksdbengine: sync log: %w", err)
			}
		}
		return nil
	}
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	for _, m := range batch {
		if m.Delete {
			wb.Delete(m.Key)
		} else {
			wb.Put(m.Key, m.Value)
		}
	}
	wo := s.wo
	if sync {
		wo = s.woSync
	}
	if err := s.db.Write(wo, wb); err != nil {
		return fmt.Errorf("rocksdbengine: write batch of %d: %w", len(batch), err)
	}
	return nil
}

// NewSnapshot implements kvengine.Store with a RocksDB snapshot. It is safe
// for concurrent use; the snapshot itself is for one goroutine at a time.
func (s *store) NewSnapshot() (kvengine.Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, s.errClosed()
	}
	sn := &snapshot{s: s, snap: s.db.NewSnapshot(), iters: make(map[*iterator]struct{})}
	sn.ro = grocksdb.NewDefaultReadOptions()
	sn.ro.SetSnapshot(sn.snap)
	s.liveMu.Lock()
	s.live[sn] = struct{}{}
	s.liveMu.Unlock()
	return sn, nil
}

// Close implements kvengine.Store. It waits for calls in progress, releases
// every snapshot and iterator still open (their later calls return errors
// wrapping engine.ErrClosed), closes the database and frees every option
// object. Calling it again returns nil.
func (s *store) Close() error {
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
	s.ro.Destroy()
	s.wo.Destroy()
	s.woSync.Destroy()
	s.db.Close()
	s.destroyOptions()
	return nil
}

// snapshot is a kvengine.Snapshot over a RocksDB snapshot. Its fields other
// than s are guarded by s.mu (shared by its own calls, which come from one
// goroutine at a time, and exclusive in store.Close).
type snapshot struct {
	s        *store
	snap     *grocksdb.Snapshot
	ro       *grocksdb.ReadOptions
	iters    map[*iterator]struct{}
	released bool
}

var _ kvengine.Snapshot = (*snapshot)(nil)

// release frees the snapshot's iterators, then the snapshot. The caller holds
// s.mu (shared or exclusive).
func (sn *snapshot) release() {
	if sn.released {
		return
	}
	sn.released = true
	for it := range sn.iters {
		it.release()
	}
	sn.iters = nil
	sn.s.db.ReleaseSnapshot(sn.snap)
	sn.ro.Destroy()
}

func (sn *snapshot) errClosed() error {
	return fmt.Errorf("%w: rocksdbengine snapshot of %s", engine.ErrClosed, sn.s.dir)
}

// Get implements kvengine.Snapshot: Store.Get as of the snapshot. The value
// is a copy owned by the caller.
func (sn *snapshot) Get(key []byte) ([]byte, bool, error) {
	sn.s.mu.RLock()
	defer sn.s.mu.RUnlock()
	if sn.released {
		return nil, false, sn.errClosed()
	}
	return sn.s.get(sn.ro, key)
}

// NewIterator implements kvengine.Snapshot. lower and upper are copied; the
// iterator reads through RocksDB's iterate_lower_bound and
// iterate_upper_bound, so it never visits keys outside the range.
func (sn *snapshot) NewIterator(lower, upper []byte, reverse bool) (kvengine.Iterator, error) {
	sn.s.mu.RLock()
	defer sn.s.mu.RUnlock()
	if sn.released {
		return nil, sn.errClosed()
	}
	it := &iterator{sn: sn, reverse: reverse}
	it.ro = grocksdb.NewDefaultReadOptions()
	it.ro.SetSnapshot(sn.snap)
	// The read options keep a pointer to the bounds until they are
	// destroyed: they must be our own copies, kept alive by the iterator.
	if lower != nil {
		it.lower = bytes.Clone(lower)
		it.ro.SetIterateLowerBound(it.lower)
	}
	if upper != nil {
		it.upper = bytes.Clone(upper)
		it.ro.SetIterateUpperBound(it.upper)
	}
	it.it = sn.s.db.NewIterator(it.ro)
	sn.iters[it] = struct{}{}
	return it, nil
}

// Close implements kvengine.Snapshot. It releases the snapshot, and any of
// its iterators still open. Calling it again, or after the store's Close,
// returns nil.
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

// iterator is a kvengine.Iterator over a RocksDB iterator. key and val are
// Go copies of the current entry, reused from one entry to the next. Its
// fields are guarded like snapshot's.
type iterator struct {
	sn           *snapshot
	it           *grocksdb.Iterator
	ro           *grocksdb.ReadOptions
	lower, upper []byte
	reverse      bool
	started      bool
	done         bool
	released     bool
	key, val     []byte
	err          error
}

var _ kvengine.Iterator = (*iterator)(nil)

// release frees the iterator and its read options. The caller holds s.mu.
func (it *iterator) release() {
	if it.released {
		return
	}
	it.released = true
	it.it.Close()
	it.ro.Destroy()
	it.lower, it.upper = nil, nil
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
		it.err = fmt.Errorf("%w: rocksdbengine iterator of %s", engine.ErrClosed, it.sn.s.dir)
		return false
	}
	r := it.it
	switch {
	case it.started && it.reverse:
		r.Prev()
	case it.started:
		r.Next()
	case it.reverse && it.upper != nil:
		// The largest key below the exclusive upper bound.
		r.SeekForPrev(it.upper)
		if r.Valid() && bytes.Equal(r.Key().Data(), it.upper) {
			r.Prev()
		}
	case it.reverse:
		r.SeekToLast()
	case it.lower != nil:
		r.Seek(it.lower)
	default:
		r.SeekToFirst()
	}
	it.started = true
	if !r.Valid() {
		it.done = true
		if err := r.Err(); err != nil {
			it.err = fmt.Errorf("rocksdbengine: iterate: %w", err)
		}
		return false
	}
	// Key and Value point into C memory owned by the iterator (they need no
	// freeing); copy them before the next move.
	k := r.Key().Data()
	if (it.upper != nil && bytes.Compare(k, it.upper) >= 0) || (it.lower != nil && bytes.Compare(k, it.lower) < 0) {
		it.done = true
		return false
	}
	it.key = append(it.key[:0], k...)
	it.val = append(it.val[:0], r.Value().Data()...)
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

// description returns the engine's self-description; version is the
// free-form engine version string.
func description(version string) engine.Description {
	return engine.Description{
		Name:         Name,
		Version:      version,
		Protocol:     engine.ProtocolVersion,
		Limits:       Limits(),
		Capabilities: engine.Capabilities{Persistent: true},
	}
}
