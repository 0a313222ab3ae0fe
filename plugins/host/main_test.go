package host_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flaredb/flaredb/internal/testbin"
)

// bins holds the plugin binaries TestMain builds, by short name.
var bins = map[string]string{}

var binPackages = map[string]testbin.Spec{
	"rocksdb":  {Pkg: "github.com/flaredb/flaredb/cmd/flaredb-rocksdb-plugin"},
	"badger":   {Pkg: "github.com/flaredb/flaredb/cmd/flaredb-badger-plugin"},
	"memory":   {Pkg: "github.com/flaredb/flaredb/plugins/internal/testplugins/memory"},
	"stray":    {Pkg: "github.com/flaredb/flaredb/plugins/internal/testplugins/stray"},
	"hang":     {Pkg: "github.com/flaredb/flaredb/plugins/internal/testplugins/hang"},
	"badproto": {Pkg: "github.com/flaredb/flaredb/plugins/internal/testplugins/badproto"},
	"crashy":   {Pkg: "github.com/flaredb/flaredb/plugins/internal/testplugins/crashy"},
	"rawout":   {Pkg: "github.com/flaredb/flaredb/plugins/internal/testplugins/rawout"},
	"testhost": {Pkg: "github.com/flaredb/flaredb/plugins/internal/testhost"},
	// The rocksdb plugin built without cgo: it must still build, and fail
	// at start with a clear message.
	"rocksdb-nocgo": {Pkg: "github.com/flaredb/flaredb/cmd/flaredb-rocksdb-plugin", Env: []string{"CGO_ENABLED=0"}},
}

func TestMain(m *testing.M) {
	testbin.Main(m, "flaredb-plugin-bins-", binPackages, func(dir string) {
		for name := range binPackages {
			bins[name] = filepath.Join(dir, name)
		}
	})
}

// callTimeout bounds each engine call and launch in these tests so that a
// hang fails the test rather than blocking it; it is not a timing
// assertion.
const callTimeout = 2 * time.Minute

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// logRecorder is an slog.Handler that keeps every record, for assertions
// on what the host forwarded, and also writes them to the test log.
type logRecorder struct {
	mu      *sync.Mutex
	records *[]string
	attrs   []slog.Attr
	t       testing.TB
}

func newLogRecorder(t testing.TB) (*slog.Logger, *logRecorder) {
	r := &logRecorder{mu: &sync.Mutex{}, records: &[]string{}, t: t}
	return slog.New(r), r
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	for _, a := range r.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	*r.records = append(*r.records, b.String())
	r.mu.Unlock()
	return nil
}

func (r *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(append([]slog.Attr(nil), r.attrs...), as...)
	return &c
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

// find returns the records containing every one of subs.
func (r *logRecorder) find(subs ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
next:
	for _, rec := range *r.records {
		for _, s := range subs {
			if !strings.Contains(rec, s) {
				continue next
			}
		}
		out = append(out, rec)
	}
	return out
}

func (r *logRecorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(*r.records, "\n")
}

// processAlive reports whether pid is a live (not zombie) process.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state is the field after the parenthesised command name.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// groupMembers returns the live processes whose process group is pgid.
func groupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		// fields[0] is the state, [1] the parent, [2] the process group.
		if len(fields) < 3 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(fields[2]); err == nil && g == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// haveProc reports whether /proc can be used to check for orphans.
func haveProc() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// waitFor polls cond (bounded: at most callTimeout) and reports whether it
// became true. It is for waiting on asynchronous supervision, not for
// timing assertions.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(callTimeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
