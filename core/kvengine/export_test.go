package kvengine

import "github.com/flaredb/flaredb/core/engine"

// StripeOf returns the latch stripe a's key falls in, so that tests can
// choose keys that do not share a latch.
func (a *Adapter) StripeOf(key []byte) int {
	return a.stripes([]engine.Write{{Key: key}})[0]
}
