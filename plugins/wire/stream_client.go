package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/internal/streammux"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// The client side of the Stream: each call is marshaled, in its caller's
// goroutine, as a complete StreamRequest holding that one call, and a
// streammux.Mux packs the waiting ones into shared messages and matches
// the answers by id.

// errNoStream tells a caller that the server has no Stream method and that
// its call was not processed: it is to be made with a unary call.
var errNoStream = errors.New("wire: server has no Stream method")

// newMux returns the Mux of c's Stream.
func (c *Client) newMux() *streammux.Mux[*enginepb.StreamAnswer] {
	return streammux.New(c.base, streammux.Options[*enginepb.StreamAnswer]{
		Open: func(ctx context.Context) (grpc.ClientStream, error) {
			return c.rpc.Stream(streamAppend(ctx, c.name, c.epoch.Add(1)), grpc.ForceCodecV2(streammux.Codec()))
		},
		Receive: func(st grpc.ClientStream) ([]*enginepb.StreamAnswer, bool, error) {
			resp := new(enginepb.StreamResponse)
			if err := st.RecvMsg(resp); err != nil {
				return nil, false, err
			}
			return resp.GetAnswers(), false, nil
		},
		ID: (*enginepb.StreamAnswer).GetId,
		CancelRequest: func(id uint64) ([]byte, error) {
			return proto.Marshal(&enginepb.StreamRequest{Calls: []*enginepb.StreamCall{{
				Id: id, Call: &enginepb.StreamCall_Cancel{Cancel: &enginepb.StreamCancel{}}}}})
		},
		MaxCalls: maxCallsPerMsg,
		MaxBytes: maxBytesPerMsg,
		OpenFailed: func(err error) error {
			switch {
			case status.Code(err) == codes.Unimplemented:
				c.noStream.Store(true)
				return errNoStream
			case c.base.Err() != nil:
				return engine.ErrClosed
			}
			// The cause goes in the message only: the error must match
			// engine.ErrUnavailable alone, whatever code gRPC gave.
			return fmt.Errorf("%w: opening the engine stream: %v", engine.ErrUnavailable, FromStatus(err))
		},
		Broken: func(cause error) (error, bool) {
			switch {
			case c.base.Err() != nil:
				return engine.ErrClosed, false
			case errors.Is(cause, io.EOF):
				return fmt.Errorf("%w: engine stream closed by the server", engine.ErrUnavailable), false
			case status.Code(cause) == codes.Unimplemented:
				// The server has no Stream method: nothing was processed;
				// the callers fall back to unary calls, from now on.
				c.noStream.Store(true)
				return errNoStream, true
			}
			// Some of the waiting calls may have been applied: the error
			// must match engine.ErrUnavailable (outcome unknown) alone, not
			// also what the stream's code stands for (RESOURCE_EXHAUSTED
			// would read as ErrTooLarge: "nothing applied, retry the
			// writes"), so the cause goes in the message only.
			return fmt.Errorf("%w: engine stream broken: %v", engine.ErrUnavailable, FromStatus(cause)), false
		},
		Closed:        engine.ErrClosed,
		KeepsBreaking: func() error { return fmt.Errorf("%w: engine stream keeps breaking", engine.ErrUnavailable) },
		OnSend: func(n int) {
			if h := c.testHookSend; h != nil {
				h(n)
			}
		},
	})
}

// streamCall sends one call on the Stream and waits for its answer, the
// session's end or ctx's end. build fills in the call's request; the
// call carries ctx's remaining time.
func (c *Client) streamCall(ctx context.Context, build func(*enginepb.StreamCall)) (*enginepb.StreamAnswer, error) {
	sc := &enginepb.StreamCall{Id: c.nextID.Add(1)}
	if d, ok := ctx.Deadline(); ok {
		t := time.Until(d)
		if t <= 0 {
			return nil, context.DeadlineExceeded
		}
		sc.TimeoutNanos = int64(t)
	}
	build(sc)
	data, err := proto.Marshal(&enginepb.StreamRequest{Calls: []*enginepb.StreamCall{sc}})
	if err != nil {
		return nil, fmt.Errorf("%w: marshal: %w", engine.ErrInternal, err)
	}
	if len(data) > MaxMessageSize {
		return nil, fmt.Errorf("%w: request of %d bytes exceeds the %d-byte message limit", engine.ErrTooLarge, len(data), MaxMessageSize)
	}
	a, _, err := c.mux.Do(ctx, sc.Id, data)
	return a, err
}
