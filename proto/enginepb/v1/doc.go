// Package enginepb is the engine wire protocol (flaredb.engine.v1): the
// storage-engine contract of package core/engine carried over gRPC between
// the server and an engine plugin — Describe, Read, Apply, a paged Scan,
// Close, and the multiplexed Stream that carries Read and Apply. It is
// versioned apart from the public API (kvpb): every request names the
// contract's protocol version.
//
// The generated files are committed (scripts/genproto.sh regenerates them)
// and must not be edited by hand. The package imports only protobuf and
// gRPC; plugins/wire is the one translation between it and the contract.
package enginepb
