package kvengine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/flaredb/flaredb/core/engine"
)

// headerSize is the size of the version header stored before each value.
const headerSize = 8

// Options tune the adapter. A nil *Options is valid; zero fields take the
// defaults shown.
type Options struct {
	// Latches is the number of per-key latch stripes (default 4096). Two
	// keys that hash to one stripe are serialised against each other.
	Latches int
	// MaxGroupBytes caps the key and value bytes that one group commit
	// merges into a single Store.Write (default 4 MiB). A single call larger
	// than that is still written, alone.
	MaxGroupBytes int
	// MaxGroupCalls caps the Apply calls merged into one Store.Write
	// (default 256).
	MaxGroupCalls int
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Latches <= 0 {
		r.Latches = 4096
	}
	if r.MaxGroupBytes <= 0 {
		r.MaxGroupBytes = 4 << 20
	}
	if r.MaxGroupCalls <= 0 {
		r.MaxGroupCalls = 256
	}
	return r
}

// Adapter is the full engine contract built over a Store. It is safe for
// concurrent use. Create it with New.
type Adapter struct {
	store   Store
	desc    engine.Description
	opts    Options
	seed    maphash.Seed
	latches []sync.Mutex

	// life guards closed and inflight; cond is signalled when inflight
	// drops to zero after Close began.
	life     sync.Mutex
	cond     *sync.Cond
	closed   bool
	inflight int

	group committer
}

var _ engine.Engine = (*Adapter)(nil)

// New returns the engine contract built over s, described by d (d.Protocol
// is set to engine.ProtocolVersion). The adapter owns s from then on and
// closes it in Close.
func New(s Store, d engine.Description) *Adapter { return NewWithOptions(s, d, nil) }

// NewWithOptions is New with tuning options.
func NewWithOptions(s Store, d engine.Description, o *Options) *Adapter {
	opts := o.withDefaults()
	d.Protocol = engine.ProtocolVersion
	a := &Adapter{
		store:   s,
		desc:    d,
		opts:    opts,
		seed:    maphash.MakeSeed(),
		latches: make([]sync.Mutex, opts.Latches),
	}
	a.cond = sync.NewCond(&a.life)
	a.group.store = s
	a.group.maxBytes = opts.MaxGroupBytes
	a.group.maxCalls = opts.MaxGroupCalls
	return a
}

// Store returns the underlying store, for engine-specific figures. Callers
// must not write to it.
func (a *Adapter) Store() Store { return a.store }

func (a *Adapter) enter() error {
	a.life.Lock()
	defer a.life.Unlock()
	if a.closed {
		return engine.ErrClosed
	}
	a.inflight++
	return nil
}

func (a *Adapter) exit() {
	a.life.Lock()
	a.inflight--
	if a.inflight == 0 && a.closed {
		a.cond.Broadcast()
	}
	a.life.Unlock()
}

// Describe implements engine.Engine.
func (a *Adapter) Describe() engine.Description { return a.desc }

// Close implements engine.Engine: it refuses new calls, waits for the calls
// in progress, then closes the store.
func (a *Adapter) Close() error {
	a.life.Lock()
	if a.closed {
		a.life.Unlock()
		return nil
	}
	a.closed = true
	for a.inflight > 0 {
		a.cond.Wait()
	}
	a.life.Unlock()
	if err := a.store.Close(); err != nil {
		return wrapStoreErr(err)
	}
	return nil
}

// wrapStoreErr keeps the contract's sentinels and wraps anything else as
// engine.ErrInternal.
func wrapStoreErr(err error) error {
	for _, s := range []error{engine.ErrNotFound, engine.ErrClosed, engine.ErrTooLarge,
		engine.ErrInvalidArgument, engine.ErrUnavailable, engine.ErrUnsupported,
		engine.ErrCorrupt, engine.ErrInternal, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", engine.ErrInternal, err)
}

// encode returns the stored form of (value, version).
func encode(value []byte, version uint64) []byte {
	b := make([]byte, headerSize+len(value))
	binary.BigEndian.PutUint64(b, version)
	copy(b[headerSize:], value)
	return b
}

// decode splits a stored value. The returned value aliases raw.
func decode(key, raw []byte) ([]byte, uint64, error) {
	if len(raw) < headerSize {
		return nil, 0, fmt.Errorf("%w: key %q: stored value of %d bytes has no version header", engine.ErrCorrupt, key, len(raw))
	}
	v := binary.BigEndian.Uint64(raw)
	if v == 0 {
		return nil, 0, fmt.Errorf("%w: key %q: stored version 0", engine.ErrCorrupt, key)
	}
	return raw[headerSize:], v, nil
}

type getter interface {
	Get(key []byte) ([]byte, bool, error)
}

// load reads a key's current value and version through g; the value is
// owned by the caller.
func load(g getter, key []byte) ([]byte, uint64, error) {
	raw, ok, err := g.Get(key)
	if err != nil {
		return nil, 0, wrapStoreErr(err)
	}
	if !ok {
		return nil, 0, nil
	}
	v, ver, err := decode(key, raw)
	if err != nil {
		return nil, 0, err
	}
	if v == nil {
		v = []byte{}
	}
	return v, ver, nil
}

// Read implements engine.Engine. One key is read directly; several are read
// from one snapshot.
func (a *Adapter) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	if err := a.enter(); err != nil {
		return nil, err
	}
	defer a.exit()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := engine.ValidateKeys(keys, a.desc.Limits); err != nil {
		return nil, err
	}
	var g getter = a.store
	if len(keys) > 1 {
		snap, err := a.store.NewSnapshot()
		if err != nil {
			return nil, wrapStoreErr(err)
		}
		defer snap.Close()
		g = snap
	}
	out := make([]engine.Entry, len(keys))
	for i, k := range keys {
		if i%64 == 63 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		v, ver, err := load(g, k)
		if err != nil {
			return nil, err
		}
		if ver != 0 {
			v = engine.Clone(v)
		}
		out[i] = engine.Entry{Key: engine.Clone(k), Value: v, Version: ver}
	}
	return out, nil
}

