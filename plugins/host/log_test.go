package host

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type captured struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (c *captured) Enabled(context.Context, slog.Level) bool { return true }
func (c *captured) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r)
	return nil
}
func (c *captured) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *captured) WithGroup(string) slog.Handler      { return c }

func TestForwardStderr(t *testing.T) {
	input := strings.Join([]string{
		`{"@level":"warn","@message":"disk slow","@timestamp":"2026-01-01T00:00:00.000000Z","ms":12}`,
		`{"@message": 5, "@level": ["x"]}`, // hostile JSON: logged as text, no panic
		`{"@level":"debug","@message":"fine"}`,
		`plain line`,
		`panic: something broke`,
		`goroutine 1 [running]:`,
		strings.Repeat("x", maxLogLine+10), // longer than a line buffer
		`no newline at the end`,
	}, "\n")
	c := &captured{}
	var tl tail
	forwardStderr(strings.NewReader(input), slog.New(c), &tl)
	type rec struct {
		level slog.Level
		msg   string
	}
	var got []rec
	for _, r := range c.recs {
		got = append(got, rec{r.Level, r.Message})
	}
	want := []rec{
		{slog.LevelWarn, "disk slow"},
		{slog.LevelInfo, `{"@message": 5, "@level": ["x"]}`},
		{slog.LevelDebug, "fine"},
		{slog.LevelInfo, "plain line"},
		{slog.LevelError, "panic: something broke"},
		{slog.LevelError, "goroutine 1 [running]:"},
	}
	if len(got) < len(want)+2 {
		t.Fatalf("got %d records: %+v", len(got), got)
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("record %d: got %+v, want %+v", i, got[i], w)
		}
	}
	if last := got[len(got)-1]; last.msg != "no newline at the end" {
		t.Errorf("last record %+v", last)
	}
	// The line longer than a buffer is logged whole, in pieces that each
	// fit one.
	var long strings.Builder
	for _, r := range got[len(want) : len(got)-1] {
		if len(r.msg) > maxLogLine {
			t.Errorf("a piece of %d bytes, over %d", len(r.msg), maxLogLine)
		}
		long.WriteString(r.msg)
	}
	if n := len(got) - 1 - len(want); n != 2 || long.String() != strings.Repeat("x", maxLogLine+10) {
		t.Errorf("the long line came in %d pieces of %d bytes in all, want 2 of %d", n, long.Len(), maxLogLine+10)
	}
	if s := tl.String(); !strings.HasSuffix(s, "no newline at the end") || strings.Count(s, "\n") >= tailLines {
		t.Errorf("tail: %q", s)
	}
}

func TestLineLogger(t *testing.T) {
	c := &captured{}
	w := &lineLogger{log: slog.New(c), stream: "stdout"}
	_, _ = w.Write([]byte("one\ntw"))
	_, _ = w.Write([]byte("o\n\nthree"))
	if len(c.recs) != 2 || c.recs[0].Message != "one" || c.recs[1].Message != "two" {
		t.Fatalf("%+v", c.recs)
	}
	w.flush() // the plugin is gone: its last line, without a newline, too
	if len(c.recs) != 3 || c.recs[2].Message != "three" {
		t.Fatalf("after flush: %+v", c.recs)
	}
	w.flush()
	if len(c.recs) != 3 {
		t.Fatalf("a second flush logged again: %+v", c.recs)
	}
}

func TestBackoff(t *testing.T) {
	r := RestartPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := r.backoff(i); got != w*time.Millisecond {
			t.Errorf("attempt %d: %v", i, got)
		}
	}
	if got := r.backoff(1 << 20); got != time.Second {
		t.Errorf("huge attempt: %v", got)
	}
}

func TestDescribeHandshake(t *testing.T) {
	if err := describeHandshake("p", "1|1|unix|/tmp/s|grpc|cert", 1); err != nil {
		t.Errorf("valid handshake refused: %v", err)
	}
	for line, want := range map[string]error{
		"garbage":                   ErrNotPlugin,
		"1|x|unix|/tmp/s|grpc|c":    ErrNotPlugin,
		"1|2|unix|/tmp/s|grpc|c":    ErrProtocolMismatch,
		"1|1|unix|/tmp/s|netrpc|c":  ErrNotPlugin,
		"2|1|unix|/tmp/s|grpc|c":    ErrNotPlugin,
		strings.Repeat("|", 100000): ErrNotPlugin,
	} {
		if err := describeHandshake("p", line, 1); err == nil || !strings.Contains(err.Error(), "p") || !isErr(err, want) {
			t.Errorf("%.40q: got %v, want %v", line, err, want)
		}
	}
}

func isErr(err, target error) bool {
	for e := err; e != nil; {
		if e == target {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}
