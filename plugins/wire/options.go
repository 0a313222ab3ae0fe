package wire

import (
	"google.golang.org/grpc"
)

// MaxMessageSize is the largest gRPC message, in bytes, that ServerOptions
// and DialOptions let through in either direction: 1 GiB, far beyond gRPC's
// 4 MiB default, so that large values, scan pages and a batch as large as
// the stock engines accept (256 MiB of keys and values, plus the framing)
// fit. A call whose request or response would exceed it fails with
// engine.ErrTooLarge: a Read of many large values, for example, must be
// split by the caller.
const MaxMessageSize = 1 << 30

// ServerOptions returns the gRPC server options the engine protocol needs
// (message limits raised to MaxMessageSize, a fixed flow-control window).
// Callers may append their own.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(windowSize),
	}
}

// DialOptions returns the gRPC dial options the engine protocol needs
// (message limits raised to MaxMessageSize, a fixed flow-control window).
// They set no transport credentials: the caller adds its own.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageSize),
			grpc.MaxCallSendMsgSize(MaxMessageSize),
		),
		grpc.WithInitialWindowSize(windowSize),
		grpc.WithInitialConnWindowSize(windowSize),
	}
}

// windowSize is the HTTP/2 flow-control window of each stream and of the
// connection, on both sides. A fixed window above gRPC's 64 KiB default
// turns off its bandwidth-estimation pings and makes window updates rare;
// on the local plugin connection those were extra frames, and system
// calls, on most round trips. It bounds the bytes in flight; nothing is
// allocated up front.
const windowSize = 32 << 20
