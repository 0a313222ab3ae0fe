package host

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// maxLogLine bounds one line read from a plugin's output; a longer line is
// logged in pieces.
const maxLogLine = 64 << 10

// tailLines and tailLineBytes bound what a tail keeps.
const (
	tailLines     = 20
	tailLineBytes = 1024
)

// tail keeps the last lines of a plugin's standard error, to quote in
// startup errors. It is safe for concurrent use.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(s string) {
	if len(s) > tailLineBytes {
		s = s[:tailLineBytes] + "…"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == tailLines {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, s)
}

// String returns the kept lines, one per line, or "".
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// forwardStderr reads a plugin's standard error until EOF, logging each
// line into log with the level the line carries (hclog JSON lines, which the
// SDK writes) or at info (plain lines; error from a Go panic or fatal error
// onwards), and keeping the last lines in t. Malformed input is logged as it
// is, never trusted.
func forwardStderr(r io.Reader, log *slog.Logger, t *tail) {
	forwardLines(bufio.NewReaderSize(r, maxLogLine), log, t, "stderr")
}

// forwardLines is forwardStderr for any stream: its lines are logged with
// the attribute stream, and kept in t unless t is nil.
func forwardLines(br *bufio.Reader, log *slog.Logger, t *tail, stream string) {
	inPanic := false
	for {
		line, err := br.ReadSlice('\n')
		if s := strings.TrimRight(string(line), "\r\n"); s != "" {
			if t != nil {
				t.add(s)
			}
			inPanic = logLine(log, s, inPanic, stream)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return
		}
	}
}

// logLine logs one line of the plugin's output stream and returns the new
// panic state.
func logLine(log *slog.Logger, s string, inPanic bool, stream string) bool {
	ctx := context.Background()
	if strings.HasPrefix(s, "{") {
		var m map[string]any
		if json.Unmarshal([]byte(s), &m) == nil {
			if msg, ok := m["@message"].(string); ok {
				level := slog.LevelInfo
				if l, ok := m["@level"].(string); ok {
					level = levelOf(l)
				}
				keys := make([]string, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				attrs := make([]any, 0, 2*len(keys))
				for _, k := range keys {
					switch k {
					case "@message", "@level", "@timestamp":
					case "@module":
						attrs = append(attrs, slog.Any("module", m[k]))
					default:
						attrs = append(attrs, slog.Any(k, m[k]))
					}
				}
				log.Log(ctx, level, msg, attrs...)
				return inPanic
			}
		}
	}
	if strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ") {
		inPanic = true
	}
	level := slog.LevelInfo
	if inPanic {
		level = slog.LevelError
	}
	log.Log(ctx, level, s, "stream", stream)
	return inPanic
}

func levelOf(s string) slog.Level {
	switch strings.ToLower(s) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error", "fatal":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// lineLogger is an io.Writer that logs each line written to it; go-plugin
// writes what the plugin prints to os.Stdout and os.Stderr after the
// handshake into it. It is safe for concurrent use.
type lineLogger struct {
	log    *slog.Logger
	stream string

	mu  sync.Mutex
	buf []byte
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			if len(w.buf) >= maxLogLine {
				w.emit(w.buf)
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.emit(w.buf[:i])
		w.buf = append(w.buf[:0], w.buf[i+1:]...)
	}
}

// flush logs what is left of a last line without a newline.
func (w *lineLogger) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.emit(w.buf)
	w.buf = w.buf[:0]
}

func (w *lineLogger) emit(b []byte) {
	if s := strings.TrimRight(string(b), "\r"); s != "" {
		w.log.Info(s, "stream", w.stream)
	}
}

// hclogSink forwards go-plugin's own log (its hclog.Logger) into slog, one
// level quieter: go-plugin reports routine events (a process exiting when
// it was asked to) at info and error, and the host reports what matters
// itself.
type hclogSink struct{ log *slog.Logger }

func (s hclogSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	l := slog.LevelDebug
	if level >= hclog.Warn {
		l = slog.LevelWarn
	}
	s.log.Log(context.Background(), l, msg, append([]any{"component", name}, args...)...)
}

// newHCLogger returns an hclog.Logger for go-plugin that writes into log.
func newHCLogger(log *slog.Logger) hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   "go-plugin",
		Output: io.Discard,
		Level:  hclog.Off,
	})
	l.RegisterSink(hclogSink{log: log})
	return l
}
