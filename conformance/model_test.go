package conformance_test

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
)

// modelEngine is a second, deliberately naive implementation of the
// contract, written apart from engines/memengine: every Apply works on a
// copy of the whole map and swaps it in. It lets the tests cross-check the
// reference engine (metamorphic and fuzz tests), and, backed by a disk
// simulation, lets the suite's durability cases run here.
type modelEngine struct {
	name   string
	limits engine.Limits
	disk   *diskSim // nil: not persistent
	dir    string
	// dropUnsynced loses NoSync writes at Close: a broken engine for the
	// self-test.
	dropUnsynced bool

	mu     sync.Mutex
	data   map[string]modelItem
	synced map[string]modelItem // what a sync would have written
	closed bool
	// scans counts the Scans calling their callbacks outside mu; idle
	// (on mu) is signalled when it drops to zero, for Close to wait.
	scans int
	idle  *sync.Cond
}

type modelItem struct {
	value   []byte
	version uint64
}

// diskSim keeps the state of closed model engines by directory, standing in
// for files.
type diskSim struct {
	mu    sync.Mutex
	dirs  map[string]map[string]modelItem
	inUse map[string]bool
}

func newDiskSim() *diskSim {
	return &diskSim{dirs: map[string]map[string]modelItem{}, inUse: map[string]bool{}}
}

// modelFactory returns a factory of model engines; with disk they are
// persistent.
func modelFactory(disk *diskSim, dropUnsynced bool) conformance.Factory {
	return modelFactoryWithLimits(disk, dropUnsynced, engine.Limits{MaxKeySize: 4096, MaxValueSize: 16 << 20, MaxWrites: 10000, MaxBatchSize: 64 << 20})
}

// modelFactoryWithLimits is modelFactory with the given limits.
func modelFactoryWithLimits(disk *diskSim, dropUnsynced bool, l engine.Limits) conformance.Factory {
	return func(dir string) (engine.Engine, error) {
		m := &modelEngine{name: "model", limits: l,
			disk: disk, dir: dir, dropUnsynced: dropUnsynced, data: map[string]modelItem{}}
		if disk != nil {
			disk.mu.Lock()
			defer disk.mu.Unlock()
			if disk.inUse[dir] {
				return nil, fmt.Errorf("%w: %s is in use", engine.ErrUnavailable, dir)
			}
			disk.inUse[dir] = true
			for k, v := range disk.dirs[dir] {
				m.data[k] = v
			}
		}
		m.synced = copyMap(m.data)
		m.idle = sync.NewCond(&m.mu)
		return m, nil
	}
}

func copyMap(m map[string]modelItem) map[string]modelItem {
	c := make(map[string]modelItem, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (m *modelEngine) Describe() engine.Description {
	return engine.Description{Name: m.name, Version: "test", Protocol: engine.ProtocolVersion,
		Limits: m.limits, Capabilities: engine.Capabilities{Persistent: m.disk != nil}}
}

func (m *modelEngine) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, engine.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := engine.ValidateKeys(keys, m.limits); err != nil {
		return nil, err
	}
	out := make([]engine.Entry, len(keys))
	for i, k := range keys {
		out[i].Key = engine.Clone(k)
		if it, ok := m.data[string(k)]; ok {
			out[i].Value = append([]byte{}, it.value...)
			out[i].Version = it.version
		}
	}
	return out, nil
}

func (m *modelEngine) Apply(ctx context.Context, writes []engine.Write, opts engine.ApplyOptions) ([]engine.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, engine.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := engine.ValidateWrites(writes, m.limits); err != nil {
		return nil, err
	}
	next := copyMap(m.data)
	res := make([]engine.Result, len(writes))
	all := true
	for i, w := range writes {
		cur, ok := next[string(w.Key)]
		if ok {
			res[i].Value = append([]byte{}, cur.value...)
			res[i].Version = cur.version
		}
		if !w.Cond.Holds(cur.value, cur.version) {
			all = false
			continue
		}
		switch w.Kind {
		case engine.OpPut:
			if w.Version <= cur.version {
				return nil, fmt.Errorf("%w: version %d after %d", engine.ErrInvalidArgument, w.Version, cur.version)
			}
			next[string(w.Key)] = modelItem{value: append([]byte{}, w.Value...), version: w.Version}
		case engine.OpDelete:
			delete(next, string(w.Key))
		}
		res[i].Applied = true
	}
	if opts.Atomic && !all {
		for i, w := range writes {
			cur, ok := m.data[string(w.Key)]
			res[i] = engine.Result{}
			if ok {
				res[i] = engine.Result{Value: append([]byte{}, cur.value...), Version: cur.version}
			}
		}
		return res, nil
	}
	m.data = next
	if !opts.NoSync {
		m.synced = copyMap(next)
	}
	return res, nil
}

func (m *modelEngine) Scan(ctx context.Context, opts engine.ScanOptions, fn func(engine.Entry) error) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return engine.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		m.mu.Unlock()
		return err
	}
	if err := engine.ValidateScan(opts); err != nil {
		m.mu.Unlock()
		return err
	}
	snap := m.data // never modified in place: Apply swaps in a new map
	m.scans++
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.scans--
		if m.scans == 0 {
			m.idle.Broadcast()
		}
		m.mu.Unlock()
	}()
	var ks []string
	for k := range snap {
		if (len(opts.Start) == 0 || k >= string(opts.Start)) && (len(opts.End) == 0 || k < string(opts.End)) {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	if opts.Reverse {
		for i, j := 0, len(ks)-1; i < j; i, j = i+1, j-1 {
			ks[i], ks[j] = ks[j], ks[i]
		}
	}
	for i, k := range ks {
		if opts.Limit > 0 && i == opts.Limit {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		en := engine.Entry{Key: []byte(k), Version: snap[k].version}
		if !opts.KeysOnly {
			en.Value = append([]byte{}, snap[k].value...)
		}
		if err := fn(en); err != nil {
			return err
		}
	}
	return nil
}

func (m *modelEngine) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	for m.scans > 0 {
		m.idle.Wait()
	}
	if m.disk != nil {
		keep := m.data
		if m.dropUnsynced {
			keep = m.synced
		}
		m.disk.mu.Lock()
		m.disk.dirs[m.dir] = copyMap(keep)
		m.disk.inUse[m.dir] = false
		m.disk.mu.Unlock()
	}
	return nil
}
