// Package conformance is FlareDB's storage-engine conformance suite: the one
// judge of whether an implementation of the engine contract (package
// core/engine) is correct, for the stock engines and third parties' alike.
//
// It is a test-helper package, like gocloud's blob/drivertest: it imports
// package testing (for Run, Bench and the T interface), so production code
// must not import it. Of FlareDB it imports only the contract, core/engine,
// so an engine's tests and the plugin SDK can use it without pulling in the
// server.
//
// # Using it
//
// An engine's test opens the engine on a directory and hands the suite a
// Factory; calling the factory again on the same directory, after Close,
// reopens the engine (that is how durability is tested):
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(dir string) (engine.Engine, error) {
//			return myengine.Open(dir, nil)
//		})
//	}
//
//	func BenchmarkEngine(b *testing.B) { conformance.Bench(b, factory) }
//
//	func TestMetamorphic(t *testing.T) {
//		conformance.Metamorphic(t, seed, 2000, memFactory,
//			map[string]conformance.Factory{"myengine": factory})
//	}
//
// Run runs every case as a subtest named after it ("cond/version",
// "scan/bounds", ...), each on a fresh engine in its own temporary directory.
// Check runs the same cases without package testing — each case in its own
// goroutine, with a timeout, recovering panics — and returns a Report: that
// is what the CLI's certify command runs against a plugin binary.
//
// # What may skip
//
// A case skips only when the engine's Description says the case does not
// apply: a capability it declares it lacks (Capabilities.Persistent=false
// skips the durability cases) or a limit it declares (no declared
// MaxKeySize, nothing to exceed). The reason is printed. Nothing else skips:
// a case that cannot run fails.
//
// # Writing cases
//
// A Case is a name and a function of a T (satisfied by *testing.T and by the
// recorder Check uses) and a Harness, which opens engines and offers helpers
// that stop the case on unexpected errors. Cases must not depend on
// *testing.T, must call Fatalf and Skipf only from the case's own goroutine,
// must bound every goroutine they start, and must not assert anything about
// timing.
package conformance