// stripes returns the sorted, distinct latch indices of the writes' keys.
func (a *Adapter) stripes(writes []engine.Write) []int {
	idx := make([]int, 0, len(writes))
	for _, w := range writes {
		idx = append(idx, int(maphash.Bytes(a.seed, w.Key)%uint64(len(a.latches))))
	}
	slices.Sort(idx)
	return slices.Compact(idx)
}

type state struct {
	value   []byte
	version uint64 // 0: absent
}

// Apply implements engine.Engine. It latches every key of the call (in
// sorted stripe order), evaluates the conditions against the stored state,
// then hands the resulting mutations to the group committer and waits for
// them to be written.
func (a *Adapter) Apply(ctx context.Context, writes []engine.Write, opts engine.ApplyOptions) ([]engine.Result, error) {
	if err := a.enter(); err != nil {
		return nil, err
	}
	defer a.exit()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(writes) == 0 {
		return nil, nil
	}
	if err := engine.ValidateWrites(writes, a.desc.Limits); err != nil {
		return nil, err
	}
	stripes := a.stripes(writes)
	for _, s := range stripes {
		a.latches[s].Lock()
	}
	defer func() {
		for _, s := range stripes {
			a.latches[s].Unlock()
		}
	}()

	before := make(map[string]state, len(writes))
	cur := make(map[string]state, len(writes))
	for _, w := range writes {
		if _, ok := before[string(w.Key)]; ok {
			continue
		}
		v, ver, err := load(a.store, w.Key)
		if err != nil {
			return nil, err
		}
		before[string(w.Key)] = state{v, ver}
		cur[string(w.Key)] = state{v, ver}
	}

	results := make([]engine.Result, len(writes))
	allHold := true
	// dirty holds the keys a write of this call changed: comparing versions
	// before and after would miss a key deleted and put back at its old
	// version within the call.
	dirty := make(map[string]bool, len(writes))
	for i, w := range writes {
		s := cur[string(w.Key)]
		results[i] = engine.Result{Value: engine.Clone(s.value), Version: s.version}
		if !w.Cond.Holds(s.value, s.version) {
			allHold = false
			continue
		}
		switch w.Kind {
		case engine.OpPut:
			if w.Version <= s.version {
				return nil, fmt.Errorf("%w: write %d: version %d does not exceed the key's version %d",
					engine.ErrInvalidArgument, i, w.Version, s.version)
			}
			cur[string(w.Key)] = state{w.Value, w.Version}
			dirty[string(w.Key)] = true
		case engine.OpDelete:
			if s.version != 0 {
				cur[string(w.Key)] = state{}
				dirty[string(w.Key)] = true
			}
		}
		results[i].Applied = true
	}
	if opts.Atomic && !allHold {
		for i, w := range writes {
			s := before[string(w.Key)]
			results[i] = engine.Result{Value: engine.Clone(s.value), Version: s.version}
		}
		return results, nil
	}
	if len(dirty) == 0 {
		return results, nil
	}
	// One mutation per changed key, in first-appearance order.
	muts := make([]Mutation, 0, len(cur))
	size := 0
	seen := make(map[string]bool, len(cur))
	for _, w := range writes {
		k := string(w.Key)
		if seen[k] {
			continue
		}
		seen[k] = true
		b, c := before[k], cur[k]
		if !dirty[k] || (b.version == 0 && c.version == 0) {
			continue
		}
		if c.version == 0 {
			muts = append(muts, Mutation{Key: w.Key, Delete: true})
		} else {
			muts = append(muts, Mutation{Key: w.Key, Value: encode(c.value, c.version)})
		}
		size += len(w.Key) + len(c.value)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := a.group.commit(muts, size, !opts.NoSync); err != nil {
		return nil, wrapStoreErr(err)
	}
	return results, nil
}

// Scan implements engine.Engine over a store snapshot.
func (a *Adapter) Scan(ctx context.Context, opts engine.ScanOptions, fn func(engine.Entry) error) error {
	if err := a.enter(); err != nil {
		return err
	}
	defer a.exit()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := engine.ValidateScan(opts); err != nil {
		return err
	}
	var lower, upper []byte
	if len(opts.Start) > 0 {
		lower = opts.Start
	}
	if len(opts.End) > 0 {
		upper = opts.End
	}
	if lower != nil && upper != nil && string(lower) == string(upper) {
		return nil
	}
	snap, err := a.store.NewSnapshot()
	if err != nil {
		return wrapStoreErr(err)
	}
	defer snap.Close()
	it, err := snap.NewIterator(lower, upper, opts.Reverse)
	if err != nil {
		return wrapStoreErr(err)
	}
	defer it.Close()
	n := 0
	for it.Next() {
		if n%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		k := it.Key()
		v, ver, err := decode(k, it.Value())
		if err != nil {
			return err
		}
		e := engine.Entry{Key: engine.Clone(k), Version: ver}
		if !opts.KeysOnly {
			e.Value = make([]byte, len(v))
			copy(e.Value, v)
		}
		if err := fn(e); err != nil {
			return err
		}
		n++
		if opts.Limit > 0 && n >= opts.Limit {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return wrapStoreErr(err)
	}
	return nil
}

// committer merges the mutations of concurrent Apply calls into one
// Store.Write. The first caller to find it idle becomes the leader: it takes
// the queued calls (up to the group limits), writes them, answers each, and
// hands leadership to the next queued caller, if any.
type committer struct {
	store    Store
	maxBytes int
	maxCalls int

	mu    sync.Mutex
	busy  bool
	queue []*pending

	writes  atomic.Uint64 // Store.Write calls
	commits atomic.Uint64 // Apply calls whose writes were handed to the store
}

// Stats are the adapter's running figures.
type Stats struct {
	// StoreWrites counts Store.Write calls; Commits counts the Apply calls
	// they carried. Commits / StoreWrites is the group-commit factor.
	StoreWrites uint64
	Commits     uint64
	// Queued is the number of Apply calls waiting for the next group now.
	Queued int
}

// Stats returns the adapter's figures so far. It is safe for concurrent
// use.
func (a *Adapter) Stats() Stats {
	a.group.mu.Lock()
	q := len(a.group.queue)
	a.group.mu.Unlock()
	return Stats{StoreWrites: a.group.writes.Load(), Commits: a.group.commits.Load(), Queued: q}
}

type pending struct {
	muts []Mutation
	size int
	sync bool
	// done receives errLead when this caller must lead the next group,
	// then (or instead) the outcome of its write.
	done chan error
}

var errLead = errors.New("kvengine: lead the next group")

func (c *committer) commit(muts []Mutation, size int, sync bool) error {
	p := &pending{muts: muts, size: size, sync: sync, done: make(chan error, 2)}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	if !c.busy {
		c.busy = true
		c.mu.Unlock()
		c.lead()
	} else {
		c.mu.Unlock()
	}
	err := <-p.done
	if err == errLead {
		c.lead()
		err = <-p.done
	}
	return err
}

// lead writes one group and passes leadership on.
func (c *committer) lead() {
	c.mu.Lock()
	n, size := 0, 0
	for n < len(c.queue) && n < c.maxCalls {
		if n > 0 && size+c.queue[n].size > c.maxBytes {
			break
		}
		size += c.queue[n].size
		n++
	}
	group := c.queue[:n:n]
	c.queue = slices.Clone(c.queue[n:])
	c.mu.Unlock()

	c.write(group)

	c.mu.Lock()
	if len(c.queue) > 0 {
		next := c.queue[0]
		c.mu.Unlock()
		next.done <- errLead
		return
	}
	c.busy = false
	c.mu.Unlock()
}

func (c *committer) write(group []*pending) {
	c.commits.Add(uint64(len(group)))
	if len(group) == 1 {
		p := group[0]
		c.writes.Add(1)
		p.done <- c.store.Write(p.muts, p.sync)
		return
	}
	total := 0
	sync := false
	for _, p := range group {
		total += len(p.muts)
		sync = sync || p.sync
	}
	batch := make([]Mutation, 0, total)
	for _, p := range group {
		batch = append(batch, p.muts...)
	}
	c.writes.Add(1)
	err := c.store.Write(batch, sync)
	if err == nil {
		for _, p := range group {
			p.done <- nil
		}
		return
	}
	// The merged write failed as a whole; write each call alone so that
	// one call's failure (a batch too large, say) is not every call's.
	for _, p := range group {
		c.writes.Add(1)
		p.done <- c.store.Write(p.muts, p.sync)
	}
}
