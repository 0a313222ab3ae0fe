// Package kvengine builds the full engine contract (package engine) on top of
// a minimal ordered key-value store: an engine author who implements Store —
// get, an atomic write batch with a sync option, snapshots and bounded
// iterators — gets versioned, conditional, batched writes (compare-and-swap)
// for free, from New.
//
// The adapter stores each value behind an 8-byte big-endian version header,
// serialises writers per key with a fixed table of latches (acquired in sorted
// order, so atomic groups never deadlock), and merges the writes of
// concurrent Apply calls into one synced Store.Write (group commit), so one
// fsync serves many callers.
//
// kvengine imports only the contract package and the standard library; it
// must never import the server, the plugin host or any engine.
package kvengine

// Mutation is one change in a Store write batch: a set, or a delete when
// Delete is true.
type Mutation struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// Store is the minimal ordered key-value interface an engine author
// implements. Keys are compared byte-wise; the adapter never passes an empty
// key.
//
// Every method must be safe for concurrent use. Slices passed in are owned by
// the caller and must not be kept after the call returns; slices returned by
// Get are owned by the caller. Errors are returned as they are: the adapter
// wraps anything that is not already one of package engine's sentinels as
// engine.ErrInternal.
type Store interface {
	// Get returns the value stored under key and true, or nil and false when
	// the key is absent. Get sees every Write that has returned.
	Get(key []byte) (value []byte, ok bool, err error)

	// Write applies the mutations atomically, in order: after a crash either
	// all of them are visible or none. When sync is true it returns only once
	// they are on stable storage.
	Write(batch []Mutation, sync bool) error

	// NewSnapshot returns a consistent, read-only view of the store as of
	// now, unaffected by later writes. The caller closes it.
	NewSnapshot() (Snapshot, error)

	// Close releases the store. The adapter calls it once, after every other
	// call has returned.
	Close() error
}

// Snapshot is a read-only point-in-time view of a Store. It is used by one
// goroutine at a time.
type Snapshot interface {
	// Get is Store.Get against the snapshot.
	Get(key []byte) (value []byte, ok bool, err error)
	// NewIterator returns an iterator over keys in [lower, upper) — nil
	// lower means from the first key, nil upper means to the last — in
	// ascending order, or descending when reverse is true. The caller closes
	// the iterator before the snapshot.
	NewIterator(lower, upper []byte, reverse bool) (Iterator, error)
	// Close releases the snapshot.
	Close() error
}

// Iterator walks a range of a Snapshot. It starts before the first entry:
// call Next to move onto it.
type Iterator interface {
	// Next moves to the next entry and reports whether there is one. After
	// it returns false, Err tells whether the end was reached or an error
	// stopped the iteration.
	Next() bool
	// Key and Value return the current entry. They are valid only until
	// the next call to Next or Close; the caller copies what it keeps.
	Key() []byte
	Value() []byte
	// Err returns the error that stopped the iteration, if any.
	Err() error
	// Close releases the iterator.
	Close() error
}
