// Command nameless serves the in-memory engine with a wrong
// self-description: an empty engine name. It starts and answers like any
// engine; certification must fail its handshake case for the description.
package main

import (
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	"github.com/flaredb/flaredb/plugins/sdk"
)

type nameless struct{ engine.Engine }

func (n nameless) Describe() engine.Description {
	d := n.Engine.Describe()
	d.Name = ""
	return d
}

func main() {
	sdk.ServeFactory(func(sdk.Params) (engine.Engine, error) { return nameless{memengine.New()}, nil })
}
