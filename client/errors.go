package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// Sentinel errors. Errors returned by the client match them with errors.Is;
// use errors.As with *Error for the code, reason and message. A context that
// ends makes calls return its ctx.Err() (context.Canceled or
// context.DeadlineExceeded), and an *Error with code Canceled or
// DeadlineExceeded also matches those.
var (
	// ErrNotFound reports that a key does not exist, from a call that needs
	// it to (Get and BatchGet report absence as a result, not this error).
	ErrNotFound = errors.New("flaredb: not found")
	// ErrClosed reports a call on a Client after Close, or a server whose
	// engine is closed (that error also matches ErrUnavailable).
	ErrClosed = errors.New("flaredb: closed")
	// ErrTooLarge reports a key, value, batch or message beyond the
	// server's limits (see ServerStatus.Limits). It also matches
	// ErrInvalidArgument when the server sent code InvalidArgument: the
	// request was refused. With reason TOO_LARGE and code
	// ResourceExhausted, a write was applied and only its answer (the
	// previous values) was too large to send; the message says so. (A bare
	// ResourceExhausted, without a reason, comes from gRPC's own size
	// limits: a request too large to send, which nothing processed, or an
	// answer over this client's receive limit, whose request the server
	// did process.)
	ErrTooLarge = errors.New("flaredb: too large")
	// ErrInvalidArgument reports a malformed request: an empty key, a
	// reversed scan range, an unknown condition.
	ErrInvalidArgument = errors.New("flaredb: invalid argument")
	// ErrUnavailable reports that the server cannot be reached or cannot
	// serve now; the call may succeed later. A write that fails with it may
	// or may not have been applied.
	ErrUnavailable = errors.New("flaredb: unavailable")
	// ErrShuttingDown reports a server that is shutting down; it also
	// matches ErrUnavailable.
	ErrShuttingDown = errors.New("flaredb: server shutting down")
	// ErrUnsupported reports a request for something the server's engine
	// does not support.
	ErrUnsupported = errors.New("flaredb: unsupported")
	// ErrCorrupt reports stored data the server cannot decode.
	ErrCorrupt = errors.New("flaredb: data corrupt")
	// ErrInternal reports any other server failure, and answers the client
	// cannot make sense of.
	ErrInternal = errors.New("flaredb: internal error")
)

// Error is a failed call as the server (or gRPC) reported it. Every error
// the client returns from a server answer is an *Error, possibly wrapped;
// errors.Is matches it against the sentinel for its Reason and the sentinel
// for its Code.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the machine-readable reason (kvpb.ReasonNotFound, ...), or
	// empty when the error did not come from a FlareDB server (for
	// instance a connection failure).
	Reason string
	// Message is the human-readable message.
	Message string

	cause error // the underlying error, if any (for instance a stream's end)
}

// Error returns "flaredb: " followed by the reason (or code) and message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("flaredb: ")
	if e.Reason != "" {
		b.WriteString(strings.ToLower(strings.ReplaceAll(e.Reason, "_", " ")))
	} else {
		b.WriteString(strings.ToLower(e.Code.String()))
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is reports whether target is the sentinel for e's reason or code.
func (e *Error) Is(target error) bool {
	if target == nil {
		return false
	}
	if s := reasonSentinel(e.Reason); s != nil && s == target {
		return true
	}
	if s := codeSentinel(e.Code); s != nil && s == target {
		return true
	}
	if e.Reason == kvpb.ReasonShuttingDown && target == ErrUnavailable {
		return true
	}
	return false
}

// Unwrap returns the underlying error, if any: for a broken stream, the
// error that ended it.
func (e *Error) Unwrap() error { return e.cause }

// GRPCStatus returns e as a gRPC status, with its reason in an ErrorInfo
// detail, so status.FromError and status.Code work on client errors.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Message)
	if e.Reason == "" {
		return st
	}
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Domain: kvpb.ErrorDomain, Reason: e.Reason}); err == nil {
		return d
	}
	return st
}

func reasonSentinel(reason string) error {
	switch reason {
	case kvpb.ReasonNotFound:
		return ErrNotFound
	case kvpb.ReasonClosed:
		return ErrClosed
	case kvpb.ReasonTooLarge:
		return ErrTooLarge
	case kvpb.ReasonInvalidArgument:
		return ErrInvalidArgument
	case kvpb.ReasonUnavailable:
		return ErrUnavailable
	case kvpb.ReasonShuttingDown:
		return ErrShuttingDown
	case kvpb.ReasonUnsupported:
		return ErrUnsupported
	case kvpb.ReasonCorrupt:
		return ErrCorrupt
	case kvpb.ReasonInternal:
		return ErrInternal
	case kvpb.ReasonCanceled:
		return context.Canceled
	case kvpb.ReasonDeadlineExceeded:
		return context.DeadlineExceeded
	}
	return nil
}

func codeSentinel(c codes.Code) error {
	switch c {
	case codes.NotFound:
		return ErrNotFound
	case codes.InvalidArgument, codes.OutOfRange:
		return ErrInvalidArgument
	case codes.ResourceExhausted:
		// gRPC's own "message larger than max" error.
		return ErrTooLarge
	case codes.Unavailable:
		return ErrUnavailable
	case codes.Unimplemented:
		return ErrUnsupported
	case codes.DataLoss:
		return ErrCorrupt
	case codes.Internal, codes.Unknown:
		return ErrInternal
	case codes.Canceled:
		return context.Canceled
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	}
	return nil
}

// fromStatus converts an error returned by a gRPC call. When the caller's
// ctx has ended, it returns ctx.Err() instead, as the stream path does.
func fromStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if status.Code(err) == codes.DeadlineExceeded {
		// The server (or the transport) saw the caller's deadline pass
		// before the caller's own timer fired: report it as the caller's.
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			return context.DeadlineExceeded
		}
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Code: codes.Unknown, Reason: kvpb.ReasonInternal, Message: err.Error(), cause: err}
	}
	e := &Error{Code: st.Code(), Message: st.Message()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == kvpb.ErrorDomain {
			e.Reason = info.GetReason()
			break
		}
	}
	return e
}

// fromStreamError converts the error answering one request on the stream.
func fromStreamError(pe *kvpb.Error) error {
	return &Error{Code: codes.Code(pe.GetCode()), Reason: pe.GetReason(), Message: pe.GetMessage()}
}

// unavailable builds a client-side Unavailable error.
func unavailable(cause error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	var ce *Error
	switch {
	case errors.As(cause, &ce):
		// Keep the message readable: no second "flaredb:" prefix.
		if ce.Reason != "" && ce.Reason != kvpb.ReasonUnavailable {
			msg += ": " + strings.ToLower(strings.ReplaceAll(ce.Reason, "_", " "))
		} else if ce.Reason == "" && ce.Code != codes.Unavailable {
			msg += ": " + strings.ToLower(ce.Code.String())
		}
		if ce.Message != "" {
			msg += ": " + ce.Message
		}
	case cause != nil:
		msg += ": " + cause.Error()
	}
	return &Error{Code: codes.Unavailable, Reason: kvpb.ReasonUnavailable, Message: msg, cause: cause}
}

// invalid builds a client-side InvalidArgument error (requests the client
// refuses before sending).
func invalid(format string, args ...any) *Error {
	return &Error{Code: codes.InvalidArgument, Reason: kvpb.ReasonInvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// internal builds a client-side Internal error (answers the client cannot
// interpret).
func internal(format string, args ...any) *Error {
	return &Error{Code: codes.Internal, Reason: kvpb.ReasonInternal, Message: fmt.Sprintf(format, args...)}
}
