// Command flaredb-bbolt-plugin serves the example bbolt engine as a FlareDB
// engine plugin. It is the whole of what an engine author writes to ship a
// plugin: open the store on the directory the host gives, wrap it with
// kvengine.New, serve it with the SDK.
//
//	go build -o flaredb-bbolt-plugin ./examples/bboltengine/cmd/flaredb-bbolt-plugin
//	flaredb conformance --plugin ./flaredb-bbolt-plugin
package main

import (
	"fmt"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/examples/bboltengine"
	"github.com/flaredb/flaredb/plugins/sdk"
)

func main() {
	sdk.ServeFactory(func(p sdk.Params) (engine.Engine, error) {
		if p.DataDir == "" {
			return nil, fmt.Errorf("%w: no data directory given by the host", engine.ErrInvalidArgument)
		}
		if err := p.OptionParser().Err(); err != nil { // this engine has no options
			return nil, err
		}
		return bboltengine.OpenEngine(p.DataDir)
	})
}
