// Command stray serves the in-memory engine as a plugin while writing to
// standard output, through os.Stdout and straight to file descriptor 1,
// while opening and on every Apply: the SDK must keep all of it out of the
// handshake.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	"github.com/flaredb/flaredb/plugins/sdk"
)

// fd1 writes to file descriptor 1 whatever os.Stdout currently is, like
// C code would.
var fd1 = os.NewFile(1, "fd1")

type noisy struct{ engine.Engine }

func (n noisy) Apply(ctx context.Context, ws []engine.Write, o engine.ApplyOptions) ([]engine.Result, error) {
	fmt.Println("stray: apply via os.Stdout")
	_, _ = fd1.Write([]byte("stray: apply via fd 1\n"))
	return n.Engine.Apply(ctx, ws, o)
}

func main() {
	sdk.ServeFactory(func(sdk.Params) (engine.Engine, error) {
		fmt.Println("stray: opening via os.Stdout")
		_, _ = fd1.Write([]byte("stray: opening via fd 1, no newline first|"))
		_, _ = fd1.Write([]byte("\n"))
		return noisy{memengine.New()}, nil
	})
}
