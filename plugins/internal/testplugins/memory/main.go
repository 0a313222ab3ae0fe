// Command memory serves the in-memory reference engine as a plugin, for
// tests.
package main

import (
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	"github.com/flaredb/flaredb/plugins/sdk"
)

func main() {
	sdk.ServeFactory(func(sdk.Params) (engine.Engine, error) { return memengine.New(), nil })
}
