// Command crashy serves the in-memory engine as a plugin that crashes on
// demand: writing the key "__crash__" makes it exit at once with status 70,
// "__panic__" makes it panic on a goroutine of its own, and "__freeze__"
// stops the whole process (SIGSTOP), as a process that hangs. Reading the
// key "__freeze__", or a scan starting at it, freezes it as well.
package main

import (
	"context"
	"os"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	"github.com/flaredb/flaredb/plugins/sdk"
)

type crashy struct{ engine.Engine }

func (c crashy) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	for _, w := range ws {
		switch string(w.Key) {
		case "__crash__":
			os.Exit(70)
		case "__panic__":
			// The call never answers: the panic ends the process. (A
			// deferred signal from the panicking goroutine would run before
			// the process dies and let the call answer first.)
			go panic("crashy: panic on demand")
			select {}
		case "__freeze__":
			freeze()
		}
	}
	return c.Engine.Apply(ctx, ws, o)
}

func (c crashy) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	for _, k := range keys {
		if string(k) == "__freeze__" {
			freeze()
		}
	}
	return c.Engine.Read(ctx, keys)
}

func (c crashy) Scan(ctx context.Context, o engine.ScanOptions, fn func(engine.Entry) error) error {
	if string(o.Start) == "__freeze__" {
		freeze()
	}
	return c.Engine.Scan(ctx, o, fn)
}

func main() {
	sdk.ServeFactory(func(sdk.Params) (engine.Engine, error) { return crashy{memengine.New()}, nil })
}
