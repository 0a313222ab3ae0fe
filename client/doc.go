// Package client is the Go SDK for FlareDB: it talks to one FlareDB server
// over the public gRPC KV API (package kvpb) and offers get, batch get, put,
// delete, compare-and-swap, atomic conditional batches, range scans and the
// server's status.
//
// # Layering
//
// The package imports only the generated API (proto/kvpb/v1) and gRPC; it
// never imports the server (core/...) or the engines, so applications that
// embed it stay small and depend only on the wire contract.
//
// # Transport
//
// By default Get, BatchGet, Put, Delete, CompareAndSwap, CompareAndDelete
// and Batch travel over a multiplexed bidirectional stream (KV.Stream):
// concurrent calls are queued, a sender goroutine packs every call that is
// waiting into one StreamRequest (bounded in count and bytes, see
// WithCoalescing), and a receiver goroutine hands each StreamResult to the
// caller whose id it carries. Under load this turns many small calls into few
// messages without adding latency when idle. Each request is marshaled in
// the caller's goroutine before it is queued, so marshaling runs in
// parallel and the client never reads the caller's byte slices after the
// call returns. A request larger than the coalescing byte bound is sent as a
// plain unary call instead, so one oversized request can never break the
// shared stream. WithUnary selects plain unary calls for everything. Scan and
// Status always use their own RPCs.
//
// # Concurrency
//
// A *Client is safe for concurrent use by any number of goroutines and should
// be shared: it holds one gRPC connection and a small pool of streams. Close
// releases them.
//
// # Contexts
//
// Every method takes a context. When it ends, the method returns ctx.Err()
// promptly; an answer that arrives later is dropped. A write abandoned this
// way may or may not have been applied: read the key to find out. Retries
// and their back-off stay within the context's deadline.
//
// # Byte slices
//
// The client never modifies the key and value slices passed to it and never
// keeps them after the method returns; the caller must not modify them while
// the call is running. Every slice the client returns (values, keys in
// results) is freshly allocated and belongs to the caller, who may keep or
// modify it.
//
// # Errors
//
// A failed condition (CompareAndSwap, CompareAndDelete, Batch) is a result
// with Succeeded false, not an error; an absent key in Get is found == false,
// not an error. Errors are *Error values carrying the gRPC code, the
// machine-readable reason (kvpb.Reason...) and the server's message; match
// them with errors.Is against the sentinels (ErrNotFound, ErrInvalidArgument,
// ErrTooLarge, ErrUnavailable, ErrClosed, ...) and use errors.As with
// *Error for the details. A reason refines its code: an error with reason
// TOO_LARGE and code InvalidArgument (a refused request) matches both
// ErrTooLarge and ErrInvalidArgument; with code ResourceExhausted (a write
// applied whose answer was too large to send) only ErrTooLarge.
//
// # Retries
//
// Calls that fail with an Unavailable error are retried with exponential
// back-off (see RetryPolicy): reads (Get, BatchGet, Scan before its first
// entry, Status) always, writes only when the request certainly never
// reached the server, so a write is never applied twice by the client.
package client
