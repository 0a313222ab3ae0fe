package client

import (
	"context"
	"errors"
	"io"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flaredb/flaredb/internal/streammux"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// The multiplexed stream: each call is marshaled, in its caller's
// goroutine, as a complete StreamRequest holding that one op, and a
// streammux.Mux packs the waiting ones into shared messages and matches
// the answers by id.

// newMux returns one slot of the stream pool.
func (c *Client) newMux() *streammux.Mux[*kvpb.StreamResult] {
	return streammux.New(c.base, streammux.Options[*kvpb.StreamResult]{
		Open: func(ctx context.Context) (grpc.ClientStream, error) {
			// The server keeps answers within what this client receives.
			ctx = metadata.AppendToOutgoingContext(ctx, kvpb.MaxRecvMessageSizeHeader, strconv.Itoa(c.opts.maxMsgSize))
			return c.kv.Stream(ctx, grpc.ForceCodecV2(streammux.Codec()))
		},
		Receive: func(st grpc.ClientStream) ([]*kvpb.StreamResult, bool, error) {
			resp := new(kvpb.StreamResponse)
			if err := st.RecvMsg(resp); err != nil {
				return nil, false, err
			}
			return resp.GetResults(), resp.GetDraining(), nil
		},
		ID: (*kvpb.StreamResult).GetId,
		CancelRequest: func(id uint64) ([]byte, error) {
			return proto.Marshal(&kvpb.StreamRequest{Ops: []*kvpb.StreamOp{{
				Id: id, Request: &kvpb.StreamOp_Cancel{Cancel: &kvpb.StreamCancel{}}}}})
		},
		MaxCalls: c.opts.maxOpsPerMsg,
		MaxBytes: c.opts.maxBytesPerMsg,
		OpenFailed: func(err error) error {
			if status.Code(err) == codes.Unimplemented {
				c.noStream.Store(true)
			}
			return unavailable(fromStatus(context.Background(), err), "opening stream")
		},
		Broken: func(cause error) (error, bool) {
			switch {
			case c.closed.Load():
				return ErrClosed, false
			case errors.Is(cause, io.EOF):
				return unavailable(nil, "stream closed by the server"), false
			}
			// A server without the Stream method processed nothing: the
			// callers fall back to unary calls, from now on.
			none := status.Code(cause) == codes.Unimplemented
			if none {
				c.noStream.Store(true)
			}
			return unavailable(fromStatus(context.Background(), cause), "stream broken"), none
		},
		Closed:        ErrClosed,
		KeepsBreaking: func() error { return unavailable(nil, "stream keeps breaking") },
		OnSend:        c.opts.testHookSend,
		OnQueued:      c.opts.testHookEnqueue,
	})
}
