// Package bboltengine is an example of a third-party FlareDB storage
// engine: a key-value store on go.etcd.io/bbolt that implements only the
// minimal ordered interface, kvengine.Store. kvengine.New turns it into the
// full engine contract (versions, compare-and-swap, atomic groups, group
// commit), and the plugin main in cmd/flaredb-bbolt-plugin serves it with
// the plugin SDK. docs/writing-an-engine.md walks through it.
//
// The whole database is one bbolt file, data.db, in the directory given to
// Open, with every key in one bucket. bbolt takes an exclusive lock on the
// file, so a second process opening the same directory fails (after
// LockTimeout) instead of corrupting it.
//
// Like every engine, it imports the contract (core/engine, core/kvengine)
// and its own storage library only; never the server.
package bboltengine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kvengine"
)

// Name is the engine's name in its Description.
const Name = "bbolt"

// FileName is the database file inside the engine's directory.
const FileName = "data.db"

// LockTimeout is how long Open waits for bbolt's file lock before failing.
const LockTimeout = time.Second

// initialMmapSize is the address space mapped up front (1 GiB of virtual
// memory, not disk): bbolt must re-map the file when it outgrows the map,
// and a re-map waits for open read transactions (snapshots, so scans in
// progress); a large initial map makes that rare.
const initialMmapSize = 1 << 30

var bucket = []byte("kv")

// Description describes the engine. Its limits keep single transactions of
// this B+tree at sizes it handles well.
func Description() engine.Description {
	return engine.Description{
		Name:    Name,
		Version: "bbolt v1.5.0",
		Limits: engine.Limits{
			MaxKeySize:   bolt.MaxKeySize, // keys are stored as given
			MaxValueSize: 32 << 20,
			MaxBatchSize: 64 << 20,
		},
		Capabilities: engine.Capabilities{Persistent: true},
	}
}

// Store is a kvengine.Store on one bbolt database. It is safe for
// concurrent use, as kvengine.Store requires.
type Store struct {
	db *bolt.DB
}

var _ kvengine.Store = (*Store)(nil)

// Open opens (creating it if needed) the database in dir. It fails with an
// error wrapping engine.ErrInvalidArgument if dir holds something else
// than a bbolt database (another engine's files, say), which it leaves
// untouched; engine.ErrUnavailable if another process holds the database;
// and engine.ErrInternal for other failures.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: bboltengine: empty directory", engine.ErrInvalidArgument)
	}
	// Before creating anything: never add a database to another engine's
	// directory.
	if err := kvengine.CheckDir(dir, "bbolt", FileName); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: bboltengine: %w", engine.ErrInternal, err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: LockTimeout, InitialMmapSize: initialMmapSize})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: bboltengine: %s is locked by another process", engine.ErrUnavailable, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: bboltengine: open %s: %w", engine.ErrInternal, path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%w: bboltengine: create bucket: %w", engine.ErrInternal, err)
	}
	return &Store{db: db}, nil
}

// OpenEngine opens the database in dir as the full engine contract.
func OpenEngine(dir string) (engine.Engine, error) {
	s, err := Open(dir)
	if err != nil {
		return nil, err
	}
	return kvengine.New(s, Description()), nil
}

// Get implements kvengine.Store. The value is copied out of bbolt's memory
// map, so the caller owns it.
func (s *Store) Get(key []byte) ([]byte, bool, error) {
	var v []byte
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v, ok = get(tx, key)
		return nil
	})
	return v, ok, err
}

func get(tx *bolt.Tx, key []byte) ([]byte, bool) {
	raw := tx.Bucket(bucket).Get(key)
	if raw == nil {
		return nil, false
	}
	return bytes.Clone(raw), true
}

// Write implements kvengine.Store with one bbolt read-write transaction:
// all mutations or none. bbolt syncs every commit, so sync=false is as
// durable as sync=true (the contract allows more durability, not less).
func (s *Store) Write(batch []kvengine.Mutation, sync bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for _, m := range batch {
			var err error
			if m.Delete {
				err = b.Delete(m.Key)
			} else {
				err = b.Put(m.Key, m.Value)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// NewSnapshot implements kvengine.Store with a bbolt read-only
// transaction: a consistent view until it is closed.
func (s *Store) NewSnapshot() (kvengine.Snapshot, error) {
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, err
	}
	return &snapshot{tx: tx}, nil
}

// Close implements kvengine.Store.
func (s *Store) Close() error { return s.db.Close() }

// snapshot is a read-only transaction. Like a bbolt transaction, it is used
// by one goroutine at a time.
type snapshot struct {
	tx *bolt.Tx
}

func (sn *snapshot) Get(key []byte) ([]byte, bool, error) {
	v, ok := get(sn.tx, key)
	return v, ok, nil
}

func (sn *snapshot) NewIterator(lower, upper []byte, reverse bool) (kvengine.Iterator, error) {
	// The bounds are the caller's: keep copies, not the slices.
	return &iterator{c: sn.tx.Bucket(bucket).Cursor(), lower: bytes.Clone(lower), upper: bytes.Clone(upper), reverse: reverse}, nil
}

func (sn *snapshot) Close() error { return sn.tx.Rollback() }

// iterator walks a bbolt cursor within [lower, upper). Its Key and Value
// point into the memory map, valid while the snapshot is open; the adapter
// copies what it keeps.
type iterator struct {
	c            *bolt.Cursor
	lower, upper []byte
	reverse      bool
	started      bool
	done         bool
	k, v         []byte
}

func (it *iterator) Next() bool {
	if it.done {
		return false
	}
	var k, v []byte
	switch {
	case !it.started && !it.reverse:
		if it.lower != nil {
			k, v = it.c.Seek(it.lower)
		} else {
			k, v = it.c.First()
		}
	case !it.started && it.reverse:
		if it.upper != nil {
			// Seek lands on the first key >= upper; the entry before it is
			// the last one in range.
			if k, _ = it.c.Seek(it.upper); k == nil {
				k, v = it.c.Last()
			} else {
				k, v = it.c.Prev()
			}
		} else {
			k, v = it.c.Last()
		}
	case it.reverse:
		k, v = it.c.Prev()
	default:
		k, v = it.c.Next()
	}
	it.started = true
	if k == nil ||
		(!it.reverse && it.upper != nil && bytes.Compare(k, it.upper) >= 0) ||
		(it.reverse && it.lower != nil && bytes.Compare(k, it.lower) < 0) {
		it.done = true
		it.k, it.v = nil, nil
		return false
	}
	it.k, it.v = k, v
	return true
}

func (it *iterator) Key() []byte   { return it.k }
func (it *iterator) Value() []byte { return it.v }
func (it *iterator) Err() error    { return nil }
func (it *iterator) Close() error  { it.done = true; return nil }
