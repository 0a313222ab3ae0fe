// Package tso is FlareDB's timestamp oracle: it issues uint64 timestamps
// that strictly increase, across restarts and across steps back of the
// wall clock. A timestamp is physical milliseconds since the Unix epoch
// shifted left by LogicalBits, or'ed with a logical counter.
//
// The oracle persists a high-water mark — a physical time it promises never
// to issue at or beyond without persisting a new mark first — in one small
// file, written atomically (temporary file, fsync, rename, fsync of the
// directory). After a restart it starts at or above the mark, so no
// timestamp issued before the restart is issued again. The server uses it
// for key versions; the placement driver serves it to clients.
//
// The package imports only the standard library.
package tso

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// LogicalBits is the width of the logical counter.
const LogicalBits = 18

const maxLogical = 1 << LogicalBits

// ErrCorrupt reports a high-water-mark file that cannot be decoded.
var ErrCorrupt = errors.New("tso: corrupt high-water-mark file")

// ErrMissing reports an absent high-water-mark file where Options.MustExist
// says one must be.
var ErrMissing = errors.New("tso: high-water-mark file missing")

// ErrExhausted reports that the physical part of timestamps would no
// longer fit (in the year 4199).
var ErrExhausted = errors.New("tso: timestamps exhausted")

// maxPhysical bounds the physical part: it must fit above LogicalBits.
const maxPhysical = 1<<(64-LogicalBits) - 1

// Compose builds a timestamp from its parts.
func Compose(physicalMillis int64, logical int64) uint64 {
	return uint64(physicalMillis)<<LogicalBits | uint64(logical)
}

// Physical returns the physical part of ts (milliseconds since the epoch).
func Physical(ts uint64) int64 { return int64(ts >> LogicalBits) }

// Options tune an Oracle. A nil *Options is valid.
type Options struct {
	// Window is how far ahead of the current physical time the persisted
	// mark is set (default 3s; below a millisecond, one). A larger window
	// means fewer fsyncs.
	Window time.Duration
	// Now is the clock (default time.Now); tests replace it.
	Now func() time.Time
	// MustExist makes Open fail with ErrMissing when the file is absent,
	// instead of starting afresh: for a caller that knows timestamps were
	// issued before (the server, when its data directory holds data).
	MustExist bool
	// Floor, when not zero, is a timestamp every timestamp issued must
	// exceed, whatever the file says (or when it is absent): for
	// rebuilding a lost file from the newest timestamp in use.
	Floor uint64
}

// Oracle issues timestamps. It is safe for concurrent use.
type Oracle struct {
	path   string
	window int64 // ms
	now    func() time.Time

	mu       sync.Mutex
	physical int64 // ms of the last issued timestamp
	logical  int64 // logical part of the last issued timestamp
	limit    int64 // persisted mark: physical must stay below it
	issued   bool  // a timestamp was issued since Open
}

// Open loads the mark from path (creating it when absent, unless
// Options.MustExist: then ErrMissing) and returns an oracle that issues
// timestamps above everything issued by any earlier oracle on the same
// path, and above Options.Floor. It removes the temporary files an earlier
// persist left.
func Open(path string, o *Options) (*Oracle, error) {
	var opts Options
	if o != nil {
		opts = *o
	}
	if opts.Window <= 0 {
		opts.Window = 3 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	or := &Oracle{path: path, window: max(opts.Window.Milliseconds(), 1), now: opts.Now}
	mark, err := readMark(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && opts.MustExist:
		return nil, fmt.Errorf("%w: %s", ErrMissing, path)
	case errors.Is(err, os.ErrNotExist):
		mark = 0
	case err != nil:
		return nil, err
	}
	removeStaleTemps(path)
	or.physical = mark
	or.logical = maxLogical - 1 // the next timestamp moves past the mark
	if opts.Floor != 0 && Compose(or.physical, or.logical) <= opts.Floor {
		// Past the floor: its millisecond, with the logical counter spent.
		or.physical = Physical(opts.Floor)
	}
	next := max(or.physical, or.clock()) + or.window
	if next > maxPhysical {
		return nil, fmt.Errorf("%w: the mark would pass %d ms", ErrExhausted, int64(maxPhysical))
	}
	if err := or.persist(next); err != nil {
		return nil, err
	}
	return or, nil
}

// removeStaleTemps removes the temporary files persist left when its
// process died between creating and renaming one. A mark file is only ever
// renamed into place whole, so these hold nothing needed.
func removeStaleTemps(path string) {
	names, _ := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern))
	for _, n := range names {
		_ = os.Remove(n)
	}
}

