// Package wire carries FlareDB's storage-engine contract (package
// core/engine) over gRPC, using the engine wire protocol of package
// proto/enginepb/v1.
//
// NewServer puts an engine.Engine behind the protocol's gRPC service;
// NewClient turns a gRPC connection back into an engine.Engine. Between them
// nothing of the contract is lost: sentinel errors survive the boundary both
// ways (ToStatus and FromStatus are the one translation per direction),
// contexts cross it as gRPC deadlines and cancellation, the difference
// between an absent key (version 0) and an empty value survives, and
// scans stream pages of entries from one snapshot.
//
// The package is shared by the plugin SDK (plugins/sdk, the plugin side)
// and the plugin host (plugins/host, the server side); Loopback runs the
// whole path inside one process, which is how the conformance suite checks
// an engine "through the gRPC adapter".
//
// Message limits: both sides must raise gRPC's 4 MiB default so that large
// values and batches fit. ServerOptions and DialOptions give the options for
// MaxMessageSize; a message beyond it fails with engine.ErrTooLarge, which
// the contract reserves for calls that changed nothing. So the one answer
// that may outgrow the limit after the fact, an Apply's whose writes were
// applied (it carries their previous values), is sent as engine.ErrInternal
// saying the writes were applied instead.
//
// Imports: wire depends only on the contract, the generated protocol and
// gRPC. It must never import the server (core/server, or anything that
// imports it), an engine, the plugin host or the SDK.
package wire
