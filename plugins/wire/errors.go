package wire

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flaredb/flaredb/core/engine"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// Domain is the ErrorInfo domain of the errors this package puts in gRPC
// statuses.
const Domain = "engine.flaredb.io"

// Reasons carried in the ErrorInfo detail of an error status, one per
// contract error. They are part of the wire protocol: never change one.
const (
	ReasonNotFound         = "NOT_FOUND"
	ReasonClosed           = "CLOSED"
	ReasonTooLarge         = "TOO_LARGE"
	ReasonInvalidArgument  = "INVALID_ARGUMENT"
	ReasonUnavailable      = "UNAVAILABLE"
	ReasonUnsupported      = "UNSUPPORTED"
	ReasonCorrupt          = "CORRUPT"
	ReasonInternal         = "INTERNAL"
	ReasonCanceled         = "CANCELED"
	ReasonDeadlineExceeded = "DEADLINE_EXCEEDED"
	ReasonProtocolMismatch = "PROTOCOL_MISMATCH"
)

// ErrProtocolMismatch reports that the two sides of the wire speak different
// versions of the engine contract (engine.ProtocolVersion). It wraps
// engine.ErrUnsupported, so errors.Is matches either.
var ErrProtocolMismatch = fmt.Errorf("%w: engine protocol version mismatch", engine.ErrUnsupported)

// mapping is the one table from contract errors to gRPC codes and reasons.
// Order matters for ToStatus: the first entry an error matches wins, so the
// more specific errors come first.
var mapping = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{ErrProtocolMismatch, codes.FailedPrecondition, ReasonProtocolMismatch},
	{engine.ErrClosed, codes.FailedPrecondition, ReasonClosed},
	{engine.ErrNotFound, codes.NotFound, ReasonNotFound},
	{engine.ErrTooLarge, codes.ResourceExhausted, ReasonTooLarge},
	{engine.ErrInvalidArgument, codes.InvalidArgument, ReasonInvalidArgument},
	{engine.ErrUnsupported, codes.Unimplemented, ReasonUnsupported},
	{engine.ErrCorrupt, codes.DataLoss, ReasonCorrupt},
	{engine.ErrUnavailable, codes.Unavailable, ReasonUnavailable},
	{context.Canceled, codes.Canceled, ReasonCanceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded, ReasonDeadlineExceeded},
	{engine.ErrInternal, codes.Internal, ReasonInternal},
}

// codeOnly maps a status that carries no reason of ours (one made by gRPC
// itself, such as a broken connection or a message beyond the size limit)
// to a contract error by its code alone.
var codeOnly = map[codes.Code]error{
	codes.NotFound:           engine.ErrNotFound,
	codes.FailedPrecondition: engine.ErrClosed,
	codes.ResourceExhausted:  engine.ErrTooLarge,
	codes.InvalidArgument:    engine.ErrInvalidArgument,
	codes.Unimplemented:      engine.ErrUnsupported,
	codes.DataLoss:           engine.ErrCorrupt,
	codes.Unavailable:        engine.ErrUnavailable,
	codes.Canceled:           context.Canceled,
	codes.DeadlineExceeded:   context.DeadlineExceeded,
}

// ToStatus translates an error returned by an engine into the gRPC status
// error sent over the wire: the code and reason of the first contract error
// it matches with errors.Is (see the table in the protocol's .proto file),
// with err's message. An error that matches none is sent as INTERNAL. A nil
// error gives nil. It is the only translation from contract errors to gRPC
// statuses in this package.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	code, reason := classify(err)
	st := status.New(code, err.Error())
	if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain}); derr == nil {
		st = withInfo
	}
	return st.Err()
}

// classify returns the code and reason of the first contract error err
// matches in mapping, or INTERNAL.
func classify(err error) (codes.Code, string) {
	for _, m := range mapping {
		if errors.Is(err, m.err) {
			return m.code, m.reason
		}
	}
	return codes.Internal, ReasonInternal
}

// toStreamError is ToStatus for the Stream: the same code and reason,
// carried in a StreamError.
func toStreamError(err error) *enginepb.StreamError {
	code, reason := classify(err)
	return &enginepb.StreamError{Code: uint32(code), Reason: reason, Message: err.Error()}
}

// fromStreamError is FromStatus for the Stream.
func fromStreamError(e *enginepb.StreamError) error {
	return fromParts(codes.Code(e.GetCode()), e.GetReason(), e.GetMessage())
}

// Error is an error received over the wire, translated back into the
// contract: errors.Is matches the contract error it stands for (or
// context.Canceled / context.DeadlineExceeded), and Error returns the
// remote message.
type Error struct {
	// Code is the gRPC code of the status received.
	Code codes.Code
	// Reason is the ErrorInfo reason received, or "" when the status had
	// none of this package's (a transport failure, for example).
	Reason string
	// Msg is the message of the status received.
	Msg string

	sentinel error
}

// Error implements error. It returns the remote error's message, prefixed
// with the contract error's when the remote did not supply a reason.
func (e *Error) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("%v: %s", e.sentinel, e.Msg)
	}
	return e.Msg
}

// Unwrap returns the contract error e stands for.
func (e *Error) Unwrap() error { return e.sentinel }

// FromStatus translates an error returned by a gRPC call of the engine
// protocol back into the contract: a status carrying one of this package's
// reasons becomes the matching contract error (see Error); any other
// status is translated by its code (UNAVAILABLE to engine.ErrUnavailable,
// CANCELLED to context.Canceled, RESOURCE_EXHAUSTED to engine.ErrTooLarge,
// and so on, unknown codes to engine.ErrInternal). An error that is not a
// status at all is wrapped as engine.ErrInternal. A nil error gives nil. It is
// the only translation from gRPC statuses to contract errors in this
// package.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%w: %w", engine.ErrInternal, err)
	}
	if st.Code() == codes.OK {
		return nil
	}
	reason := ""
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != Domain {
			continue
		}
		if knownReason(info.GetReason()) {
			reason = info.GetReason()
			break
		}
	}
	return fromParts(st.Code(), reason, st.Message())
}

func knownReason(r string) bool {
	for _, m := range mapping {
		if m.reason == r {
			return true
		}
	}
	return false
}

// fromParts is the translation FromStatus makes, from a code, a reason
// (which wins when it is one of this package's) and a message.
func fromParts(code codes.Code, reason, msg string) error {
	if code == codes.OK {
		return nil
	}
	e := &Error{Code: code, Msg: msg}
	if reason != "" {
		for _, m := range mapping {
			if m.reason == reason {
				e.Reason, e.sentinel = m.reason, m.err
				return e
			}
		}
	}
	e.sentinel = engine.ErrInternal
	if s, ok := codeOnly[code]; ok {
		e.sentinel = s
	}
	return e
}