// tempPattern names persist's temporary files (os.CreateTemp's pattern).
const tempPattern = ".tso-*"

func (o *Oracle) clock() int64 { return o.now().UnixMilli() }

// Next reserves n consecutive timestamps and returns the first; the caller
// may use first, first+1, ..., first+n-1. n must be between 1 and 1<<18.
// It fails only when the mark cannot be persisted, and then issues nothing.
func (o *Oracle) Next(n int) (uint64, error) {
	if n < 1 || n > maxLogical {
		return 0, fmt.Errorf("tso: cannot reserve %d timestamps at once (1..%d)", n, maxLogical)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	phys, logical := o.physical, o.logical+1
	if now := o.clock(); now > phys {
		phys, logical = now, 0
	}
	if logical+int64(n) > maxLogical {
		// The logical counter is spent for this millisecond: borrow the
		// next one.
		phys, logical = phys+1, 0
	}
	if phys >= o.limit {
		if phys+o.window > maxPhysical {
			return 0, fmt.Errorf("%w: physical time %d ms", ErrExhausted, phys)
		}
		if err := o.persist(phys + o.window); err != nil {
			return 0, err
		}
	}
	o.physical, o.logical = phys, logical+int64(n)-1
	o.issued = true
	return Compose(phys, logical), nil
}

// LastIssued returns the newest timestamp this oracle issued since Open,
// or 0 when it issued none (Last is then a starting point, not a
// timestamp in use).
func (o *Oracle) LastIssued() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.issued {
		return 0
	}
	return Compose(o.physical, o.logical)
}

// Last returns a timestamp that every timestamp issued later exceeds: the
// newest issued, or, when none was issued since Open, the starting point
// (which was never issued itself).
func (o *Oracle) Last() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return Compose(o.physical, o.logical)
}

// Close persists nothing more; it exists for symmetry and returns nil.
func (o *Oracle) Close() error { return nil }

const markSize = 8 + 8 + 4 // magic, mark, crc

var magic = [8]byte{'F', 'L', 'A', 'R', 'E', 'T', 'S', 'O'}

func encodeMark(mark int64) []byte {
	b := make([]byte, markSize)
	copy(b, magic[:])
	binary.BigEndian.PutUint64(b[8:], uint64(mark))
	binary.BigEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b[:16]))
	return b
}

// decodeMark parses a mark file's contents.
func decodeMark(b []byte) (int64, error) {
	if len(b) != markSize {
		return 0, fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(b), markSize)
	}
	if [8]byte(b[:8]) != magic {
		return 0, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if crc32.ChecksumIEEE(b[:16]) != binary.BigEndian.Uint32(b[16:]) {
		return 0, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	m := int64(binary.BigEndian.Uint64(b[8:]))
	if m < 0 || m >= 1<<(64-LogicalBits) {
		return 0, fmt.Errorf("%w: mark %d out of range", ErrCorrupt, m)
	}
	return m, nil
}

// readMark reads the mark at path; an absent file is an error matching
// os.ErrNotExist.
func readMark(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("tso: read %s: %w", path, err)
	}
	m, err := decodeMark(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w: restore the file; do not remove it while data written with its timestamps exists "+
			"(flaredb-server --recover-tso rebuilds it from the data)", path, err)
	}
	return m, nil
}

// persist writes mark atomically and durably, then makes it the limit.
func (o *Oracle) persist(mark int64) error {
	dir := filepath.Dir(o.path)
	tmp, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		return fmt.Errorf("tso: persist mark: %w", err)
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("tso: persist mark in %s: %w", dir, err)
	}
	if _, err := tmp.Write(encodeMark(mark)); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(name, o.path); err != nil {
		os.Remove(name)
		return fmt.Errorf("tso: persist mark: %w", err)
	}
	// The rename is durable only once the directory is synced: until then
	// the old mark may come back after a crash, and with it used versions.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("tso: open %s to sync it: %w", dir, err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("tso: sync %s: %w", dir, err)
	}
	o.limit = mark
	return nil
}
