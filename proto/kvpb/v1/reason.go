package kvpb

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail that every
// FlareDB error status carries.
const ErrorDomain = "flaredb.io"

// Reasons carried in ErrorInfo.Reason (unary calls) and Error.Reason (the
// multiplexed stream). Each names one error of the engine contract or the
// server; the gRPC code alone is coarser (TOO_LARGE and INVALID_ARGUMENT
// are both InvalidArgument, CLOSED and UNAVAILABLE both Unavailable). One
// reason may come with two codes: TOO_LARGE is InvalidArgument for a
// refused request, and ResourceExhausted for a write that was applied but
// whose answer exceeded the message limit.
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
	ReasonShuttingDown     = "SHUTTING_DOWN"
)
