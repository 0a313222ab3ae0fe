// Package keyset holds the one helper the write pipeline (core/kv) and the
// engine wire's server (plugins/wire) share to keep writes of the same keys
// in order: whether two sets of keys meet. It imports nothing of FlareDB's.
package keyset

// Overlap reports whether a and b share a key. It reads both and changes
// neither; it is as safe for concurrent use as reading the maps is.
func Overlap(a, b map[string]struct{}) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	for k := range a {
		if _, ok := b[k]; ok {
			return true
		}
	}
	return false
}
