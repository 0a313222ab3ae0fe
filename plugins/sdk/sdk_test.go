package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flaredb/flaredb/core/engine"
)

func TestOptionParser(t *testing.T) {
	p := Params{Options: map[string]string{
		"name": "x", "on": "true", "n": " 42 ", "big": "1099511627776", "ratio": "0.25", "every": "90s",
	}}
	var (
		name  string
		on    bool
		n     int
		big   int64
		ratio float64
		every time.Duration
		keep  = 7
	)
	op := p.OptionParser()
	op.String("name", &name)
	op.Bool("on", &on)
	op.Int("n", &n)
	op.Int64("big", &big)
	op.Float64("ratio", &ratio)
	op.Duration("every", &every)
	op.Int("absent", &keep)
	if err := op.Err(); err != nil {
		t.Fatal(err)
	}
	if name != "x" || !on || n != 42 || big != 1<<40 || ratio != 0.25 || every != 90*time.Second || keep != 7 {
		t.Fatalf("parsed %v %v %v %v %v %v %v", name, on, n, big, ratio, every, keep)
	}
}

func TestOptionParserErrors(t *testing.T) {
	p := Params{Options: map[string]string{"n": "many", "on": "perhaps", "typo": "1", "every": "soon"}}
	var n int
	var on bool
	var every time.Duration
	op := p.OptionParser()
	op.Int("n", &n)
	op.Bool("on", &on)
	op.Duration("every", &every)
	err := op.Err()
	if !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{`n="many"`, `on="perhaps"`, `every="soon"`, "unknown option(s) typo", "known: every, n, on"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestHandshakeFilter(t *testing.T) {
	realR, realW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var other lockedBuffer
	w, state, err := handshakeFilter(realW, &other)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.WriteString("stray before\n")
	_, _ = w.WriteString("1|1|unix|/tmp/sock|grpc|CERT\n")
	_, _ = w.WriteString("stray after\n1|1|unix|/tmp/other|grpc|X\n")
	_ = w.Close()
	got, err := io.ReadAll(realR) // the filter closes realW after the handshake
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "1|1|unix|/tmp/sock|grpc|CERT\n" {
		t.Fatalf("handshake side got %q", got)
	}
	if !state.handshakeSent() {
		t.Error("handshake not recorded as sent")
	}
	want := "stray before\nstray after\n1|1|unix|/tmp/other|grpc|X\n"
	// The filter copies asynchronously; wait (bounded) for it to catch up.
	for i := 0; i < 10000 && other.String() != want; i++ {
		time.Sleep(time.Millisecond)
	}
	if s := other.String(); s != want {
		t.Fatalf("other side got %q", s)
	}
}

func TestIsHandshake(t *testing.T) {
	for line, want := range map[string]bool{
		"1|1|unix|/tmp/x|grpc|cert\n":      true,
		"1|1|unix|/tmp/x|grpc|cert|true\n": true,
		"1|1|unix|/tmp/x|grpc|cert":        false, // no newline yet
		"hello\n":                          false,
		"2|1|unix|/tmp/x|grpc|cert\n":      false,
		"1|1|unix\n":                       false,
	} {
		if got := isHandshake(line); got != want {
			t.Errorf("%q: got %v", line, got)
		}
	}
}

func TestLogFormatIsHCLogJSON(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(newHandler(&buf, slog.LevelDebug))
	l.Debug("d")
	l.Info("opened", "dir", "/x", "n", 3)
	l.Warn("w")
	l.Error("e", slog.Group("g", "k", "v"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []struct{ level, msg string }{{"debug", "d"}, {"info", "opened"}, {"warn", "w"}, {"error", "e"}}
	if len(lines) != len(want) {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if m["@level"] != want[i].level || m["@message"] != want[i].msg {
			t.Errorf("line %d: %s", i, line)
		}
		ts, _ := m["@timestamp"].(string)
		if _, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", ts); err != nil {
			t.Errorf("line %d: timestamp %q: %v", i, ts, err)
		}
	}
	if !strings.Contains(lines[1], `"dir":"/x"`) || !strings.Contains(lines[3], `"g":{"k":"v"}`) {
		t.Errorf("attributes lost: %q", buf.String())
	}
}
