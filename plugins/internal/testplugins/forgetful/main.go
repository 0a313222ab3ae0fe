// Command forgetful serves an engine that breaks the contract: Read
// reports every key absent. Certification must fail it.
package main

import (
	"context"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	"github.com/flaredb/flaredb/plugins/sdk"
)

type forgetful struct{ engine.Engine }

func (f forgetful) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	out, err := f.Engine.Read(ctx, keys)
	for i := range out {
		out[i].Value, out[i].Version = nil, 0
	}
	return out, err
}

func main() {
	sdk.ServeFactory(func(sdk.Params) (engine.Engine, error) { return forgetful{memengine.New()}, nil })
}
