package sdk

import (
	"io"
	"log/slog"
	"strings"
)

// newHandler returns an slog handler writing hclog-style JSON lines to w
// ("@level", "@message", "@timestamp" and the attributes), the format the
// plugin host parses and forwards into its own log with the same level.
func newHandler(w io.Writer, level slog.Level) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				if t, ok := a.Value.Any().(interface{ Format(string) string }); ok {
					return slog.String("@timestamp", t.Format("2006-01-02T15:04:05.000000Z07:00"))
				}
				a.Key = "@timestamp"
			case slog.LevelKey:
				a = slog.String("@level", hclogName(a.Value.String()))
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		},
	})
}

// hclogName maps slog's level names (including offsets such as "INFO+2")
// to hclog's.
func hclogName(s string) string {
	switch {
	case strings.HasPrefix(s, "DEBUG"):
		return "debug"
	case strings.HasPrefix(s, "INFO"):
		return "info"
	case strings.HasPrefix(s, "WARN"):
		return "warn"
	}
	return "error"
}
