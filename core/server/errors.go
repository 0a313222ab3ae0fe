package server

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/kv"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// errorMap is the one translation from the contract's errors to the public
// API's status codes and reasons. The first match (errors.Is, so wrapped
// errors are found) wins; order matters only where one error wraps another.
var errorMap = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{context.Canceled, codes.Canceled, kvpb.ReasonCanceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded, kvpb.ReasonDeadlineExceeded},
	{kv.ErrShuttingDown, codes.Unavailable, kvpb.ReasonShuttingDown},
	{engine.ErrNotFound, codes.NotFound, kvpb.ReasonNotFound},
	{engine.ErrClosed, codes.Unavailable, kvpb.ReasonClosed},
	{errWriteAnswerTooLarge, codes.ResourceExhausted, kvpb.ReasonTooLarge},
	{engine.ErrTooLarge, codes.InvalidArgument, kvpb.ReasonTooLarge},
	{engine.ErrInvalidArgument, codes.InvalidArgument, kvpb.ReasonInvalidArgument},
	{engine.ErrUnavailable, codes.Unavailable, kvpb.ReasonUnavailable},
	{engine.ErrUnsupported, codes.Unimplemented, kvpb.ReasonUnsupported},
	{engine.ErrCorrupt, codes.DataLoss, kvpb.ReasonCorrupt},
	{engine.ErrInternal, codes.Internal, kvpb.ReasonInternal},
}

// classify returns the code and reason for err; unknown errors are
// Internal.
func classify(err error) (codes.Code, string) {
	for _, m := range errorMap {
		if errors.Is(err, m.err) {
			return m.code, m.reason
		}
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return s.Code(), s.Code().String()
	}
	return codes.Internal, kvpb.ReasonInternal
}

// toStatus converts an error from the service into a gRPC status error
// carrying an ErrorInfo detail with the reason.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code, reason := classify(err)
	st := status.New(code, err.Error())
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: kvpb.ErrorDomain}); derr == nil {
		st = d
	}
	return st.Err()
}

// toStreamError converts an error for the multiplexed stream.
func toStreamError(err error) *kvpb.Error {
	code, reason := classify(err)
	return &kvpb.Error{Code: uint32(code), Message: err.Error(), Reason: reason}
}
