// Package kvpb is FlareDB's public KV API (flaredb.kv.v1): the messages and
// gRPC service generated from kv.proto — unary Get, BatchGet, Put, Delete,
// CompareAndSwap, Batch, Scan and Status, plus the multiplexed Stream — and,
// in reason.go, the ErrorInfo reasons every error carries.
//
// The generated files are committed (scripts/genproto.sh regenerates them;
// make proto-check fails when they are stale) and must not be edited by
// hand. The package imports only protobuf and gRPC: the server, the client
// and the CLI import it, never the other way round.
package kvpb
