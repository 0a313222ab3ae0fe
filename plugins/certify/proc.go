package certify

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// capture is an slog.Handler that remembers every message (with its
// attributes) and passes records on to another handler.
type capture struct {
	next slog.Handler
	mu   *sync.Mutex
	text *strings.Builder
}

func newCapture(l *slog.Logger) (*slog.Logger, *capture) {
	c := &capture{next: l.Handler(), mu: &sync.Mutex{}, text: &strings.Builder{}}
	return slog.New(c), c
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }

func (c *capture) Handle(ctx context.Context, r slog.Record) error {
	c.mu.Lock()
	c.text.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		c.text.WriteString(" " + a.String())
		return true
	})
	c.text.WriteString("\n")
	c.mu.Unlock()
	if c.next.Enabled(ctx, r.Level) {
		return c.next.Handle(ctx, r)
	}
	return nil
}

func (c *capture) WithAttrs(as []slog.Attr) slog.Handler {
	return &capture{next: c.next.WithAttrs(as), mu: c.mu, text: c.text}
}

func (c *capture) WithGroup(name string) slog.Handler {
	return &capture{next: c.next.WithGroup(name), mu: c.mu, text: c.text}
}

func (c *capture) contains(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Contains(c.text.String(), s)
}
