package server

import (
	"context"
	"errors"
	"strings"

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

// classify returns the code and reason for err, and its message without
// the sentinels' texts in front (the reason says it already: a client
// shows "too large: key of ...", not "too large: engine: too large: key of
// ..."); unknown errors are Internal. Every sentinel of errorMap that err
// wraps is cut from the front, as often as it leads, not only the matched
// one: an applied write whose answer is too large wraps engine.ErrTooLarge
// in front of errWriteAnswerTooLarge, and its message starts with what
// follows both. A message that is nothing but sentinels keeps the last.
func classify(err error) (codes.Code, string, string) {
	for _, m := range errorMap {
		if errors.Is(err, m.err) {
			return m.code, m.reason, stripSentinels(err)
		}
	}
	msg := err.Error()
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return s.Code(), s.Code().String(), msg
	}
	return codes.Internal, kvpb.ReasonInternal, msg
}

// stripSentinels returns err's message without the texts of the errorMap
// sentinels err wraps in front of it.
func stripSentinels(err error) string {
	msg := err.Error()
	for cut := true; cut; {
		cut = false
		for _, m := range errorMap {
			if rest, ok := strings.CutPrefix(msg, m.err.Error()+": "); ok && rest != "" && errors.Is(err, m.err) {
				msg, cut = rest, true
			}
		}
	}
	return msg
}

// toStatus converts an error from the service into a gRPC status error
// carrying an ErrorInfo detail with the reason.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code, reason, msg := classify(err)
	st := status.New(code, msg)
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: kvpb.ErrorDomain}); derr == nil {
		st = d
	}
	return st.Err()
}

// toStreamError converts an error for the multiplexed stream.
func toStreamError(err error) *kvpb.Error {
	code, reason, msg := classify(err)
	return &kvpb.Error{Code: uint32(code), Message: msg, Reason: reason}
}
